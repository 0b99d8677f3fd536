//! Graph's closed sets as they arrive on the wire, parsed once at the edge: the `changeType` of
//! a notification and the `lifecycleEvent` of a lifecycle notification. Graph adds values over
//! time, so each enum keeps an unknown value as received (`Other`) and writes it back unchanged:
//! an item's canonical form (its archive name) does not depend on whether we know the value.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines a string enum with known spellings and an `Other(String)` case. Known values are
/// recognised case-insensitively and written back in Graph's spelling.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $wire:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// A value this version does not know, kept as received.
            Other(String),
        }

        impl $name {
            /// Graph's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Other(s) => s,
                }
            }

            pub fn parse(s: &str) -> Self {
                $(if s.eq_ignore_ascii_case($wire) {
                    return $name::$variant;
                })+
                $name::Other(s.to_string())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok($name::parse(&s))
            }
        }
    };
}

wire_enum! {
    /// A notification's `changeType`
    /// (<https://learn.microsoft.com/graph/api/resources/changenotification>).
    ChangeType {
        Created => "created",
        Updated => "updated",
        Deleted => "deleted",
    }
}

wire_enum! {
    /// A lifecycle notification's `lifecycleEvent`
    /// (<https://learn.microsoft.com/graph/change-notifications-lifecycle-events>).
    LifecycleEvent {
        /// The subscription's access must be renewed (token or permission change).
        ReauthorizationRequired => "reauthorizationRequired",
        /// Graph removed the subscription; create it again.
        SubscriptionRemoved => "subscriptionRemoved",
        /// Some notifications were not delivered and will not be.
        Missed => "missed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_in_any_case_and_unknown_values_kept() {
        assert_eq!(ChangeType::parse("created"), ChangeType::Created);
        assert_eq!(ChangeType::parse("Updated"), ChangeType::Updated);
        assert_eq!(
            ChangeType::parse("moved"),
            ChangeType::Other("moved".into())
        );
        assert_eq!(
            LifecycleEvent::parse("ReauthorizationRequired"),
            LifecycleEvent::ReauthorizationRequired
        );
        assert_eq!(LifecycleEvent::parse("missed").as_str(), "missed");
    }

    #[test]
    fn serde_round_trips_the_wire_spelling() {
        let e: LifecycleEvent = serde_json::from_str("\"subscriptionRemoved\"").unwrap();
        assert_eq!(e, LifecycleEvent::SubscriptionRemoved);
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            "\"subscriptionRemoved\""
        );
        let other: ChangeType = serde_json::from_str("\"archived\"").unwrap();
        assert_eq!(serde_json::to_string(&other).unwrap(), "\"archived\"");
        assert!(serde_json::from_str::<ChangeType>("3").is_err());
    }
}
