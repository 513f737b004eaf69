//! What the CLI prints: a table for a person, JSON with `--json`. Never a token or a
//! ciphertext: the library's types the CLI renders carry none it prints.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use offline_access::deletion::Deleted;
use offline_access::google::Revocation;
use offline_access::grant::health::{Health, Level, State};
use offline_access::job::Report;
use offline_access::operator::{GrantDetails, Revoked, Stats};
use offline_access::store::{Applied, Grant, ReencryptCheckpoint};
use serde_json::{Value, json};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(header.to_vec());
    // Wrap to the terminal when there is one of a usable width; else (piped, or a
    // terminal that reports no size) rows stay whole.
    if t.width().is_some_and(|w| w >= 60) {
        t.set_content_arrangement(ContentArrangement::Dynamic);
    }
    t
}

fn time(secs: Option<u64>) -> String {
    secs.map(offline_access::clock::rfc3339)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

fn json_time(secs: Option<u64>) -> Value {
    secs.map_or(Value::Null, |s| json!(time(Some(s))))
}

/// Scopes as their last path segment (`drive.appdata`, `userinfo.email`, `openid`).
fn short_scopes(grant: &Grant) -> String {
    grant
        .scopes
        .iter()
        .map(|s| s.rsplit('/').next().unwrap_or(s))
        .collect::<Vec<_>>()
        .join(" ")
}

fn grant_json(g: &Grant) -> Value {
    json!({
        "sub": g.sub.as_str(),
        "status": g.status.as_str(),
        "reason": g.status_reason,
        "likely_cause": g.likely_cause,
        "scopes": g.scopes.iter().collect::<Vec<_>>(),
        "client_id": g.client_id,
        "refresh_token": if g.refresh_token.is_some() { "held (sealed)" } else { "none" },
        "refresh_expires_at": json_time(g.refresh_expires_at),
        "token_issued_at": json_time(g.token_issued_at),
        "created_at": json_time(Some(g.created_at)),
        "updated_at": json_time(Some(g.updated_at)),
        "last_refresh_at": json_time(g.last_refresh_at),
        "last_sync_at": json_time(g.last_sync_at),
        "failure_count": g.failure_count,
        "next_attempt_at": json_time(g.next_attempt_at),
        "review_flags": g.review_flags,
        "version": g.version,
    })
}

pub fn grants(grants: &[Grant], json: bool) {
    if json {
        println!("{}", Value::Array(grants.iter().map(grant_json).collect()));
        return;
    }
    let mut t = table(&[
        "sub",
        "status",
        "reason",
        "scopes",
        "last refresh",
        "failures",
        "updated",
    ]);
    for g in grants {
        t.add_row(vec![
            g.sub.as_str().to_owned(),
            g.status.as_str().to_owned(),
            g.status_reason.clone().unwrap_or_else(|| "-".into()),
            short_scopes(g),
            time(g.last_refresh_at),
            g.failure_count.to_string(),
            time(Some(g.updated_at)),
        ]);
    }
    println!("{t}");
    println!("{} grant(s)", grants.len());
}

/// A level of health as `grants show --json` carries it.
fn level_json(l: &Level) -> Value {
    json!({
        "state": l.state.as_str(),
        "ok_at": json_time(l.ok_at),
        "failing_since": json_time(l.failing_since),
        "error": l.error,
    })
}

fn health_json(h: &Health) -> Value {
    json!({
        "refresh": level_json(&h.refresh),
        "api": level_json(&h.api),
        "scopes": {"state": h.scopes.state.as_str(), "granted": h.scopes.granted, "missing": h.scopes.missing},
    })
}

/// A level of health in words, for the table.
fn level_words(what: &str, l: &Level) -> String {
    match l.state {
        State::Ok => format!("ok: {what} worked at {}", time(l.ok_at)),
        State::Failing => format!(
            "FAILING since {} ({}); last worked {}",
            time(l.failing_since),
            l.error.as_deref().unwrap_or("-"),
            time(l.ok_at)
        ),
        State::Unknown => format!("unknown: no {what} yet"),
    }
}

fn health_words(h: &Health) -> [(&'static str, String); 3] {
    let scopes = if h.scopes.missing.is_empty() {
        "ok: every required scope granted".to_owned()
    } else {
        format!("MISSING {}", h.scopes.missing.join(" "))
    };
    [
        ("health: refresh", level_words("the refresh", &h.refresh)),
        ("health: api", level_words("a Drive call", &h.api)),
        ("health: scopes", scopes),
    ]
}

pub fn details(d: &GrantDetails, json: bool) {
    let g = &d.grant;
    let mut j = grant_json(g);
    j["email"] = json!(g.profile.email.as_ref().map(|e| e.as_str()));
    j["name"] = json!(g.profile.name);
    j["access_token_cached_until"] = json_time(d.access_token_expires_at);
    if json {
        j["health"] = health_json(&d.health);
        println!("{j}");
        return;
    }
    let mut t = table(&["field", "value"]);
    if let Value::Object(fields) = j {
        for (k, v) in fields {
            let shown = match v {
                Value::Null => "-".to_owned(),
                Value::String(s) => s,
                Value::Array(a) if a.is_empty() => "-".to_owned(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => other.to_string(),
            };
            t.add_row(vec![k, shown]);
        }
    }
    for (k, words) in health_words(&d.health) {
        t.add_row(vec![k.to_owned(), words]);
    }
    println!("{t}");
}

/// Rows that could not be read, named by `sub` on stderr: the listing went on past them.
pub fn malformed(subs: &[String]) {
    for sub in subs {
        eprintln!(
            "offline-access: the row of {sub} could not be read as a grant; skipped (the log says which attribute)"
        );
    }
}

pub fn stats(s: &Stats, json: bool) {
    if json {
        println!("{}", serde_json::to_value(s).unwrap_or_default());
        return;
    }
    let mut t = table(&["", "grants"]);
    t.add_row(vec!["all".to_owned(), s.grants.to_string()]);
    for (status, n) in &s.by_status {
        t.add_row(vec![format!("  {status}"), n.to_string()]);
    }
    t.add_row(vec!["active, last refresh failed".to_owned(), s.failing.to_string()]);
    for (level, counts) in [
        ("refresh", &s.health.refresh),
        ("api", &s.health.api),
        ("scopes", &s.health.scopes),
    ] {
        for (state, n) in counts {
            t.add_row(vec![format!("active, {level} {state}"), n.to_string()]);
        }
    }
    t.add_row(vec!["flagged by Google for review".to_owned(), s.flagged.to_string()]);
    t.add_row(vec!["time-limited access".to_owned(), s.time_limited.to_string()]);
    t.add_row(vec![
        "token stored before digests".to_owned(),
        s.without_token_digests.to_string(),
    ]);
    t.add_row(vec!["rows that could not be read".to_owned(), s.malformed.to_string()]);
    println!("{t}");
}

fn applied(a: Applied) -> &'static str {
    match a {
        Applied::Changed => "revoked",
        Applied::Unchanged => "left as it was (revoked, or being deleted, already)",
        Applied::NoGrant => "no grant",
    }
}

pub fn revoked(sub: &str, r: &Revoked, json: bool) {
    let google = match r.google {
        Some(Revocation::Revoked) => "revoked",
        Some(Revocation::AlreadyRevoked) => "already_revoked",
        None => "no token held",
    };
    if json {
        println!("{}", json!({"sub": sub, "google": google, "grant": applied(r.grant)}));
    } else {
        println!("{sub}: Google: {google}; grant: {}", applied(r.grant));
    }
}

pub fn deleted(d: &Deleted, json: bool) {
    if json {
        println!("{}", json!({"sub": d.sub.as_str(), "google": d.google.as_str()}));
    } else {
        println!("{}: deleted (tombstone kept); Google: {}", d.sub, d.google.as_str());
    }
}

pub fn reencrypted(c: &ReencryptCheckpoint, json: bool) {
    let j = json!({
        "target_key": c.target_key,
        "grants_scanned": c.scanned,
        "refresh_tokens_rewrapped": c.refresh_tokens,
        "access_tokens_rewrapped": c.access_tokens,
        "changed_meanwhile": c.changed_meanwhile,
        "unopened": c.unopened,
        "malformed_rows": c.malformed,
    });
    if json {
        println!("{j}");
        return;
    }
    let mut t = table(&["re-encryption", ""]);
    if let Value::Object(fields) = j {
        for (k, v) in fields {
            t.add_row(vec![
                k.replace('_', " "),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            ]);
        }
    }
    println!("{t}");
}

pub fn report(r: &Report, json: bool) {
    let value = serde_json::to_value(r).unwrap_or_default();
    if json {
        println!("{value}");
        return;
    }
    let mut t = table(&["job", ""]);
    if let Value::Object(fields) = value {
        for (k, v) in fields {
            t.add_row(vec![k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)]);
        }
    }
    println!("{t}");
}

pub fn value(what: &str, v: &Value, json: bool) {
    if json {
        println!("{v}");
    } else {
        println!("{what}: {}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

pub fn line(what: &str, text: &str, json: bool) {
    if json {
        println!("{}", json!({ what: text }));
    } else {
        println!("{what}: {text}");
    }
}

/// `doctor`'s checklist.
pub fn checklist(checks: &[offline_access::doctor::Check], json: bool) {
    use offline_access::doctor::Outcome;
    if json {
        let healthy = offline_access::doctor::healthy(checks);
        println!("{}", json!({"healthy": healthy, "checks": checks}));
        return;
    }
    let mut t = table(&["check", "", "found", "fix"]);
    for c in checks {
        let mark = match c.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "skipped",
        };
        t.add_row(vec![
            c.name.to_owned(),
            mark.to_owned(),
            c.detail.clone(),
            c.fix.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
}
