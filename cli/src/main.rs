//! `offline-access`: the operator's CLI (DESIGN §14). It parses, finds the stack, shows
//! progress and renders; the work itself is the library's `operator` module, over the
//! same production adapters the functions use.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a CLI: its output is the point"
)]

mod render;
mod stack;

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use offline_access::config::{JobConfig, SignInConfig};
use offline_access::domain::GoogleSubject;
use offline_access::google::risc_api::{DEFAULT_RISC_API, RiscManagement, ServiceAccount};
use offline_access::operator::{Operator, OperatorError};
use offline_access::store::GrantStatus;

#[derive(Parser)]
#[command(
    name = "offline-access",
    version,
    about = "Operate an offline-access stack: its grants, statistics, re-encryption, Google's RISC stream and the offline job",
    after_help = "The stack comes from --stack (a deployed stack's CloudFormation outputs), --env-file \
                  (KEY=value lines: `make dev` writes .local/env), or the variables the functions read \
                  (GRANTS_TABLE, STATE_TABLE, CLIENT_SECRET_ID, TOKEN_KEY_ID, TOKEN_BINDING)."
)]
struct Cli {
    /// A deployed stack: its outputs name the tables, the key and the secret
    #[arg(long, global = true, value_name = "NAME")]
    stack: Option<String>,
    /// Read the variables from this file (make dev: .local/env)
    #[arg(long, global = true, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Print JSON instead of a table
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List, show, revoke or delete grants
    Grants {
        #[command(subcommand)]
        command: Grants,
    },
    /// Counts over every grant: by status, failing, flagged, time-limited
    Stats,
    /// Re-wrap every sealed token under fresh data keys (or another KMS key); resumable
    Reencrypt {
        /// Seal under this KMS key (id, ARN or alias) instead of TOKEN_KEY_ID
        #[arg(long, value_name = "KEY")]
        to_key: Option<String>,
        /// Start over instead of resuming a run that stopped
        #[arg(long)]
        restart: bool,
    },
    /// Google's Cross-Account Protection stream (the RISC management API)
    Risc {
        /// The service account's JSON key file (RISC Configuration Admin role)
        #[arg(long, value_name = "FILE", env = "RISC_SERVICE_ACCOUNT_FILE", global = true)]
        service_account: Option<PathBuf>,
        #[command(subcommand)]
        command: Risc,
    },
    /// The offline job
    Job {
        #[command(subcommand)]
        command: Job,
    },
}

#[derive(Subcommand)]
enum Grants {
    /// Every grant, or those with one status
    List {
        #[arg(long, value_enum)]
        status: Option<Status>,
    },
    /// One grant (never a token or a ciphertext)
    Show { sub: String },
    /// Revoke the refresh token at Google and mark the grant revoked
    Revoke { sub: String },
    /// Delete the user's data, as DELETE /grants/me does
    Delete { sub: String },
}

