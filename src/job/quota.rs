//! Google's quota as the job spends it (DESIGN §15): what each call costs in units, what
//! Drive work a grant gets (`DRIVE_SYNC`), and the day's budget, counted across
//! invocations in the state table.
//!
//! Drive counts quota in units per minute per project (on projects created since May
//! 2026, `files.list` 100 and `files.get` 5) and bills past a daily threshold. The job
//! paces every call by its units (the run's [`super::Pacer`]) and stops cleanly when the
//! day's budget ([`DailyBudget`]) is spent.

use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::Mutex;

use crate::store::{JobStore, StoreError};

/// A call the job makes to Google.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoogleCall {
    /// The token endpoint's refresh grant.
    Refresh,
    /// The revocation endpoint (a deletion the job finishes).
    Revoke,
    /// Drive `files.get` of the `appDataFolder`.
    FilesGet,
    /// One page of Drive `files.list` in the `appDataFolder`.
    FilesList,
}

/// What each call costs, in units (`GOOGLE_UNITS_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaCosts {
    pub refresh: u32,
    pub revoke: u32,
    pub files_get: u32,
    pub files_list: u32,
}

impl Default for QuotaCosts {
    /// Drive's published costs; the OAuth endpoints are not priced in Drive units, and
    /// count 1 so that a refresh-only run is paced too.
    fn default() -> Self {
        Self {
            refresh: 1,
            revoke: 1,
            files_get: 5,
            files_list: 100,
        }
    }
}

impl QuotaCosts {
    pub fn units(&self, call: GoogleCall) -> u32 {
        match call {
            GoogleCall::Refresh => self.refresh,
            GoogleCall::Revoke => self.revoke,
            GoogleCall::FilesGet => self.files_get,
            GoogleCall::FilesList => self.files_list,
        }
    }

    /// The dearest single call: the pacer's burst, so that any call fits in it.
    pub fn largest(&self) -> u32 {
        self.refresh.max(self.revoke).max(self.files_get).max(self.files_list)
    }

    /// Units one grant with `drive.appdata` costs per cycle at least (one page for
    /// `list`): what a grant reserves of the day's budget before it starts.
    pub fn per_grant(&self, sync: DriveSync, has_drive_scope: bool) -> u64 {
        let drive = match (sync, has_drive_scope) {
            (_, false) | (DriveSync::Off, _) => 0,
            (DriveSync::Get, true) => self.files_get,
            (DriveSync::List, true) => self.files_list,
        };
        u64::from(self.refresh) + u64::from(drive)
    }
}

/// `DRIVE_SYNC`: the Drive work each grant with `drive.appdata` gets per cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriveSync {
    /// `files.get('appDataFolder')`: one call, the seed's proof that the grant reaches
    /// the user's Drive.
    #[default]
    Get,
    /// `files.list` of the `appDataFolder`, every page (up to `DRIVE_MAX_PAGES`).
    List,
    /// Refresh only.
    Off,
}

impl DriveSync {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Off => "off",
        }
    }
}

impl FromStr for DriveSync {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "get" => Ok(Self::Get),
            "list" => Ok(Self::List),
            "off" => Ok(Self::Off),
            _ => Err(()),
        }
    }
}

/// The quota day a moment falls in, as `YYYY-MM-DD` in Google's quota time zone (Google
/// resets daily quotas at midnight Pacific time).
pub fn quota_day(now_unix: u64, zone: &TimeZone) -> String {
    let at = Timestamp::from_second(i64::try_from(now_unix).unwrap_or(i64::MAX)).unwrap_or(Timestamp::UNIX_EPOCH);
    zone.to_datetime(at).date().to_string()
}

/// The day's budget as one run spends it. The count lives in the state table
/// (`quota#<day>`); the run claims it in blocks, so it writes there once per block, not
/// once per call, and gives back what it did not spend when it ends. A run that dies
/// loses its unspent block: the count errs on the side of spending less.
#[derive(Debug)]
pub struct DailyBudget {
    /// Units a day (`GOOGLE_DAILY_UNIT_BUDGET`); 0 is no daily budget.
    limit: u64,
    block: u64,
    zone: TimeZone,
    /// How long a day's count is kept (Unix seconds past the claim).
    keep_secs: u64,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    day: String,
    left: u64,
    exhausted_day: Option<String>,
}

