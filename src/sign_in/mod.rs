//! The sign-in use case (DESIGN §1): a server auth code becomes a stored, encrypted
//! grant. It knows nothing of Lambda or HTTP.
//!
//! 1. Claim the code (a round trip to the store), so a retry of the same code (phones
//!    retry) replays the first answer and Google is called once, even when two arrive
//!    together.
//! 2. Exchange the code with the client secret; `sub` is the key: the exchange's ID token
//!    names it, else Google's tokeninfo about the fresh access token does (a code granted
//!    without an identity scope carries no ID token). An ID token the app sent is
//!    verified before the code goes to Google, and must name the same user.
//! 3. Seal the refresh token, then store the grant and the answer together (the second
//!    and last round trip). A code that brings no refresh token keeps the stored one;
//!    with none stored the user must consent again.
//!
//! Once Google has answered, the code is spent: each later step is tried again within
//! the budget, and what still cannot be stored is parked ([`parked`]): sealed, sent to
//! the `ParkedSignIns` queue, and written by [`SignIn::unpark`] (the `parked-sign-in`
//! function) through the same steps, while a retry of the code answers 503.

pub mod parked;
pub mod rule;

use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use secrecy::ExposeSecret;

use crate::clock::Clock;
use crate::crypto::{Binding, CryptoError, TokenCipher};
use crate::domain::{
    AccessToken, AppIdToken, AuthCode, CodeVerifier, Email, GoogleSubject, Platform, Profile, RedirectUri, Scopes,
};
use crate::google::{
    ClientSecrets, CodeExchange, GoogleTokenError, IdTokenError, TokenEndpoint, VerifiedIdToken, VerifyIdToken,
    as_client, refresh_as_client,
};
use crate::ports::Ports;
use crate::store::{Claim, ClaimKey, RecordedOutcome, SignInGrant, SignInStore, SignInStored, StoreError};
use crate::upstream::{RetryPolicy, Upstream, retry_until};
use parked::{Answered, PARKED_CLAIM_TTL, ParkedSignIn, ParkingQueue, UnparkError};

/// What the app asked.
#[derive(Debug)]
pub struct SignInRequest {
    pub code: AuthCode,
    pub platform: Platform,
    /// The `redirect_uri` the code was issued for, when not the platform's (a web app's
    /// redirect flow, or a popup's code exchanged with the page's origin).
    pub redirect_uri: Option<RedirectUri>,
    /// The PKCE verifier of a code issued with a `code_challenge`: it goes to Google and
    /// nowhere else.
    pub code_verifier: Option<CodeVerifier>,
    /// The ID token the app got with the code (Credential Manager's, GIS's, `GIDSignIn`'s):
    /// verified before the code is spent; the user Google names for the code must be its.
    pub id_token: Option<AppIdToken>,
}

impl SignInRequest {
    /// The `redirect_uri` to exchange the code with.
    pub fn redirect_uri(&self) -> &str {
        self.redirect_uri
            .as_ref()
            .map_or(self.platform.redirect_uri(), RedirectUri::as_str)
    }
}

/// What the app is told on success. Tokens never go back to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub sub: GoogleSubject,
    pub email: Option<Email>,
    pub scopes: Scopes,
    pub offline_access: bool,
    /// True when this answer is the replay of an earlier request with the same code.
    pub replayed: bool,
    /// `REQUIRED_SCOPES` the user did not grant (granular consent): the grant is stored
    /// all the same, and the app may ask for these again.
    pub missing_scopes: Vec<String>,
}

