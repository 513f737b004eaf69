//! Google Drive v3, the calls the offline job makes on a user's behalf: list the app's
//! hidden `appDataFolder` (`files.list` with `spaces=appDataFolder`, page after page, within
//! the bounds the job sets).
//! <https://developers.google.com/drive/api/guides/appdata>

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

/// Why Drive refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriveError {
    /// 401/403: the token or its scopes do not allow the call. Not retried.
    #[error("Drive refused the call: HTTP {status} {reason}")]
    Refused { status: u16, reason: String },
    #[error(transparent)]
    Upstream(#[from] Upstream),
}

/// Drive as a port. `on_call` runs before each HTTP call (the job's rate limiter) and
/// says whether to make it: `false` (the run's deadline is near) ends the listing there,
/// as truncated.
pub trait DriveApi: Send + Sync {
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

impl DriveApi for HttpDrive {
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
            let Some((status, _, json)) =
                super::read_json_answer("google-drive", response, self.max_page_bytes).await?
            else {
                // A page this large is not a page of an app's own files: stop here, and
                // say the listing is incomplete, rather than hold it in memory.
                tracing::warn!(limit = self.max_page_bytes, "Drive page over the size limit");
                listing.truncated = true;
                return Ok(listing);
            };
            if !status.is_success() {
                let reason = json
                    .pointer("/error/errors/0/reason")
                    .and_then(|r| r.as_str())
                    .unwrap_or("unknown")
                    .to_owned();
                return Err(DriveError::Refused {
                    status: status.as_u16(),
                    reason,
                });
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