impl DailyBudget {
    pub fn new(limit: u64, block: u64, zone: TimeZone) -> Self {
        Self {
            limit,
            block: block.clamp(1, limit.max(1)),
            zone,
            keep_secs: 3 * 86_400,
            held: Mutex::new(Held::default()),
        }
    }

    /// Takes `units` from the day's budget at `now`; `Ok(false)` when the day's budget
    /// cannot cover them (nothing is taken then). Taking 0 asks whether anything is left.
    pub async fn take(&self, store: &impl JobStore, units: u64, now: u64) -> Result<bool, StoreError> {
        if self.limit == 0 {
            return Ok(true);
        }
        let day = quota_day(now, &self.zone);
        let mut held = self.held.lock().await;
        if held.day != day {
            // The day turned over mid-run: what is left was claimed on the old day.
            let (old, left) = (
                std::mem::replace(&mut held.day, day.clone()),
                std::mem::take(&mut held.left),
            );
            if left > 0 && !old.is_empty() {
                store.return_units(&old, left).await?;
            }
        }
        if held.exhausted_day.as_deref() == Some(day.as_str()) {
            return Ok(false);
        }
        let need = units.max(1);
        while held.left < need {
            let want = self.block.max(need - held.left);
            let granted = store.claim_units(&day, want, self.limit, now + self.keep_secs).await?;
            held.left += granted;
            if granted < want {
                if held.left < need {
                    held.exhausted_day = Some(day);
                    return Ok(false);
                }
                break;
            }
        }
        held.left -= units;
        Ok(true)
    }

    /// Returns to the run's share units taken and not spent.
    pub async fn give_back(&self, units: u64) {
        if self.limit > 0 && units > 0 {
            self.held.lock().await.left += units;
        }
    }

    /// Gives back what was claimed and not spent — unless the budget refused work today:
    /// then what is left is too little for a grant, and keeping it marks the day spent,
    /// so the next invocation today does nothing, not even a scan.
    pub async fn settle(&self, store: &impl JobStore) -> Result<(), StoreError> {
        let mut held = self.held.lock().await;
        let left = std::mem::take(&mut held.left);
        if left > 0 && held.exhausted_day.as_ref() != Some(&held.day) {
            store.return_units(&held.day, left).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_sync_parses_its_three_modes_only() {
        assert_eq!("get".parse(), Ok(DriveSync::Get));
        assert_eq!(" LIST ".parse(), Ok(DriveSync::List));
        assert_eq!("off".parse(), Ok(DriveSync::Off));
        assert_eq!("all".parse::<DriveSync>(), Err(()));
    }

    #[test]
    fn a_grant_costs_its_refresh_and_its_first_drive_call() {
        let costs = QuotaCosts::default();
        assert_eq!(costs.per_grant(DriveSync::Get, true), 6);
        assert_eq!(costs.per_grant(DriveSync::List, true), 101);
        assert_eq!(costs.per_grant(DriveSync::Off, true), 1);
        assert_eq!(costs.per_grant(DriveSync::List, false), 1);
        assert_eq!(costs.largest(), 100);
    }

    #[test]
    fn the_quota_day_turns_at_midnight_pacific() {
        let pacific = TimeZone::posix("PST8PDT,M3.2.0,M11.1.0").expect("zone");
        // 2026-11-27 07:59:59 UTC is 23:59:59 PST on the 26th; a second later it is the 27th.
        assert_eq!(quota_day(1_795_766_399, &pacific), "2026-11-26");
        assert_eq!(quota_day(1_795_766_400, &pacific), "2026-11-27");
        // In summer (PDT) the day turns at 07:00 UTC.
        assert_eq!(quota_day(1_783_666_800, &pacific), "2026-07-10");
        assert_eq!(quota_day(1_783_666_799, &pacific), "2026-07-09");
    }
}
