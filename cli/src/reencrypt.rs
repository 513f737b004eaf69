//! `reencrypt [--to-key KEY] [--restart]`: every sealed token re-wrapped, resumably.

use offline_access::operator::Operator;

use crate::progress::progress;
use crate::render;

pub async fn run(operator: &Operator, to_key: Option<&str>, restart: bool, json: bool) -> anyhow::Result<()> {
    let bar = progress("re-encrypting", operator.approximate_grants().await);
    let done = operator
        .reencrypt(to_key, restart, |p| {
            bar.set_position(p.scanned);
            bar.set_message(format!(
                "({} refresh and {} access tokens re-wrapped)",
                p.refresh_tokens, p.access_tokens
            ));
        })
        .await?;
    bar.finish_and_clear();
    render::reencrypted(&done, json);
    Ok(())
}
