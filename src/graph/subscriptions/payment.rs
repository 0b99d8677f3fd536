//! Payment models of Microsoft's metered Teams APIs ("Payment models and licensing requirements
//! for Microsoft Teams APIs", the Licensing and payment requirements document).
//!
//! Some Teams change-notification resources take a `model` query parameter in the resource
//! string (`/chats/getAllMessages?model=A`). Without one the subscription runs in evaluation
//! mode: a small monthly allowance per app and tenant, after which Graph stops sending change
//! notifications, silently. The model of an existing subscription cannot be changed: a new
//! subscription with the new model is needed.
//!
//! Resources that take a model, as that document lists them:
//! - A or B: `/chats/getAllMessages`, `/teams/getAllMessages`, `/chats/getAllMembers`,
//!   `/teams/getAllMembers`;
//! - B only: `/users/{id}/chats/getAllMessages`, `/me/chats/getAllMessages`,
//!   `/appCatalogs/teamsApps/{id}/installedToChats` and its `/getAllMessages` and
//!   `/getAllMembers`.
//!
//! Model A is for security and compliance applications and needs a supported license; model B is
//! for the rest. Both bill through an Azure subscription linked to the app (a
//! `Microsoft.GraphServices/accounts` resource).

use serde::Serialize;

/// A licensing and payment model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PaymentModel {
    A,
    B,
}

impl PaymentModel {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "A" | "a" => Some(PaymentModel::A),
            "B" | "b" => Some(PaymentModel::B),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentModel::A => "A",
            PaymentModel::B => "B",
        }
    }
}

impl std::fmt::Display for PaymentModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource's path and its query string (without the `?`), if any.
fn split(resource: &str) -> (&str, Option<&str>) {
    match resource.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (resource, None),
    }
}

/// The `model` query value of a resource string, as written (`None`: no `model` parameter).
pub fn model_parameter(resource: &str) -> Option<&str> {
    let (_, query) = split(resource);
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("model"))
        .map(|(_, v)| v)
}

/// The payment model a resource string carries.
pub fn payment_model(resource: &str) -> Option<PaymentModel> {
    model_parameter(resource).and_then(PaymentModel::parse)
}

/// The resource string without its `model` parameter (other query parameters stay).
pub fn without_model(resource: &str) -> String {
    let (path, query) = split(resource);
    let rest: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            !pair
                .split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("model"))
        })
        .collect();
    if rest.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", rest.join("&"))
    }
}

/// `resource` with `model` as its payment model (replacing any it had).
pub fn with_model(resource: &str, model: PaymentModel) -> String {
    let base = without_model(resource);
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}model={model}")
}

/// The models Graph offers for a resource; empty when it is not metered.
pub fn supported_models(resource: &str) -> &'static [PaymentModel] {
    const BOTH: &[PaymentModel] = &[PaymentModel::A, PaymentModel::B];
    const B_ONLY: &[PaymentModel] = &[PaymentModel::B];
    let (path, _) = split(resource);
    let segments: Vec<String> = path
        .trim()
        .trim_matches('/')
        .split('/')
        .map(|s| s.split('(').next().unwrap_or("").to_ascii_lowercase())
        .collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["chats" | "teams", "getallmessages" | "getallmembers"] => BOTH,
        ["users", _, "chats", "getallmessages"] | ["me", "chats", "getallmessages"] => B_ONLY,
        ["appcatalogs", "teamsapps", _, "installedtochats"]
        | [
            "appcatalogs",
            "teamsapps",
            _,
            "installedtochats",
            "getallmessages" | "getallmembers",
        ] => B_ONLY,
        _ => &[],
    }
}

/// A warning when `resource` is metered and carries no model: it runs in evaluation mode.
pub fn evaluation_mode_warning(resource: &str) -> Option<String> {
    let models = supported_models(resource);
    if models.is_empty() || payment_model(resource).is_some() {
        return None;
    }
    let choices: Vec<&str> = models.iter().map(|m| m.as_str()).collect();
    Some(format!(
        "{resource} is a metered Teams API without a payment model: it runs in evaluation mode, \
         and Graph stops sending its change notifications once the monthly evaluation allowance \
         is used up; set \"model\" ({}) in SUBSCRIPTIONS_FILE",
        choices.join(" or ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_resources_are_metered() {
        for r in [
            "/chats/getAllMessages",
            "/teams/getAllMessages",
            "chats/getAllMembers",
            "/teams/getAllMembers/",
        ] {
            assert_eq!(
                supported_models(r),
                [PaymentModel::A, PaymentModel::B],
                "{r}"
            );
        }
        for r in [
            "/users/8b081ef6/chats/getAllMessages",
            "/me/chats/getAllMessages",
            "/appCatalogs/teamsApps/a1b2/installedToChats",
            "/appCatalogs/teamsApps/a1b2/installedToChats/getAllMessages",
            "/appCatalogs/teamsApps/a1b2/installedToChats/getAllMembers",
        ] {
            assert_eq!(supported_models(r), [PaymentModel::B], "{r}");
        }
        for r in [
            "/teams/getAllChannels",
            "/chats",
            "/teams/19:abc/channels/19:def/messages",
            "communications/calls/getEmergencyEventsByPolicy(policyName='P')",
        ] {
            assert!(supported_models(r).is_empty(), "{r}");
        }
    }

    #[test]
    fn the_model_travels_in_the_resource_string() {
        assert_eq!(
            payment_model("/chats/getAllMessages?model=A"),
            Some(PaymentModel::A)
        );
        assert_eq!(
            payment_model("/chats/getAllMessages?$top=1&Model=b"),
            Some(PaymentModel::B)
        );
        assert_eq!(payment_model("/chats/getAllMessages"), None);
        assert_eq!(
            without_model("/chats/getAllMessages?model=A"),
            "/chats/getAllMessages"
        );
        assert_eq!(without_model("/x?a=1&model=A&b=2"), "/x?a=1&b=2");
        assert_eq!(with_model("/x?model=A", PaymentModel::B), "/x?model=B");
        assert_eq!(with_model("/x?a=1", PaymentModel::A), "/x?a=1&model=A");
    }

    #[test]
    fn evaluation_mode_is_warned_about() {
        let w = evaluation_mode_warning("/chats/getAllMessages").unwrap();
        assert!(w.contains("evaluation mode") && w.contains("A or B"), "{w}");
        assert!(
            evaluation_mode_warning("/me/chats/getAllMessages")
                .unwrap()
                .contains("(B)")
        );
        assert_eq!(
            evaluation_mode_warning("/chats/getAllMessages?model=B"),
            None
        );
        assert_eq!(evaluation_mode_warning("/teams/getAllChannels"), None);
    }
}
