//! The app's identities towards Entra ID: a [`TokenCredential`] per [`Audience`].
//!
//! Two audiences, because the roles live on two principals: `infra/` grants Key Vault and
//! Storage roles to the Function App's managed identity, while Graph's application permissions
//! belong to the app registration (`GRAPH_CLIENT_ID`).
//! - [`Audience::AzureResources`] (Key Vault, Blob): workload identity when
//!   `AZURE_FEDERATED_TOKEN_FILE` is set, else managed identity. `GRAPH_CLIENT_SECRET` is never
//!   used here: the app registration holds no Azure roles.
//! - [`Audience::Graph`] (subscriptions): the client secret when `GRAPH_CLIENT_SECRET` is set
//!   (option A of the deployment guide), else the same credential as Azure resources (option B:
//!   the managed identity itself holds the Graph permissions).
//!
//! The builder makes one credential object when both audiences resolve to the same kind, so its
//! token cache is shared.
//!
//! Each kind's settings:
//! - client secret: the first `GRAPH_TENANT_ID` / `GRAPH_CLIENT_ID`;
//! - workload identity (Kubernetes): client id from `AZURE_CLIENT_ID` (else `GRAPH_CLIENT_ID`),
//!   tenant from `GRAPH_TENANT_ID` (else `AZURE_TENANT_ID`);
//! - managed identity: the Functions / App Service endpoint (`IDENTITY_ENDPOINT` +
//!   `IDENTITY_HEADER`), user-assigned when `AZURE_CLIENT_ID` is set, else system-assigned.
//!
//! `AUTHORITY_HOST` is given to azure_identity as a custom cloud configuration
//! (`ClientOptions::cloud`), which is how azure_identity 1.x takes the authority; the
//! `AZURE_AUTHORITY_HOST` variable azure_identity reads by itself is thereby overridden, so
//! `AUTHORITY_HOST` is the only knob. azure_identity refuses an authority that is not https.
//!
//! Every credential sends its requests through the given `reqwest` client, so `SSL_CERT_FILE`
//! (private CAs, corporate proxies, test fakes) applies to token requests too.

use std::path::PathBuf;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use secrecy::ExposeSecret;

use crate::config::{BotConfig, Config};

/// Why no credential could be built. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A setting the chosen credential needs is missing.
    #[error("{credential} needs {setting}")]
    Missing {
        credential: &'static str,
        setting: &'static str,
    },
    /// azure_identity refused the settings (e.g. an authority host that is not https).
    #[error("{credential}: {source}")]
    Invalid {
        credential: &'static str,
        #[source]
        source: Box<azure_core::Error>,
    },
}

/// Who a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Microsoft Graph (the subscriptions API).
    Graph,
    /// Azure resources: Key Vault and Blob Storage.
    AzureResources,
}

/// Which kind of credential [`credential_for`] picked (for logs and `handler subscriptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    ClientSecret,
    WorkloadIdentity,
    ManagedIdentity,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ClientSecret => "client secret",
            CredentialKind::WorkloadIdentity => "workload identity",
            CredentialKind::ManagedIdentity => "managed identity",
        }
    }
}

/// The kind of credential `audience` gets under `config` and the environment (read through `env`).
pub fn kind_for(
    audience: Audience,
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> CredentialKind {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    choose(audience, config, &env)
}

/// The credential for `audience` that the configuration and the environment (read through
/// `env`) call for, sending its requests through `http` (the builder's one client).
pub fn credential_for(
    audience: Audience,
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
    http: reqwest::Client,
) -> Result<(Arc<dyn TokenCredential>, CredentialKind), IdentityError> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let kind = choose(audience, config, &env);
    let credential: Arc<dyn TokenCredential> = match kind {
        CredentialKind::ClientSecret => {
            const NAME: &str = "ClientSecretCredential";
            let secret = config
                .client_secret
                .as_ref()
                .expect("choose() picks a client secret only when one is set");
            let tenant = config.tenant_ids.first().ok_or(IdentityError::Missing {
                credential: NAME,
                setting: "GRAPH_TENANT_ID",
            })?;
            let client = config.client_ids.first().ok_or(IdentityError::Missing {
                credential: NAME,
                setting: "GRAPH_CLIENT_ID",
            })?;
            let options = ClientSecretCredentialOptions {
                client_options: client_options(config, &http),
            };
            ClientSecretCredential::new(
                tenant,
                client.clone(),
                Secret::new(secret.expose_secret().to_string()),
                Some(options),
            )
            .map_err(|e| invalid(NAME, e))?
        }
        CredentialKind::WorkloadIdentity => {
            const NAME: &str = "WorkloadIdentityCredential";
            let tenant = config
                .tenant_ids
                .first()
                .cloned()
                .or_else(|| env("AZURE_TENANT_ID"))
                .ok_or(IdentityError::Missing {
                    credential: NAME,
                    setting: "GRAPH_TENANT_ID or AZURE_TENANT_ID",
                })?;
            let client = env("AZURE_CLIENT_ID")
                .or_else(|| config.client_ids.first().cloned())
                .ok_or(IdentityError::Missing {
                    credential: NAME,
                    setting: "AZURE_CLIENT_ID or GRAPH_CLIENT_ID",
                })?;
            let options = WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions {
                    client_options: client_options(config, &http),
                },
                client_id: Some(client),
                tenant_id: Some(tenant),
                token_file_path: env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            };
            WorkloadIdentityCredential::new(Some(options)).map_err(|e| invalid(NAME, e))?
        }
        CredentialKind::ManagedIdentity => {
            const NAME: &str = "ManagedIdentityCredential";
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: env("AZURE_CLIENT_ID").map(UserAssignedId::ClientId),
                client_options: client_options(config, &http),
            };
            ManagedIdentityCredential::new(Some(options)).map_err(|e| invalid(NAME, e))?
        }
    };
    tracing::debug!(credential = kind.as_str(), audience = ?audience, authority = %config.authority_host, "credential ready");
    Ok((credential, kind))
}

