//! `offline-access doctor` (DESIGN §17): checks a deployment end to end and says what is
//! broken and how to fix it. Every check is a read or a call that spends nothing: the
//! secret read and parsed, a data key made and opened under our encryption context, the
//! tables described, the bus described, Google's keys fetched, a refresh with a token that
//! cannot exist (Google must answer `invalid_grant`, which proves it accepts the client),
//! and — with a service account — the RISC stream read.

use std::collections::HashSet;

use secrecy::SecretBox;
use serde::Serialize;

use crate::app::App;
use crate::config::SignInConfig;
use crate::crypto::{KeyProvider, Purpose};
use crate::domain::RefreshToken;
use crate::google::risc_api::RiscManagement;
use crate::google::{ClientSecrets, GoogleTokenError, TokenEndpoint, TokenRefresh};
use crate::upstream::Upstream;

/// How one check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not checked (what it needs was not given): never counted as passed.
    Skipped,
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    /// What was found: never a secret or a token.
    pub detail: String,
    /// How to fix it, when it failed or was skipped.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn skipped(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Skipped,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the doctor reaches besides the functions' configuration.
#[derive(Debug, Default)]
pub struct Extras {
    /// `EVENT_BUS_NAME`: the stack's bus, when known.
    pub event_bus: Option<String>,
    /// The RISC management API with a service account (`--service-account`).
    pub risc: Option<RiscManagement>,
}

/// The indexes the grants table must have (`store::dynamo::schema`).
const GRANT_INDEXES: [&str; 2] = ["by-token-prefix", "by-token-hash"];

/// A refresh token no one was ever issued: Google must refuse it (`invalid_grant`) after
/// accepting the client.
const DUMMY_REFRESH_TOKEN: &str = "1//offline-access-doctor-not-a-token";

/// Runs every check, in order; one failing does not stop the others.
pub async fn examine(config: &SignInConfig, aws: &aws_config::SdkConfig, extras: &Extras) -> Vec<Check> {
    let app = match App::production(&config.common, aws) {
        Ok(app) => app,
        Err(e) => {
            return vec![Check::fail(
                "http_client",
                format!("the HTTP client could not be built: {e}"),
                "this machine's TLS set-up",
            )];
        }
    };
    let aws = crate::app::with_timeouts(aws, config.common.aws_timeouts);
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let mut checks = vec![client_secret(&app, config).await, kms_key(&app).await];
    checks.push(grants_table(&dynamodb, &config.common.grants_table).await);
    checks.push(state_table(&dynamodb, &config.common.state_table).await);
    checks.push(event_bus(&aws, extras.event_bus.as_deref()).await);
    checks.push(google_keys(&app).await);
    checks.push(google_client(&app, config).await);
    checks.push(risc_stream(extras.risc.as_ref()).await);
    checks
}

/// Whether every check passed (a skipped one did not).
pub fn healthy(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.outcome != Outcome::Fail)
}

async fn client_secret(app: &App, config: &SignInConfig) -> Check {
    const NAME: &str = "client_secret";
    match app.secrets.current().await {
        Ok(creds) => Check::pass(
            NAME,
            format!(
                "{} holds Google's JSON for client {}",
                config.common.client_secret_id, creds.client_id
            ),
        ),
        Err(e) => Check::fail(
            NAME,
            format!("{}: {e}", config.common.client_secret_id),
            "store the web client's JSON as downloaded from the Google Cloud console: \
             make secret FILE=client_secret_….json",
        ),
    }
}

async fn kms_key(app: &App) -> Check {
    const NAME: &str = "kms_key";
    let fix = "TOKEN_KEY_ID must be an enabled symmetric key whose policy lets you (and the functions) \
               kms:GenerateDataKey and kms:Decrypt with the encryption context purpose";
    let key = app.keys.key_id().to_owned();
    let made = match app.keys.generate_data_key(Purpose::RefreshToken).await {
        Ok(made) => made,
        Err(e) => return Check::fail(NAME, format!("{key}: making a data key: {e}"), fix),
    };
    match app.keys.decrypt_data_key(&made.wrapped, Purpose::RefreshToken).await {
        Ok(opened) if same_key(&opened, &made.plaintext) => Check::pass(
            NAME,
            format!("{key} makes and opens data keys under our encryption context"),
        ),
        Ok(_) => Check::fail(NAME, format!("{key}: the data key opened to other bytes"), fix),
        Err(e) => Check::fail(NAME, format!("{key}: opening a data key: {e}"), fix),
    }
}

