//! `template.yaml` against the code: each function's IAM policy allows exactly what its
//! code calls (`offline_access::permissions`), every KMS grant is conditioned, and the
//! environment the template sets names only variables the function's config reads.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::collections::BTreeSet;

use offline_access::config::vars::{self, ACCESS_TOKEN, COMMON, EVENTS, HEALTH, JOB, SIGN_IN};
use offline_access::crypto::{Purpose, encryption_context};
use offline_access::permissions::{self, Permission};
use serde_yaml_ng::Value;
use test_support::iam::{list, referenced, template};

fn function<'a>(template: &'a Value, id: &str) -> &'a Value {
    template["Resources"]
        .get(id)
        .and_then(|r| r.get("Properties"))
        .unwrap_or_else(|| panic!("{id} in template"))
}

/// Every (resource, action) the function's inline policies allow, checking on the way
/// that each KMS statement carries a condition.
fn allowed(props: &Value) -> BTreeSet<(String, String)> {
    let mut allowed = BTreeSet::new();
    for policy in list(&props["Policies"]) {
        for statement in list(&policy["Statement"]) {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"));
            let actions: Vec<&str> = list(&statement["Action"])
                .into_iter()
                .filter_map(Value::as_str)
                .collect();
            for action in &actions {
                assert!(!action.contains('*'), "wildcard action {action}");
                if action.starts_with("kms:") {
                    assert!(statement.get("Condition").is_some(), "{action} without a condition");
                }
            }
            for resource in list(&statement["Resource"]) {
                for action in &actions {
                    allowed.insert((referenced(resource), (*action).to_owned()));
                }
            }
        }
    }
    allowed
}

fn expected(permissions: &[Permission]) -> BTreeSet<(String, String)> {
    permissions
        .iter()
        .map(|p| (p.resource.to_owned(), p.action.to_owned()))
        .collect()
}

#[test]
fn each_functions_policy_allows_exactly_what_its_code_calls() {
    let template = template();
    assert_eq!(
        allowed(function(&template, "AuthCodeFunction")),
        expected(permissions::SIGN_IN)
    );
    assert_eq!(
        allowed(function(&template, "RefresherFunction")),
        expected(permissions::JOB)
    );
    assert_eq!(
        allowed(function(&template, "AccessTokenFunction")),
        expected(permissions::ACCESS_TOKEN)
    );
    assert_eq!(
        allowed(function(&template, "EventsFunction")),
        expected(permissions::EVENTS)
    );
    assert_eq!(
        allowed(function(&template, "ParkedSignInFunction")),
        expected(permissions::PARKED_SIGN_IN)
    );
}

#[test]
fn callers_get_a_managed_policy_that_invokes_the_access_token_function_and_nothing_else() {
    let template = template();
    let policy = function(&template, "AccessTokenInvokePolicy");
    let statements = list(&policy["PolicyDocument"]["Statement"]);
    assert_eq!(statements.len(), 1);
    assert_eq!(
        list(&statements[0]["Action"])[0].as_str(),
        Some("lambda:InvokeFunction")
    );
    assert_eq!(referenced(&statements[0]["Resource"]), "AccessTokenFunction");
    let outputs = &template["Outputs"];
    assert_eq!(
        referenced(&outputs["AccessTokenFunctionArn"]["Value"]),
        "AccessTokenFunction"
    );
    assert_eq!(
        referenced(&outputs["AccessTokenInvokePolicyArn"]["Value"]),
        "AccessTokenInvokePolicy"
    );
    let access = function(&template, "AccessTokenFunction");
    assert!(access.get("Events").is_none(), "no API route or trigger: only Invoke");
}

#[test]
fn the_kms_data_key_grants_are_conditioned_on_the_purposes_each_function_uses() {
    let template = template();
    for (id, purposes) in [
        ("AuthCodeFunction", permissions::SIGN_IN_PURPOSES),
        ("ParkedSignInFunction", permissions::PARKED_SIGN_IN_PURPOSES),
        ("RefresherFunction", permissions::JOB_PURPOSES),
        ("AccessTokenFunction", permissions::ACCESS_TOKEN_PURPOSES),
    ] {
        let statements: Vec<Value> = list(&function(&template, id)["Policies"])
            .into_iter()
            .flat_map(|p| list(&p["Statement"]).into_iter().cloned().collect::<Vec<_>>())
            .collect();
        let data_key = statements
            .iter()
            .find(|s| {
                list(&s["Action"])
                    .iter()
                    .any(|a| a.as_str() == Some("kms:GenerateDataKey"))
            })
            .unwrap_or_else(|| panic!("{id} generates data keys"));
        // Every function also opens what it seals under those purposes (sign-in's function
        // opens a refresh token to revoke it on deletion): a Decrypt allowed only through
        // DynamoDB and Secrets Manager would refuse it.
        let actions: BTreeSet<&str> = list(&data_key["Action"])
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(actions, BTreeSet::from(["kms:Decrypt", "kms:GenerateDataKey"]), "{id}");
        let allowed: BTreeSet<&str> = list(&data_key["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"])
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        // What the code sends as the context's purpose, for each purpose it uses.
        let used: BTreeSet<String> = purposes
            .iter()
            .filter_map(|p| encryption_context(*p, "t").get("purpose").cloned())
            .collect();
        let used: BTreeSet<&str> = used.iter().map(String::as_str).collect();
        assert_eq!(allowed, used, "{id}");
    }
    assert_eq!(permissions::SIGN_IN_PURPOSES, [Purpose::RefreshToken]);
}