/// Why a sign-in did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("Google refused the code")]
    InvalidGrant(#[source] Option<GoogleTokenError>),
    #[error("the code was issued for another redirect_uri (wrong platform)")]
    RedirectUriMismatch,
    #[error("the redirectUri is not postmessage nor one of ALLOWED_REDIRECT_URIS")]
    RedirectUriNotAllowed,
    #[error("the ID token failed verification")]
    InvalidIdToken(#[source] Option<IdTokenError>),
    /// Refused before the code was sent: the code is not spent.
    #[error("the app's idToken failed verification")]
    AppIdTokenRefused(#[source] IdTokenError),
    #[error("Google named no user for the code's token (no ID token, tokeninfo without sub)")]
    IdentityUnconfirmed,
    #[error("the app's idToken names another user than Google does for the code")]
    IdentityMismatch,
    #[error("no refresh token is held and Google sent none: the user must consent again")]
    ReconsentRequired,
    #[error("the same code is being processed by another request")]
    DuplicateInFlight,
    #[error("Google's answer is parked until the store takes it")]
    Parked,
    #[error(transparent)]
    Upstream(#[from] Upstream),
    #[error("stored data is inconsistent")]
    Store(#[source] StoreError),
    #[error("refresh token could not be sealed")]
    Crypto(#[source] CryptoError),
}

impl From<StoreError> for SignInError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Upstream(u) => Self::Upstream(u),
            other => Self::Store(other),
        }
    }
}

impl From<CryptoError> for SignInError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Upstream(u) => Self::Upstream(u),
            other => Self::Crypto(other),
        }
    }
}

impl SignInError {
    /// The outcome to replay for a retry of the same code, when this error is final
    /// (the code is spent); `None` when a retry may succeed.
    fn recorded(&self) -> Option<RecordedOutcome> {
        match self {
            Self::InvalidGrant(_) => Some(RecordedOutcome::InvalidGrant),
            Self::InvalidIdToken(_) => Some(RecordedOutcome::InvalidIdToken),
            Self::IdentityUnconfirmed => Some(RecordedOutcome::IdentityUnconfirmed),
            Self::IdentityMismatch => Some(RecordedOutcome::IdentityMismatch),
            Self::ReconsentRequired => Some(RecordedOutcome::ReconsentRequired),
            _ => None,
        }
    }
}

/// Tunables of the use case.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    /// `GOOGLE_TOKEN_URI`; else the secret's `token_uri`; else Google's.
    pub token_uri_override: Option<String>,
    /// `TOKEN_BINDING`: what sealed tokens are bound to.
    pub token_binding: String,
    pub idempotency_window: Duration,
    /// How long one invocation may hold a code before another may take it over.
    pub claim_lease: Duration,
    /// How long a duplicate waits for the first request's answer.
    pub duplicate_wait: Duration,
    /// How long one sign-in may take in all (below the function's timeout): steps after
    /// the exchange are tried again only within it.
    pub budget: Duration,
    /// How long one call to Google may take (`HTTP_TIMEOUT_MS`).
    pub call_timeout: Duration,
    /// How long one AWS call may take, its SDK retries included (`AWS_CALL_TIMEOUT_MS`).
    pub aws_call_timeout: Duration,
    /// How long one attempt of an AWS call may take (`AWS_ATTEMPT_TIMEOUT_MS`): parking's
    /// two calls are given one each of the budget (at most a quarter of it).
    pub aws_attempt_timeout: Duration,
    /// `ALLOWED_REDIRECT_URIS`: the `redirectUri`s accepted besides `postmessage`.
    pub allowed_redirect_uris: Vec<String>,
    /// `GOOGLE_TOKENINFO_URI`.
    pub tokeninfo_uri: String,
    /// `REQUIRED_SCOPES`.
    pub required_scopes: Vec<String>,
}

/// The sign-in use case over its ports.
#[derive(Debug)]
pub struct SignIn<P: Ports = crate::ports::Aws> {
    pub token_endpoint: P::Tokens,
    pub verifier: P::IdTokens,
    pub store: P::Store,
    pub cipher: TokenCipher<P::Keys>,
    pub secrets: P::Secrets,
    pub clock: P::Clock,
    pub settings: SignInSettings,
    /// `SIGN_IN_PARKING_QUEUE_URL`: where an answer that cannot be stored is parked.
    pub parking: Option<ParkingQueue>,
}

