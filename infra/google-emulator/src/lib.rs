//! # google-emulator
//!
//! A local stand-in for the Google endpoints offline-access calls, over real HTTP on
//! 127.0.0.1, with Google's semantics where they matter to us:
//!
//! - `POST /token`: `authorization_code` and `refresh_token` grants. The client is
//!   authenticated (body or HTTP Basic) before the code or token is looked at:
//!   `invalid_client` for an unknown id or a wrong secret, `deleted_client` once the
//!   client is deleted, `unauthorized_client` when it may not use the grant type, or
//!   for a refresh token issued to another client. `redirect_uri` is checked against the
//!   code's; codes are single-use (`invalid_grant` "Code was already redeemed."); a
//!   refresh token only on first (or forced) consent; the granted `scope`; an RS256
//!   `id_token` only when an identity scope (`openid`, `email`, `profile`) was granted.
//!   Refresh tokens end as Google's do: seven days after issue for a Testing-mode client
//!   when scopes beyond the identity ones were granted, after six months unused, and the
//!   oldest beyond 100 per user and client (`invalid_grant` each). Time is the
//!   emulator's clock, which tests move with `advance_clock`.
//! - `GET /oauth2/v3/certs`: the JWKS with `Cache-Control: public, max-age=N`; keys rotate.
//! - `POST /revoke`: revoking a refresh token ends the user's whole grant, access tokens
//!   included; revoking an access token ends the grant too, as Google's does; an already
//!   revoked token answers 400 `invalid_token`.
//! - Time-based access: a code minted with `refresh_token_expires_in` answers with it,
//!   and its refresh token stops working then.
//! - `GET /drive/v3/files` (`spaces=appDataFolder`, paged) and `GET /drive/v3/files/{id}`:
//!   401 `authError` for a token that is not live; 403s with Google's error shape
//!   (`error.errors[].reason`: `accessNotConfigured`, `dailyLimitExceeded`,
//!   `domainPolicy` per user, `insufficientPermissions`, the rate limits), on demand
//!   (`refuse_drive`) or as an injected fault (`DriveReason::fault`).
//! - `GET /.well-known/risc-configuration`: Cross-Account Protection's discovery
//!   document (issuer `https://accounts.google.com/`, with its trailing slash, as Google's).
//! - `/_emulator/...`: the control API: mint a code for a chosen user, scopes and
//!   consent; inject faults per endpoint; rotate keys; read call counts; sign a Security
//!   Event Token and push it to a receiver (`POST /_emulator/risc/push`).
//!
//! Test infrastructure, not product code: nothing here ships.

mod consent;
pub mod keys;
pub mod risc;
pub mod risc_api;
mod server;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use keys::{Forgery, SigningKey};
pub use risc::{SecurityEventSpec, event_type_uri, token_identifier};

/// The scopes that identify the user: an exchange answers an `id_token` only when one of
/// them was granted, as Google's does.
pub const IDENTITY_SCOPES: [&str; 5] = [
    "openid",
    "email",
    "profile",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
];

/// The scopes a Testing-mode client's refresh tokens may hold and still not expire after
/// seven days (name, email and profile).
const BASIC_SCOPES: [&str; 5] = IDENTITY_SCOPES;

/// How long a refresh token issued to a Testing-mode client lives when it holds more than
/// the basic scopes: seven days.
pub const TESTING_TOKEN_LIFETIME_SECS: u64 = 7 * 24 * 3_600;
/// A refresh token unused this long stops working: six months.
pub const UNUSED_TOKEN_LIFETIME_SECS: u64 = 183 * 24 * 3_600;
/// The most live refresh tokens one user holds for one client: issuing another ends the
/// oldest.
pub const MAX_REFRESH_TOKENS_PER_USER: usize = 100;

/// The OAuth client's state in the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientState {
    #[default]
    Active,
    /// Deleted (Google deletes a client unused for six months): `401 deleted_client`.
    Deleted,
    /// Not allowed this grant (e.g. a client of the wrong type): `401 unauthorized_client`.
    Unauthorized,
}

/// A refusal Drive answers, shaped as Google's (`error.errors[].reason`, `domain`,
/// `message`, and the top-level `code`, `message`, `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DriveReason {
    /// 401: the access token is not valid (expired, revoked, unknown).
    AuthError,
    /// 403: the Drive API is off in the project.
    AccessNotConfigured,
    /// 403: the project's daily quota is spent.
    DailyLimitExceeded,
    /// 403: the user's domain administrators disabled Drive apps.
    DomainPolicy,
    /// 403: the token lacks the scope.
    InsufficientPermissions,
    /// 403: the per-user rate limit.
    UserRateLimitExceeded,
    /// 403: the project's rate limit.
    RateLimitExceeded,
    /// 403: the scopes do not allow the space asked for.
    InsufficientScopes,
    /// 404.
    NotFound,
}

