//! `template.yaml` against the code: each function's IAM policy allows exactly what its
//! code calls (`offline_access::permissions`), every KMS grant is conditioned, and the
//! environment the template sets names only variables the function's config reads.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::collections::BTreeSet;

use offline_access::config::{COMMON_VARIABLES, JOB_VARIABLES, SIGN_IN_VARIABLES};
use offline_access::permissions::{self, Permission};
use serde_yaml_ng::Value;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("template.yaml")).expect("YAML")
}

fn function<'a>(template: &'a Value, id: &str) -> &'a Value {
    template["Resources"]
        .get(id)
        .and_then(|r| r.get("Properties"))
        .unwrap_or_else(|| panic!("{id} in template"))
}

/// The logical id a `!Ref X` or `!GetAtt X.Arn` points at.
fn referenced(value: &Value) -> String {
    match value {
        Value::Tagged(tagged) => {
            let inner = tagged.value.as_str().expect("a simple reference");
            inner.split('.').next().unwrap_or(inner).to_owned()
        }
        other => panic!("a policy resource that is not a reference: {other:?}"),
    }
}

fn list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
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
}

#[test]
fn the_kms_data_key_grants_are_conditioned_on_the_encryption_context() {
    let template = template();
    for id in ["AuthCodeFunction", "RefresherFunction"] {
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
        let purpose = &data_key["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"];
        assert_eq!(purpose.as_str(), Some("offline-access/refresh-token"), "{id}");
        let context = offline_access::crypto::encryption_context("t");
        assert_eq!(
            context.get("purpose").map(String::as_str),
            purpose.as_str(),
            "the code's context matches"
        );
    }
}

#[test]
fn the_environment_the_template_sets_is_read_by_each_functions_config() {
    let template = template();
    let required = ["GRANTS_TABLE", "STATE_TABLE", "CLIENT_SECRET_ID", "TOKEN_KEY_ID"];
    for (id, own) in [
        ("AuthCodeFunction", SIGN_IN_VARIABLES),
        ("RefresherFunction", JOB_VARIABLES),
    ] {
        let set: BTreeSet<String> = function(&template, id)["Environment"]["Variables"]
            .as_mapping()
            .expect("variables")
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        let read: BTreeSet<String> = COMMON_VARIABLES.iter().chain(own).map(|s| (*s).to_owned()).collect();
        let unknown: Vec<&String> = set.difference(&read).collect();
        assert!(
            unknown.is_empty(),
            "{id} sets variables its config never reads: {unknown:?}"
        );
        for name in required {
            assert!(set.contains(name), "{id} does not set the required {name}");
        }
    }
}

#[test]
fn cors_is_off_unless_origins_are_listed_and_then_allows_only_a_json_post_with_x_requested_with() {
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
    assert_eq!(methods, ["POST"]);
    assert_eq!(headers, ["content-type", "x-requested-with"]);
    assert_eq!(referenced(branches[2]), "AWS::NoValue");
}
