//! Deleting a user's data at their request (DESIGN §12): `DELETE /grants/me` with the
//! user's Google ID token. It knows nothing of HTTP ([`crate::lambda::http`] is the HTTP side).
//!
//! 1. Verify the ID token exactly as sign-in does; `sub` comes from it.
//! 2. Mark the grant `revoking`: unusable at once (the access-token function answers 404,
//!    the job never refreshes it), its cached access token dropped.
//! 3. Revoke the refresh token at Google (200, or 400 `invalid_token`: done).
//! 4. Replace the grant by a tombstone: no tokens, no profile, kept `TOMBSTONE_DAYS`.
//!
//! Google unreachable: the answer says `pending`, the grant stays `revoking` with its
//! token sealed, and the offline job retries the revocation, then writes the tombstone.
//! A token that never opens (it does not authenticate, or its KMS key is gone) cannot be
//! revoked: the answer says `unrevocable`, and the tombstone is written all the same.

use std::time::Duration;

use crate::clock::Clock;
use crate::crypto::{Binding, CryptoError, TokenCipher};
use crate::domain::GoogleSubject;
use crate::google::{ClientSecrets, IdTokenError, Revocation, TokenEndpoint, TokenRevocation, VerifyIdToken};
use crate::ports::Ports;
use crate::store::{DeletionStart, DeletionStore, StoreError};
use crate::upstream::Upstream;

/// What Google said, as the answer's `google` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtGoogle {
    Revoked,
    AlreadyRevoked,
    /// Google could not be reached: the offline job finishes the revocation.
    Pending,
    /// The stored token does not open and never will (it does not authenticate, or its
    /// KMS key is disabled or deleted), so it cannot be revoked: everything we hold is
    /// deleted anyway, and the user removes the app's access at their Google account.
    Unrevocable,
}

impl AtGoogle {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::AlreadyRevoked => "already_revoked",
            Self::Pending => "pending",
            Self::Unrevocable => "unrevocable",
        }
    }
}

impl From<Revocation> for AtGoogle {
    fn from(r: Revocation) -> Self {
        match r {
            Revocation::Revoked => Self::Revoked,
            Revocation::AlreadyRevoked => Self::AlreadyRevoked,
        }
    }
}

/// A deletion's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub sub: GoogleSubject,
    pub google: AtGoogle,
    /// Nothing was ever stored for `sub` (no grant, no tombstone): nothing was deleted.
    /// The user's own `DELETE` is answered the same either way; an operator is told.
    pub never_stored: bool,
}

/// Why a deletion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    #[error("the ID token failed verification")]
    InvalidIdToken(#[source] IdTokenError),
    #[error(transparent)]
    Upstream(#[from] Upstream),
    #[error("stored data is inconsistent")]
    Store(#[source] StoreError),
    #[error("the stored refresh token does not open, so it cannot be revoked")]
    Crypto(#[source] CryptoError),
}

impl From<StoreError> for DeletionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Upstream(u) => Self::Upstream(u),
            other => Self::Store(other),
        }
    }
}

/// Tunables of the use case.
#[derive(Debug, Clone)]
pub struct DeletionSettings {
    pub token_binding: String,
    pub revoke_uri: String,
    pub tombstone_ttl: Duration,
}

/// The deletion use case over its ports.
#[derive(Debug)]
pub struct DeleteGrant<P: Ports = crate::ports::Aws> {
    pub token_endpoint: P::Tokens,
    pub verifier: P::IdTokens,
    pub store: P::Store,
    pub cipher: TokenCipher<P::Keys>,
    pub secrets: P::Secrets,
    pub clock: P::Clock,
    pub settings: DeletionSettings,
}

impl<P: Ports> DeleteGrant<P> {
    /// Deletes the grant of the user whose ID token this is.
    #[tracing::instrument(name = "delete_grant", skip_all)]
    pub async fn delete(&self, id_token: &str) -> Result<Deleted, DeletionError> {
        let credentials = self.secrets.current().await?;
        let identity = self
            .verifier
            .verify(id_token, &credentials.client_id)
            .await
            .map_err(DeletionError::InvalidIdToken)?;
        self.delete_sub(identity.sub).await
    }

    /// Deletes `sub`'s grant: for a caller who has established who the user is (the
    /// ID token above, or an operator's `grants delete`).
    pub async fn delete_sub(&self, sub: GoogleSubject) -> Result<Deleted, DeletionError> {
        let now = self.clock.now_unix();
        let grant = match self.store.begin_deletion(&sub, now).await? {
            DeletionStart::Started(grant) => grant,
            // Nothing held, or deleted before: Google holds nothing of ours either.
            start @ (DeletionStart::NotFound | DeletionStart::AlreadyDeleted) => {
                return Ok(Deleted {
                    sub,
                    google: AtGoogle::AlreadyRevoked,
                    never_stored: matches!(start, DeletionStart::NotFound),
                });
            }
        };
        let google = match &grant.refresh_token {
            None => AtGoogle::AlreadyRevoked,
            Some(sealed) => {
                let binding = Binding {
                    store: &self.settings.token_binding,
                    sub: sub.as_str(),
                    client_id: &grant.client_id,
                };
                match self.cipher.open(sealed, binding).await {
                    Ok(token) => {
                        let revoked = self
                            .token_endpoint
                            .revoke(TokenRevocation {
                                revoke_uri: &self.settings.revoke_uri,
                                token: &token,
                            })
                            .await;
                        match revoked {
                            Ok(r) => r.into(),
                            Err(Upstream::Unavailable { .. }) => AtGoogle::Pending,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Err(CryptoError::Upstream(Upstream::Unavailable { .. })) => AtGoogle::Pending,
                    Err(e) if e.is_permanent() => {
                        tracing::warn!(sub = %sub, error = %e, "UNREVOCABLE: the stored token never opens; deleting all we hold");
                        AtGoogle::Unrevocable
                    }
                    Err(e) => return Err(DeletionError::Crypto(e)),
                }
            }
        };
        if google != AtGoogle::Pending {
            let tombstoned = self
                .store
                .finish_deletion(&grant, self.clock.now_unix(), self.settings.tombstone_ttl)
                .await?;
            if !tombstoned {
                tracing::info!(sub = %sub, "a sign-in made a new grant during the deletion; it stays");
            }
        }
        tracing::info!(sub = %sub, google = google.as_str(), "grant deleted at the user's request");
        Ok(Deleted {
            sub,
            google,
            never_stored: false,
        })
    }
}