/// The idempotency key of a code: its SHA-256 in hex, so the code itself is never stored.
pub fn code_digest(code: &AuthCode) -> String {
    hex::encode(digest(&SHA256, code.expose_secret().as_bytes()))
}

/// The least of the budget left for the steps after the exchange when the code is sent.
const AFTER_EXCHANGE_FLOOR: Duration = Duration::from_secs(1);

/// Tries of a step after a successful exchange: the code is spent then, so a transient
/// failure is tried again here, until the budget less one call, rather than handed back
/// to the phone. Capped exponential backoff with full jitter.
const AFTER_EXCHANGE: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    base: Duration::from_millis(100),
    cap: Duration::from_secs(2),
};

fn unavailable(u: &Upstream) -> bool {
    matches!(u, Upstream::Unavailable { .. })
}

const DUPLICATE_POLL: Duration = Duration::from_millis(100);

impl<P: Ports> SignIn<P> {
    /// Fetches the client secret and Google's signing keys during init, so the first
    /// request does not pay for them. Failures are logged, not fatal: the request path
    /// fetches again and answers with a proper error.
    pub async fn warm_up(&self) {
        let (secret, ()) = tokio::join!(self.secrets.current(), self.warm_up_keys());
        if let Err(e) = secret {
            tracing::warn!(error = %e, "client secret not loaded during init");
        }
    }

    /// Fetches Google's signing keys during init: all the parked sign-in consumer needs
    /// ahead (it needs the client secret only for a parked code whose access token
    /// expired before tokeninfo named its user).
    pub async fn warm_up_keys(&self) {
        if let Err(e) = self.verifier.prefetch().await {
            tracing::warn!(error = %e, "Google signing keys not loaded during init");
        }
    }

    /// Runs one sign-in.
    #[tracing::instrument(name = "sign_in", skip_all, fields(platform = ?request.platform))]
    pub async fn sign_in(&self, request: SignInRequest) -> Result<SignedIn, SignInError> {
        let started = tokio::time::Instant::now();
        // Refused before anything is claimed or sent: the code stays unspent.
        if let Some(uri) = &request.redirect_uri
            && uri.as_str() != "postmessage"
            && !self.settings.allowed_redirect_uris.iter().any(|a| a == uri.as_str())
        {
            return Err(SignInError::RedirectUriNotAllowed);
        }
        if let Some(token) = &request.id_token {
            self.check_app_id_token(token).await?;
        }
        let key = ClaimKey::new(code_digest(&request.code));
        let waited_until = tokio::time::Instant::now() + self.settings.duplicate_wait;
        let sent_before = loop {
            let now = self.clock.now_unix();
            match self
                .store
                .claim(&key, now, self.settings.claim_lease, self.settings.idempotency_window)
                .await?
            {
                Claim::Claimed { code_sent } => break code_sent,
                Claim::Done(outcome) => {
                    tracing::info!(replayed = true, "sign-in replayed from the request log");
                    return replay(outcome).map(|done| self.with_missing_scopes(done));
                }
                Claim::Parked => {
                    tracing::info!("the code's answer is parked; not stored yet");
                    return Err(SignInError::Parked);
                }
                Claim::InProgress if tokio::time::Instant::now() < waited_until => {
                    tokio::time::sleep(DUPLICATE_POLL).await;
                }
                Claim::InProgress => return Err(SignInError::DuplicateInFlight),
            }
        };

        let mut sent = sent_before;
        let deadline = started + self.settings.budget;
        let result = self.exchange_and_store(&key, &request, deadline, &mut sent).await;
        let result = match result {
            // Google refuses a code it already redeemed. When an earlier attempt sent it
            // and could not finish, that is what happened: the app must ask again, with
            // consent, for a code that brings a refresh token.
            Err(SignInError::InvalidGrant(_)) if sent_before => {
                tracing::warn!("the code was redeemed by an earlier attempt that did not finish");
                Err(SignInError::ReconsentRequired)
            }
            other => other,
        };
        // A success recorded its outcome with the grant; a failure records it here.
        let bookkeeping = match result.as_ref().map_err(|e| (e, e.recorded())) {
            Ok(_) => Ok(()),
            Err((_, Some(outcome))) => {
                let now = self.clock.now_unix();
                self.store
                    .record_refusal(&key, &outcome, now, self.settings.idempotency_window)
                    .await
            }
            // One attempt, as parking's send had: the store may still be down, and then
            // a retry after the lease finds the claim as a crashed attempt left it.
            Err((SignInError::Parked, None)) => {
                let now = self.clock.now_unix();
                let marked = self.store.park_claim(&key, now, PARKED_CLAIM_TTL);
                tokio::time::timeout_at(deadline, marked)
                    .await
                    .unwrap_or_else(|_| Err(Upstream::unavailable("dynamodb", "timed out").into()))
            }
            Err((_, None)) => self.store.release(&key, sent).await,
        };
        if let Err(e) = bookkeeping {
            // The failure is already decided; a lost record only means a retry reaches
            // Google, which then refuses the spent code.
            tracing::warn!(error = %e, "the code's claim could not be updated");
        }
        result.map(|done| self.with_missing_scopes(done))
    }

