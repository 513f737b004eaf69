//! `job run [--cycle C]`: one cycle of the offline job, from here.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use offline_access::config::JobConfig;
use offline_access::operator::Operator;

use crate::progress::progress;
use crate::render;

#[derive(Debug, Subcommand)]
pub enum Job {
    /// Run one cycle of the offline job from here
    Run {
        /// The cycle (RFC 3339 start, e.g. 2026-11-26T12:00:00Z); default: the current one
        #[arg(long)]
        cycle: Option<String>,
    },
}

pub async fn run(operator: &Operator, env: &HashMap<String, String>, command: Job, json: bool) -> anyhow::Result<()> {
    let Job::Run { cycle } = command;
    let job_config = JobConfig::from_env(env).context("the job's variables")?;
    let cycle = match cycle {
        Some(c) => offline_access::job::CycleId::parse(&c),
        None => {
            let now = jiff::Timestamp::now().to_string();
            offline_access::job::CycleId::from_event(&serde_json::json!({ "time": now }), job_config.cycle)
        }
    }
    .map_err(|e| anyhow::anyhow!("--cycle: {}", e.0))?;
    let bar = progress(&format!("running cycle {}", cycle.as_str()), None);
    let report = operator
        .run_job(&job_config, &cycle, Duration::from_secs(14 * 60))
        .await?;
    bar.finish_and_clear();
    render::report(&report, json);
    Ok(())
}