/// The Teams bot's own identity for the Bot APIs and the Bot Connector: a client secret for
/// `BOT_APP_ID` in `BOT_TENANT_ID` (single-tenant) when `BOT_CLIENT_SECRET` is set, else the
/// managed identity whose client id is `BOT_APP_ID` (an Azure Bot of type UserAssignedMSI).
pub fn bot_credential(
    config: &Config,
    bot: &BotConfig,
    http: reqwest::Client,
) -> Result<Arc<dyn TokenCredential>, IdentityError> {
    let options = client_options(config, &http);
    match &bot.client_secret {
        Some(secret) => {
            const NAME: &str = "ClientSecretCredential (bot)";
            let tenant = bot.tenant_id.as_deref().ok_or(IdentityError::Missing {
                credential: NAME,
                setting: "BOT_TENANT_ID",
            })?;
            let credential: Arc<dyn TokenCredential> = ClientSecretCredential::new(
                tenant,
                bot.app_id.clone(),
                Secret::new(secret.expose_secret().to_string()),
                Some(ClientSecretCredentialOptions {
                    client_options: options,
                }),
            )
            .map_err(|e| invalid(NAME, e))?;
            Ok(credential)
        }
        None => {
            const NAME: &str = "ManagedIdentityCredential (bot)";
            let credential: Arc<dyn TokenCredential> =
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: Some(UserAssignedId::ClientId(bot.app_id.clone())),
                    client_options: options,
                }))
                .map_err(|e| invalid(NAME, e))?;
            Ok(credential)
        }
    }
}

fn choose(
    audience: Audience,
    config: &Config,
    env: &impl Fn(&str) -> Option<String>,
) -> CredentialKind {
    if audience == Audience::Graph && config.client_secret.is_some() {
        CredentialKind::ClientSecret
    } else if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        CredentialKind::WorkloadIdentity
    } else {
        CredentialKind::ManagedIdentity
    }
}

/// The pipeline options every credential gets: our transport and `AUTHORITY_HOST`.
fn client_options(config: &Config, http: &reqwest::Client) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = config.authority_host.clone();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..ClientOptions::default()
    }
}

fn invalid(credential: &'static str, e: azure_core::Error) -> IdentityError {
    IdentityError::Invalid {
        credential,
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        Config::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap()
    }

    fn pick(pairs: &[(&str, &str)], env: &[(&str, &str)]) -> Result<CredentialKind, IdentityError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        credential_for(
            Audience::Graph,
            &config(pairs),
            |k| env.get(k).cloned(),
            reqwest::Client::new(),
        )
        .map(|(_, kind)| kind)
    }

    #[test]
    fn azure_resources_never_use_the_graph_client_secret() {
        let app = config(&[
            ("GRAPH_TENANT_ID", TENANT),
            ("GRAPH_CLIENT_ID", "app"),
            ("GRAPH_CLIENT_SECRET", "s3cret"),
        ]);
        let uami = |k: &str| (k == "AZURE_CLIENT_ID").then(|| "uami".to_string());
        assert_eq!(
            kind_for(Audience::AzureResources, &app, uami),
            CredentialKind::ManagedIdentity
        );
        assert_eq!(
            kind_for(Audience::Graph, &app, uami),
            CredentialKind::ClientSecret
        );
        let no_secret = config(&[("GRAPH_TENANT_ID", TENANT)]);
        assert_eq!(
            kind_for(Audience::Graph, &no_secret, uami),
            kind_for(Audience::AzureResources, &no_secret, uami)
        );
    }

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    #[test]
    fn client_secret_wins_and_needs_the_app() {
        let app = [
            ("GRAPH_TENANT_ID", TENANT),
            ("GRAPH_CLIENT_ID", "app"),
            ("GRAPH_CLIENT_SECRET", "s3cret"),
        ];
        assert_eq!(
            pick(&app, &[("AZURE_FEDERATED_TOKEN_FILE", "/t")]).unwrap(),
            CredentialKind::ClientSecret
        );
        let err = pick(&[("GRAPH_CLIENT_SECRET", "s3cret")], &[]).unwrap_err();
        assert!(err.to_string().contains("GRAPH_TENANT_ID"), "{err}");
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn workload_identity_when_a_token_file_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "service-account-token").unwrap();
        let kind = pick(
            &[("GRAPH_TENANT_ID", TENANT)],
            &[
                ("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().unwrap()),
                ("AZURE_CLIENT_ID", "wid"),
            ],
        )
        .unwrap();
        assert_eq!(kind, CredentialKind::WorkloadIdentity);
        let err = pick(&[], &[("AZURE_FEDERATED_TOKEN_FILE", "/t")]).unwrap_err();
        assert!(matches!(err, IdentityError::Missing { .. }), "{err}");
    }

    #[test]
    fn managed_identity_otherwise() {
        assert_eq!(pick(&[], &[]).unwrap(), CredentialKind::ManagedIdentity);
        assert_eq!(
            pick(&[], &[("AZURE_CLIENT_ID", "uami")]).unwrap(),
            CredentialKind::ManagedIdentity
        );
    }

    #[test]
    fn authority_must_be_https() {
        let err = pick(
            &[
                ("GRAPH_TENANT_ID", TENANT),
                ("GRAPH_CLIENT_ID", "app"),
                ("GRAPH_CLIENT_SECRET", "s3cret"),
                ("AUTHORITY_HOST", "http://127.0.0.1:1"),
            ],
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().to_lowercase().contains("https"), "{err}");
    }
}