fn same_key(a: &SecretBox<[u8; 32]>, b: &SecretBox<[u8; 32]>) -> bool {
    use secrecy::ExposeSecret;
    a.expose_secret() == b.expose_secret()
}

async fn grants_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Check {
    const NAME: &str = "grants_table";
    let fix = "deploy the stack (make deploy), or set GRANTS_TABLE to its GrantsTableName output";
    let described = match dynamodb.describe_table().table_name(table).send().await {
        Ok(out) => out,
        Err(e) => {
            let u = crate::upstream::classify_aws("dynamodb", &e);
            return Check::fail(NAME, format!("{table}: {u}"), fix);
        }
    };
    let Some(t) = described.table() else {
        return Check::fail(NAME, format!("{table}: not described"), fix);
    };
    let indexes: HashSet<&str> = t
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    let missing: Vec<&str> = GRANT_INDEXES.into_iter().filter(|i| !indexes.contains(i)).collect();
    if !missing.is_empty() {
        return Check::fail(
            NAME,
            format!("{table} lacks the index(es) {}", missing.join(", ")),
            "redeploy the stack: template.yaml defines them",
        );
    }
    let stream = t
        .stream_specification()
        .is_some_and(|s| s.stream_enabled() && s.stream_view_type().map(|v| v.as_str()) == Some("NEW_AND_OLD_IMAGES"));
    if !stream {
        return Check::fail(
            NAME,
            format!("{table} has no NEW_AND_OLD_IMAGES stream: no event is published"),
            "redeploy the stack: template.yaml turns the stream on",
        );
    }
    Check::pass(NAME, format!("{table}: its indexes and its stream are there"))
}

async fn state_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Check {
    const NAME: &str = "state_table";
    let fix = "deploy the stack (make deploy), or set STATE_TABLE to its StateTableName output";
    if let Err(e) = dynamodb.describe_table().table_name(table).send().await {
        let u = crate::upstream::classify_aws("dynamodb", &e);
        return Check::fail(NAME, format!("{table}: {u}"), fix);
    }
    let ttl = dynamodb.describe_time_to_live().table_name(table).send().await;
    let on = ttl
        .ok()
        .and_then(|t| t.time_to_live_description().cloned())
        .is_some_and(|d| {
            d.attribute_name() == Some("expires_at") && d.time_to_live_status().map(|s| s.as_str()) == Some("ENABLED")
        });
    if on {
        Check::pass(NAME, format!("{table}: TTL on expires_at"))
    } else {
        Check::fail(
            NAME,
            format!("{table} has no TTL on expires_at: claims and checkpoints are never removed"),
            "redeploy the stack: template.yaml turns TTL on",
        )
    }
}

async fn event_bus(aws: &aws_config::SdkConfig, bus: Option<&str>) -> Check {
    const NAME: &str = "event_bus";
    let Some(bus) = bus else {
        return Check::skipped(
            NAME,
            "EVENT_BUS_NAME is not set",
            "use --stack, or set EVENT_BUS_NAME to the EventBusName output",
        );
    };
    match aws_sdk_eventbridge::Client::new(aws)
        .describe_event_bus()
        .name(bus)
        .send()
        .await
    {
        Ok(_) => Check::pass(NAME, format!("{bus} exists")),
        Err(e) => Check::fail(
            NAME,
            format!("{bus}: {}", crate::upstream::classify_aws("eventbridge", &e)),
            "redeploy the stack, or set EVENT_BUS_NAME to its EventBusName output",
        ),
    }
}

