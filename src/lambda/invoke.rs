//! The `access-token` function's contract (DESIGN §11): an `Invoke` payload →
//! [`AccessRequest`], and the outcome → a JSON answer with a `status`. Every expected
//! outcome is an answer, never a function error, so a caller branches on `status` and
//! `error` alone. No answer carries a refresh token, and no log an access token.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::access_token::{AccessError, AccessRequest, AccessTokens, DEFAULT_MIN_TTL, IssuedToken, MAX_MIN_TTL};
use crate::domain::{GoogleSubject, Scopes};
use crate::ports::Ports;
use crate::store::reasons;

/// The largest payload accepted; a request naming fifty scopes is about 4 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024;
/// The most scopes one request may name.
pub const MAX_SCOPES: usize = 50;
const MAX_SCOPE_LEN: usize = 512;

/// A 400 answer's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest(pub String);

fn invalid(message: impl Into<String>) -> InvalidRequest {
    InvalidRequest(message.into())
}

/// Reads the request. Messages name the field at fault, never echo a value.
pub fn parse_request(payload: &[u8]) -> Result<AccessRequest, InvalidRequest> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(invalid(format!("the request is over {MAX_PAYLOAD_BYTES} bytes")));
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(payload) else {
        return Err(invalid(
            r#"the request must be a JSON object: {"sub": "...", "min_ttl_secs": 300, "scopes": [...], "force_refresh": false}"#,
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "sub" | "min_ttl_secs" | "scopes" | "force_refresh"))
    {
        let named = unknown.len() <= 64
            && unknown
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        return Err(invalid(if named {
            format!("unknown field `{unknown}`; the fields are sub, min_ttl_secs, scopes, force_refresh")
        } else {
            "an unknown field; the fields are sub, min_ttl_secs, scopes, force_refresh".to_owned()
        }));
    }
    let sub = match fields.get("sub") {
        Some(Value::String(raw)) => GoogleSubject::parse(raw).map_err(|_| invalid("`sub` is not a Google user id"))?,
        Some(_) => return Err(invalid("`sub` must be a string")),
        None => return Err(invalid("`sub` is required")),
    };
    let max = MAX_MIN_TTL.as_secs();
    let min_ttl = match fields.get("min_ttl_secs") {
        None | Some(Value::Null) => DEFAULT_MIN_TTL,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(secs) if secs <= max => Duration::from_secs(secs),
            _ => {
                return Err(invalid(format!(
                    "`min_ttl_secs` must be a whole number from 0 to {max}"
                )));
            }
        },
        Some(_) => {
            return Err(invalid(format!(
                "`min_ttl_secs` must be a whole number from 0 to {max}"
            )));
        }
    };
    let scopes = match fields.get("scopes") {
        None | Some(Value::Null) => Scopes::default(),
        Some(Value::Array(items)) if items.len() <= MAX_SCOPES => {
            let mut scopes = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(scope)
                        if !scope.is_empty()
                            && scope.len() <= MAX_SCOPE_LEN
                            && scope.bytes().all(|b| b.is_ascii_graphic()) =>
                    {
                        scopes.push(scope);
                    }
                    _ => return Err(invalid("each of `scopes` must be a scope string, without spaces")),
                }
            }
            scopes.into_iter().collect()
        }
        Some(Value::Array(_)) => return Err(invalid(format!("`scopes` may name at most {MAX_SCOPES} scopes"))),
        Some(_) => return Err(invalid("`scopes` must be a list of strings")),
    };
    let force_refresh = match fields.get("force_refresh") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("`force_refresh` must be true or false")),
    };
    Ok(AccessRequest {
        sub,
        min_ttl,
        scopes,
        force_refresh,
    })
}

/// One invocation: the payload in, the answer out.
pub async fn handle<P: Ports>(service: &AccessTokens<P>, payload: &[u8]) -> Value {
    match parse_request(payload) {
        Ok(request) => answer(&service.access_token(&request).await),
        Err(e) => {
            tracing::info!(error = %e.0, "invalid access-token request");
            invalid_answer(&e)
        }
    }
}

/// Whole seconds to wait, at least one.
fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

fn error(status: u16, code: &str, message: &str) -> Map<String, Value> {
    let mut answer = Map::new();
    answer.insert("status".into(), json!(status));
    answer.insert("error".into(), json!(code));
    answer.insert("message".into(), json!(message));
    answer
}

/// The answer to a request that could not be read.
pub fn invalid_answer(e: &InvalidRequest) -> Value {
    Value::Object(error(400, "invalid_request", &e.0))
}

