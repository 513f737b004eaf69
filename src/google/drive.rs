//! Google Drive v3, the calls the offline job makes on a user's behalf: get the app's
//! hidden `appDataFolder` (`files.get`, 5 quota units), or list it (`files.list` with
//! `spaces=appDataFolder`, 100 units a page, page after page within the bounds the job
//! sets).
//! <https://developers.google.com/drive/api/guides/appdata>
//!
//! Drive's rate-limit answers — 429, and 403 with `userRateLimitExceeded` or
//! `rateLimitExceeded` — are an unavailable service to retry (honouring `Retry-After`),
//! never a refusal: a 403 that is a refusal means the user took the scope away.

use serde::Deserialize;

use crate::domain::AccessToken;
use crate::upstream::Upstream;

/// What a listing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DriveListing {
    pub files: u64,
    pub pages: u64,
    /// The listing stopped before its end: at the page cap, or at a page token Drive had
    /// already given (a pagination loop). `files` counts what was seen.
    pub truncated: bool,
}

/// The `reason`s of a 403 that mean "slow down", not "not allowed".
/// <https://developers.google.com/workspace/drive/api/guides/limits>
const RATE_LIMIT_REASONS: &[&str] = &["userRateLimitExceeded", "rateLimitExceeded"];

/// Why Drive refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriveError {
    /// 401/403 (not a rate limit), 404: the token or its scopes do not allow the call.
    /// Not retried.
    #[error("Drive refused the call: HTTP {status} {reason}")]
    Refused { status: u16, reason: String },
    #[error(transparent)]
    Upstream(#[from] Upstream),
}

/// Drive as a port. `on_call` runs before each HTTP call (the job's rate limiter) and
/// says whether to make it: `false` (the run's deadline is near) ends the listing there,
/// as truncated.
pub trait DriveApi: Send + Sync {
    /// `files.get` of the `appDataFolder`: one call that shows the grant reaches the
    /// user's Drive.
    fn app_data_folder(&self, token: &AccessToken) -> impl Future<Output = Result<(), DriveError>> + Send;

    fn list_app_data<F, Fut>(
        &self,
        token: &AccessToken,
        on_call: F,
    ) -> impl Future<Output = Result<DriveListing, DriveError>> + Send
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = bool> + Send;
}

/// Drive over HTTPS with the one hardened client.
#[derive(Debug, Clone)]
pub struct HttpDrive {
    http: reqwest::Client,
    base: String,
    max_pages: u64,
    max_page_bytes: usize,
}

impl HttpDrive {
    /// `max_pages` (`DRIVE_MAX_PAGES`) and `max_page_bytes` (`DRIVE_MAX_PAGE_BYTES`) bound
    /// one listing: a user's folder is not the job's to read to the end at any cost, and
    /// no answer is held in memory past its bound.
    pub fn new(http: reqwest::Client, base: String, max_pages: u64, max_page_bytes: usize) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            max_pages: max_pages.max(1),
            max_page_bytes,
        }
    }
}

/// A Drive answer that is not a success, as the error it means.
fn refusal(status: http::StatusCode, retry_after: Option<std::time::Duration>, json: &serde_json::Value) -> DriveError {
    let reason = json
        .pointer("/error/errors/0/reason")
        .and_then(|r| r.as_str())
        .unwrap_or("unknown");
    if status == http::StatusCode::FORBIDDEN && RATE_LIMIT_REASONS.contains(&reason) {
        return DriveError::Upstream(Upstream::Unavailable {
            service: "google-drive",
            throttled: true,
            retry_after,
            detail: format!("HTTP 403 {reason}"),
        });
    }
    DriveError::Refused {
        status: status.as_u16(),
        reason: reason.to_owned(),
    }
}

impl DriveApi for HttpDrive {
    async fn app_data_folder(&self, token: &AccessToken) -> Result<(), DriveError> {
        let response = self
            .http
            .get(format!("{}/files/appDataFolder", self.base))
            .query(&[("fields", "id")])
            .bearer_auth(token.expose_secret())
            .send()
            .await;
        let (status, retry_after, json) = super::read_small_json_answer("google-drive", response).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(refusal(status, retry_after, &json))
        }
    }

    async fn list_app_data<F, Fut>(&self, token: &AccessToken, on_call: F) -> Result<DriveListing, DriveError>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = bool> + Send,
    {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            files: Vec<serde_json::Value>,
            next_page_token: Option<String>,
        }
        let mut listing = DriveListing::default();
        let mut page_token: Option<String> = None;
        let mut seen_tokens = std::collections::HashSet::new();
        loop {
            if !on_call().await {
                listing.truncated = true;
                return Ok(listing);
            }
            let mut query = vec![
                ("spaces", "appDataFolder"),
                ("pageSize", "100"),
                ("fields", "nextPageToken,files(id,name,modifiedTime)"),
            ];
            if let Some(t) = page_token.as_deref() {
                query.push(("pageToken", t));
            }
            let response = self
                .http
                .get(format!("{}/files", self.base))
                .query(&query)
                .bearer_auth(token.expose_secret())
                .send()
                .await;
            let Some((status, retry_after, json)) =
                super::read_json_answer("google-drive", response, self.max_page_bytes).await?
            else {
                // A page this large is not a page of an app's own files: stop here, and
                // say the listing is incomplete, rather than hold it in memory.
                tracing::warn!(limit = self.max_page_bytes, "Drive page over the size limit");
                listing.truncated = true;
                return Ok(listing);
            };
            if !status.is_success() {
                return Err(refusal(status, retry_after, &json));
            }
            let page: Page = serde_json::from_value(json)
                .map_err(|_| Upstream::unavailable("google-drive", "unexpected files.list answer"))?;
            listing.pages += 1;
            listing.files += page.files.len() as u64;
            match page.next_page_token.filter(|t| !t.is_empty()) {
                None => return Ok(listing),
                Some(next) if listing.pages >= self.max_pages || !seen_tokens.insert(next.clone()) => {
                    listing.truncated = true;
                    return Ok(listing);
                }
                Some(next) => page_token = Some(next),
            }
        }
    }
}
