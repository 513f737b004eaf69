//! The operator's work (DESIGN §14), for the `offline-access` CLI: listing, showing and
//! counting grants, revoking or deleting one as the product's own paths do, and
//! re-wrapping every sealed token under fresh data keys or another KMS key. The CLI only
//! parses, renders and shows progress; everything it does is here, over the production
//! adapters, so the tests exercise exactly what an operator runs.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::app::App;
use crate::clock::{Clock, SystemClock};
use crate::config::CommonConfig;
use crate::crypto::{Binding, CryptoError, KeyCacheLimits, KmsKeyProvider, TokenCipher};
use crate::deletion::DeleteGrant;
use crate::deletion::{Deleted, DeletionError};
use crate::domain::{AccessToken, GoogleSubject, RefreshToken, Scopes};
use crate::google::{Revocation, TokenEndpoint, TokenRevocation};
use crate::grant::health::{Health, health};
use crate::store::{
    Applied, CachedToken, DynamoStore, Grant, GrantStatus, GrantStore, OperatorStore, ReencryptCheckpoint, RiscStore,
    StoreError, reasons,
};
use crate::upstream::Upstream;

/// Grants read per page.
const PAGE: i32 = 200;

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no grant is stored for this user")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored token could not be opened: {0}")]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Upstream(#[from] Upstream),
    #[error(transparent)]
    Deletion(#[from] DeletionError),
}

/// One grant and what is cached for it: never a token, never a ciphertext.
#[derive(Debug, Clone)]
pub struct GrantDetails {
    pub grant: Grant,
    /// When the cached access token expires, if one is cached.
    pub access_token_expires_at: Option<u64>,
    /// Its three levels of health, against `REQUIRED_SCOPES`.
    pub health: Health,
}

/// Active grants by the state of each level of health.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HealthCounts {
    pub refresh: BTreeMap<&'static str, u64>,
    pub api: BTreeMap<&'static str, u64>,
    pub scopes: BTreeMap<&'static str, u64>,
}

impl HealthCounts {
    fn new() -> Self {
        let states = |names: &[&'static str]| names.iter().map(|n| (*n, 0)).collect();
        Self {
            refresh: states(&["ok", "failing", "unknown"]),
            api: states(&["ok", "failing", "unknown"]),
            scopes: states(&["ok", "missing"]),
        }
    }

    fn count(&mut self, h: &Health) {
        *self.refresh.entry(h.refresh.state.as_str()).or_default() += 1;
        *self.api.entry(h.api.state.as_str()).or_default() += 1;
        *self.scopes.entry(h.scopes.state.as_str()).or_default() += 1;
    }
}

/// Counts over the whole grants table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub grants: u64,
    pub by_status: BTreeMap<&'static str, u64>,
    /// Active grants whose last refresh failed (`failure_count` > 0).
    pub failing: u64,
    /// Active grants by each level of health.
    pub health: HealthCounts,
    /// Grants a security event flagged for review.
    pub flagged: u64,
    /// Grants with time-based access.
    pub time_limited: u64,
    /// Grants holding a token stored before digests were kept (not matched by
    /// `token-revoked` until their token changes).
    pub without_token_digests: u64,
    /// Rows that could not be read as grants (named in the log by `sub`).
    pub malformed: u64,
}

/// What `grants list` read: the grants, and the `sub`s of rows that could not be read.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub grants: Vec<Grant>,
    pub malformed: Vec<String>,
}

/// What `grants revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// What Google said; `None` when no token was held.
    pub google: Option<Revocation>,
    pub grant: Applied,
}

/// A token that did not open: KMS unreachable stops the run (it resumes from its
/// checkpoint); a token that is tampered with, or under a key not configured, is left as
/// it is, counted and logged, so one bad item cannot stop every run at the same place.
fn unopened(progress: &mut ReencryptCheckpoint, sub: &GoogleSubject, e: &CryptoError) -> Result<(), CryptoError> {
    if let CryptoError::Upstream(Upstream::Unavailable { .. }) = e {
        return Err(e.clone());
    }
    tracing::warn!(sub = %sub, error = %e, "a sealed token did not open; left as it is");
    progress.unopened += 1;
    Ok(())
}

/// The operator's view of the stack.
#[derive(Debug)]
pub struct Operator {
    pub common: CommonConfig,
    pub store: DynamoStore,
    pub keys: KmsKeyProvider,
    pub deletion: DeleteGrant,
    /// `REQUIRED_SCOPES`: what a grant's `scopes` health is measured against.
    pub required_scopes: Scopes,
    aws: aws_config::SdkConfig,
}

impl Operator {
    /// The production adapters for the stack `common` names.
    pub fn new(config: &crate::config::SignInConfig, aws: &aws_config::SdkConfig) -> Result<Self, reqwest::Error> {
        let app = App::production(&config.common, aws)?;
        Ok(Self {
            store: app.store.clone(),
            keys: app.keys.clone(),
            deletion: app.deletion(config),
            common: config.common.clone(),
            required_scopes: config.required_scopes.iter().cloned().collect(),
            aws: crate::app::with_timeouts(aws, config.common.aws_timeouts),
        })
    }

