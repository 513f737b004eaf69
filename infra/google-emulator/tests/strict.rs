//! The emulator answers as strictly as Google does where a lenient answer would hide a
//! bug in offline-access: each rule here over real HTTP, as the product calls it.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: a panic is a failed test"
)]

use std::time::Duration;

use google_emulator::{
    ClientState, CodeSpec, Consent, DriveReason, Emulator, MAX_REFRESH_TOKENS_PER_USER, TESTING_TOKEN_LIFETIME_SECS,
    UNUSED_TOKEN_LIFETIME_SECS,
};
use serde_json::Value;

const DRIVE: &str = "https://www.googleapis.com/auth/drive.appdata";
const DAY: u64 = 24 * 3_600;

/// The product's side of the conversation: the web client's calls.
struct Client {
    emulator: Emulator,
    http: reqwest::Client,
}

impl Client {
    async fn start() -> Self {
        Self {
            emulator: Emulator::start_default().await.expect("emulator"),
            http: reqwest::Client::new(),
        }
    }

    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let answer = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = answer.status().as_u16();
        (
            status,
            serde_json::from_str(&answer.text().await.expect("body")).unwrap_or(Value::Null),
        )
    }

    /// The token endpoint with the client's credentials (or `secret` in their place).
    async fn token(&self, secret: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let settings = self.emulator.settings();
        let mut all = vec![("client_id", settings.client_id.as_str()), ("client_secret", secret)];
        all.extend_from_slice(fields);
        self.post_form(&self.emulator.token_uri(), &all).await
    }

    async fn exchange_with(&self, secret: &str, code: &str) -> (u16, Value) {
        self.token(
            secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", ""),
            ],
        )
        .await
    }

    async fn exchange(&self, code: &str) -> (u16, Value) {
        self.exchange_with(&self.emulator.settings().client_secret, code).await
    }

    /// Mints a code for `spec` and exchanges it; the answer must be a 200.
    async fn signed_in(&self, spec: CodeSpec) -> (String, Value) {
        let code = self.emulator.mint_code(spec);
        let (status, answer) = self.exchange(&code.code).await;
        assert_eq!(status, 200, "{answer}");
        (code.sub, answer)
    }

    async fn refresh(&self, token: &str) -> (u16, Value) {
        self.token(
            &self.emulator.settings().client_secret,
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .await
    }

    async fn revoke(&self, token: &str) -> u16 {
        self.post_form(&self.emulator.revoke_uri(), &[("token", token)]).await.0
    }

    async fn drive(&self, access_token: &str) -> (u16, Value) {
        let answer = self
            .http
            .get(format!("{}/files?spaces=appDataFolder", self.emulator.drive_api()))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("GET");
        let status = answer.status().as_u16();
        (
            status,
            serde_json::from_str(&answer.text().await.expect("body")).expect("JSON"),
        )
    }
}

fn text<'a>(answer: &'a Value, field: &str) -> &'a str {
    answer[field].as_str().unwrap_or_default()
}

fn spec(scopes: &str) -> CodeSpec {
    CodeSpec {
        scopes: Some(scopes.into()),
        ..CodeSpec::default()
    }
}