    /// Verifies the app's `idToken` as §6 has it, before anything is claimed or sent: a
    /// refused one leaves the code unspent.
    async fn check_app_id_token(&self, token: &AppIdToken) -> Result<(), SignInError> {
        let credentials = self.secrets.current().await?;
        match self
            .verifier
            .verify(token.expose_secret(), &credentials.client_id)
            .await
        {
            Ok(_) => Ok(()),
            Err(IdTokenError::KeysUnavailable(u)) => Err(SignInError::Upstream(u)),
            Err(e) => Err(SignInError::AppIdTokenRefused(e)),
        }
    }

    /// The answer with the `REQUIRED_SCOPES` its grant lacks: worked out from the stored
    /// scopes, so a replay of the code answers the same.
    fn with_missing_scopes(&self, mut done: SignedIn) -> SignedIn {
        done.missing_scopes = self
            .settings
            .required_scopes
            .iter()
            .filter(|s| !done.scopes.contains(s))
            .cloned()
            .collect();
        done
    }

    /// `sent` becomes true once the code has gone to Google (whether or not the answer
    /// came back): from then on a retry must not count on the code.
    async fn exchange_and_store(
        &self,
        key: &ClaimKey,
        request: &SignInRequest,
        deadline: tokio::time::Instant,
        sent: &mut bool,
    ) -> Result<SignedIn, SignInError> {
        let call = self.settings.call_timeout;
        // Sending the code spends it: only while the exchange and a second for what follows
        // still fit in the budget. Else the app is told to retry, the code unspent.
        let sendable = || tokio::time::Instant::now() + call + AFTER_EXCHANGE_FLOOR <= deadline;
        if !sendable() {
            return Err(Upstream::unavailable("sign-in", "too little of the budget left to spend the code").into());
        }
        *sent = true;
        // Made again only after `invalid_client` (a rotated secret): Google authenticates
        // the client before it reads the code, so the first send did not spend it.
        let sends = std::sync::atomic::AtomicU32::new(0);
        let exchanged = as_client(&self.secrets, |credentials| {
            let again = sends.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0;
            async move {
                if again && !sendable() {
                    return Err(Upstream::unavailable(
                        "sign-in",
                        "too little of the budget left to send the code again",
                    )
                    .into());
                }
                self.token_endpoint
                    .exchange_code(CodeExchange {
                        token_uri: credentials.token_uri(self.settings.token_uri_override.as_deref()),
                        credentials: &credentials,
                        code: &request.code,
                        redirect_uri: request.redirect_uri(),
                        code_verifier: request.code_verifier.as_ref(),
                    })
                    .await
            }
        })
        .await;
        let resent = sends.load(std::sync::atomic::Ordering::SeqCst) > 1;
        let (tokens, credentials) = exchanged.map_err(|e| match e {
            // Should Google have read the code before refusing the client after all, the
            // code is spent, as for any code sent before.
            GoogleTokenError::InvalidGrant { .. } if resent => SignInError::ReconsentRequired,
            GoogleTokenError::InvalidGrant { .. } => SignInError::InvalidGrant(Some(e)),
            GoogleTokenError::RedirectUriMismatch => SignInError::RedirectUriMismatch,
            GoogleTokenError::Upstream(u) => SignInError::Upstream(u),
        })?;
        let received_at = self.clock.now_unix();
        let answered = Answered {
            client_id: credentials.client_id.clone(),
            received_at,
            refresh_token: tokens.refresh_token,
            refresh_token_lifetime: tokens.refresh_token_lifetime,
            scopes: tokens.scopes,
            // Kept only to ask tokeninfo whose it is, when no ID token says.
            access_token: tokens.id_token.is_none().then_some(tokens.access_token),
            access_expires_at: received_at.saturating_add(tokens.expires_in.as_secs()),
            id_token: tokens.id_token,
            app_id_token: request.id_token.as_ref().map(|t| t.expose_secret().into()),
        };
        let parking = self.parking.as_ref();
        let settle_by = match parking {
            Some(_) => deadline.checked_sub(self.parking_reserve()).unwrap_or(deadline),
            None => deadline,
        };
        match self.settle(key, &answered, settle_by, None).await {
            Err(SignInError::Upstream(u)) if unavailable(&u) => {
                let Some(queue) = parking else {
                    return Err(SignInError::Upstream(u));
                };
                tracing::warn!(error = %u, "the grant could not be stored within the budget; parking Google's answer");
                self.park(queue, key, &answered, deadline).await.map_err(|e| {
                    tracing::error!(error = %e, "Google's answer could not be parked: this first consent is lost");
                    SignInError::Upstream(u)
                })?;
                Err(SignInError::Parked)
            }
            settled => settled,
        }
    }

