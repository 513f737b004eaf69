//! `risc register|verify|status`: Google's RISC management API, with a service account.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use offline_access::google::risc_api::{DEFAULT_RISC_API, RiscManagement, ServiceAccount};

use crate::render;

#[derive(Debug, Subcommand)]
pub enum Risc {
    /// Register the receiver (POST /risc of your API) for every event type it acts on
    Register {
        #[arg(long, value_name = "URL")]
        url: String,
    },
    /// Ask Google to send a verification event through the stream
    Verify {
        #[arg(long, default_value = "offline-access risc verify")]
        state: String,
    },
    /// Show the stream's status, or enable or disable it
    Status {
        #[arg(value_enum)]
        change: Option<Toggle>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Toggle {
    Enable,
    Disable,
}

/// The RISC management API as the service account of `file` (at `GOOGLE_RISC_API`, else
/// Google's).
pub fn management(env: &HashMap<String, String>, file: &std::path::Path) -> anyhow::Result<RiscManagement> {
    let key = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let account = ServiceAccount::from_json(&key)?;
    let base = env
        .get("GOOGLE_RISC_API")
        .cloned()
        .unwrap_or_else(|| DEFAULT_RISC_API.to_owned());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    Ok(RiscManagement::new(http, base, account))
}

pub async fn run(
    env: &HashMap<String, String>,
    service_account: Option<&std::path::Path>,
    command: &Risc,
    json: bool,
) -> anyhow::Result<()> {
    let file = service_account.context("--service-account FILE (or RISC_SERVICE_ACCOUNT_FILE) is required")?;
    let api = management(env, file)?;
    match command {
        Risc::Register { url } => render::value("stream", &api.register(url).await?, json),
        Risc::Verify { state } => {
            api.verify(state).await?;
            render::line(
                "verification",
                "requested: Google sends a verification event to the receiver",
                json,
            );
        }
        Risc::Status { change } => {
            let status = match change {
                None => api.status().await?,
                Some(Toggle::Enable) => api.set_status(true).await?,
                Some(Toggle::Disable) => api.set_status(false).await?,
            };
            render::line("status", &status, json);
        }
    }
    Ok(())
}
