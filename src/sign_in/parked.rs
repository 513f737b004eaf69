//! A parked sign-in (DESIGN §1): what Google answered for a code whose grant could not be
//! written within the budget, kept sealed in the `ParkedSignIns` queue until the
//! `parked-sign-in` function writes it ([`super::SignIn::unpark`]).
//!
//! A parked message holds only sealed material and what is no secret: the code's digest,
//! the claim's holder, the client id, when Google answered, the granted scopes and the
//! token's time limit. The refresh token and the ID token are sealed under a binding to
//! the code's digest (no `sub` is known before the ID token is verified), with the
//! refresh-token cipher: the same purpose and data-key cache as the grant's token, so a
//! process that sealed in the last minutes parks without a KMS call. The ID tokens (the
//! exchange's and the app's) and, when the exchange carried no ID token, the access token
//! tokeninfo is asked about are credentials of the same grant, so each is sealed as one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::crypto::{Binding, CryptoError, KeyProvider, SealedToken, TokenCipher};
use crate::domain::{AccessToken, RefreshToken, Scopes};
use crate::upstream::{Upstream, classify_aws};

/// The format of a parked message this code writes and reads.
pub const PARKED_FORMAT: u8 = 1;

/// How long a parked code's claim is kept (the queue's retention, 14 days): while the
/// message may still be written, a retry of the code answers 503 instead of spending it.
pub const PARKED_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// What Google answered for a code, as a sign-in settles it into a grant: at once, or
/// parked and later.
#[derive(Debug)]
pub struct Answered {
    pub client_id: String,
    /// When Google answered (Unix seconds): the ID token is verified as of then, and a time
    /// limit on the refresh token counts from then.
    pub received_at: u64,
    pub refresh_token: Option<RefreshToken>,
    pub refresh_token_lifetime: Option<std::time::Duration>,
    pub scopes: Scopes,
    pub id_token: Option<SecretString>,
    /// The exchange's access token, kept only when it carried no ID token: tokeninfo then
    /// names the user.
    pub access_token: Option<AccessToken>,
    /// When that access token expires (Unix seconds).
    pub access_expires_at: u64,
    /// The ID token the app sent with the code: the user must be its.
    pub app_id_token: Option<SecretString>,
}

/// One message of the `ParkedSignIns` queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedSignIn {
    /// [`PARKED_FORMAT`].
    pub format: u8,
    /// The code's digest: its claim's key, and what the sealed parts are bound to.
    pub code: String,
    /// The claim's holder when it parked: the outcome is recorded in its name.
    pub owner: String,
    pub client_id: String,
    pub received_at: u64,
    /// Space-delimited, as Google sends them.
    pub scopes: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_lifetime_secs: Option<u64>,
    /// The sealed refresh token (base64), when Google sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The sealed ID token (base64), when Google sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The sealed access token (base64), when Google sent no ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<u64>,
    /// The sealed ID token the app sent (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id_token: Option<String>,
}

/// Why a parked message could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum UnparkError {
    #[error("the parked message is not in a format this code reads")]
    Format,
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

const REFRESH_PART: &str = "refresh-token";
const ID_PART: &str = "id-token";
const ACCESS_PART: &str = "access-token";
const APP_ID_PART: &str = "app-id-token";

/// Where a parked part is sealed: the store, the code's digest and which part it is, the
/// client. A real `sub` is digits only, so no grant's binding is ever one of these.
struct Part<'a> {
    store: &'a str,
    name: String,
    client_id: &'a str,
}

impl<'a> Part<'a> {
    fn new(store: &'a str, code: &str, part: &str, client_id: &'a str) -> Self {
        Self {
            store,
            name: format!("parked:{code}:{part}"),
            client_id,
        }
    }

    fn binding(&self) -> Binding<'_> {
        Binding {
            store: self.store,
            sub: &self.name,
            client_id: self.client_id,
        }
    }

    async fn seal<K: KeyProvider>(
        &self,
        cipher: &TokenCipher<K, RefreshToken>,
        text: &str,
    ) -> Result<String, CryptoError> {
        let sealed = cipher.seal(&RefreshToken::new(text.to_owned()), self.binding()).await?;
        Ok(BASE64.encode(sealed.to_bytes()))
    }

    async fn open<K: KeyProvider>(
        &self,
        cipher: &TokenCipher<K, RefreshToken>,
        sealed: &str,
    ) -> Result<String, UnparkError> {
        let bytes = BASE64.decode(sealed).map_err(|_| UnparkError::Format)?;
        let sealed = SealedToken::from_bytes(&bytes).map_err(|_| UnparkError::Format)?;
        let opened = cipher.open(&sealed, self.binding()).await?;
        Ok(opened.expose_secret().to_owned())
    }
}