    /// What the steps after the exchange leave of the budget for parking's two calls (the
    /// send, then the claim's mark): an attempt each, at most a quarter of the budget.
    fn parking_reserve(&self) -> Duration {
        (self.settings.aws_attempt_timeout * 2).min(self.settings.budget / 4)
    }

    /// Seals what Google answered under the code's binding and sends it to the queue, one
    /// try of each (a cached data key needs no KMS call), within half of what is left of
    /// the budget: the claim's mark has the rest.
    async fn park(
        &self,
        queue: &ParkingQueue,
        key: &ClaimKey,
        answered: &Answered,
        deadline: tokio::time::Instant,
    ) -> Result<(), SignInError> {
        let until = tokio::time::Instant::now() + deadline.saturating_duration_since(tokio::time::Instant::now()) / 2;
        let timed_out = |_| Upstream::unavailable("sign-in", "parking timed out");
        let sealed = ParkedSignIn::seal(
            &self.cipher,
            &self.settings.token_binding,
            &key.code,
            &key.owner,
            answered,
        );
        let parked = tokio::time::timeout_at(until, sealed).await.map_err(timed_out)??;
        tokio::time::timeout_at(until, queue.park(&parked))
            .await
            .map_err(timed_out)??;
        tracing::info!("Google's answer parked");
        Ok(())
    }