/// The answer to an outcome (DESIGN §11's table).
pub fn answer(outcome: &Result<IssuedToken, AccessError>) -> Value {
    let e = match outcome {
        Ok(token) => {
            use crate::clock::rfc3339;
            let mut answer = json!({
                "status": 200,
                "access_token": token.access_token.expose_secret(),
                "expires_at": rfc3339(token.expires_at),
                "scopes": token.scopes,
            });
            if let Some(ends) = token.refresh_expires_at {
                // Time-based access: the user must consent again after this.
                answer["refresh_expires_at"] = json!(rfc3339(ends));
            }
            return answer;
        }
        Err(e) => e,
    };
    let answer = match e {
        AccessError::GrantNotFound => error(404, "grant_not_found", "no grant is stored for this user"),
        AccessError::ReauthorizationRequired { reason, likely_cause } => {
            let mut a = error(
                409,
                "reauthorization_required",
                "the user must sign in again and grant offline access",
            );
            a.insert("reason".into(), json!(reason));
            if let Some(cause) = likely_cause {
                a.insert("likely_cause".into(), json!(cause));
            }
            a
        }
        AccessError::Suspended => {
            // DESIGN §11: one 409 code for every unusable grant; the reason tells them apart.
            let mut a = error(
                409,
                "reauthorization_required",
                "Google disabled this account; access resumes when Google enables it again",
            );
            a.insert("reason".into(), json!(reasons::RISC_ACCOUNT_DISABLED));
            a
        }
        AccessError::ScopeNotGranted { missing } => {
            let mut a = error(403, "scope_not_granted", "the user did not grant every requested scope");
            a.insert("missing_scopes".into(), json!(missing));
            a
        }
        AccessError::RefreshBackoff { retry_after } => {
            let mut a = error(
                429,
                "refresh_backoff",
                "this grant was refreshed moments ago; use the current token or retry later",
            );
            a.insert("retry_after_secs".into(), json!(secs(*retry_after)));
            a
        }
        AccessError::Unavailable { retry_after, .. } => {
            let mut a = error(503, "upstream_unavailable", "Google or AWS is unavailable; retry later");
            a.insert("retry_after_secs".into(), json!(secs(*retry_after)));
            a
        }
        AccessError::Misconfigured(_) => error(500, "server_misconfigured", "the service is misconfigured"),
    };
    Value::Object(answer)
}