    fn binding<'a>(&'a self, grant: &'a Grant) -> Binding<'a> {
        Binding {
            store: &self.common.token_binding,
            sub: grant.sub.as_str(),
            client_id: &grant.client_id,
        }
    }

    fn cipher<T: crate::crypto::Sealable>(&self, keys: KmsKeyProvider) -> TokenCipher<KmsKeyProvider, T> {
        TokenCipher::new(
            keys,
            KeyCacheLimits {
                max_age: self.common.data_key_max_age,
                max_uses: self.common.data_key_max_uses,
                ..KeyCacheLimits::default()
            },
        )
    }

    /// Reads every grant (with `status`, only those) a page at a time, handing each page
    /// to `each` with the `sub`s of its rows that could not be read; holds one page at a
    /// time, whatever the table's size.
    async fn each_page(
        &self,
        status: Option<GrantStatus>,
        mut each: impl FnMut(Vec<Grant>, Vec<String>),
    ) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let page = self.store.grants_page(after.as_deref(), status, PAGE).await?;
            each(page.grants, page.malformed);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Every grant (with `status`, only those); `on_page` is told how many were read so far.
    pub async fn list(
        &self,
        status: Option<GrantStatus>,
        mut on_page: impl FnMut(usize),
    ) -> Result<Listing, StoreError> {
        let mut all = Listing::default();
        self.each_page(status, |page, malformed| {
            all.grants.extend(page);
            all.malformed.extend(malformed);
            on_page(all.grants.len());
        })
        .await?;
        Ok(all)
    }

    /// How many grants DynamoDB last counted (it recounts about every six hours): the
    /// length of a progress bar, not a figure to rely on.
    pub async fn approximate_grants(&self) -> Option<u64> {
        let described = aws_sdk_dynamodb::Client::new(&self.aws)
            .describe_table()
            .table_name(&self.common.grants_table)
            .send()
            .await
            .ok()?;
        described.table()?.item_count().and_then(|n| u64::try_from(n).ok())
    }

    /// One grant and what is cached for it.
    pub async fn show(&self, sub: &GoogleSubject) -> Result<Option<GrantDetails>, StoreError> {
        let Some(grant) = self.store.load(sub).await? else {
            return Ok(None);
        };
        let cached: Option<CachedToken> = self.store.cached_access_token(sub).await?;
        Ok(Some(GrantDetails {
            health: health(&grant, &self.required_scopes),
            grant,
            access_token_expires_at: cached.map(|c| c.expires_at),
        }))
    }

    /// Counts over every grant.
    pub async fn stats(&self, mut on_page: impl FnMut(usize)) -> Result<Stats, StoreError> {
        let mut stats = Stats {
            by_status: GrantStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
            health: HealthCounts::new(),
            ..Stats::default()
        };
        self.each_page(None, |page, malformed| {
            stats.malformed += malformed.len() as u64;
            for g in &page {
                stats.grants += 1;
                *stats.by_status.entry(g.status.as_str()).or_default() += 1;
                stats.failing += u64::from(g.status == GrantStatus::Active && g.failure_count > 0);
                if g.status == GrantStatus::Active {
                    stats.health.count(&health(g, &self.required_scopes));
                }
                stats.flagged += u64::from(!g.review_flags.is_empty());
                stats.time_limited += u64::from(g.refresh_expires_at.is_some());
                stats.without_token_digests += u64::from(g.refresh_token.is_some() && g.token_digests.is_none());
            }
            on_page(usize::try_from(stats.grants).unwrap_or(usize::MAX));
        })
        .await?;
        Ok(stats)
    }

    /// Revokes the user's refresh token at Google, then deletes it (and the cached access
    /// token) and marks the grant `revoked`, reason `operator_revoked` — as a revocation
    /// Google reports does. Google unreachable: nothing changes, and the error says so.
    pub async fn revoke(&self, sub: &GoogleSubject) -> Result<Revoked, OperatorError> {
        let grant = self.store.load(sub).await?.ok_or(OperatorError::NotFound)?;
        let google = match &grant.refresh_token {
            None => None,
            Some(sealed) => {
                let cipher = self.cipher::<RefreshToken>(self.keys.clone());
                let token = cipher.open(sealed, self.binding(&grant)).await?;
                let revoke_uri = &self.common.revoke_uri;
                let revoked = self
                    .deletion
                    .token_endpoint
                    .revoke(TokenRevocation {
                        revoke_uri,
                        token: &token,
                    })
                    .await?;
                Some(revoked)
            }
        };
        let now = SystemClock.now_unix();
        let applied = self
            .store
            .revoke_tokens(sub, reasons::OPERATOR_REVOKED, None, now)
            .await?;
        Ok(Revoked { google, grant: applied })
    }