/// Drive's `(status, error.errors[0].reason)`.
fn drive_reason(answer: &(u16, Value)) -> (u16, &str) {
    (
        answer.0,
        answer.1["error"]["errors"][0]["reason"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn an_id_token_comes_only_when_an_identity_scope_was_granted() {
    let google = Client::start().await;
    for (scopes, id_token) in [
        (DRIVE.to_owned(), false),
        (format!("openid {DRIVE}"), true),
        (format!("email {DRIVE}"), true),
        (
            format!("https://www.googleapis.com/auth/userinfo.profile {DRIVE}"),
            true,
        ),
    ] {
        let (_, answer) = google.signed_in(spec(&scopes)).await;
        assert_eq!(answer.get("id_token").is_some(), id_token, "{scopes}: {answer}");
        assert_eq!(text(&answer, "scope"), scopes);
    }
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_users_access_tokens_at_drive() {
    let google = Client::start().await;
    let (_, answer) = google.signed_in(CodeSpec::default()).await;
    let (refresh, access) = (text(&answer, "refresh_token"), text(&answer, "access_token"));
    assert_eq!(google.drive(access).await.0, 200);
    let (_, refreshed) = google.refresh(refresh).await;
    assert_eq!(google.revoke(refresh).await, 200);
    for token in [access, text(&refreshed, "access_token")] {
        assert_eq!(drive_reason(&google.drive(token).await), (401, "authError"));
    }
    assert_eq!(text(&google.refresh(refresh).await.1, "error"), "invalid_grant");

    // The user revoking it in their account (the control API) ends them too.
    let (_, answer) = google.signed_in(CodeSpec::default()).await;
    assert!(
        google
            .emulator
            .revoke_refresh_token(text(&answer, "refresh_token"), None)
    );
    assert_eq!(
        drive_reason(&google.drive(text(&answer, "access_token")).await),
        (401, "authError")
    );
}

#[tokio::test]
async fn revoking_an_access_token_ends_the_grant() {
    let google = Client::start().await;
    let (sub, answer) = google.signed_in(CodeSpec::default()).await;
    let refresh = text(&answer, "refresh_token");
    let (_, other) = google.refresh(refresh).await;
    assert_eq!(google.revoke(text(&answer, "access_token")).await, 200);
    let (status, refused) = google.refresh(refresh).await;
    assert_eq!((status, text(&refused, "error")), (400, "invalid_grant"));
    assert_eq!(
        drive_reason(&google.drive(text(&other, "access_token")).await),
        (401, "authError")
    );
    assert_eq!(google.emulator.live_refresh_tokens(&sub), 0);
}

#[tokio::test]
async fn a_deleted_or_unauthorized_client_is_answered_as_google_does_and_spends_no_code() {
    let google = Client::start().await;
    let (_, answer) = google.signed_in(CodeSpec::default()).await;
    let refresh = text(&answer, "refresh_token");
    let code = google.emulator.mint_code(CodeSpec::default());
    for (state, error) in [
        (ClientState::Deleted, "deleted_client"),
        (ClientState::Unauthorized, "unauthorized_client"),
    ] {
        google.emulator.set_client_state(state);
        let (status, refused) = google.exchange(&code.code).await;
        assert_eq!((status, text(&refused, "error")), (401, error), "{refused}");
        let (status, refused) = google.refresh(refresh).await;
        assert_eq!((status, text(&refused, "error")), (401, error), "{refused}");
    }
    // Restored: the code was never looked at, and the grant was never touched.
    google.emulator.set_client_state(ClientState::Active);
    assert_eq!(google.exchange(&code.code).await.0, 200);
    assert_eq!(google.refresh(refresh).await.0, 200);
}

#[tokio::test]
async fn client_authentication_is_checked_before_the_code_is_looked_at() {
    let google = Client::start().await;
    let code = google.emulator.mint_code(CodeSpec::default());
    for code in [code.code.as_str(), "4/0not-a-code"] {
        let (status, refused) = google.exchange_with("GOCSPX-wrong", code).await;
        assert_eq!((status, text(&refused, "error")), (401, "invalid_client"), "{refused}");
    }
    // An unknown client id: the same, before the code.
    let (status, refused) = google
        .post_form(
            &google.emulator.token_uri(),
            &[
                ("client_id", "someone-else.apps.googleusercontent.com"),
                ("client_secret", "x"),
                ("grant_type", "authorization_code"),
                ("code", &code.code),
                ("redirect_uri", ""),
            ],
        )
        .await;
    assert_eq!((status, text(&refused, "error")), (401, "invalid_client"));
    let (status, answer) = google.exchange(&code.code).await;
    assert_eq!(status, 200, "the code was not spent: {answer}");
    let (status, again) = google.exchange(&code.code).await;
    assert_eq!((status, text(&again, "error")), (400, "invalid_grant"));
}

#[tokio::test]
async fn a_testing_mode_clients_refresh_tokens_expire_seven_days_after_issue_beyond_the_basic_scopes() {
    let google = Client::start().await;
    google.emulator.set_testing_mode(true);
    let (_, drive) = google.signed_in(CodeSpec::default()).await;
    let (_, basic) = google.signed_in(spec("openid email profile")).await;
    google
        .emulator
        .advance_clock(Duration::from_secs(TESTING_TOKEN_LIFETIME_SECS - 60));
    for answer in [&drive, &basic] {
        assert_eq!(google.refresh(text(answer, "refresh_token")).await.0, 200);
    }
    google.emulator.advance_clock(Duration::from_secs(120));
    let (status, refused) = google.refresh(text(&drive, "refresh_token")).await;
    assert_eq!((status, text(&refused, "error")), (400, "invalid_grant"));
    assert_eq!(
        google.refresh(text(&basic, "refresh_token")).await.0,
        200,
        "name, email and profile alone do not expire"
    );

    // Published (in production): tokens issued from then on do not expire.
    google.emulator.set_testing_mode(false);
    let (_, published) = google.signed_in(CodeSpec::default()).await;
    google.emulator.advance_clock(Duration::from_secs(30 * DAY));
    assert_eq!(google.refresh(text(&published, "refresh_token")).await.0, 200);
}

#[tokio::test]
async fn a_refresh_token_unused_for_six_months_stops_working() {
    let google = Client::start().await;
    let (_, used) = google.signed_in(CodeSpec::default()).await;
    let (_, idle) = google.signed_in(CodeSpec::default()).await;
    let (used, idle) = (text(&used, "refresh_token"), text(&idle, "refresh_token"));
    for _ in 0..3 {
        google
            .emulator
            .advance_clock(Duration::from_secs(UNUSED_TOKEN_LIFETIME_SECS - DAY));
        assert_eq!(google.refresh(used).await.0, 200, "used within six months, it lives on");
    }
    let (status, refused) = google.refresh(idle).await;
    assert_eq!((status, text(&refused, "error")), (400, "invalid_grant"));
    assert!(!google.emulator.refresh_token_is_live(idle));
}

#[tokio::test]
async fn issuing_a_users_101st_refresh_token_ends_the_oldest() {
    let google = Client::start().await;
    let (sub, first) = google.signed_in(CodeSpec::default()).await;
    let forced = || CodeSpec {
        sub: Some(sub.clone()),
        consent: Consent::Forced,
        ..CodeSpec::default()
    };
    let (_, second) = google.signed_in(forced()).await;
    for _ in 2..MAX_REFRESH_TOKENS_PER_USER {
        google.signed_in(forced()).await;
    }
    assert_eq!(google.emulator.live_refresh_tokens(&sub), MAX_REFRESH_TOKENS_PER_USER);
    assert_eq!(google.refresh(text(&first, "refresh_token")).await.0, 200);
    google.signed_in(forced()).await;
    assert_eq!(google.emulator.live_refresh_tokens(&sub), MAX_REFRESH_TOKENS_PER_USER);
    let (status, refused) = google.refresh(text(&first, "refresh_token")).await;
    assert_eq!(
        (status, text(&refused, "error")),
        (400, "invalid_grant"),
        "the oldest ended"
    );
    assert_eq!(google.refresh(text(&second, "refresh_token")).await.0, 200);
}

#[tokio::test]
async fn drives_refusals_are_shaped_as_googles() {
    let google = Client::start().await;
    let (sub, answer) = google.signed_in(CodeSpec::default()).await;
    let access = text(&answer, "access_token");

    let (status, body) = google.drive("ya29.not-a-token").await;
    assert_eq!(status, 401);
    let error = &body["error"];
    assert_eq!(
        (error["code"].as_u64(), text(error, "status")),
        (Some(401), "UNAUTHENTICATED")
    );
    let first = &error["errors"][0];
    assert_eq!(
        (
            text(first, "reason"),
            text(first, "location"),
            text(first, "locationType")
        ),
        ("authError", "Authorization", "header")
    );

    let (_, narrow) = google.signed_in(spec("openid email")).await;
    assert_eq!(
        drive_reason(&google.drive(text(&narrow, "access_token")).await),
        (403, "insufficientPermissions")
    );

    for (for_whom, reason, domain) in [
        (None, DriveReason::AccessNotConfigured, "usageLimits"),
        (None, DriveReason::DailyLimitExceeded, "usageLimits"),
        (Some(sub.as_str()), DriveReason::DomainPolicy, "global"),
    ] {
        google.emulator.refuse_drive(for_whom, reason);
        let (status, body) = google.drive(access).await;
        assert_eq!(drive_reason(&(status, body.clone())), (403, reason.reason()), "{body}");
        assert_eq!(body["error"]["code"].as_u64(), Some(403));
        assert_eq!(text(&body["error"], "status"), "PERMISSION_DENIED");
        assert_eq!(text(&body["error"]["errors"][0], "domain"), domain);
        assert!(!text(&body["error"], "message").is_empty());
        google.emulator.clear_drive_refusals();
    }
    // A user's refusal is that user's alone.
    google
        .emulator
        .refuse_drive(Some("someone-else"), DriveReason::DomainPolicy);
    assert_eq!(google.drive(access).await.0, 200);

    // The same shapes as one-off faults, for the rate limits.
    google.emulator.inject_fault(
        google_emulator::Endpoint::Drive,
        DriveReason::UserRateLimitExceeded.fault(1),
    );
    assert_eq!(
        drive_reason(&google.drive(access).await),
        (403, "userRateLimitExceeded")
    );
    assert_eq!(google.drive(access).await.0, 200);
}

/// Google finishes a request its caller gave up on: an exchange that outlived the
/// caller's timeout has redeemed the code all the same.
#[tokio::test]
async fn an_exchange_the_caller_abandoned_still_redeems_the_code() {
    let google = Client::start().await;
    google.emulator.inject_fault(
        google_emulator::Endpoint::Token,
        google_emulator::Fault {
            delay_ms: 300,
            count: Some(1),
            ..google_emulator::Fault::default()
        },
    );
    let code = google.emulator.mint_code(CodeSpec::default());
    let settings = google.emulator.settings();
    let impatient = google
        .http
        .post(google.emulator.token_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("client_id", settings.client_id.as_str()),
                    ("client_secret", settings.client_secret.as_str()),
                    ("grant_type", "authorization_code"),
                    ("code", code.code.as_str()),
                    ("redirect_uri", ""),
                ])
                .finish(),
        )
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    assert!(impatient.is_err_and(|e| e.is_timeout()));

    let mut polls = 0;
    while google.emulator.stats().code_exchanges == 0 {
        polls += 1;
        assert!(polls < 100, "the abandoned exchange was never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, answer) = google.exchange(&code.code).await;
    assert_eq!((status, text(&answer, "error")), (400, "invalid_grant"), "{answer}");
}

/// PKCE (RFC 7636) as Google applies it: a code issued with an `S256` challenge is
/// redeemed only with the verifier it was made from, and only at its own `redirect_uri`;
/// a missing or wrong verifier is `invalid_grant` and leaves the code unredeemed.
#[tokio::test]
async fn a_pkce_code_needs_its_verifier_and_its_redirect_uri() {
    let client = Client::start().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // RFC 7636 appendix B's example pair.
    assert_eq!(
        google_emulator::s256_challenge(verifier),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let redirect = "https://app.example.com/cb";
    let minted = client.emulator.mint_code(CodeSpec {
        redirect_uri: Some(redirect.into()),
        code_challenge: Some(google_emulator::s256_challenge(verifier)),
        ..CodeSpec::default()
    });
    let secret = client.emulator.settings().client_secret;
    let exchange = |fields: Vec<(&'static str, String)>| {
        let mut all = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", minted.code.clone()),
        ];
        all.extend(fields);
        all
    };
    for (fields, error) in [
        (vec![("redirect_uri", redirect.to_owned())], "invalid_grant"),
        (
            vec![("redirect_uri", redirect.to_owned()), ("code_verifier", "x".repeat(43))],
            "invalid_grant",
        ),
        (
            vec![
                ("redirect_uri", "postmessage".to_owned()),
                ("code_verifier", verifier.to_owned()),
            ],
            "redirect_uri_mismatch",
        ),
    ] {
        let fields = exchange(fields);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = client.token(&secret, &fields).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(error)), "{body}");
    }
    let fields = exchange(vec![
        ("redirect_uri", redirect.to_owned()),
        ("code_verifier", verifier.to_owned()),
    ]);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = client.token(&secret, &fields).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_string());
}

#[tokio::test]
async fn tokeninfo_answers_as_google_does_and_can_leave_the_user_out() {
    let google = Client::start().await;
    let tokeninfo = google.emulator.tokeninfo_uri();
    let client_id = google.emulator.settings().client_id;
    let (sub, answer) = google.signed_in(spec(DRIVE)).await;
    let access = text(&answer, "access_token").to_owned();

    let (status, info) = google.post_form(&tokeninfo, &[("access_token", &access)]).await;
    assert_eq!(status, 200, "{info}");
    // Every value a string, as Google sends them; no email without an email scope.
    assert_eq!(
        (text(&info, "aud"), text(&info, "azp")),
        (client_id.as_str(), client_id.as_str())
    );
    assert_eq!((text(&info, "sub"), text(&info, "scope")), (sub.as_str(), DRIVE));
    assert!(info["exp"].is_string() && info["expires_in"].is_string() && info.get("email").is_none());

    let (_, with_email) = google.signed_in(spec(&format!("email {DRIVE}"))).await;
    let (_, info) = google
        .post_form(&tokeninfo, &[("access_token", text(&with_email, "access_token"))])
        .await;
    assert_eq!(text(&info, "email_verified"), "true");

    google.emulator.set_tokeninfo_names_user(false);
    let (_, info) = google.post_form(&tokeninfo, &[("access_token", &access)]).await;
    assert!(info.get("sub").is_none(), "{info}");

    // An unknown or expired token: Google's `invalid_token`.
    let (status, info) = google.post_form(&tokeninfo, &[("access_token", "ya29.unknown")]).await;
    assert_eq!((status, text(&info, "error")), (400, "invalid_token"));
    google.emulator.advance_clock(Duration::from_secs(3_600));
    let (status, info) = google.post_form(&tokeninfo, &[("access_token", &access)]).await;
    assert_eq!((status, text(&info, "error")), (400, "invalid_token"));
}

#[tokio::test]
async fn the_authorization_endpoint_redirects_only_to_a_registered_uri_with_state_and_a_pkce_bound_code() {
    let google = Client::start().await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let callback = "http://127.0.0.1:1/callback";
    google.emulator.register_redirect_uri(callback);
    let client_id = google.emulator.settings().client_id;
    let verifier = "a-verifier-of-forty-three-characters-or-more-0123";
    let challenge = google_emulator::s256_challenge(verifier);
    let authorize_url = |client: &str, redirect: &str, method: &str| {
        let mut url = url::Url::parse(&google.emulator.authorization_uri()).expect("URL");
        url.query_pairs_mut().extend_pairs([
            ("client_id", client),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", &format!("openid email {DRIVE}")),
            ("state", "st-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", method),
        ]);
        url.to_string()
    };
    let location = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url::Url::parse(l).ok())
            .map(|u| {
                u.query_pairs()
                    .into_owned()
                    .collect::<std::collections::HashMap<_, _>>()
            })
    };

    // Never a redirect to an unregistered URI, nor for another client.
    for (client, redirect, status) in [
        (client_id.as_str(), "http://127.0.0.1:1/elsewhere", 400),
        ("another-client", callback, 401),
    ] {
        let page = browser
            .get(authorize_url(client, redirect, "S256"))
            .send()
            .await
            .expect("GET");
        assert_eq!(page.status().as_u16(), status);
        assert!(page.headers().get("location").is_none());
    }
    // A plain challenge is refused back at the app, with its state.
    let plain = browser
        .get(authorize_url(&client_id, callback, "plain"))
        .send()
        .await
        .expect("GET");
    let back = location(&plain).expect("redirected");
    assert_eq!(
        (back["error"].as_str(), back["state"].as_str()),
        ("invalid_request", "st-1")
    );

    let page = browser
        .get(authorize_url(&client_id, callback, "S256"))
        .send()
        .await
        .expect("GET");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("page");
    assert!(
        html.contains(&format!("value=\"{DRIVE}\" checked")),
        "Drive is a checkbox"
    );
    assert!(!html.contains("type=\"checkbox\" id=\"scope-0\""), "openid is not");

    // The tester unticks Drive and continues.
    let approve = format!("{}/approve", google.emulator.authorization_uri());
    let form = |decision: &str, granted: &[&str]| {
        let mut fields = vec![
            ("client_id", client_id.as_str()),
            ("redirect_uri", callback),
            ("state", "st-1"),
            ("code_challenge", challenge.as_str()),
            ("prompt", ""),
            ("email", "browser.user@example.com"),
            ("decision", decision),
        ];
        fields.extend(granted.iter().map(|g| ("granted", *g)));
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish()
    };
    let post = |body: String| {
        browser
            .post(approve.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let denied = post(form("deny", &[])).await.expect("POST");
    let back = location(&denied).expect("redirected");
    assert_eq!(
        (back["error"].as_str(), back["state"].as_str()),
        ("access_denied", "st-1")
    );

    let allowed = post(form("allow", &["openid", "email"])).await.expect("POST");
    assert_eq!(allowed.status().as_u16(), 303);
    let back = location(&allowed).expect("redirected");
    assert_eq!(
        (back["state"].as_str(), back["scope"].as_str()),
        ("st-1", "openid email")
    );
    let code = back["code"].clone();

    // The code is bound to the callback and the challenge.
    let secret = google.emulator.settings().client_secret;
    let mut answers = Vec::new();
    for sent in ["the-wrong-verifier-of-forty-three-characters-0", verifier] {
        let fields = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", callback),
            ("code_verifier", sent),
        ];
        answers.push(google.token(&secret, &fields).await);
    }
    let (status, answer) = answers.remove(0);
    assert_eq!((status, text(&answer, "error")), (400, "invalid_grant"));
    let (status, answer) = answers.remove(0);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(text(&answer, "scope"), "openid email");
    assert!(answer.get("id_token").is_some() && answer.get("refresh_token").is_some());
}
