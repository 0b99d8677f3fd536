//! The alert routes, from the `alerts` settings: where an alert goes and under which stable name
//! its delivery state is kept in the archive.

use secrecy::SecretString;

use crate::config::{AlertsConfig, BotConversation, WebhookUrl};

/// The kinds of route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// A Teams Workflows webhook ("Post to a channel when a webhook request is received").
    Teams,
    /// A generic HTTPS webhook with a signed JSON body.
    Webhook,
    /// A proactive message from the Teams bot to a conversation.
    Bot,
}

impl RouteKind {
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Teams => "teams",
            RouteKind::Webhook => "webhook",
            RouteKind::Bot => "bot",
        }
    }
}

/// Where a route sends.
#[derive(Debug, Clone)]
pub enum Target {
    Teams(WebhookUrl),
    Webhook {
        url: WebhookUrl,
        secret: SecretString,
    },
    Bot(BotConversation),
}

/// One configured route.
#[derive(Debug, Clone)]
pub struct Route {
    /// `{kind}-{12 hex}`: a fingerprint of the full destination, stable across restarts and
    /// instances, so every instance finds the same delivery records; it reveals no URL secret.
    pub id: String,
    pub kind: RouteKind,
    pub target: Target,
}

impl Route {
    /// What operators see: kind, `scheme://host`, id. Never the URL's path or query.
    pub fn label(&self) -> String {
        let host = match &self.target {
            Target::Teams(url) | Target::Webhook { url, .. } => url.redacted(),
            Target::Bot(c) => c.service_url.redacted(),
        };
        format!("{} {host} ({})", self.kind.name(), self.id)
    }
}

/// Every route the settings name, in a fixed order (Teams, webhooks, bot).
pub fn from_config(config: &AlertsConfig) -> Vec<Route> {
    let mut routes: Vec<Route> = config
        .teams_webhooks
        .iter()
        .map(|url| Route {
            id: format!("teams-{}", url.fingerprint()),
            kind: RouteKind::Teams,
            target: Target::Teams(url.clone()),
        })
        .collect();
    if let Some(secret) = &config.webhook_secret {
        routes.extend(config.webhooks.iter().map(|url| Route {
            id: format!("webhook-{}", url.fingerprint()),
            kind: RouteKind::Webhook,
            target: Target::Webhook {
                url: url.clone(),
                secret: secret.clone(),
            },
        }));
    }
    if let Some(conversation) = &config.bot_conversation {
        let key = format!(
            "{}|{}",
            conversation.service_url.expose(),
            conversation.conversation_id
        );
        routes.push(Route {
            id: format!(
                "bot-{}",
                hex::encode(&openssl::sha::sha256(key.as_bytes())[..6])
            ),
            kind: RouteKind::Bot,
            target: Target::Bot(conversation.clone()),
        });
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn ids_are_stable_and_labels_hide_the_url_secret() {
        let settings = [
            (
                "ALERT_TEAMS_WEBHOOK_URLS",
                "https://x.logic.azure.com/workflows/a?sig=TOPSECRET",
            ),
            (
                "ALERT_WEBHOOK_URLS",
                "https://desk.example/in?token=TOPSECRET",
            ),
            ("ALERT_WEBHOOK_SECRET", "0123456789abcdef0123"),
        ];
        let read = || {
            Config::from_lookup(|k| {
                settings
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
            .unwrap()
        };
        let a = from_config(&read().alerts);
        let b = from_config(&read().alerts);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].id, b[0].id);
        assert!(a[0].id.starts_with("teams-") && a[0].id.len() == "teams-".len() + 12);
        assert!(a[1].id.starts_with("webhook-"));
        for r in &a {
            assert!(!r.label().contains("TOPSECRET"));
            assert!(!format!("{r:?}").contains("TOPSECRET"));
        }
        assert!(
            a[0].label()
                .starts_with("teams https://x.logic.azure.com (")
        );
    }
}
