//! `strato api-keys` and `strato access-keys`: create, list and revoke API keys and SigV4 access keys.

use anyhow::Result;

use super::{err, open};
use crate::config::{ApiKeysCommand, Global};

#[allow(clippy::print_stdout, reason = "the command's output")]
pub(super) async fn api_keys(g: &Global, cmd: ApiKeysCommand, sigv4: bool) -> Result<()> {
    let strato = open(g).await?;
    match cmd {
        ApiKeysCommand::Create { name, role, models, mentors, grants, rate_per_sec, burst, daily_quota } => {
            let plan = strato_types::UsagePlan { rate_per_sec, burst, daily_quota };
            let grants = grants.iter().map(|g| parse_grant(g)).collect::<Result<Vec<_>>>()?;
            let req = strato_service::NewApiKey { name, role: Some(role), models, mentors, grants, plan };
            if sigv4 {
                let (key, secret) = strato.keys().create_access_key(req).await.map_err(err)?;
                println!("created {} ({}, role {})", key.id, key.name, key.role);
                println!("# for ~/.aws/credentials or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (secret shown once):");
                println!("aws_access_key_id = {}", key.access_key_id.unwrap_or_default());
                println!("aws_secret_access_key = {secret}");
            } else {
                let (key, secret) = strato.keys().create(req).await.map_err(err)?;
                println!("created {} ({}, role {})", key.id, key.name, key.role);
                println!("secret (shown once; send it as x-api-key): {secret}");
            }
        }
        ApiKeysCommand::List => {
            let keys: Vec<_> = strato
                .keys()
                .list()
                .await
                .map_err(err)?
                .into_iter()
                .filter(|k| k.access_key_id.is_some() == sigv4)
                .collect();
            if keys.is_empty() {
                println!("{}", if sigv4 { "no access keys" } else { "no API keys" });
            }
            for k in keys {
                let state = k.revoked_at.map_or("active".to_string(), |t| format!("revoked {}", t.to_rfc3339()));
                let grants: Vec<String> = k.grants.iter().map(grant_text).collect();
                println!(
                    "{}{}  {:<6} {:<24} models={} mentors={} grants={}  {state}",
                    k.id,
                    k.access_key_id.as_deref().map(|a| format!(" {a}")).unwrap_or_default(),
                    k.role,
                    k.name,
                    k.models.join(","),
                    k.mentors.join(","),
                    grants.join(",")
                );
            }
        }
        ApiKeysCommand::Revoke { id } => {
            strato.keys().revoke(&id).await.map_err(err)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// `KIND:ID_PATTERN:ACTION[+ACTION…]`, e.g. `widget:w-*:use+read`.
fn parse_grant(text: &str) -> Result<strato_types::Grant> {
    let mut parts = text.splitn(3, ':');
    let (Some(kind), Some(id), Some(actions)) = (parts.next(), parts.next(), parts.next()) else {
        anyhow::bail!("--grant {text:?}: expected KIND:ID_PATTERN:ACTIONS, e.g. widget:w-*:use");
    };
    let actions = actions
        .split('+')
        .map(|a| serde_json::from_value::<strato_types::Action>(serde_json::Value::String(a.trim().to_string())))
        .collect::<Result<strato_types::Actions, _>>()
        .map_err(|_| anyhow::anyhow!("--grant {text:?}: actions are read, use, edit or admin, joined by +"))?;
    Ok(strato_types::Grant::new(kind, id, actions))
}

fn grant_text(g: &strato_types::Grant) -> String {
    let actions: Vec<&str> =
        strato_types::Action::ALL.iter().filter(|a| g.actions.contains(**a)).map(|a| a.as_str()).collect();
    format!("{}:{}:{}", g.kind, g.id, actions.join("+"))
}
