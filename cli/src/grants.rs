//! `grants list [--status S]`, `grants show SUB`, `grants revoke SUB`, `grants delete SUB`.

use clap::{Subcommand, ValueEnum};
use offline_access::domain::GoogleSubject;
use offline_access::operator::{Operator, OperatorError};
use offline_access::store::GrantStatus;

use crate::progress::progress;
use crate::render;

#[derive(Debug, Subcommand)]
pub enum Grants {
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

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Status {
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

fn parse_sub(sub: &str) -> anyhow::Result<GoogleSubject> {
    GoogleSubject::parse(sub).map_err(|e| anyhow::anyhow!("{}: {}", sub.escape_debug(), e.0))
}

pub async fn run(operator: &Operator, command: Grants, json: bool) -> anyhow::Result<()> {
    match command {
        Grants::List { status } => {
            let bar = progress("read", operator.approximate_grants().await);
            let grants = operator
                .list(status.map(Into::into), |n| bar.set_position(n as u64))
                .await?;
            bar.finish_and_clear();
            render::grants(&grants.grants, json);
            render::malformed(&grants.malformed);
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
    }
    Ok(())
}
