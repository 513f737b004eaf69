//! Google's `Retry-After` as this process remembers it, beside the copy in the grant's
//! cache item. The copy in the table holds for every caller; this one holds for the callers
//! this process serves when the table's copy could not be written (a store that failed is
//! often why Google's answer came late) — so no caller goes to Google before it ends.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::domain::GoogleSubject;

/// The most grants remembered; past it, ended entries are dropped first, and a grant that
/// finds no room is held by the table's copy alone.
const MAX_REMEMBERED: usize = 4_096;

/// Per grant, until when (Unix seconds) Google asked not to be called.
#[derive(Debug, Default)]
pub struct HeldOff {
    until: Mutex<HashMap<GoogleSubject, u64>>,
}

impl HeldOff {
    /// Remembers that Google asked not to be called for `sub` before `until`.
    pub fn note(&self, sub: &GoogleSubject, until: u64, now: u64) {
        let mut held = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        if held.len() >= MAX_REMEMBERED && !held.contains_key(sub) {
            held.retain(|_, at| *at > now);
            if held.len() >= MAX_REMEMBERED {
                return;
            }
        }
        let at = held.entry(sub.clone()).or_default();
        *at = (*at).max(until);
    }

    /// Until when `sub` is held off, if that is after `now`.
    pub fn until(&self, sub: &GoogleSubject, now: u64) -> Option<u64> {
        let held = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(sub).copied().filter(|at| *at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(n: usize) -> GoogleSubject {
        GoogleSubject::parse(&format!("{}", 1_000 + n)).expect("sub")
    }

    #[test]
    fn a_grant_is_held_off_until_the_latest_end_it_was_given() {
        let held = HeldOff::default();
        held.note(&sub(1), 140, 100);
        held.note(&sub(1), 120, 100);
        assert_eq!(held.until(&sub(1), 100), Some(140));
        assert_eq!(held.until(&sub(1), 140), None, "ended");
        assert_eq!(held.until(&sub(2), 100), None, "another grant");
    }

    #[test]
    fn it_stays_bounded_and_drops_ended_entries_first() {
        let held = HeldOff::default();
        for n in 0..MAX_REMEMBERED {
            held.note(&sub(n), 150, 100);
        }
        held.note(&sub(MAX_REMEMBERED), 150, 100);
        assert_eq!(held.until(&sub(MAX_REMEMBERED), 100), None, "no room");
        // Once the others ended, a new one finds room.
        held.note(&sub(MAX_REMEMBERED), 300, 200);
        assert_eq!(held.until(&sub(MAX_REMEMBERED), 200), Some(300));
        assert_eq!(held.until.lock().map(|h| h.len()).unwrap_or_default(), 1);
    }
}