#[test]
fn the_environment_the_template_sets_is_read_by_each_functions_config() {
    let template = template();
    let required = ["GRANTS_TABLE", "STATE_TABLE", "CLIENT_SECRET_ID", "TOKEN_KEY_ID"];
    let groups: [(&str, &[&vars::Group]); 4] = [
        ("AuthCodeFunction", &[&SIGN_IN, &HEALTH]),
        ("ParkedSignInFunction", &[&SIGN_IN, &HEALTH]),
        ("RefresherFunction", &[&JOB]),
        ("AccessTokenFunction", &[&ACCESS_TOKEN]),
    ];
    for (id, own) in groups {
        let set: BTreeSet<String> = function(&template, id)["Environment"]["Variables"]
            .as_mapping()
            .expect("variables")
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        let read: BTreeSet<String> = COMMON
            .names()
            .chain(own.iter().flat_map(|g| g.names()))
            .map(str::to_owned)
            .collect();
        let unknown: Vec<&String> = set.difference(&read).collect();
        assert!(
            unknown.is_empty(),
            "{id} sets variables its config never reads: {unknown:?}"
        );
        for name in required {
            assert!(set.contains(name), "{id} does not set the required {name}");
        }
    } // The events function reads its own variables (but the retired one) and the scopes
    // health is measured against, and none of the others.
    let set: BTreeSet<&str> = function(&template, "EventsFunction")["Environment"]["Variables"]
        .as_mapping()
        .expect("variables")
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    let expected: BTreeSet<&str> = EVENTS
        .names()
        .filter(|n| *n != "REFRESH_FAILING_AFTER")
        .chain(HEALTH.names())
        .collect();
    assert_eq!(set, expected);
}

#[test]
fn every_output_the_operator_cli_reads_is_in_the_template() {
    let template = template();
    for (output, _) in offline_access::config::STACK_OUTPUTS {
        assert!(
            template["Outputs"].get(output).is_some(),
            "template.yaml has no output {output}"
        );
    }
}