/// The request reader's invariants over arbitrary bytes, for the fuzz target (`fuzz/`)
/// and the generated-input test: it never panics, an accepted request is within every
/// bound, and a refusal is a 400 whose message is short printable text. Says whether the
/// input was accepted.
#[doc(hidden)]
pub fn check_request_invariants(data: &[u8]) -> bool {
    match parse_request(data) {
        Ok(request) => {
            assert!(GoogleSubject::parse(request.sub.as_str()).is_ok());
            assert!(request.min_ttl <= MAX_MIN_TTL);
            assert!(request.scopes.iter().count() <= MAX_SCOPES);
            assert!(
                request
                    .scopes
                    .iter()
                    .all(|s| { !s.is_empty() && s.len() <= MAX_SCOPE_LEN && s.bytes().all(|b| b.is_ascii_graphic()) })
            );
            true
        }
        Err(e) => {
            assert!(e.0.len() <= 256 && e.0.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
            assert_eq!(invalid_answer(&e)["status"], 400);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_reader_holds_its_invariants_on_generated_input() {
        crate::generated::check_target("access_token_request", check_request_invariants);
    }

    fn parse(raw: &str) -> Result<AccessRequest, String> {
        parse_request(raw.as_bytes()).map_err(|e| e.0)
    }

    #[test]
    fn a_full_request_reads_every_field() {
        let r = parse(r#"{"sub":"1001","min_ttl_secs":600,"scopes":["a","b"],"force_refresh":true}"#);
        let r = r.map(|r| (r.sub.to_string(), r.min_ttl, r.scopes.iter().count(), r.force_refresh));
        assert_eq!(r, Ok(("1001".into(), Duration::from_secs(600), 2, true)));
    }

    #[test]
    fn only_sub_is_required() {
        let r = parse(r#"{"sub":"1001"}"#).map(|r| (r.min_ttl, r.scopes.is_empty(), r.force_refresh));
        assert_eq!(r, Ok((DEFAULT_MIN_TTL, true, false)));
    }

    #[test]
    fn malformed_requests_are_refused_naming_the_field_never_the_value() {
        let cases = [
            (r#"{}"#, "`sub` is required"),
            (r#"{"sub":1001}"#, "`sub` must be a string"),
            (r#"{"sub":""}"#, "`sub` is not"),
            (r#"{"sub":"1","min_ttl_secs":3001}"#, "`min_ttl_secs`"),
            (r#"{"sub":"1","min_ttl_secs":-1}"#, "`min_ttl_secs`"),
            (r#"{"sub":"1","min_ttl_secs":"300"}"#, "`min_ttl_secs`"),
            (r#"{"sub":"1","scopes":"a b"}"#, "`scopes` must be a list"),
            (r#"{"sub":"1","scopes":["a b"]}"#, "each of `scopes`"),
            (r#"{"sub":"1","scopes":[1]}"#, "each of `scopes`"),
            (r#"{"sub":"1","force_refresh":"yes"}"#, "`force_refresh`"),
            (
                r#"{"sub":"1","refresh_token":"1//secret"}"#,
                "unknown field `refresh_token`",
            ),
            (r#"{"sub":"1","1//secret value":1}"#, "an unknown field"),
            (r#"[1]"#, "JSON object"),
            (r#""1001""#, "JSON object"),
        ];
        for (raw, expected) in cases {
            let message = parse(raw).err().unwrap_or_default();
            assert!(message.contains(expected), "{raw}: {message}");
            assert!(!message.contains("secret"), "{raw}: {message}");
        }
        let oversize = format!(r#"{{"sub":"1","scopes":["{}"]}}"#, "a".repeat(MAX_PAYLOAD_BYTES));
        assert!(parse(&oversize).is_err_and(|m| m.contains("over")));
        let many = format!(
            r#"{{"sub":"1","scopes":[{}]}}"#,
            vec![r#""s""#; MAX_SCOPES + 1].join(",")
        );
        assert!(parse(&many).is_err_and(|m| m.contains("at most")));
    }

    #[test]
    fn every_error_answer_has_a_status_and_a_stable_code() {
        let cases = [
            (AccessError::GrantNotFound, 404, "grant_not_found"),
            (
                AccessError::ReauthorizationRequired {
                    reason: "invalid_grant".into(),
                    likely_cause: Some("revoked_or_replaced".into()),
                },
                409,
                "reauthorization_required",
            ),
            (
                AccessError::ScopeNotGranted {
                    missing: vec!["x".into()],
                },
                403,
                "scope_not_granted",
            ),
            (
                AccessError::RefreshBackoff {
                    retry_after: Duration::from_secs(12),
                },
                429,
                "refresh_backoff",
            ),
            (
                AccessError::Unavailable {
                    retry_after: Duration::ZERO,
                    cause: "google-token is unavailable (503)".into(),
                },
                503,
                "upstream_unavailable",
            ),
            (
                AccessError::Misconfigured("kms refused".into()),
                500,
                "server_misconfigured",
            ),
        ];
        for (e, status, code) in cases {
            let a = answer(&Err(e));
            assert_eq!((a["status"].as_u64(), a["error"].as_str()), (Some(status), Some(code)));
            assert!(!a.to_string().contains("kms refused") && !a.to_string().contains("(503)"));
        }
        assert_eq!(
            answer(&Err(AccessError::RefreshBackoff {
                retry_after: Duration::from_secs(12)
            }))["retry_after_secs"],
            json!(12)
        );
        assert_eq!(
            answer(&Err(AccessError::Unavailable {
                retry_after: Duration::ZERO,
                cause: String::new()
            }))["retry_after_secs"],
            json!(1)
        );
    }

    #[test]
    fn a_token_answer_carries_an_rfc3339_utc_expiry() {
        let a = answer(&Ok(IssuedToken {
            access_token: crate::domain::AccessToken::new("ya29.x".into()),
            expires_at: 1_798_761_600,
            scopes: ["openid"].into_iter().collect(),
            refresh_expires_at: None,
        }));
        assert_eq!(a["expires_at"], json!("2027-01-01T00:00:00Z"));
        assert_eq!(a["status"], json!(200));
        assert_eq!(a["scopes"], json!(["openid"]));
        assert!(a.get("refresh_expires_at").is_none(), "lasting access says nothing");
        let limited = answer(&Ok(IssuedToken {
            access_token: crate::domain::AccessToken::new("ya29.x".into()),
            expires_at: 1_798_761_600,
            scopes: ["openid"].into_iter().collect(),
            refresh_expires_at: Some(1_798_765_200),
        }));
        assert_eq!(limited["refresh_expires_at"], json!("2027-01-01T01:00:00Z"));
    }
}