impl DriveReason {
    pub fn reason(self) -> &'static str {
        match self {
            Self::AuthError => "authError",
            Self::AccessNotConfigured => "accessNotConfigured",
            Self::DailyLimitExceeded => "dailyLimitExceeded",
            Self::DomainPolicy => "domainPolicy",
            Self::InsufficientPermissions => "insufficientPermissions",
            Self::UserRateLimitExceeded => "userRateLimitExceeded",
            Self::RateLimitExceeded => "rateLimitExceeded",
            Self::InsufficientScopes => "insufficientScopes",
            Self::NotFound => "notFound",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::AuthError => 401,
            Self::NotFound => 404,
            _ => 403,
        }
    }

    /// Google's answer: status and JSON body.
    pub fn answer(self) -> (u16, serde_json::Value) {
        let (domain, message, top) = match self {
            Self::AuthError => (
                "global",
                "Invalid Credentials",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            ),
            Self::AccessNotConfigured => (
                "usageLimits",
                "Google Drive API has not been used in project 000000000000 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/drive.googleapis.com/overview?project=000000000000 then retry.",
                "Google Drive API has not been used in project 000000000000 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/drive.googleapis.com/overview?project=000000000000 then retry.",
            ),
            Self::DailyLimitExceeded => ("usageLimits", "Daily Limit Exceeded", "Daily Limit Exceeded"),
            Self::DomainPolicy => (
                "global",
                "The domain administrators have disabled Drive apps.",
                "The domain administrators have disabled Drive apps.",
            ),
            Self::InsufficientPermissions => (
                "global",
                "Insufficient Permission",
                "Request had insufficient authentication scopes.",
            ),
            Self::UserRateLimitExceeded => ("usageLimits", "User Rate Limit Exceeded", "User Rate Limit Exceeded"),
            Self::RateLimitExceeded => ("usageLimits", "Rate Limit Exceeded", "Rate Limit Exceeded"),
            Self::InsufficientScopes => (
                "global",
                "The granted scopes do not allow use of the Drive space.",
                "The granted scopes do not allow use of the Drive space.",
            ),
            Self::NotFound => ("global", "File not found.", "File not found."),
        };
        let status = match self {
            Self::AuthError => "UNAUTHENTICATED",
            Self::NotFound => "NOT_FOUND",
            _ => "PERMISSION_DENIED",
        };
        let mut error = serde_json::json!({"message": message, "domain": domain, "reason": self.reason()});
        if self == Self::AuthError {
            error["location"] = "Authorization".into();
            error["locationType"] = "header".into();
        }
        let code = self.status();
        (
            code,
            serde_json::json!({"error": {"code": code, "message": top, "errors": [error], "status": status}}),
        )
    }

    /// A fault that answers this refusal on the next `count` Drive calls.
    pub fn fault(self, count: u32) -> Fault {
        let (status, body) = self.answer();
        Fault {
            status: Some(status),
            body: Some(body.to_string()),
            count: Some(count),
            ..Fault::default()
        }
    }
}

/// The scopes a default code grants.
pub const DEFAULT_SCOPES: &str = "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile https://www.googleapis.com/auth/drive.appdata";

/// The emulator's fixed settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub client_id: String,
    pub client_secret: String,
    /// The mobile client that asks for codes; it becomes the ID token's `azp`.
    pub android_client_id: String,
    pub jwks_max_age: u64,
    pub issuer: String,
    /// The RISC discovery document's issuer, and the SETs' `iss`.
    pub risc_issuer: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            client_id: "emulator-web.apps.googleusercontent.com".into(),
            client_secret: "GOCSPX-emulator-test-secret".into(),
            android_client_id: "emulator-android.apps.googleusercontent.com".into(),
            jwks_max_age: 3_600,
            issuer: "https://accounts.google.com".into(),
            risc_issuer: "https://accounts.google.com/".into(),
        }
    }
}

/// How the user consented when the code was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// Google's default: a refresh token only if this user holds no live grant yet.
    #[default]
    Auto,
    /// The user had consented before: no refresh token.
    Repeat,
    /// `prompt=consent` / `forceCodeForRefreshToken`: always a refresh token.
    Forced,
}

