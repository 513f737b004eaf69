//! CloudWatch metrics in Embedded Metric Format: one JSON line on stdout that the
//! Lambda log agent turns into metrics, with no API call and no extra latency
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).

use serde_json::{Map, Value, json};

use super::{Count, Report};

/// The namespace of every metric.
pub const NAMESPACE: &str = "OfflineAccess";

/// The EMF document for a run's report: every counter that names a metric, and the
/// run's duration.
pub fn job_report_emf(report: &Report, timestamp_ms: u64) -> Value {
    let counts: Vec<(&str, u64)> = Count::ALL
        .iter()
        .filter_map(|&c| c.metric().map(|name| (name, report.count(c))))
        .collect();
    let mut metrics: Vec<Value> = counts
        .iter()
        .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
        .collect();
    metrics.push(json!({"Name": "Duration", "Unit": "Milliseconds"}));
    metrics.push(json!({"Name": "BudgetExhausted", "Unit": "Count"}));
    metrics.push(json!({"Name": "Misconfigured", "Unit": "Count"}));
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Function"]], "Metrics": metrics}],
        }),
    );
    doc.insert("Function".into(), json!("refresher"));
    for (name, value) in counts {
        doc.insert(name.into(), json!(value));
    }
    doc.insert("Duration".into(), json!(report.duration_ms));
    doc.insert("BudgetExhausted".into(), json!(u8::from(report.budget_exhausted)));
    doc.insert("Misconfigured".into(), json!(u8::from(report.stopped_for.is_some())));
    if let Some(cause) = &report.stopped_for {
        doc.insert("StoppedFor".into(), json!(cause));
    }
    doc.insert("Cycle".into(), json!(report.cycle));
    doc.insert("Complete".into(), json!(report.complete));
    Value::Object(doc)
}

/// The Google quota units the job spent since the last such line: emitted each minute of
/// a run and at its end, so `QuotaUnits` summed per minute is the units spent per minute.
pub fn quota_units_emf(units: u64, timestamp_ms: u64) -> Value {
    count_emf("refresher", "QuotaUnits", units, timestamp_ms)
}

/// One count of one function, as its own EMF document.
pub fn count_emf(function: &str, name: &str, value: u64, timestamp_ms: u64) -> Value {
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Function"]],
                                   "Metrics": [{"Name": name, "Unit": "Count"}]}],
        }),
    );
    doc.insert("Function".into(), json!(function));
    doc.insert(name.into(), json!(value));
    Value::Object(doc)
}

/// Now, in milliseconds since the Unix epoch (an EMF document's `Timestamp`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Writes the document as one line on stdout, where the Lambda agent reads EMF.
pub fn emit(doc: &Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{doc}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_has_a_value() {
        let report = Report {
            refreshed: 3,
            revoked: 1,
            duration_ms: 40,
            ..Report::default()
        };
        let doc = job_report_emf(&report, 1_800_000_000_000);
        let declared = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(declared.len(), 18);
        for metric in declared {
            let name = metric["Name"].as_str().unwrap_or_default();
            assert!(doc[name].is_number(), "{name}");
        }
        assert_eq!((doc["Refreshed"].as_u64(), doc["Revoked"].as_u64()), (Some(3), Some(1)));
        assert_eq!(doc["Misconfigured"], json!(0));
        assert!(doc.get("StoppedFor").is_none());
    }

    #[test]
    fn a_stopped_run_is_one_misconfigured_and_says_why() {
        let report = Report {
            stopped_for: Some("google-token refused our configuration (deleted_client: ...)".into()),
            ..Report::default()
        };
        let doc = job_report_emf(&report, 1_800_000_000_000);
        assert_eq!(doc["Misconfigured"], json!(1));
        assert!(doc["StoppedFor"].as_str().is_some_and(|s| s.contains("deleted_client")));
    }
}
