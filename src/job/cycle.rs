//! The cycle an invocation of the offline job belongs to.

use std::time::Duration;

use crate::domain::ParseError;

/// The start of the period (`CYCLE_MINUTES`) that holds an invocation's scheduled time.
/// The schedule fires more often than cycles turn over, so an unfinished cycle is resumed
/// by the next invocation in its period, and a finished one makes the rest of the
/// period's invocations one-read no-ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleId(String);

impl CycleId {
    /// From an EventBridge scheduled event (`time`) or an EventBridge Scheduler input
    /// carrying `<aws.scheduler.scheduled-time>` as `scheduled_time`; both are RFC 3339.
    pub fn from_event(event: &serde_json::Value, period: Duration) -> Result<Self, ParseError> {
        let raw = ["scheduled_time", "scheduledTime", "time"]
            .iter()
            .find_map(|k| event.get(*k).and_then(|v| v.as_str()))
            .ok_or(ParseError(
                "the event carries no scheduled time (time or scheduled_time)",
            ))?;
        let at: jiff::Timestamp = raw
            .parse()
            .map_err(|_| ParseError("the scheduled time is not an RFC 3339 timestamp"))?;
        let period = i64::try_from(period.as_secs().max(60)).unwrap_or(i64::MAX);
        let start = at.as_second().div_euclid(period) * period;
        let start =
            jiff::Timestamp::from_second(start).map_err(|_| ParseError("the scheduled time is out of range"))?;
        Ok(Self(start.to_string()))
    }

    /// A cycle by name (tests, and manual runs that want a cycle of their own).
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > 64 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError("a cycle name is 1 to 64 printable ASCII characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_cycle_is_the_period_holding_the_scheduled_time() {
        let six_hours = Duration::from_secs(6 * 3_600);
        let eventbridge =
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-11-26T10:00:00Z"});
        let cycle = |e: &serde_json::Value| CycleId::from_event(e, six_hours).map(|c| c.0);
        assert_eq!(cycle(&eventbridge), Ok("2026-11-26T06:00:00Z".into()));
        // Every invocation within the period resumes the same cycle.
        for t in [
            "2026-11-26T06:00:00Z",
            "2026-11-26T08:15:00.123Z",
            "2026-11-26T11:59:59Z",
        ] {
            assert_eq!(
                cycle(&json!({"scheduled_time": t})),
                Ok("2026-11-26T06:00:00Z".into()),
                "{t}"
            );
        }
        assert_eq!(
            cycle(&json!({"scheduled_time": "2026-11-26T12:00:00Z"})),
            Ok("2026-11-26T12:00:00Z".into())
        );
        assert_eq!(
            cycle(&json!({"time": "2024-02-29T23:59:59Z"})),
            Ok("2024-02-29T18:00:00Z".into())
        );
        assert!(cycle(&json!({})).is_err());
        assert!(cycle(&json!({"time": "yesterday"})).is_err());
        assert!(cycle(&json!({"time": "2026-13-01T00:00:00Z"})).is_err());
    }
}
