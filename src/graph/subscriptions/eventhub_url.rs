//! `EventHub:` notification URLs, the form Graph takes for Event Hubs delivery.
//!
//! Microsoft's "Receive change notifications through Azure Event Hubs" gives two forms:
//! - role-based access (current): `EventHub:https://<namespace>.servicebus.windows.net/eventhubname/<hub>?tenantId=<tenant id or domain>`;
//!   the "Microsoft Graph Change Tracking" service principal holds *Azure Event Hubs Data
//!   Sender* on the hub;
//! - Key Vault (legacy, being deprecated with shared access signatures):
//!   `EventHub:https://<vault>.vault.azure.net/secrets/<secret>?tenantId=<tenant>`, the secret
//!   holding a send connection string that Graph reads.
//!
//! [`EventHubUrl::parse`] accepts exactly these shapes, so a typo is refused when the desired
//! subscriptions are read, not by Graph at creation time.

use std::fmt;

const PREFIX: &str = "EventHub:";

/// A parsed `EventHub:` notification URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventHubUrl {
    /// Graph sends with its own identity (Azure RBAC on the hub).
    Namespace {
        /// `<namespace>.servicebus.windows.net` (or a national cloud's host).
        host: String,
        hub: String,
        tenant: String,
    },
    /// Legacy: Graph reads a send connection string from a Key Vault secret.
    KeyVaultSecret {
        /// `<vault>.vault.azure.net`.
        host: String,
        secret: String,
        tenant: String,
    },
}

/// Why a string is not an `EventHub:` URL (the reason names the part at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an EventHub: notification URL: {0}")]
pub struct EventHubUrlError(String);

impl EventHubUrl {
    /// Parses `EventHub:https://…?tenantId=…` (the prefix is matched without regard to case).
    pub fn parse(s: &str) -> Result<Self, EventHubUrlError> {
        let err = |m: &str| EventHubUrlError(m.to_string());
        let s = s.trim();
        let rest = s
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &s[PREFIX.len()..])
            .ok_or_else(|| err("it must start with EventHub:"))?;
        let url =
            url::Url::parse(rest).map_err(|_| err("the part after EventHub: is not a URL"))?;
        if url.scheme() != "https" {
            return Err(err("the URL must be https"));
        }
        if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
            return Err(err("the URL must not carry credentials or a port"));
        }
        if url.fragment().is_some() {
            return Err(err("the URL must not carry a fragment"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| err("the URL has no host"))?
            .to_ascii_lowercase();
        let mut tenant = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "tenantId" if tenant.is_none() && valid_name(&v) => tenant = Some(v.into_owned()),
                "tenantId" => return Err(err("tenantId must be given once, as an id or domain")),
                _ => return Err(err("the only query parameter Graph takes is tenantId")),
            }
        }
        let tenant = tenant.ok_or_else(|| err("tenantId is missing"))?;
        let segments: Vec<&str> = url
            .path_segments()
            .map(Iterator::collect)
            .unwrap_or_default();
        match segments.as_slice() {
            ["eventhubname", hub] if valid_name(hub) => Ok(EventHubUrl::Namespace {
                host,
                hub: hub.to_string(),
                tenant,
            }),
            ["secrets", secret] if valid_name(secret) => Ok(EventHubUrl::KeyVaultSecret {
                host,
                secret: secret.to_string(),
                tenant,
            }),
            _ => Err(err(
                "the path must be /eventhubname/<hub> (role-based access) or /secrets/<secret> (Key Vault, legacy)",
            )),
        }
    }

    /// Whether this is the deprecated Key Vault form.
    pub fn is_legacy(&self) -> bool {
        matches!(self, EventHubUrl::KeyVaultSecret { .. })
    }

    pub fn tenant(&self) -> &str {
        match self {
            EventHubUrl::Namespace { tenant, .. } | EventHubUrl::KeyVaultSecret { tenant, .. } => {
                tenant
            }
        }
    }
}

/// Names, hubs, secrets and tenants: letters, digits and `-._`, at most 256 characters.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

impl fmt::Display for EventHubUrl {
    /// The canonical form given to Graph.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventHubUrl::Namespace { host, hub, tenant } => {
                write!(
                    f,
                    "{PREFIX}https://{host}/eventhubname/{hub}?tenantId={tenant}"
                )
            }
            EventHubUrl::KeyVaultSecret {
                host,
                secret,
                tenant,
            } => write!(
                f,
                "{PREFIX}https://{host}/secrets/{secret}?tenantId={tenant}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_documented_forms_parse_and_print_back() {
        let rbac = "EventHub:https://contoso-ns.servicebus.windows.net/eventhubname/graph-events?tenantId=contoso.com";
        let u = EventHubUrl::parse(rbac).unwrap();
        assert_eq!(
            u,
            EventHubUrl::Namespace {
                host: "contoso-ns.servicebus.windows.net".into(),
                hub: "graph-events".into(),
                tenant: "contoso.com".into()
            }
        );
        assert!(!u.is_legacy());
        assert_eq!(u.to_string(), rbac);
        let kv = "eventhub:https://kv-graph.vault.azure.net/secrets/sendconn?tenantId=72f988bf-86f1-41af-91ab-2d7cd011db47";
        let u = EventHubUrl::parse(kv).unwrap();
        assert!(u.is_legacy());
        assert_eq!(u.tenant(), "72f988bf-86f1-41af-91ab-2d7cd011db47");
        assert!(
            u.to_string()
                .starts_with("EventHub:https://kv-graph.vault.azure.net/secrets/sendconn?")
        );
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        for (bad, why) in [
            (
                "https://ns.servicebus.windows.net/eventhubname/h?tenantId=t",
                "start with",
            ),
            (
                "EventHub:http://ns.servicebus.windows.net/eventhubname/h?tenantId=t",
                "https",
            ),
            (
                "EventHub:https://ns.servicebus.windows.net/eventhubname/h",
                "tenantId is missing",
            ),
            (
                "EventHub:https://ns.servicebus.windows.net/eventhubname/h?tenantId=",
                "once",
            ),
            (
                "EventHub:https://ns.servicebus.windows.net/eventhubname/h?tenantId=a&tenantId=b",
                "once",
            ),
            (
                "EventHub:https://ns.servicebus.windows.net/eventhubname/h?tenantId=t&x=1",
                "only query",
            ),
            (
                "EventHub:https://ns.servicebus.windows.net/h?tenantId=t",
                "path",
            ),
            (
                "EventHub:https://ns.servicebus.windows.net/eventhubname/a/b?tenantId=t",
                "path",
            ),
            (
                "EventHub:https://u:p@ns.servicebus.windows.net/eventhubname/h?tenantId=t",
                "credentials",
            ),
            (
                "EventHub:https://ns.servicebus.windows.net:444/eventhubname/h?tenantId=t",
                "port",
            ),
            ("EventHub:not a url", "not a URL"),
            (
                "EventHub:https://ns.servicebus.windows.net/eventhubname/h%20x?tenantId=t",
                "path",
            ),
        ] {
            let e = EventHubUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
