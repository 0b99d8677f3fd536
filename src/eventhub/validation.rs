//! Graph's reachability check for Event Hubs delivery.
//!
//! Event Hubs delivery has no handshake. When a subscription is created, Graph writes one
//! notification into the hub instead: `subscriptionId` `"NA"`, `clientState` `"NA"` and
//! `changeType` `"Validation: Testing client application reachability for subscription
//! Request-Id: …"` (Microsoft's "Receive change notifications through Azure Event Hubs": "You
//! can ignore the validation message"). It is never an event and never an error: the receiver
//! skips it before the clientState check, so it is not counted as a forgery either.

use crate::graph::notification::ChangeNotification;

const VALIDATION_CHANGE_TYPE: &str = "Validation: Testing client application reachability";

/// Whether `item` is Graph's reachability check rather than a change notification.
pub fn is_validation_item(item: &ChangeNotification) -> bool {
    item.subscription_id == "NA"
        && item
            .change_type
            .as_ref()
            .is_some_and(|c| c.as_str().starts_with(VALIDATION_CHANGE_TYPE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::notification::parse_collection;

    /// The example of Microsoft's Event Hubs delivery article.
    const VALIDATION: &str = r#"{"value":[{"subscriptionId":"NA","subscriptionExpirationDateTime":"NA","clientState":"NA","changeType":"Validation: Testing client application reachability for subscription Request-Id: 522a8e7e-096a-494c-aaf1-ac0dcfca45b7","resource":"NA","resourceData":{"@odata.type":"NA","@odata.id":"NA","id":"NA"}}]}"#;

    #[test]
    fn the_documented_validation_message_is_recognized() {
        let c = parse_collection(VALIDATION.as_bytes()).unwrap();
        assert!(is_validation_item(&c.value[0]));
    }

    #[test]
    fn real_notifications_are_not_validation() {
        for item in [
            r#"{"subscriptionId":"NA","changeType":"updated"}"#,
            r#"{"subscriptionId":"5d2c","changeType":"Validation: Testing client application reachability for subscription Request-Id: x"}"#,
            r#"{"subscriptionId":"NA"}"#,
        ] {
            let c = parse_collection(format!(r#"{{"value":[{item}]}}"#).as_bytes()).unwrap();
            assert!(!is_validation_item(&c.value[0]), "{item}");
        }
    }
}
