//! `offline-access`: the operator's CLI (DESIGN §14). It parses, finds the stack, shows
//! progress and renders; the work itself is the library's `operator` module, over the
//! same production adapters the functions use.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a CLI: its output is the point"
)]

mod doctor;
mod events;
mod grants;
mod job;
mod progress;
mod reencrypt;
mod render;
mod risc;
mod stack;
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use offline_access::config::SignInConfig;
use offline_access::operator::{Operator, OperatorError};

#[derive(Parser)]
#[command(
    name = "offline-access",
    version,
    about = "Operate an offline-access stack: its grants, statistics, re-encryption, Google's RISC stream, the offline job, the events' failure queue, and a check of it all (doctor)",
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
        command: grants::Grants,
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
        command: risc::Risc,
    },
    /// The offline job
    Job {
        #[command(subcommand)]
        command: job::Job,
    },
    /// The events function's failure queue
    Events {
        #[command(subcommand)]
        command: events::Events,
    },
    /// Check the deployment end to end: secret, KMS key, tables, bus, Google, RISC
    Doctor {
        /// A service account's JSON key file, to check the RISC stream too (else skipped)
        #[arg(long, value_name = "FILE", env = "RISC_SERVICE_ACCOUNT_FILE")]
        service_account: Option<PathBuf>,
    },
}

/// The variables: the process's; the env file's where the process sets none (the
/// environment wins, as with every dotenv file, and the names it overrides are printed —
/// never the values); then the stack's outputs.
async fn variables(cli: &Cli) -> anyhow::Result<HashMap<String, String>> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if let Some(file) = &cli.env_file {
        let mut ignored: Vec<String> = Vec::new();
        for (name, value) in stack::read_env_file(file)? {
            match env.entry(name) {
                std::collections::hash_map::Entry::Occupied(set) => ignored.push(set.key().clone()),
                std::collections::hash_map::Entry::Vacant(unset) => {
                    unset.insert(value);
                }
            }
        }
        if !ignored.is_empty() {
            ignored.sort();
            eprintln!(
                "offline-access: the environment sets {}: {}'s values for them are ignored",
                ignored.join(", "),
                file.display()
            );
        }
    }
    if let Some(name) = &cli.stack {
        let aws = stack::aws_config(&env).await;
        let outputs = stack::outputs(&aws, name).await?;
        env.extend(stack::from_outputs(name, &outputs)?);
    }
    Ok(env)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = variables(&cli).await?;
    if let Command::Risc {
        service_account,
        command,
    } = &cli.command
    {
        return risc::run(&env, service_account.as_deref(), command, cli.json).await;
    }
    let aws = stack::aws_config(&env).await;
    if let Command::Events { command } = cli.command {
        return events::run(&env, &aws, command, cli.json).await;
    }
    if let Command::Doctor { service_account } = &cli.command {
        return doctor::run(&env, &aws, service_account.as_deref(), cli.json).await;
    }
    let config = SignInConfig::from_env(&env).context("the stack's variables")?;
    let operator = Operator::new(&config, &aws)?;
    let json = cli.json;
    match cli.command {
        Command::Grants { command } => grants::run(&operator, command, json).await,
        Command::Stats => stats::run(&operator, json).await,
        Command::Reencrypt { to_key, restart } => reencrypt::run(&operator, to_key.as_deref(), restart, json).await,
        Command::Job { command } => job::run(&operator, &env, command, json).await,
        Command::Risc { .. } | Command::Events { .. } | Command::Doctor { .. } => unreachable!("handled above"),
    }
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