/// What a minted code stands for. Every field has a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CodeSpec {
    pub sub: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    /// Space-delimited granted scopes; defaults to [`DEFAULT_SCOPES`].
    pub scopes: Option<String>,
    pub consent: Consent,
    /// The `redirect_uri` the exchange must present: `""` (installed apps, default) or
    /// `"postmessage"` (web).
    pub redirect_uri: Option<String>,
    /// Overrides the `azp` claim.
    pub azp: Option<String>,
    /// Claims merged over the ID token's (e.g. `{"aud": "x"}`, `{"exp": 1}`).
    pub id_token_claims: Option<serde_json::Value>,
    pub forgery: Forgery,
    /// Files seeded in the user's appDataFolder (default 3).
    pub drive_files: Option<usize>,
    /// Time-based access: the user granted access for this many seconds, and the answer
    /// carries `refresh_token_expires_in`; the refresh token stops working after it.
    pub refresh_token_expires_in: Option<u64>,
    /// PKCE: the authorization request's `code_challenge` (method `S256`). The exchange
    /// must then present the `code_verifier` it was made from.
    pub code_challenge: Option<String>,
}

/// The `S256` challenge of a PKCE verifier (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    use base64::Engine as _;
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.as_ref())
}

/// A minted code and whose it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintedCode {
    pub code: String,
    pub sub: String,
    pub email: String,
}

/// The endpoints faults can be injected on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Token,
    Certs,
    Revoke,
    Drive,
    /// `/tokeninfo`.
    TokenInfo,
    /// The RISC discovery document.
    RiscConfig,
}

/// A fault: delay, then (optionally) answer `status` instead of the real answer.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Fault {
    pub status: Option<u16>,
    pub delay_ms: u64,
    /// How many calls it applies to; `None` = until cleared.
    pub count: Option<u32>,
    pub retry_after: Option<u64>,
    /// The body to send (an HTML body is sent as `text/html`).
    pub body: Option<String>,
    /// Apply to this fraction of calls (0.0–1.0) instead of every call.
    pub probability: Option<f64>,
    /// Hold the call (after `delay_ms`) until the test lets it go with
    /// [`Emulator::release_held`]: a window as long as the test needs, on any machine.
    pub held: bool,
}

/// A project's per-minute quota, as Google counts it: every call spends its units, and a
/// call that would take the last 60 seconds past `units_per_min` is refused (Drive: 403
/// `rateLimitExceeded`; the token endpoint: 429) and spends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct UnitQuota {
    pub units_per_min: u64,
    pub refresh: u32,
    pub files_get: u32,
    pub files_list: u32,
}

impl UnitQuota {
    /// Drive's costs on projects created since May 2026, and 1 for a refresh.
    pub fn per_minute(units_per_min: u64) -> Self {
        Self {
            units_per_min,
            refresh: 1,
            files_get: 5,
            files_list: 100,
        }
    }
}

/// Call counts, for tests and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub code_exchanges: u64,
    pub refreshes: u64,
    pub certs: u64,
    pub revokes: u64,
    /// Drive calls of any kind.
    pub drive: u64,
    /// `files.list` pages answered, and `files.get` calls answered.
    pub drive_lists: u64,
    pub drive_gets: u64,
    /// Calls refused because the per-minute unit quota was spent.
    pub quota_refusals: u64,
    /// The most units spent in any 60 seconds, and all units spent.
    pub peak_units_per_min: u64,
    pub units: u64,
    /// Fetches of the RISC discovery document.
    pub risc_config: u64,
    /// Calls to `/tokeninfo`.
    pub tokeninfo: u64,
    pub faults_served: u64,
}

#[derive(Debug, Clone)]
struct User {
    sub: String,
    email: String,
    email_verified: bool,
    name: String,
    files: usize,
}

#[derive(Debug)]
struct IssuedCode {
    user: User,
    spec: CodeSpec,
    client_id: String,
    redirect_uri: String,
    issued_at: u64,
    redeemed: bool,
}

#[derive(Debug)]
struct RefreshGrant {
    sub: String,
    client_id: String,
    scopes: String,
    /// The order it was issued in (the emulator's serial), to end the oldest beyond
    /// [`MAX_REFRESH_TOKENS_PER_USER`].
    issued: u64,
    /// When it was last used to refresh (or issued), for the six months' expiry.
    last_used_at: u64,
    /// A Testing-mode client's token holding more than the basic scopes: when it expires.
    testing_until: Option<u64>,
    revoked: bool,
    /// The `error_subtype` to answer once revoked (e.g. `invalid_rapt`).
    revoked_subtype: Option<String>,
    /// Time-based access: when the token stops working (Unix seconds).
    expires_at: Option<u64>,
}