    /// Makes Google's answer a stored grant: verify the ID token (as of `as_of`, a parked
    /// answer's receipt, else now), seal the refresh token under the grant's binding,
    /// write the grant by the sign-in rule with the code's outcome. Each step is tried
    /// again, on a transient failure, until `deadline` less one call.
    async fn settle(
        &self,
        key: &ClaimKey,
        answered: &Answered,
        deadline: tokio::time::Instant,
        as_of: Option<u64>,
    ) -> Result<SignedIn, SignInError> {
        let aws_call = self.settings.aws_call_timeout;
        let client_id = answered.client_id.as_str();
        let identity = self.identity(answered, deadline, as_of).await?;
        tracing::info!(sub = %identity.sub, new_refresh_token = answered.refresh_token.is_some(), "code exchanged");

        let sealed = match &answered.refresh_token {
            Some(token) => {
                let binding = Binding {
                    store: &self.settings.token_binding,
                    sub: identity.sub.as_str(),
                    client_id,
                };
                let sealed = retry_until(
                    &AFTER_EXCHANGE,
                    deadline,
                    aws_call,
                    || self.cipher.seal_new(token, binding),
                    |e| matches!(e, CryptoError::Upstream(u) if unavailable(u)),
                );
                Some(sealed.await?)
            }
            None => None,
        };

        // Time-based access: the limit belongs to the token that came with it.
        let refresh_expires_at = match (&sealed, answered.refresh_token_lifetime) {
            (Some(_), Some(limit)) => Some(answered.received_at.saturating_add(limit.as_secs())),
            _ => None,
        };
        let grant = SignInGrant {
            sub: identity.sub,
            client_id: client_id.to_owned(),
            scopes: answered.scopes.clone(),
            profile: identity.profile,
            email_verified: identity.email_verified,
            refresh_token: sealed,
            refresh_expires_at,
        };
        let stored = retry_until(
            &AFTER_EXCHANGE,
            deadline,
            aws_call,
            || {
                let now = self.clock.now_unix();
                rule::store_grant(&self.store, key, &grant, now, self.settings.idempotency_window)
            },
            StoreError::may_pass,
        );
        match stored.await? {
            SignInStored::Stored { scopes } => {
                tracing::info!(sub = %grant.sub, "grant stored");
                Ok(SignedIn {
                    sub: grant.sub,
                    email: grant.profile.email,
                    scopes,
                    offline_access: true,
                    replayed: false,
                    missing_scopes: Vec::new(),
                })
            }
            SignInStored::NoRefreshToken => Err(SignInError::ReconsentRequired),
        }
    }

    /// Whom Google's answer is for (DESIGN §16): the user its ID token names; without one,
    /// the user tokeninfo names for its access token. An ID token the app sent must name
    /// the same user: else nothing is stored (under either `sub`) nor revoked.
    async fn identity(
        &self,
        answered: &Answered,
        deadline: tokio::time::Instant,
        as_of: Option<u64>,
    ) -> Result<VerifiedIdToken, SignInError> {
        let client_id = answered.client_id.as_str();
        // The app's token was checked before the code was sent; as of Google's answer here,
        // so a parked sign-in reads it as the sign-in did.
        let app = match &answered.app_id_token {
            Some(token) => Some(
                self.verified(token, client_id, deadline, Some(answered.received_at))
                    .await?,
            ),
            None => None,
        };
        let identity = match &answered.id_token {
            Some(token) => self.verified(token, client_id, deadline, as_of).await?,
            None => self.confirmed_by_tokeninfo(answered, app.as_ref(), deadline).await?,
        };
        if let Some(app) = &app
            && app.sub != identity.sub
        {
            tracing::warn!(
                security_event = "identity_mismatch",
                sub = %identity.sub,
                app_sub = %app.sub,
                "the app's idToken names another user than Google does for this code: nothing stored, nothing revoked"
            );
            return Err(SignInError::IdentityMismatch);
        }
        Ok(identity)
    }