async fn google_keys(app: &App) -> Check {
    const NAME: &str = "google_keys";
    let uri = &app.common.certs_uri;
    let answer = match app.http.get(uri).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("{uri} did not answer ({})", transport(&e)),
                "let the functions reach Google over HTTPS (a NAT gateway, or no VPC)",
            );
        }
    };
    let status = answer.status();
    let keys = answer
        .bytes()
        .await
        .ok()
        .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .and_then(|j| j["keys"].as_array().map(Vec::len))
        .unwrap_or(0);
    if status.is_success() && keys > 0 {
        Check::pass(NAME, format!("{uri} answers with {keys} signing key(s)"))
    } else {
        Check::fail(
            NAME,
            format!("{uri} answered HTTP {} with {keys} key(s)", status.as_u16()),
            "GOOGLE_CERTS_URI must be Google's JWKS (https://www.googleapis.com/oauth2/v3/certs)",
        )
    }
}

/// A transport failure in words, without the URL's query or anything it carried.
fn transport(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "no connection"
    } else {
        "transport failure"
    }
}

async fn google_client(app: &App, config: &SignInConfig) -> Check {
    const NAME: &str = "google_client";
    let Ok(creds) = app.secrets.current().await else {
        return Check::skipped(NAME, "no client secret to present", "fix client_secret first");
    };
    let token = RefreshToken::new(DUMMY_REFRESH_TOKEN.into());
    let token_uri = creds.token_uri(config.common.token_uri.as_deref());
    let answered = app
        .token_endpoint()
        .refresh(TokenRefresh {
            token_uri,
            credentials: &creds,
            refresh_token: &token,
        })
        .await;
    match answered {
        Err(GoogleTokenError::InvalidGrant { .. }) => Check::pass(
            NAME,
            format!(
                "Google accepts client {} (a made-up refresh token is invalid_grant)",
                creds.client_id
            ),
        ),
        Err(GoogleTokenError::Upstream(Upstream::Misconfigured { detail, .. })) => Check::fail(
            NAME,
            format!("Google refuses client {}: {detail}", creds.client_id),
            match detail.split(':').next().unwrap_or_default() {
                "deleted_client" => "restore the client within 30 days (Google Cloud console, APIs & Services > \
                                     Credentials > Deleted credentials), or create another and store its JSON"
                    .to_owned(),
                "invalid_client" => "the secret is not one Google holds for this client: download the client's \
                                     JSON again (or add a secret) and make secret FILE=…"
                    .to_owned(),
                _ => "check the OAuth client's type (Web application) and project".to_owned(),
            },
        ),
        Err(e) => Check::fail(
            NAME,
            format!("{token_uri}: {e}"),
            "let the functions reach Google over HTTPS; GOOGLE_TOKEN_URI, when set, must be Google's",
        ),
        Ok(_) => Check::fail(
            NAME,
            format!("{token_uri} accepted a refresh token that cannot exist"),
            "GOOGLE_TOKEN_URI must be Google's token endpoint",
        ),
    }
}

async fn risc_stream(risc: Option<&RiscManagement>) -> Check {
    const NAME: &str = "risc_stream";
    let Some(api) = risc else {
        return Check::skipped(
            NAME,
            "not checked without a service account",
            "offline-access doctor --service-account FILE (RISC Configuration Admin)",
        );
    };
    let stream = match api.stream().await {
        Ok(stream) => stream,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("the RISC stream could not be read: {e}"),
                "offline-access risc register --url <ApiUrl>/risc",
            );
        }
    };
    let url = stream["delivery"]["url"].as_str().unwrap_or_default().to_owned();
    let status = api.status().await.unwrap_or_default();
    if url.is_empty() {
        return Check::fail(
            NAME,
            "no receiver is registered",
            "offline-access risc register --url <ApiUrl>/risc",
        );
    }
    if status != "enabled" {
        return Check::fail(
            NAME,
            format!("{url} is registered but the stream is {status}"),
            "offline-access risc status enable",
        );
    }
    Check::pass(
        NAME,
        format!("{url} receives Google's security events (stream enabled)"),
    )
}