#[derive(Debug, Clone)]
struct AccessGrant {
    sub: String,
    scopes: String,
    expires_at: u64,
}

#[derive(Debug)]
struct ActiveFault {
    fault: Fault,
    remaining: Option<u32>,
}

#[derive(Debug)]
struct State {
    settings: Settings,
    /// `http://127.0.0.1:<port>`, for the addresses the discovery document names.
    base_url: String,
    client_secret: String,
    keys: VecDeque<SigningKey>,
    codes: HashMap<String, IssuedCode>,
    users: HashMap<String, User>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    access_tokens: HashMap<String, AccessGrant>,
    faults: HashMap<Endpoint, VecDeque<ActiveFault>>,
    used_access_tokens: HashSet<String>,
    /// Access tokens issued by the refresh grant, per user, in order.
    refreshed_access_tokens: HashMap<String, Vec<String>>,
    /// Answer each refresh with a new refresh token and retire the old one.
    rotate_refresh_tokens: bool,
    /// Drive's `files.list` answers every page with the same `nextPageToken` (a broken
    /// pagination loop, which a client must detect).
    drive_page_loop: bool,
    /// The per-minute unit quota, if one is set, and the calls that spent it (when, units).
    quota: Option<UnitQuota>,
    spent: VecDeque<(std::time::Instant, u32)>,
    spent_in_window: u64,
    /// `expires_in` of every access token issued (Google's: 3599 s).
    access_token_lifetime: u64,
    /// tokeninfo names the user (`sub`) of a token; off, it leaves `sub` out, as Google
    /// documents it only for a token with an identity scope.
    tokeninfo_names_user: bool,
    /// Refresh answers leave `scope` out (RFC 6749 allows it when unchanged).
    refresh_omits_scope: bool,
    /// The web client's registered redirect URIs: the authorization endpoint sends codes
    /// to these only.
    registered_redirect_uris: Vec<String>,
    /// Service accounts whose tokens the RISC management API accepts.
    service_accounts: Vec<risc_api::ServiceAccount>,
    /// The RISC stream's configuration.
    risc_stream: risc_api::Stream,
    stats: Stats,
    serial: u64,
    /// Seconds added to the wall clock: [`Emulator::advance_clock`].
    clock_offset: u64,
    client_state: ClientState,
    /// The OAuth consent screen's publishing status is Testing (External apps).
    testing_mode: bool,
    /// Standing Drive refusals: project-wide (`None`) or for one user.
    drive_refusals: HashMap<Option<String>, DriveReason>,
    /// Bumped by [`Emulator::release_held`]: every held call waits for the next bump.
    releases: tokio::sync::watch::Sender<u64>,
    /// Calls held now.
    held_now: u64,
}

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone)]
pub(crate) struct Shared(Arc<Mutex<State>>);

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    // The system RNG does not fail on supported platforms; zeros would still be unique
    // enough for a test double because of the serial in every caller's prefix.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    format!(
        "{prefix}{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

impl Emulator {
    /// Starts on `addr` (use port 0 for any free port). Only loopback addresses are
    /// accepted: the emulator is never exposed beyond this machine.
    pub async fn start(addr: SocketAddr, settings: Settings) -> anyhow::Result<Self> {
        anyhow::ensure!(addr.ip().is_loopback(), "the emulator binds loopback addresses only");
        let first_key = SigningKey::generate("emu-key-1".into())?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Shared(Arc::new(Mutex::new(State {
            base_url: format!("http://{addr}"),
            client_secret: settings.client_secret.clone(),
            settings,
            keys: VecDeque::from([first_key]),
            codes: HashMap::new(),
            users: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            faults: HashMap::new(),
            used_access_tokens: HashSet::new(),
            refreshed_access_tokens: HashMap::new(),
            rotate_refresh_tokens: false,
            drive_page_loop: false,
            quota: None,
            spent: VecDeque::new(),
            spent_in_window: 0,
            access_token_lifetime: 3_599,
            tokeninfo_names_user: true,
            refresh_omits_scope: false,
            registered_redirect_uris: Vec::new(),
            service_accounts: Vec::new(),
            risc_stream: risc_api::Stream::default(),
            stats: Stats::default(),
            serial: 1,
            clock_offset: 0,
            client_state: ClientState::Active,
            testing_mode: false,
            drive_refusals: HashMap::new(),
            releases: tokio::sync::watch::Sender::new(0),
            held_now: 0,
        })));
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "emulator stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// Starts on any free loopback port with default settings.
    pub async fn start_default() -> anyhow::Result<Self> {
        Self::start(SocketAddr::from(([127, 0, 0, 1], 0)), Settings::default()).await
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.base_url())
    }
    pub fn certs_uri(&self) -> String {
        format!("{}/oauth2/v3/certs", self.base_url())
    }
    pub fn revoke_uri(&self) -> String {
        format!("{}/revoke", self.base_url())
    }
    /// The RISC discovery document's address (`GOOGLE_RISC_CONFIG_URI`).
    pub fn risc_config_uri(&self) -> String {
        format!("{}/.well-known/risc-configuration", self.base_url())
    }
    pub fn drive_api(&self) -> String {
        format!("{}/drive/v3", self.base_url())
    }

