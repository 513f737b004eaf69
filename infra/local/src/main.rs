//! `local-stack bootstrap`: creates the local AWS resources and prints the functions'
//! environment as `KEY=value` lines (for `make dev`, which writes them to `.local/env`).
//!
//! Environment: `AWS_ENDPOINT_URL` (required: this never touches a real account),
//! `LOCAL_PREFIX` (default `offline-access-local`), `EMULATOR_URL` (default
//! `http://127.0.0.1:8090`), `EMULATOR_CLIENT_ID`, `EMULATOR_CLIENT_SECRET`.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .context("AWS_ENDPOINT_URL must name the local AWS endpoint (the bootstrap never touches a real account)")?;
    let prefix = std::env::var("LOCAL_PREFIX").unwrap_or_else(|_| "offline-access-local".into());
    let emulator = std::env::var("EMULATOR_URL").unwrap_or_else(|_| "http://127.0.0.1:8090".into());
    let client_id =
        std::env::var("EMULATOR_CLIENT_ID").unwrap_or_else(|_| "emulator-web.apps.googleusercontent.com".into());
    let client_secret =
        std::env::var("EMULATOR_CLIENT_SECRET").unwrap_or_else(|_| "GOCSPX-emulator-test-secret".into());
    let aws = local_stack::local_aws_config(&endpoint).await;
    let plan = local_stack::Plan {
        prefix,
        template: std::env::var("TEMPLATE")
            .map(Into::into)
            .unwrap_or_else(|_| local_stack::default_template()),
        client_secret_json: serde_json::json!({"web": {
            "client_id": client_id,
            "client_secret": client_secret,
            "project_id": "offline-access-local",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{emulator}/token"),
        }})
        .to_string(),
    };
    let done = local_stack::bootstrap(&aws, &plan).await?;
    let mut out = String::new();
    for (key, value) in done.env() {
        out.push_str(&format!("{key}={value}\n"));
    }
    out.push_str(&format!("GOOGLE_CERTS_URI={emulator}/oauth2/v3/certs\n"));
    out.push_str(&format!("GOOGLE_REVOKE_URI={emulator}/revoke\n"));
    out.push_str(&format!(
        "GOOGLE_RISC_CONFIG_URI={emulator}/.well-known/risc-configuration\n"
    ));
    out.push_str(&format!("GOOGLE_DRIVE_API={emulator}/drive/v3\n"));
    out.push_str(&format!("GOOGLE_TOKENINFO_URI={emulator}/tokeninfo\n"));
    std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
    Ok(())
}
