//! A grant's health (DESIGN §17): three levels, each read from what the grant already
//! holds — `refresh` (does Google still refresh it), `api` (does the Drive call work) and
//! `scopes` (has the user granted what the product needs, `REQUIRED_SCOPES`).
//!
//! Only a failing level is stored (`store::Failing`: since when, and the error's class);
//! a healthy one is its time of last success (`last_refresh_at`, `last_sync_at`), so a
//! healthy grant carries no attribute of health and a routine cycle writes none.
//! [`changes`] says which levels changed state between two images of a grant: the
//! events function publishes each as `GrantHealthChanged`.

use serde::Serialize;

use crate::domain::Scopes;
use crate::store::{Failing, Grant};

/// Where a level stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Failing,
    /// Nothing is known yet (never refreshed, or no Drive call made): not failing.
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failing => "failing",
            Self::Unknown => "unknown",
        }
    }
}

/// One level of health: when it last worked, since when it fails and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Level {
    pub state: State,
    pub ok_at: Option<u64>,
    pub failing_since: Option<u64>,
    /// A class (`unavailable`, `throttled`, `domain_policy`, ...), never Google's text.
    pub error: Option<String>,
}

impl Level {
    fn of(ok_at: Option<u64>, failing: Option<&Failing>) -> Self {
        let state = match (failing, ok_at) {
            (Some(_), _) => State::Failing,
            (None, Some(_)) => State::Ok,
            (None, None) => State::Unknown,
        };
        Self {
            state,
            ok_at,
            failing_since: failing.map(|f| f.since),
            error: failing.map(|f| f.error.clone()),
        }
    }
}

/// The scopes level: what the user granted, and what of `REQUIRED_SCOPES` is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeLevel {
    pub state: ScopeState,
    pub granted: Vec<String>,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeState {
    Ok,
    Missing,
}

impl ScopeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
        }
    }
}

/// A grant's three levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub refresh: Level,
    pub api: Level,
    pub scopes: ScopeLevel,
}

/// The health of `grant`, against the scopes the product needs.
pub fn health(grant: &Grant, required: &Scopes) -> Health {
    let missing = required.missing_from(&grant.scopes);
    Health {
        refresh: Level::of(grant.last_refresh_at, grant.refresh_failing.as_ref()),
        api: Level::of(grant.last_sync_at, grant.api_failing.as_ref()),
        scopes: ScopeLevel {
            state: if missing.is_empty() {
                ScopeState::Ok
            } else {
                ScopeState::Missing
            },
            granted: grant.scopes.iter().map(str::to_owned).collect(),
            missing,
        },
    }
}

/// A level that changed state: its name, and its state before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub level: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    /// The new error class of a failing level, or the scopes now missing.
    pub error: Option<String>,
    pub missing: Vec<String>,
}

/// The levels whose state changed from `old` to `new`: failing began or ended (`unknown`
/// becoming `ok` is a grant's first success, not news), or the required scopes missing
/// changed. A routine refresh changes none.
pub fn changes(old: Option<&Grant>, new: &Grant, required: &Scopes) -> Vec<Change> {
    let after = health(new, required);
    let before = old.map(|g| health(g, required));
    let mut changed = Vec::new();
    let levels = [
        ("refresh", before.as_ref().map(|h| &h.refresh), &after.refresh),
        ("api", before.as_ref().map(|h| &h.api), &after.api),
    ];
    for (level, was, now) in levels {
        let was_failing = was.is_some_and(|l| l.state == State::Failing);
        if was_failing != (now.state == State::Failing) {
            changed.push(Change {
                level,
                from: was.map_or(State::Unknown, |l| l.state).as_str(),
                to: now.state.as_str(),
                error: now.error.clone(),
                missing: Vec::new(),
            });
        }
    }
    // A first sign-in that lacks a scope is told by its 200 (`missing_scopes`), not here.
    if let Some(before) = &before
        && before.scopes.missing != after.scopes.missing
    {
        changed.push(Change {
            level: "scopes",
            from: before.scopes.state.as_str(),
            to: after.scopes.state.as_str(),
            error: None,
            missing: after.scopes.missing.clone(),
        });
    }
    changed
}

/// Why a grant's end can be predicted.
pub mod ends {
    /// Time-based access: the user granted access until `refresh_token_expires_in`.
    pub const TIME_LIMITED_ACCESS: &str = "time_limited_access";
    /// The OAuth consent screen is an External app in Testing status
    /// (`GOOGLE_CONSENT_TESTING`): Google ends refresh tokens with more than name, email
    /// and profile seven days after they were issued.
    pub const CONSENT_SCREEN_IN_TESTING: &str = "consent_screen_in_testing";
}

/// How long a Testing-mode refresh token lives.
pub const TESTING_TOKEN_LIFETIME_SECS: u64 = 7 * 86_400;

/// The scopes a Testing-mode token may hold and still not end after seven days.
const BASIC_SCOPES: [&str; 5] = [
    "openid",
    "email",
    "profile",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
];

/// The earliest end of `grant` that can be predicted, and why: its time-based access, and
/// with `consent_testing` (the consent screen is in Testing), seven days after its token
/// was issued when it holds more than the basic scopes.
pub fn predicted_end(grant: &Grant, consent_testing: bool) -> Option<(u64, &'static str)> {
    let limited = grant.refresh_expires_at.map(|at| (at, ends::TIME_LIMITED_ACCESS));
    let testing = (consent_testing && grant.scopes.iter().any(|s| !BASIC_SCOPES.contains(&s))).then(|| {
        let issued = grant.token_issued_at.unwrap_or(grant.created_at);
        (
            issued.saturating_add(TESTING_TOKEN_LIFETIME_SECS),
            ends::CONSENT_SCREEN_IN_TESTING,
        )
    });
    [limited, testing].into_iter().flatten().min_by_key(|(at, _)| *at)
}

