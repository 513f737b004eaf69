//! The README's Rust client, as written there, run by `make dev-check` against `make dev`:
//! `readme-rust-client SUB` prints what Drive answered to the token the client got.
//! The variables the block uses are set here as a backend would set them.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = aws_config::load_from_env().await;
    let lambda = aws_sdk_lambda::Client::new(&config);
    let function_arn = std::env::var("ACCESS_TOKEN_FUNCTION")?;
    let sub = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: readme-rust-client SUB"))?;
    let folder: serde_json::Value = include!(concat!(env!("OUT_DIR"), "/readme_block.rs"));
    let stdout = std::io::Write::write_all(&mut std::io::stdout(), format!("{folder}\n").as_bytes());
    Ok(stdout?)
}
