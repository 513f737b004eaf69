//! `stats`: counts over every grant.

use offline_access::operator::Operator;

use crate::progress::progress;
use crate::render;

pub async fn run(operator: &Operator, json: bool) -> anyhow::Result<()> {
    let bar = progress("counted", operator.approximate_grants().await);
    let stats = operator.stats(|n| bar.set_position(n as u64)).await?;
    bar.finish_and_clear();
    render::stats(&stats, json);
    Ok(())
}