/// The end to announce now (`GrantExpiring`): a predicted end within `notice` of `now`,
/// still ahead, and not announced before.
pub fn end_to_announce(grant: &Grant, consent_testing: bool, notice: u64, now: u64) -> Option<(u64, &'static str)> {
    let (at, reason) = predicted_end(grant, consent_testing)?;
    let near = at > now && at - now <= notice;
    let announced = grant.expiring.as_ref().is_some_and(|e| e.at == at);
    (near && !announced).then_some((at, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIVE: &str = "https://www.googleapis.com/auth/drive.appdata";

    fn grant(scopes: &str) -> Grant {
        crate::store::sample_grant(scopes, 1_000)
    }

    fn failing(since: u64, error: &str) -> Option<Failing> {
        Some(Failing {
            since,
            error: error.into(),
        })
    }

    #[test]
    fn each_level_reads_from_what_the_grant_holds() {
        let required = Scopes::from_space_delimited(DRIVE);
        let mut g = grant("openid");
        let h = health(&g, &required);
        assert_eq!((h.refresh.state, h.api.state), (State::Unknown, State::Unknown));
        assert_eq!(
            (h.scopes.state, h.scopes.missing.as_slice()),
            (ScopeState::Missing, [DRIVE.to_owned()].as_slice())
        );

        g.last_refresh_at = Some(2_000);
        g.last_sync_at = Some(1_500);
        g.api_failing = failing(1_900, "domain_policy");
        g.scopes = Scopes::from_space_delimited(&format!("openid {DRIVE}"));
        let h = health(&g, &required);
        assert_eq!(h.refresh.state, State::Ok);
        assert_eq!(h.refresh.ok_at, Some(2_000));
        assert_eq!(
            (h.api.state, h.api.ok_at, h.api.failing_since, h.api.error.as_deref()),
            (State::Failing, Some(1_500), Some(1_900), Some("domain_policy"))
        );
        assert_eq!(h.scopes.state, ScopeState::Ok);
        assert!(
            health(&g, &Scopes::default()).scopes.missing.is_empty(),
            "nothing required"
        );
    }

    #[test]
    fn only_a_change_of_failing_or_of_the_missing_scopes_is_news() {
        let required = Scopes::from_space_delimited(DRIVE);
        let mut old = grant(&format!("openid {DRIVE}"));
        let mut new = old.clone();
        new.last_refresh_at = Some(2_000);
        assert!(changes(Some(&old), &new, &required).is_empty(), "a first success");
        old = new.clone();
        new.last_refresh_at = Some(3_000);
        assert!(changes(Some(&old), &new, &required).is_empty(), "a routine refresh");

        new.refresh_failing = failing(3_100, "unavailable");
        let c = changes(Some(&old), &new, &required);
        assert_eq!(
            c.iter()
                .map(|c| (c.level, c.from, c.to, c.error.as_deref()))
                .collect::<Vec<_>>(),
            [("refresh", "ok", "failing", Some("unavailable"))]
        );
        old = new.clone();
        new.refresh_failing = failing(3_100, "throttled");
        assert!(changes(Some(&old), &new, &required).is_empty(), "still failing");
        old = new.clone();
        new.refresh_failing = None;
        new.last_refresh_at = Some(4_000);
        new.scopes = Scopes::from_space_delimited("openid");
        let c = changes(Some(&old), &new, &required);
        assert_eq!(
            c.iter().map(|c| (c.level, c.from, c.to)).collect::<Vec<_>>(),
            [("refresh", "failing", "ok"), ("scopes", "ok", "missing")]
        );
        assert_eq!(c[1].missing, [DRIVE.to_owned()]);
        assert!(
            changes(None, &new, &required).is_empty(),
            "a first sign-in says it in its answer"
        );
    }

    #[test]
    fn an_end_is_announced_once_within_the_notice_and_never_after_it() {
        const DAY: u64 = 86_400;
        const T0: u64 = 1_800_000_000;
        let notice = 3 * DAY;
        let mut g = grant(&format!("openid {DRIVE}"));
        g.token_issued_at = Some(T0);
        assert_eq!(predicted_end(&g, false), None, "lasting access, published app");
        assert_eq!(
            predicted_end(&g, true),
            Some((T0 + 7 * DAY, ends::CONSENT_SCREEN_IN_TESTING))
        );
        let mut basic = grant("openid email profile");
        basic.token_issued_at = Some(T0);
        assert_eq!(predicted_end(&basic, true), None, "basic scopes do not end in Testing");
        g.refresh_expires_at = Some(T0 + 2 * DAY);
        assert_eq!(
            predicted_end(&g, true),
            Some((T0 + 2 * DAY, ends::TIME_LIMITED_ACCESS)),
            "the earlier"
        );

        let end = T0 + 2 * DAY;
        assert_eq!(end_to_announce(&g, false, notice, end - notice - 1), None, "not yet");
        assert_eq!(
            end_to_announce(&g, false, notice, end - notice),
            Some((end, ends::TIME_LIMITED_ACCESS))
        );
        g.expiring = Some(crate::store::Expiring {
            at: end,
            reason: ends::TIME_LIMITED_ACCESS.into(),
        });
        assert_eq!(end_to_announce(&g, false, notice, end - 10), None, "once");
        g.refresh_expires_at = Some(end + DAY);
        assert_eq!(
            end_to_announce(&g, false, notice, end - 10),
            Some((end + DAY, ends::TIME_LIMITED_ACCESS)),
            "a new end (a new consent) is announced afresh"
        );
        g.expiring = None;
        assert_eq!(end_to_announce(&g, false, notice, end + DAY), None, "already over");
    }
}
