//! `doctor`: checks a deployment end to end and prints a checklist (DESIGN §17).

use std::collections::HashMap;

use anyhow::Context;
use offline_access::config::SignInConfig;
use offline_access::doctor::{Extras, examine, healthy};

use crate::render;

pub async fn run(
    env: &HashMap<String, String>,
    aws: &aws_config::SdkConfig,
    service_account: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<()> {
    let config = SignInConfig::from_env(env).context("the stack's variables")?;
    let risc = service_account
        .map(|file| crate::risc::management(env, file))
        .transpose()?;
    let extras = Extras {
        event_bus: env.get("EVENT_BUS_NAME").filter(|b| !b.is_empty()).cloned(),
        risc,
    };
    let checks = examine(&config, aws, &extras).await;
    render::checklist(&checks, json);
    if healthy(&checks) {
        return Ok(());
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.outcome == offline_access::doctor::Outcome::Fail)
        .map(|c| c.name)
        .collect();
    anyhow::bail!("{} check(s) failed: {}", failed.len(), failed.join(", "))
}