    /// Deletes the user's data as `DELETE /grants/me` does.
    /// Deletes `sub`'s data as the user's own `DELETE` would; `NotFound` when nothing was
    /// ever stored for it (a mistyped `sub` is not a deletion).
    pub async fn delete(&self, sub: GoogleSubject) -> Result<Deleted, OperatorError> {
        let deleted = self.deletion.delete_sub(sub).await?;
        if deleted.never_stored {
            return Err(OperatorError::NotFound);
        }
        Ok(deleted)
    }

    /// Re-wraps every sealed token — each grant's refresh token and cached access token —
    /// under fresh data keys of `to_key` (default `TOKEN_KEY_ID`). Each write is
    /// conditioned on the token still being the one opened, so a sign-in or a refresh
    /// meanwhile is never overwritten (counted in `changed_meanwhile`). A checkpoint in the
    /// state table after each page lets a stopped run resume where it was (`restart`:
    /// start over); `on_page` is told the counts so far.
    pub async fn reencrypt(
        &self,
        to_key: Option<&str>,
        restart: bool,
        mut on_page: impl FnMut(&ReencryptCheckpoint),
    ) -> Result<ReencryptCheckpoint, OperatorError> {
        let target = to_key.unwrap_or(&self.common.token_key_id).to_owned();
        // Opens under the configured keys, and the target (a resumed run's re-wrapped
        // tokens); seals under fresh data keys of the target only.
        let mut opening = self.common.previous_token_key_ids.clone();
        if target != self.common.token_key_id {
            opening.push(target.clone());
        }
        let kms = aws_sdk_kms::Client::new(&self.aws);
        let open_keys = KmsKeyProvider::new(
            kms.clone(),
            self.common.token_key_id.clone(),
            &self.common.token_binding,
        )
        .with_previous_keys(opening);
        let seal_keys = KmsKeyProvider::new(kms, target.clone(), &self.common.token_binding);
        let (open_refresh, seal_refresh) = (
            self.cipher::<RefreshToken>(open_keys.clone()),
            self.cipher::<RefreshToken>(seal_keys.clone()),
        );
        let (open_access, seal_access) = (
            self.cipher::<AccessToken>(open_keys),
            self.cipher::<AccessToken>(seal_keys),
        );

        let mut progress = match self.store.reencrypt_checkpoint().await? {
            Some(saved) if saved.target_key == target && !restart => saved,
            _ => ReencryptCheckpoint {
                target_key: target,
                ..ReencryptCheckpoint::default()
            },
        };
        let now = SystemClock.now_unix();
        loop {
            let page = self.store.grants_page(progress.after.as_deref(), None, PAGE).await?;
            progress.malformed += page.malformed.len() as u64;
            for grant in &page.grants {
                progress.scanned += 1;
                if let Some(old) = &grant.refresh_token {
                    match open_refresh.open(old, self.binding(grant)).await {
                        Ok(token) => {
                            let new = seal_refresh.seal(&token, self.binding(grant)).await?;
                            if self.store.rewrap_refresh_token(&grant.sub, old, &new).await? {
                                progress.refresh_tokens += 1;
                            } else {
                                progress.changed_meanwhile += 1;
                            }
                        }
                        Err(e) => unopened(&mut progress, &grant.sub, &e)?,
                    }
                }
                let cached = self.store.cached_access_token(&grant.sub).await?;
                if let Some(cached) = cached.filter(|c| c.expires_at > now) {
                    let details = cached.details();
                    match open_access
                        .open_described(&cached.token, self.binding(grant), &details)
                        .await
                    {
                        Ok(token) => {
                            let new = seal_access
                                .seal_described(&token, self.binding(grant), &details)
                                .await?;
                            if self.store.rewrap_access_token(&grant.sub, &cached.token, &new).await? {
                                progress.access_tokens += 1;
                            } else {
                                progress.changed_meanwhile += 1;
                            }
                        }
                        Err(e) => unopened(&mut progress, &grant.sub, &e)?,
                    }
                }
                progress.after = Some(grant.sub.as_str().to_owned());
            }
            match page.next {
                Some(next) => {
                    progress.after = Some(next);
                    self.store.save_reencrypt_checkpoint(&progress).await?;
                    on_page(&progress);
                }
                None => {
                    on_page(&progress);
                    self.store.clear_reencrypt_checkpoint().await?;
                    progress.after = None;
                    return Ok(progress);
                }
            }
        }
    }

    /// Runs one cycle of the offline job here, built as the refresher function builds it.
    pub async fn run_job(
        &self,
        config: &crate::config::JobConfig,
        cycle: &crate::job::CycleId,
        budget: Duration,
    ) -> Result<crate::job::Report, OperatorError> {
        let job = App::production(&config.common, &self.aws)
            .map_err(|e| Upstream::misconfigured("http", e.to_string()))?
            .offline_job(config);
        let deadline = tokio::time::Instant::now() + budget;
        job.run(cycle, &crate::store::random_owner(), deadline)
            .await
            .map_err(|e| OperatorError::Upstream(Upstream::misconfigured("job", e.to_string())))
    }
}
