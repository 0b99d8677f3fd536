//! The first, cheap step of the notification path, run on the blocking pool: screen the body
//! (count its items, refuse too many), check each item's clientState on the borrowed string,
//! build only the items that passed, once each, and sum up what was dropped.
//!
//! A hostile body without the clientState therefore costs one scan and is answered 202 with
//! one log line, however many items it holds; a body over `MAX_ITEMS_PER_REQUEST` costs the
//! scan up to the first item past the limit and a 413.

use std::collections::HashSet;

use secrecy::{ExposeSecret, SecretString};

use crate::graph::notification::{ChangeNotification, ParseError};
use crate::graph::screening::{ScreenError, screen};

/// How many dropped subscription ids the summary line names.
pub const NAMED_IN_SUMMARY: usize = 3;

/// The clientState comparison. Both sides are hashed (SHA-256) and the digests compared in
/// constant time, so neither the content nor the length of the secret shows in the timing of
/// the comparison.
#[derive(Clone)]
pub struct ClientStateCheck {
    expected: Option<[u8; 32]>,
}

impl ClientStateCheck {
    /// `None` (no `NOTIFICATION_CLIENT_STATE`) matches nothing: fail closed.
    pub fn new(secret: Option<&SecretString>) -> Self {
        ClientStateCheck {
            expected: secret.map(|s| openssl::sha::sha256(s.expose_secret().as_bytes())),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.expected.is_some()
    }

    pub fn matches(&self, got: Option<&str>) -> bool {
        match (&self.expected, got) {
            (Some(expected), Some(got)) => {
                openssl::memcmp::eq(expected, &openssl::sha::sha256(got.as_bytes()))
            }
            _ => false,
        }
    }
}

/// Items dropped for their clientState, summed up for one log line.
#[derive(Debug, Default, Clone)]
pub struct Dropped {
    pub count: usize,
    /// The first few subscription ids, as sent (escape them when logging).
    pub first_ids: Vec<String>,
}

impl Dropped {
    /// Adds another body's dropped items (an Event Hubs invocation sums its events up for one
    /// line); the first ids stay the first [`NAMED_IN_SUMMARY`].
    pub fn absorb(&mut self, other: Dropped) {
        self.count += other.count;
        let room = NAMED_IN_SUMMARY.saturating_sub(self.first_ids.len());
        self.first_ids
            .extend(other.first_ids.into_iter().take(room));
    }
}

/// What the first step hands on.
#[derive(Debug)]
pub struct Intake {
    /// Items in the body.
    pub items: usize,
    /// Items that passed the clientState check, built, without repeats.
    pub accepted: Vec<ChangeNotification>,
    /// Items identical to an earlier one of the same body (not built again).
    pub repeated: usize,
    pub dropped: Dropped,
    /// The body's validationTokens (read only when an accepted item carries resource data).
    pub validation_tokens: Vec<String>,
}

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// 413: more items than a request may carry.
    #[error(transparent)]
    TooMany(ScreenError),
    /// 400: not a notification collection.
    #[error(transparent)]
    BadRequest(#[from] ParseError),
}

/// Runs the first step (see the module docs).
pub fn intake(
    body: &[u8],
    max_items: usize,
    check: &ClientStateCheck,
) -> Result<Intake, IntakeError> {
    let mut relaxed = None;
    let screened = match screen(body, &mut relaxed, max_items) {
        Ok(s) => s,
        Err(ScreenError::Parse(e)) => return Err(e.into()),
        Err(e @ ScreenError::TooMany { .. }) => return Err(IntakeError::TooMany(e)),
    };
    let mut out = Intake {
        items: screened.items.len(),
        accepted: Vec::new(),
        repeated: 0,
        dropped: Dropped::default(),
        validation_tokens: Vec::new(),
    };
    let mut seen = HashSet::new();
    for item in &screened.items {
        if !check.matches(item.client_state.as_deref()) {
            out.dropped.count += 1;
            if out.dropped.first_ids.len() < NAMED_IN_SUMMARY {
                let id = item.subscription_id.as_deref().unwrap_or_default();
                out.dropped.first_ids.push(id.to_string());
            }
            continue;
        }
        if !seen.insert(item.raw.get()) {
            out.repeated += 1;
            continue;
        }
        out.accepted.push(item.build()?);
    }
    if out.accepted.iter().any(ChangeNotification::is_rich) {
        out.validation_tokens = screened.validation_tokens()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> ClientStateCheck {
        ClientStateCheck::new(Some(&SecretString::from("secret")))
    }

    #[test]
    fn only_matching_items_are_built_and_repeats_once() {
        let body = br#"{"value":[
            {"subscriptionId":"a","clientState":"secret","changeType":"created"},
            {"subscriptionId":"a","clientState":"secret","changeType":"created"},
            {"subscriptionId":"b","clientState":"secreT"},
            {"subscriptionId":"c","clientState":"secret-longer"},
            {"subscriptionId":"d"},
            {"subscriptionId":"e","clientState":"wrong","resource":5}
        ]}"#;
        let i = intake(body, 10, &check()).unwrap();
        assert_eq!(i.items, 6);
        assert_eq!(i.accepted.len(), 1);
        assert_eq!(i.repeated, 1);
        assert_eq!(i.dropped.count, 4);
        assert_eq!(i.dropped.first_ids, ["b", "c", "d"]);
        assert!(i.validation_tokens.is_empty());
    }

    #[test]
    fn dropped_items_of_several_bodies_sum_up_and_keep_the_first_ids() {
        let mut all = Dropped::default();
        for (count, ids) in [(2, vec!["a", "b"]), (0, vec![]), (5, vec!["c", "d", "e"])] {
            all.absorb(Dropped {
                count,
                first_ids: ids.into_iter().map(String::from).collect(),
            });
        }
        assert_eq!(all.count, 7);
        assert_eq!(all.first_ids, ["a", "b", "c"]);
    }

    #[test]
    fn refusals_are_typed() {
        assert!(matches!(
            intake(br#"{"value":[{},{},{}]}"#, 2, &check()),
            Err(IntakeError::TooMany(_))
        ));
        assert!(matches!(
            intake(
                br#"{"value":[{"clientState":"secret","resource":5}]}"#,
                2,
                &check()
            ),
            Err(IntakeError::BadRequest(ParseError::WrongShape(_)))
        ));
        let unset = ClientStateCheck::new(None);
        let i = intake(br#"{"value":[{"clientState":""}]}"#, 2, &unset).unwrap();
        assert_eq!(i.dropped.count, 1);
    }
}
