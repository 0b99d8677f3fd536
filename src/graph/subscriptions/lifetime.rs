//! How long Graph lets a subscription live, and the one decision of the lifetime to request.

use std::time::Duration;

use super::resource::ResourceKind;

/// The maximum subscription lifetime per resource, in minutes, as Microsoft documents it.
///
/// Sources: the "Subscription lifetime" table of the subscription resource
/// (<https://learn.microsoft.com/graph/api/resources/subscription#subscription-lifetime>):
/// Teams callRecording, callTranscript, channel, chat, chatMessage, conversationMember and team
/// 4320 minutes (under 3 days); Microsoft's "Get change notifications for Teams meeting call
/// events" document: "the maximum expiry is 3 days"; Microsoft's document on change
/// notifications for emergency call events: "the maximum subscription lifetime is one day".
///
/// Microsoft's "Change notifications for Microsoft Teams resources" document still says 60
/// minutes for Teams resources. That is the older rule, and today it is
/// the limit *without* a `lifecycleNotificationUrl`: Graph refuses an `expirationDateTime` more
/// than an hour away on these resources unless lifecycle notifications are subscribed
/// (<https://learn.microsoft.com/graph/teams-changenotifications-chatmessage>). See
/// [`ResourceKind::max_lifetime_minutes`].
pub const LIFETIMES: &[(ResourceKind, u32)] = &[
    (ResourceKind::MeetingCallEvents, 4320),
    (ResourceKind::EmergencyCallEvents, 1440),
    (ResourceKind::CallRecording, 4320),
    (ResourceKind::CallTranscript, 4320),
    (ResourceKind::Channel, 4320),
    (ResourceKind::Chat, 4320),
    (ResourceKind::ChatMessage, 4320),
    (ResourceKind::ConversationMember, 4320),
    (ResourceKind::Team, 4320),
];

/// The lifetime limit of the Teams resources (chats, channels, teams, members, recordings,
/// transcripts) when no `lifecycleNotificationUrl` is given.
pub const WITHOUT_LIFECYCLE_URL_MINUTES: u32 = 60;

/// Requested lifetimes stay this far below Graph's maximum: Graph measures the maximum from its
/// own clock when the request arrives, so asking for exactly the maximum can be refused.
pub const LIFETIME_MARGIN_MINUTES: u32 = 5;

impl ResourceKind {
    /// Graph's documented maximum in minutes ([`LIFETIMES`]); `None` for [`ResourceKind::Other`].
    /// The Teams resources are limited to an hour without a lifecycle URL.
    pub fn max_lifetime_minutes(self, has_lifecycle_url: bool) -> Option<u32> {
        let max = LIFETIMES
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, m)| *m)?;
        let hour_without_lifecycle = !matches!(
            self,
            ResourceKind::MeetingCallEvents | ResourceKind::EmergencyCallEvents
        );
        Some(if hour_without_lifecycle && !has_lifecycle_url {
            max.min(WITHOUT_LIFECYCLE_URL_MINUTES)
        } else {
            max
        })
    }
}

/// The lifetime to request, the one decision behind [`default_lifetime`] and
/// The renewer's `DesiredSubscription::lifetime`: `requested` minutes when given, else Graph's maximum for
/// `kind` less [`LIFETIME_MARGIN_MINUTES`] (an hour less the margin for a kind without a
/// documented maximum); never more than Graph allows with or without a lifecycle URL.
pub fn choose_lifetime(
    kind: ResourceKind,
    requested: Option<u32>,
    has_lifecycle_url: bool,
) -> Duration {
    let max = kind.max_lifetime_minutes(has_lifecycle_url);
    let default = minutes(
        max.unwrap_or(WITHOUT_LIFECYCLE_URL_MINUTES)
            .saturating_sub(LIFETIME_MARGIN_MINUTES)
            .max(1),
    );
    match (requested, max) {
        (Some(m), Some(_)) => default.min(minutes(m)),
        (Some(m), None) => minutes(m),
        (None, _) => default,
    }
}

/// The lifetime to request for a resource: Graph's maximum less [`LIFETIME_MARGIN_MINUTES`]
/// (an hour less the margin for resources without a documented maximum).
pub fn default_lifetime(resource: &str, has_lifecycle_url: bool) -> Duration {
    choose_lifetime(ResourceKind::classify(resource), None, has_lifecycle_url)
}

fn minutes(m: u32) -> Duration {
    Duration::from_secs(u64::from(m) * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_follow_the_documented_table() {
        use ResourceKind::*;
        for kind in [
            CallRecording,
            CallTranscript,
            Channel,
            Chat,
            ChatMessage,
            ConversationMember,
            Team,
            MeetingCallEvents,
        ] {
            assert_eq!(kind.max_lifetime_minutes(true), Some(4320), "{kind:?}");
        }
        assert_eq!(EmergencyCallEvents.max_lifetime_minutes(true), Some(1440));
        assert_eq!(Other.max_lifetime_minutes(true), None);
        // Without lifecycle notifications, the Teams resources live at most an hour.
        assert_eq!(ChatMessage.max_lifetime_minutes(false), Some(60));
        assert_eq!(EmergencyCallEvents.max_lifetime_minutes(false), Some(1440));
        assert_eq!(MeetingCallEvents.max_lifetime_minutes(false), Some(4320));
    }

    #[test]
    fn one_decision_for_requested_and_default_lifetimes() {
        let m = |n: u64| Duration::from_secs(n * 60);
        assert_eq!(
            choose_lifetime(ResourceKind::ChatMessage, None, true),
            m(4320 - 5)
        );
        assert_eq!(
            choose_lifetime(ResourceKind::ChatMessage, None, false),
            m(60 - 5)
        );
        assert_eq!(choose_lifetime(ResourceKind::Team, Some(120), true), m(120));
        assert_eq!(choose_lifetime(ResourceKind::Team, Some(120), false), m(55));
        assert_eq!(
            choose_lifetime(ResourceKind::Other, Some(600), false),
            m(600)
        );
        assert_eq!(choose_lifetime(ResourceKind::Other, None, true), m(55));
        assert_eq!(
            default_lifetime("/chats/getAllMessages", true),
            choose_lifetime(ResourceKind::ChatMessage, None, true)
        );
    }
}