    pub fn settings(&self) -> Settings {
        self.shared.with(|s| s.settings.clone())
    }

    /// Google's downloaded `client_secret_*.json` for the emulated web client, with
    /// `token_uri` pointing here.
    pub fn client_secret_json(&self) -> String {
        self.shared.with(|s| {
            client_secret_json(
                &s.settings.client_id,
                &s.client_secret,
                &format!("http://{}/token", self.addr),
            )
        })
    }

    /// Mints an authorization code as if the user had just signed in on a device.
    pub fn mint_code(&self, spec: CodeSpec) -> MintedCode {
        self.shared.with(|s| s.mint_code(spec))
    }

    pub fn inject_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.shared.with(|s| s.inject_fault(endpoint, fault));
    }

    pub fn clear_faults(&self) {
        self.shared.with(|s| s.faults.clear());
    }

    /// How many calls a `held` fault holds now.
    pub fn held_calls(&self) -> u64 {
        self.shared.with(|s| s.held_now)
    }

    /// Waits (up to a minute) until `n` calls are held: `false` if they never were.
    #[must_use]
    pub async fn until_held(&self, n: u64) -> bool {
        for _ in 0..6_000 {
            if self.held_calls() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Lets every held call go on.
    pub fn release_held(&self) {
        self.shared.with(|s| s.releases.send_modify(|g| *g += 1));
    }

    /// Adds a new signing key and signs with it from now on; `drop_old` removes the
    /// previous keys from the JWKS (tokens they signed stop verifying).
    pub fn rotate_keys(&self, drop_old: bool) -> anyhow::Result<String> {
        let serial = self.shared.with(|s| {
            s.serial += 1;
            s.serial
        });
        let key = SigningKey::generate(format!("emu-key-{serial}"))?;
        let kid = key.kid.clone();
        self.shared.with(|s| {
            if drop_old {
                s.keys.clear();
            }
            s.keys.push_front(key);
        });
        Ok(kid)
    }

    /// Changes the client secret the token endpoint accepts (a rotation in the console).
    /// Sets (or, with `None`, lifts) a per-minute unit quota.
    pub fn set_quota(&self, quota: Option<UnitQuota>) {
        self.shared.with(|s| {
            s.quota = quota;
            s.spent.clear();
            s.spent_in_window = 0;
            s.stats.peak_units_per_min = 0;
        });
    }

    /// Makes Drive's listing loop: every page names the same next page.
    pub fn set_drive_page_loop(&self, on: bool) {
        self.shared.with(|s| s.drive_page_loop = on);
    }

    pub fn set_client_secret(&self, secret: &str) {
        self.shared.with(|s| s.client_secret = secret.to_owned());
    }

    pub fn stats(&self) -> Stats {
        self.shared.with(|s| s.stats.clone())
    }

    /// The live refresh token issued to `sub`, to check what the product stored.
    pub fn refresh_token_of(&self, sub: &str) -> Option<String> {
        self.shared.with(|s| {
            s.refresh_tokens
                .iter()
                .filter(|(_, g)| g.sub == sub && !g.revoked)
                .max_by_key(|(_, g)| g.issued)
                .map(|(t, _)| t.clone())
        })
    }

    /// Creates a user who consented earlier and returns the refresh token Google issued
    /// then, without going through a code: how tests seed thousands of grants quickly.
    pub fn seed_grant(&self, sub: &str, scopes: &str, drive_files: usize) -> String {
        self.shared.with(|s| {
            s.users.entry(sub.to_owned()).or_insert_with(|| User {
                sub: sub.to_owned(),
                email: format!("{sub}@example.com"),
                email_verified: true,
                name: format!("Seeded {sub}"),
                files: drive_files,
            });
            let client_id = s.settings.client_id.clone();
            s.issue_refresh_token("1//0seed-", sub, &client_id, scopes, None)
        })
    }

    /// Revokes a refresh token as the user would (or as a password change does); the
    /// next refresh answers `invalid_grant`, with `error_subtype` when given.
    ///
    /// A revocation (no `subtype`) ends the user's access tokens at Drive too; a session
    /// control's `invalid_rapt` (a `subtype`) leaves them to expire, and lasts until the
    /// user signs in again (the next code minted for them).
    pub fn revoke_refresh_token(&self, token: &str, subtype: Option<&str>) -> bool {
        self.shared.with(|s| match s.refresh_tokens.get_mut(token) {
            Some(grant) => {
                grant.revoked = true;
                grant.revoked_subtype = subtype.map(str::to_owned);
                if subtype.is_none() {
                    let sub = grant.sub.clone();
                    s.access_tokens.retain(|_, a| a.sub != sub);
                }
                true
            }
            None => false,
        })
    }

    /// Whether Google would still accept this refresh token.
    pub fn refresh_token_is_live(&self, token: &str) -> bool {
        self.shared.with(|s| {
            s.refresh_tokens
                .get(token)
                .is_some_and(|g| s.refresh_token_ended(g).is_none())
        })
    }

    /// Moves the emulator's clock forward: codes, access tokens and refresh tokens age
    /// as if `by` had passed (the ID tokens it signs carry the moved time too).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.with(|s| s.clock_offset += by.as_secs());
    }

    /// Sets the OAuth client's state: deleted, not authorized, or active again.
    pub fn set_client_state(&self, state: ClientState) {
        self.shared.with(|s| s.client_state = state);
    }

    /// Publishing status Testing (an External app not yet in production): refresh tokens
    /// issued from now on with more than the basic scopes expire seven days after issue.
    pub fn set_testing_mode(&self, on: bool) {
        self.shared.with(|s| s.testing_mode = on);
    }

    /// Drive answers every call with `reason` from now on: for one user (`domainPolicy`),
    /// or for the whole project with `None` (`accessNotConfigured`, `dailyLimitExceeded`).
    pub fn refuse_drive(&self, sub: Option<&str>, reason: DriveReason) {
        self.shared
            .with(|s| s.drive_refusals.insert(sub.map(str::to_owned), reason));
    }

    /// Lifts every standing Drive refusal.
    pub fn clear_drive_refusals(&self) {
        self.shared.with(|s| s.drive_refusals.clear());
    }

    /// How many of the user's refresh tokens Google would still accept.
    pub fn live_refresh_tokens(&self, sub: &str) -> usize {
        self.shared.with(|s| {
            s.refresh_tokens
                .values()
                .filter(|g| g.sub == sub && s.refresh_token_ended(g).is_none())
                .count()
        })
    }

    /// Issues access tokens that live `secs` from now on (Google's live 3599 s).
    /// The user changes what the client may do (ticks or unticks a scope at their
    /// account's settings, or grants one incrementally): every live refresh token of
    /// `sub` holds `scopes` (space-delimited) from now on.
    pub fn set_granted_scopes(&self, sub: &str, scopes: &str) {
        self.shared.with(|s| {
            for grant in s.refresh_tokens.values_mut().filter(|g| g.sub == sub && !g.revoked) {
                grant.scopes = scopes.to_owned();
            }
        });
    }

    /// Registers a redirect URI of the web client (as in Google Cloud's console): the
    /// authorization endpoint redirects to registered URIs only.
    pub fn register_redirect_uri(&self, uri: &str) {
        self.shared.with(|s| s.registered_redirect_uris.push(uri.to_owned()));
    }

    /// The authorization endpoint a browser is sent to.
    pub fn authorization_uri(&self) -> String {
        format!("{}/o/oauth2/v2/auth", self.base_url())
    }

    /// Whether refresh answers leave `scope` out; off by default.
    pub fn set_refresh_omits_scope(&self, on: bool) {
        self.shared.with(|s| s.refresh_omits_scope = on);
    }

    /// Whether tokeninfo names an access token's user (`sub`); on by default.
    pub fn set_tokeninfo_names_user(&self, on: bool) {
        self.shared.with(|s| s.tokeninfo_names_user = on);
    }

    pub fn tokeninfo_uri(&self) -> String {
        format!("{}/tokeninfo", self.base_url())
    }

    pub fn set_access_token_lifetime(&self, secs: u64) {
        self.shared.with(|s| s.access_token_lifetime = secs);
    }

    /// Makes every refresh answer carry a new refresh token and retire the old one.
    pub fn set_refresh_token_rotation(&self, on: bool) {
        self.shared.with(|s| s.rotate_refresh_tokens = on);
    }

    /// The access tokens the refresh grant issued to `sub`, oldest first.
    pub fn refreshed_access_tokens(&self, sub: &str) -> Vec<String> {
        self.shared
            .with(|s| s.refreshed_access_tokens.get(sub).cloned().unwrap_or_default())
    }

    /// Signs arbitrary claims with the current key, for verifier tests.
    pub fn sign_id_token(&self, claims: &serde_json::Value, forgery: Forgery) -> anyhow::Result<String> {
        self.shared
            .with(|s| s.keys.front().map(|k| k.sign(claims, forgery)))
            .unwrap_or_else(|| Err(anyhow::anyhow!("no signing key")))
    }

    /// Signs a Security Event Token as Google would send it (see [`SecurityEventSpec`]),
    /// having first done at Google what it reports. Answers the SET and its `jti`.
    pub fn security_event(&self, spec: &SecurityEventSpec) -> anyhow::Result<(String, String)> {
        self.shared.with(|s| s.security_event(spec))
    }

    /// The RISC management API's base (`GOOGLE_RISC_API`).
    pub fn risc_api(&self) -> String {
        format!("{}/v1beta", self.base_url())
    }

    /// A new service account's JSON key file, whose tokens the RISC management API takes.
    pub fn service_account_json(&self) -> anyhow::Result<String> {
        self.shared.mint_service_account()
    }

    /// The RISC stream as configured: receiver URL, events asked for, enabled, and what
    /// the receiver answered to the last event sent through it.
    pub fn risc_stream(&self) -> (Option<String>, Vec<String>, bool, Option<u16>) {
        self.shared.with(|s| {
            let st = &s.risc_stream;
            (
                st.url.clone(),
                st.events_requested.clone(),
                st.enabled,
                st.last_delivery_status,
            )
        })
    }

    /// Whether an access token the emulator issued was used against Drive.
    pub fn access_token_was_used(&self, token: &str) -> bool {
        self.shared.with(|s| s.used_access_tokens.contains(token))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Google's downloaded client secret JSON shape.
pub fn client_secret_json(client_id: &str, client_secret: &str, token_uri: &str) -> String {
    serde_json::json!({
        "web": {
            "client_id": client_id,
            "project_id": "offline-access-local",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_secret": client_secret,
        }
    })
    .to_string()
}

impl State {
    fn mint_code(&mut self, spec: CodeSpec) -> MintedCode {
        self.serial += 1;
        let serial = self.serial;
        let sub = spec
            .sub
            .clone()
            .unwrap_or_else(|| format!("1{:020}", u64::from(aws_lc_rs_random_u32()) * 1_000 + serial));
        let user = self.users.entry(sub.clone()).or_insert_with(|| User {
            sub: sub.clone(),
            email: spec
                .email
                .clone()
                .unwrap_or_else(|| format!("user{serial}@example.com")),
            email_verified: spec.email_verified.unwrap_or(true),
            name: spec.name.clone().unwrap_or_else(|| format!("Test User {serial}")),
            files: spec.drive_files.unwrap_or(3),
        });
        if let Some(email) = &spec.email {
            user.email = email.clone();
        }
        if let Some(files) = spec.drive_files {
            user.files = files;
        }
        let user = user.clone();
        // Signing in again is the re-authentication a session control (`invalid_rapt`)
        // asked for: the user's held-back refresh tokens work again.
        for held in self.refresh_tokens.values_mut() {
            if held.sub == sub && held.revoked && held.revoked_subtype.as_deref() == Some("invalid_rapt") {
                held.revoked = false;
                held.revoked_subtype = None;
            }
        }
        let code = random_token(&format!("4/0Emu{serial}-"));
        self.codes.insert(
            code.clone(),
            IssuedCode {
                client_id: self.settings.client_id.clone(),
                redirect_uri: spec.redirect_uri.clone().unwrap_or_default(),
                user: user.clone(),
                spec,
                issued_at: self.now(),
                redeemed: false,
            },
        );
        MintedCode {
            code,
            sub: user.sub,
            email: user.email,
        }
    }

    /// The emulator's time (Unix seconds): the wall clock moved by [`Emulator::advance_clock`].
    fn now(&self) -> u64 {
        now() + self.clock_offset
    }

    /// Issues a refresh token to `sub` for `client_id`, as Google does: dated, expiring
    /// after seven days when a Testing-mode client asks for more than the basic scopes,
    /// and ending the user's oldest live token beyond [`MAX_REFRESH_TOKENS_PER_USER`].
    fn issue_refresh_token(
        &mut self,
        prefix: &str,
        sub: &str,
        client_id: &str,
        scopes: &str,
        expires_at: Option<u64>,
    ) -> String {
        self.serial += 1;
        let now = self.now();
        let beyond_basic = scopes.split(' ').any(|sc| !BASIC_SCOPES.contains(&sc));
        let token = random_token(prefix);
        self.refresh_tokens.insert(
            token.clone(),
            RefreshGrant {
                sub: sub.to_owned(),
                client_id: client_id.to_owned(),
                scopes: scopes.to_owned(),
                issued: self.serial,
                last_used_at: now,
                testing_until: (self.testing_mode && beyond_basic).then_some(now + TESTING_TOKEN_LIFETIME_SECS),
                revoked: false,
                revoked_subtype: None,
                expires_at,
            },
        );
        let mut live: Vec<(u64, String)> = self
            .refresh_tokens
            .iter()
            .filter(|(_, g)| g.sub == sub && g.client_id == client_id && !g.revoked)
            .map(|(t, g)| (g.issued, t.clone()))
            .collect();
        if live.len() > MAX_REFRESH_TOKENS_PER_USER {
            live.sort();
            let over = live.len() - MAX_REFRESH_TOKENS_PER_USER;
            for (_, oldest) in live.into_iter().take(over) {
                if let Some(g) = self.refresh_tokens.get_mut(&oldest) {
                    g.revoked = true;
                }
            }
        }
        token
    }

    /// Why Google no longer accepts a refresh token, if it does not.
    fn refresh_token_ended(&self, grant: &RefreshGrant) -> Option<&'static str> {
        let now = self.now();
        if grant.revoked {
            Some("revoked")
        } else if grant.expires_at.is_some_and(|at| at <= now) {
            Some("time-based access ended")
        } else if grant.testing_until.is_some_and(|at| at <= now) {
            Some("Testing-mode token expired")
        } else if now >= grant.last_used_at + UNUSED_TOKEN_LIFETIME_SECS {
            Some("unused for six months")
        } else {
            None
        }
    }

    fn inject_fault(&mut self, endpoint: Endpoint, fault: Fault) {
        let remaining = fault.count;
        self.faults
            .entry(endpoint)
            .or_default()
            .push_back(ActiveFault { fault, remaining });
    }

    /// The fault to apply to this call, if any.
    /// Spends `units` of the per-minute quota, if there is one: `false` (and nothing
    /// spent) when the last 60 seconds would go past it.
    pub(crate) fn spend_units(&mut self, units: impl Fn(&UnitQuota) -> u32) -> bool {
        let Some(quota) = self.quota else {
            return true;
        };
        let now = std::time::Instant::now();
        while let Some(&(at, spent)) = self.spent.front() {
            if now.duration_since(at) < Duration::from_secs(60) {
                break;
            }
            self.spent.pop_front();
            self.spent_in_window -= u64::from(spent);
        }
        let units = units(&quota);
        if self.spent_in_window + u64::from(units) > quota.units_per_min {
            self.stats.quota_refusals += 1;
            return false;
        }
        self.spent.push_back((now, units));
        self.spent_in_window += u64::from(units);
        self.stats.units += u64::from(units);
        self.stats.peak_units_per_min = self.stats.peak_units_per_min.max(self.spent_in_window);
        true
    }

    fn take_fault(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let queue = self.faults.get_mut(&endpoint)?;
        let active = queue.front_mut()?;
        if let Some(p) = active.fault.probability
            && f64::from(aws_lc_rs_random_u32()) / f64::from(u32::MAX) >= p
        {
            return None;
        }
        let fault = active.fault.clone();
        if let Some(n) = active.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                queue.pop_front();
            }
        }
        self.stats.faults_served += 1;
        Some(fault)
    }
}

fn aws_lc_rs_random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u32::from_be_bytes(b)
}
