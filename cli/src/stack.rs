//! Which stack the CLI operates: the variables the functions read, from the process
//! environment, an env file (`make dev` writes `.local/env`), or a deployed stack's
//! CloudFormation outputs (`--stack`) — in that order, each over the one before.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;

use offline_access::config::STACK_OUTPUTS as OUTPUTS;

/// `KEY=value` lines; blank lines and `#` comments are skipped.
pub fn read_env_file(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect())
}

/// The variables a stack's outputs give, with the binding the template sets
/// (`<stack name>/grants`).
pub fn from_outputs(stack: &str, outputs: &HashMap<String, String>) -> anyhow::Result<HashMap<String, String>> {
    let mut env = HashMap::new();
    for (output, variable) in OUTPUTS {
        let value = outputs
            .get(output)
            .with_context(|| format!("stack {stack} has no output {output}; is it an offline-access stack?"))?;
        env.insert(variable.to_owned(), value.clone());
    }
    env.insert("TOKEN_BINDING".into(), format!("{stack}/grants"));
    Ok(env)
}

/// The outputs of a deployed stack.
pub async fn outputs(aws: &aws_config::SdkConfig, stack: &str) -> anyhow::Result<HashMap<String, String>> {
    let described = aws_sdk_cloudformation::Client::new(aws)
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .with_context(|| format!("describing stack {stack}"))?;
    let found = described
        .stacks()
        .first()
        .with_context(|| format!("no stack {stack}"))?;
    Ok(found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect())
}

/// The AWS configuration the variables say: `AWS_ENDPOINT_URL`, `AWS_REGION` and static
/// credentials when they are given (an env file for `make dev`), else the SDK's own chain.
pub async fn aws_config(env: &HashMap<String, String>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = env.get("AWS_ENDPOINT_URL") {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = env.get("AWS_REGION").or_else(|| env.get("AWS_DEFAULT_REGION")) {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let (Some(id), Some(secret)) = (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) {
        loader = loader.credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
            id, secret, None, None, "env-file",
        ));
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_name_the_functions_variables_and_the_binding_follows_the_stack_name() -> anyhow::Result<()> {
        let outputs: HashMap<String, String> = OUTPUTS
            .iter()
            .map(|(o, _)| ((*o).to_owned(), format!("value-of-{o}")))
            .collect();
        let env = from_outputs("prod", &outputs)?;
        assert_eq!(env["GRANTS_TABLE"], "value-of-GrantsTableName");
        assert_eq!(env["TOKEN_KEY_ID"], "value-of-TokenKeyArn");
        assert_eq!(env["TOKEN_BINDING"], "prod/grants");
        let missing = from_outputs("other", &HashMap::new());
        assert!(missing.is_err_and(|e| e.to_string().contains("no output GrantsTableName")));
        Ok(())
    }
}