#[derive(Subcommand)]
enum Risc {
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

#[derive(Subcommand)]
enum Job {
    /// Run one cycle of the offline job from here
    Run {
        /// The cycle (RFC 3339 start, e.g. 2026-11-26T12:00:00Z); default: the current one
        #[arg(long)]
        cycle: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Status {
    Active,
    ReconsentRequired,
    Revoked,
    Revoking,
    Deleted,
    Suspended,
}

impl From<Status> for GrantStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Active => Self::Active,
            Status::ReconsentRequired => Self::ReconsentRequired,
            Status::Revoked => Self::Revoked,
            Status::Revoking => Self::Revoking,
            Status::Deleted => Self::Deleted,
            Status::Suspended => Self::Suspended,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Toggle {
    Enable,
    Disable,
}

/// A progress bar over about `total` grants (a spinner when the count is unknown) on
/// stderr when both streams are a terminal; nothing when piped.
fn progress(what: &str, total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(n) if n > 0 => (
            ProgressBar::new(n),
            "{bar:30} {pos}/~{len} grants {msg} ({elapsed}, about {eta} left)",
        ),
        _ => (ProgressBar::new_spinner(), "{spinner} {pos} grants {msg} ({elapsed})"),
    };
    if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message(what.to_owned());
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// The variables: the process's, then the env file's, then the stack's outputs.
async fn variables(cli: &Cli) -> anyhow::Result<HashMap<String, String>> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if let Some(file) = &cli.env_file {
        env.extend(stack::read_env_file(file)?);
    }
    if let Some(name) = &cli.stack {
        let aws = stack::aws_config(&env).await;
        let outputs = stack::outputs(&aws, name).await?;
        env.extend(stack::from_outputs(name, &outputs)?);
    }
    Ok(env)
}

fn parse_sub(sub: &str) -> anyhow::Result<GoogleSubject> {
    GoogleSubject::parse(sub).map_err(|e| anyhow::anyhow!("{}: {}", sub.escape_debug(), e.0))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = variables(&cli).await?;
    let aws = stack::aws_config(&env).await;
    if let Command::Risc {
        service_account,
        command,
    } = &cli.command
    {
        return risc(&env, service_account.as_deref(), command, cli.json).await;
    }
    let config = SignInConfig::from_env(&env).context("the stack's variables")?;
    let operator = Operator::new(&config, &aws)?;
    let json = cli.json;
    match cli.command {
        Command::Grants { command } => match command {
            Grants::List { status } => {
                let bar = progress("read", operator.approximate_grants().await);
                let grants = operator
                    .list(status.map(Into::into), |n| bar.set_position(n as u64))
                    .await?;
                bar.finish_and_clear();
                render::grants(&grants, json);
            }
            Grants::Show { sub } => {
                let sub = parse_sub(&sub)?;
                let details = operator.show(&sub).await?.ok_or(OperatorError::NotFound)?;
                render::details(&details, json);
            }
            Grants::Revoke { sub } => {
                let revoked = operator.revoke(&parse_sub(&sub)?).await?;
                render::revoked(&sub, &revoked, json);
            }
            Grants::Delete { sub } => {
                let deleted = operator.delete(parse_sub(&sub)?).await?;
                render::deleted(&deleted, json);
            }
        },
        Command::Stats => {
            let bar = progress("counted", operator.approximate_grants().await);
            let stats = operator.stats(|n| bar.set_position(n as u64)).await?;
            bar.finish_and_clear();
            render::stats(&stats, json);
        }
        Command::Reencrypt { to_key, restart } => {
            let bar = progress("re-encrypting", operator.approximate_grants().await);
            let done = operator
                .reencrypt(to_key.as_deref(), restart, |p| {
                    bar.set_position(p.scanned);
                    bar.set_message(format!(
                        "({} refresh and {} access tokens re-wrapped)",
                        p.refresh_tokens, p.access_tokens
                    ));
                })
                .await?;
            bar.finish_and_clear();
            render::reencrypted(&done, json);
        }
        Command::Job {
            command: Job::Run { cycle },
        } => {
            let job_config = JobConfig::from_env(&env).context("the job's variables")?;
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
        }
        Command::Risc { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn risc(
    env: &HashMap<String, String>,
    service_account: Option<&std::path::Path>,
    command: &Risc,
    json: bool,
) -> anyhow::Result<()> {
    let file = service_account.context("--service-account FILE (or RISC_SERVICE_ACCOUNT_FILE) is required")?;
    let key = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let account = ServiceAccount::from_json(&key)?;
    let base = env
        .get("GOOGLE_RISC_API")
        .cloned()
        .unwrap_or_else(|| DEFAULT_RISC_API.to_owned());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let api = RiscManagement::new(http, base, account);
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings (a token that did not open, a refetch that failed) to stderr, by `sub` only.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let not_found = e
                .downcast_ref::<OperatorError>()
                .is_some_and(|e| matches!(e, OperatorError::NotFound));
            eprintln!("offline-access: {e:#}");
            if not_found {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