#[test]
fn the_grants_stream_feeds_the_events_function_in_order_retried_for_hours_and_what_it_gives_up_is_kept() {
    let template = template();
    let table = function(&template, "GrantsTable");
    assert_eq!(
        table["StreamSpecification"]["StreamViewType"].as_str(),
        Some("NEW_AND_OLD_IMAGES")
    );
    let source = &function(&template, "EventsFunction")["Events"]["GrantChanges"];
    assert_eq!(source["Type"].as_str(), Some("DynamoDB"));
    let props = &source["Properties"];
    assert_eq!(referenced(&props["Stream"]), "GrantsTable");
    assert_eq!(props["BisectBatchOnFunctionError"].as_bool(), Some(true));
    // Retried until the record is six hours old (an EventBridge outage of hours loses
    // nothing), and the function keeps a record's events itself before then.
    assert_eq!(props["MaximumRetryAttempts"].as_i64(), Some(-1));
    let max_age = props["MaximumRecordAgeInSeconds"].as_u64().expect("a record age bound");
    assert_eq!(max_age, 21_600);
    let env = &function(&template, "EventsFunction")["Environment"]["Variables"];
    assert_eq!(referenced(&env["EVENTS_FAILURE_QUEUE_URL"]), "EventsFailures");
    let give_up: u64 = env["EVENTS_GIVE_UP_SECS"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("EVENTS_GIVE_UP_SECS");
    assert!(
        give_up + 600 <= max_age,
        "kept by the function before Lambda gives up on it"
    );
    let types: Vec<&str> = list(&props["FunctionResponseTypes"])
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(types, ["ReportBatchItemFailures"]);
    assert_eq!(
        referenced(&props["DestinationConfig"]["OnFailure"]["Destination"]),
        "EventsFailures"
    );
    // The example consumer ships disabled.
    let rule = function(&template, "RevokedGrantsExampleRule");
    assert_eq!(rule["State"].as_str(), Some("DISABLED"));
    assert_eq!(referenced(&rule["EventBusName"]), "EventBus");
}

#[test]
fn cors_is_off_unless_origins_are_listed_and_then_allows_only_the_two_routes_methods_and_headers() {
    let template = template();
    assert_eq!(template["Parameters"]["AllowedOrigins"]["Default"].as_str(), Some(""));
    let Value::Tagged(cors) = &function(&template, "HttpApi")["CorsConfiguration"] else {
        panic!("CorsConfiguration is an !If on the origins parameter");
    };
    assert_eq!(cors.tag, "If");
    let branches = list(&cors.value);
    assert_eq!(branches[0].as_str(), Some("HasAllowedOrigins"));
    let on = branches[1];
    let Value::Tagged(split) = &on["AllowOrigins"] else {
        panic!("AllowOrigins splits the comma list of the parameter");
    };
    assert_eq!(split.tag, "Split");
    assert_eq!(referenced(list(&split.value)[1]), "AllowedOrigins");
    let methods: Vec<_> = list(&on["AllowMethods"]).iter().filter_map(|m| m.as_str()).collect();
    let headers: Vec<_> = list(&on["AllowHeaders"]).iter().filter_map(|h| h.as_str()).collect();
    assert_eq!(methods, ["POST", "DELETE"]);
    assert_eq!(headers, ["authorization", "content-type", "x-requested-with"]);
    assert_eq!(referenced(branches[2]), "AWS::NoValue");
}

/// The job dashboard is valid JSON once CloudFormation substitutes it, and shows only
/// metrics the job emits: a metric renamed in code would otherwise leave an empty graph.
#[test]
fn the_job_dashboard_parses_and_shows_only_metrics_the_job_emits() {
    use offline_access::job::{Count, Report};
    let template = template();
    let body = function(&template, "JobDashboard")["DashboardBody"].clone();
    let Value::Tagged(sub) = body else {
        panic!("DashboardBody is a !Sub")
    };
    let mut json = sub.value.as_str().expect("a string").to_owned();
    for (name, stand_in) in [
        ("${AWS::Region}", "eu-west-1"),
        ("${GoogleQuotaUnitsPerMin}", "200000"),
        ("${AuthCodeFunction}", "auth-code"),
        ("${RefresherFunction}", "refresher"),
    ] {
        json = json.replace(name, stand_in);
    }
    assert!(!json.contains("${"), "an unknown substitution: {json}");
    let dashboard: serde_json::Value = serde_json::from_str(&json).expect("the dashboard is JSON");

    let report = offline_access::job::metrics::job_report_emf(&Report::default(), 0);
    let minute = offline_access::job::metrics::quota_units_emf(0, 0);
    let emitted: BTreeSet<String> = [report, minute]
        .iter()
        .flat_map(|doc| {
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|m| m["Name"].as_str().map(str::to_owned))
        .collect();
    assert!(emitted.contains("QuotaUnits") && emitted.contains("BudgetExhausted"));
    assert!(
        Count::ALL
            .iter()
            .filter_map(|c| c.metric())
            .all(|m| emitted.contains(m))
    );
    let mut shown = 0;
    for widget in dashboard["widgets"].as_array().expect("widgets") {
        let mut namespace = String::new();
        for metric in widget["properties"]["metrics"].as_array().expect("metrics") {
            let row = metric.as_array().expect("a metric row");
            if let Some(ns) = row[0].as_str().filter(|ns| *ns != ".") {
                namespace = ns.to_owned();
            }
            if namespace == "OfflineAccess" {
                let name = row[1].as_str().expect("a metric name");
                assert!(
                    emitted.contains(name),
                    "the dashboard shows {name}, which the job never emits"
                );
                shown += 1;
            }
        }
    }
    assert!(shown >= 12, "{shown}");
    assert!(
        json.contains(r#""value": 200000"#),
        "units per minute are drawn against the budget"
    );
}

#[test]
fn the_configuration_page_is_the_table_generated_from_the_declarations() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md"))
        .expect("docs/configuration.md");
    let table: String = page
        .lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| format!("{line}\n"))
        .collect();
    let generated = vars::markdown_table();
    assert!(
        table == generated,
        "docs/configuration.md's table is not the one src/config/vars/ declares; replace it with:\n\n{generated}"
    );
}

/// The README's count of checkov's skips is the template's, so it cannot go stale.
#[test]
fn the_deploy_pages_count_of_checkov_skips_is_the_templates() {
    let template = template();
    let mut skips = 0;
    let mut rules = BTreeSet::new();
    if let Some(resources) = template["Resources"].as_mapping() {
        for resource in resources.values() {
            for skip in list(&resource["Metadata"]["checkov"]["skip"]) {
                skips += 1;
                rules.insert(skip["id"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md")).expect("docs/deploy.md");
    let said = format!("whose {skips} skips ({} rules)", rules.len());
    assert!(
        page.contains(&said),
        "docs/deploy.md should say `{said}` of checkov's skips"
    );
}