    /// Verifies an ID token (as of `as_of`, else now), trying again while Google's keys are
    /// out of reach.
    async fn verified(
        &self,
        token: &secrecy::SecretString,
        client_id: &str,
        deadline: tokio::time::Instant,
        as_of: Option<u64>,
    ) -> Result<VerifiedIdToken, SignInError> {
        retry_until(
            &AFTER_EXCHANGE,
            deadline,
            self.settings.call_timeout,
            || async {
                match as_of {
                    Some(at) => self.verifier.verify_as_of(token.expose_secret(), client_id, at).await,
                    None => self.verifier.verify(token.expose_secret(), client_id).await,
                }
            },
            |e| matches!(e, IdTokenError::KeysUnavailable(u) if unavailable(u)),
        )
        .await
        .map_err(|e| match e {
            IdTokenError::KeysUnavailable(u) => SignInError::Upstream(u),
            other => SignInError::InvalidIdToken(Some(other)),
        })
    }

    /// The user Google's tokeninfo names for the answer's access token, which must have been
    /// issued to our client. A parked answer read after its access token expired gets a
    /// fresh one with its refresh token. No `sub` (Google documents one only for a token
    /// with an identity scope): unconfirmed, and nothing is stored.
    async fn confirmed_by_tokeninfo(
        &self,
        answered: &Answered,
        app: Option<&VerifiedIdToken>,
        deadline: tokio::time::Instant,
    ) -> Result<VerifiedIdToken, SignInError> {
        let fresh_until = self
            .clock
            .now_unix()
            .saturating_add(self.settings.call_timeout.as_secs() + 1);
        let first = answered
            .access_token
            .as_ref()
            .filter(|_| answered.access_expires_at > fresh_until);
        let info = match first {
            Some(token) => match self.token_info(token, deadline).await? {
                // Google no longer takes it (its clock ran ahead of ours): once more with
                // a fresh one.
                None if answered.refresh_token.is_some() => {
                    let fresh = self.fresh_access_token(answered, deadline).await?;
                    self.token_info(&fresh, deadline).await?
                }
                info => info,
            },
            None => {
                let fresh = self.fresh_access_token(answered, deadline).await?;
                self.token_info(&fresh, deadline).await?
            }
        };
        let Some(info) = info.filter(|i| i.issued_to(&answered.client_id)) else {
            tracing::warn!("tokeninfo does not confirm the code's access token as our client's");
            return Err(SignInError::IdentityUnconfirmed);
        };
        let Some(sub) = info.sub.as_deref().and_then(|s| GoogleSubject::parse(s).ok()) else {
            tracing::warn!("the code was granted without an identity scope and tokeninfo names no user");
            return Err(SignInError::IdentityUnconfirmed);
        };
        // The profile of the app's ID token when it is the same user's; else what tokeninfo
        // says (an email only when verified).
        let (profile, email_verified) = match app {
            Some(app) if app.sub == sub => (app.profile.clone(), app.email_verified),
            _ => {
                let email = info.email.filter(|_| info.email_verified).map(Email::new);
                (
                    Profile {
                        email,
                        ..Profile::default()
                    },
                    info.email_verified,
                )
            }
        };
        Ok(VerifiedIdToken {
            sub,
            email_verified,
            profile,
        })
    }

    /// What tokeninfo says of `token`, tried again while Google is out of reach.
    async fn token_info(
        &self,
        token: &AccessToken,
        deadline: tokio::time::Instant,
    ) -> Result<Option<crate::google::TokenInfo>, SignInError> {
        let asked = retry_until(
            &AFTER_EXCHANGE,
            deadline,
            self.settings.call_timeout,
            || self.token_endpoint.token_info(&self.settings.tokeninfo_uri, token),
            unavailable,
        );
        Ok(asked.await?)
    }