impl ParkedSignIn {
    /// Seals `answered` for the claim `code`/`owner`. No KMS call while the cipher's data
    /// key is cached.
    pub async fn seal<K: KeyProvider>(
        cipher: &TokenCipher<K, RefreshToken>,
        store: &str,
        code: &str,
        owner: &str,
        answered: &Answered,
    ) -> Result<Self, CryptoError> {
        let client = answered.client_id.as_str();
        let seal = async |name: &str, text: Option<&str>| match text {
            Some(text) => Part::new(store, code, name, client).seal(cipher, text).await.map(Some),
            None => Ok(None),
        };
        let refresh_token = seal(REFRESH_PART, answered.refresh_token.as_ref().map(|t| t.expose_secret())).await?;
        let id_token = seal(ID_PART, answered.id_token.as_ref().map(|t| t.expose_secret())).await?;
        let access_token = seal(ACCESS_PART, answered.access_token.as_ref().map(|t| t.expose_secret())).await?;
        let app_id_token = seal(APP_ID_PART, answered.app_id_token.as_ref().map(|t| t.expose_secret())).await?;
        Ok(Self {
            format: PARKED_FORMAT,
            code: code.to_owned(),
            owner: owner.to_owned(),
            client_id: answered.client_id.clone(),
            received_at: answered.received_at,
            scopes: answered.scopes.iter().collect::<Vec<_>>().join(" "),
            refresh_token_lifetime_secs: answered.refresh_token_lifetime.map(|d| d.as_secs()),
            refresh_token,
            id_token,
            access_expires_at: access_token.is_some().then_some(answered.access_expires_at),
            access_token,
            app_id_token,
        })
    }

    /// Opens what was parked.
    pub async fn open<K: KeyProvider>(
        &self,
        cipher: &TokenCipher<K, RefreshToken>,
        store: &str,
    ) -> Result<Answered, UnparkError> {
        if self.format != PARKED_FORMAT {
            return Err(UnparkError::Format);
        }
        let open = async |name: &str, sealed: Option<&String>| match sealed {
            Some(sealed) => Part::new(store, &self.code, name, &self.client_id)
                .open(cipher, sealed)
                .await
                .map(Some),
            None => Ok(None),
        };
        Ok(Answered {
            client_id: self.client_id.clone(),
            received_at: self.received_at,
            refresh_token: open(REFRESH_PART, self.refresh_token.as_ref())
                .await?
                .map(RefreshToken::new),
            refresh_token_lifetime: self.refresh_token_lifetime_secs.map(std::time::Duration::from_secs),
            scopes: Scopes::from_space_delimited(&self.scopes),
            id_token: open(ID_PART, self.id_token.as_ref()).await?.map(SecretString::from),
            access_token: open(ACCESS_PART, self.access_token.as_ref())
                .await?
                .map(AccessToken::new),
            access_expires_at: self.access_expires_at.unwrap_or_default(),
            app_id_token: open(APP_ID_PART, self.app_id_token.as_ref())
                .await?
                .map(SecretString::from),
        })
    }
}

/// The stack's `ParkedSignIns` queue (`SIGN_IN_PARKING_QUEUE_URL`).
#[derive(Debug, Clone)]
pub struct ParkingQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl ParkingQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// Sends one parked sign-in.
    pub async fn park(&self, parked: &ParkedSignIn) -> Result<(), Upstream> {
        let body = serde_json::to_string(parked).map_err(|_| Upstream::unavailable("sqs", "unserialisable"))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| classify_aws("sqs", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_message_holds_no_plaintext_secret_and_reads_back() {
        let message = ParkedSignIn {
            format: PARKED_FORMAT,
            code: "ab".repeat(32),
            owner: "00".repeat(16),
            client_id: "client".into(),
            received_at: 1_700_000_000,
            scopes: "openid email".into(),
            refresh_token_lifetime_secs: None,
            refresh_token: Some("AAEC".into()),
            id_token: None,
            access_token: None,
            access_expires_at: None,
            app_id_token: None,
        };
        let text = serde_json::to_string(&message).unwrap_or_default();
        assert!(!text.contains("id_token"), "absent parts are left out: {text}");
        let back: Option<ParkedSignIn> = serde_json::from_str(&text).ok();
        assert_eq!(back, Some(message));
    }
}