    /// A new access token from the answer's refresh token (a parked answer's first one has
    /// expired). Without a refresh token, the user cannot be confirmed.
    async fn fresh_access_token(
        &self,
        answered: &Answered,
        deadline: tokio::time::Instant,
    ) -> Result<AccessToken, SignInError> {
        let Some(refresh_token) = &answered.refresh_token else {
            return Err(SignInError::IdentityUnconfirmed);
        };
        let override_uri = self.settings.token_uri_override.as_deref();
        let tokens = retry_until(
            &AFTER_EXCHANGE,
            deadline,
            self.settings.call_timeout,
            || refresh_as_client(&self.secrets, &self.token_endpoint, override_uri, refresh_token),
            |e| matches!(e, GoogleTokenError::Upstream(u) if unavailable(u)),
        )
        .await
        .map_err(|e| match e {
            GoogleTokenError::Upstream(u) => SignInError::Upstream(u),
            // The grant ended before its user was known: nothing to store.
            GoogleTokenError::InvalidGrant { .. } | GoogleTokenError::RedirectUriMismatch => {
                SignInError::IdentityUnconfirmed
            }
        })?;
        Ok(tokens.access_token)
    }

    /// Writes a parked sign-in (the `parked-sign-in` function): opens it, then settles it
    /// as the sign-in would have, the ID token verified as of Google's answer, and records
    /// the code's outcome for its retries. A final refusal is recorded and returned;
    /// `Err` with a transient cause means: try the message again later.
    pub async fn unpark(
        &self,
        message: &ParkedSignIn,
        deadline: tokio::time::Instant,
    ) -> Result<Unparked, SignInError> {
        let key = ClaimKey {
            code: message.code.clone(),
            owner: message.owner.clone(),
        };
        let answered = match message.open(&self.cipher, &self.settings.token_binding).await {
            Ok(answered) => answered,
            Err(UnparkError::Crypto(CryptoError::Upstream(u))) => return Err(SignInError::Upstream(u)),
            Err(e) => {
                // Nothing of it can be read: the app must ask again, with consent.
                tracing::error!(error = %e, "a parked sign-in does not open; its first consent is lost");
                return self.refused(&key, RecordedOutcome::ReconsentRequired).await;
            }
        };
        match self.settle(&key, &answered, deadline, Some(answered.received_at)).await {
            Ok(done) => Ok(Unparked::Stored(done)),
            Err(e) => match e.recorded() {
                Some(outcome) => {
                    tracing::warn!(error = %e, "a parked sign-in was refused");
                    self.refused(&key, outcome).await
                }
                None => Err(e),
            },
        }
    }

    async fn refused(&self, key: &ClaimKey, outcome: RecordedOutcome) -> Result<Unparked, SignInError> {
        let now = self.clock.now_unix();
        self.store
            .record_refusal(key, &outcome, now, self.settings.idempotency_window)
            .await?;
        Ok(Unparked::Refused(outcome))
    }
}

/// What became of a parked sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unparked {
    /// The grant is stored and the code's retries replay this.
    Stored(SignedIn),
    /// Refused for good (the ID token does not verify, no refresh token is held, or
    /// the message does not open): recorded for the code's retries.
    Refused(RecordedOutcome),
}

fn replay(outcome: RecordedOutcome) -> Result<SignedIn, SignInError> {
    match outcome {
        RecordedOutcome::SignedIn {
            sub,
            email,
            scopes,
            offline_access,
        } => Ok(SignedIn {
            sub: GoogleSubject::parse(&sub).map_err(|_| SignInError::Store(StoreError::Corrupt("outcome")))?,
            email: email.map(Email::new),
            scopes: scopes.into_iter().collect(),
            offline_access,
            replayed: true,
            missing_scopes: Vec::new(),
        }),
        RecordedOutcome::ReconsentRequired => Err(SignInError::ReconsentRequired),
        RecordedOutcome::InvalidGrant => Err(SignInError::InvalidGrant(None)),
        RecordedOutcome::InvalidIdToken => Err(SignInError::InvalidIdToken(None)),
        RecordedOutcome::IdentityUnconfirmed => Err(SignInError::IdentityUnconfirmed),
        RecordedOutcome::IdentityMismatch => Err(SignInError::IdentityMismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_key_is_a_hash_not_the_code() {
        let code = AuthCode::parse("4/0Secret-code").map_err(|e| e.0);
        let key = code.as_ref().map(code_digest).unwrap_or_default();
        assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!key.contains("Secret"));
    }
}
