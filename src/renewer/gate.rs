//! Which lifecycle notifications get a reaction, and how many reactions run at once.
//!
//! Graph may resend a lifecycle notification, and anyone holding the clientState can post a
//! thousand copies in one body. Reactions cost Graph calls, so:
//! - one reaction per (subscription id, lifecycle event) per request, and none for a pair that
//!   was reacted to within [`ReactionGate::window`]: the copies are archived (evidence), not
//!   acted on;
//! - at most [`ReactionGate::concurrency`] reactions run at once (the rest wait for a permit);
//!   the pairs remembered are bounded too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::graph::notification::ChangeNotification;

/// Default window during which a repeated (subscription, event) pair is not reacted to again.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Default number of reactions running at once.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Pairs remembered at most; past it, new pairs are refused until old ones expire.
const MAX_REMEMBERED: usize = 10_000;

/// What [`ReactionGate::admit`] decided for a request's lifecycle items.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The items to react to, one per pair.
    pub react: Vec<ChangeNotification>,
    /// Items left alone: repeats in this request or within the window, or no pair to key on.
    pub repeats: usize,
    /// The first few subscription ids left alone (for the request's one summary line).
    pub repeated_ids: Vec<String>,
}

pub struct ReactionGate {
    window: Duration,
    recent: Mutex<HashMap<(String, String), Instant>>,
    permits: Arc<Semaphore>,
    concurrency: usize,
}

impl Default for ReactionGate {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW, DEFAULT_CONCURRENCY)
    }
}

impl ReactionGate {
    pub fn new(window: Duration, concurrency: usize) -> Self {
        ReactionGate {
            window,
            recent: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            concurrency: concurrency.max(1),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The permits a reaction holds while it runs.
    pub fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    /// Picks the items of one request that deserve a reaction (see the module docs).
    pub fn admit(&self, items: Vec<ChangeNotification>) -> Admitted {
        let now = Instant::now();
        let mut recent = self.recent.lock().expect("reaction gate lock");
        recent.retain(|_, at| now.duration_since(*at) < self.window);
        let mut out = Admitted::default();
        for item in items {
            let pair = item
                .lifecycle_event
                .as_ref()
                .map(|e| e.as_str())
                .filter(|_| !item.subscription_id.is_empty())
                .map(|e| (item.subscription_id.clone(), e.to_ascii_lowercase()));
            let fresh = pair.is_some_and(|pair| {
                if recent.contains_key(&pair) || recent.len() >= MAX_REMEMBERED {
                    return false;
                }
                recent.insert(pair, now);
                true
            });
            if fresh {
                out.react.push(item);
            } else {
                out.repeats += 1;
                if out.repeated_ids.len() < 3 {
                    out.repeated_ids.push(item.subscription_id.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::notification::parse_collection;

    fn items(pairs: &[(&str, &str)]) -> Vec<ChangeNotification> {
        let value: Vec<_> = pairs
            .iter()
            .map(|(s, e)| serde_json::json!({"subscriptionId": s, "lifecycleEvent": e}))
            .collect();
        parse_collection(serde_json::json!({ "value": value }).to_string().as_bytes())
            .unwrap()
            .value
    }

    #[test]
    fn one_reaction_per_pair_per_request_and_window() {
        let gate = ReactionGate::new(Duration::from_secs(60), 2);
        let mut batch = vec![("a", "missed"); 200];
        batch.push(("a", "subscriptionRemoved"));
        batch.push(("b", "missed"));
        batch.push(("", "missed"));
        let first = gate.admit(items(&batch));
        assert_eq!(first.react.len(), 3);
        assert_eq!(first.repeats, 200);
        // Within the window, the same pairs are left alone; a new pair is not.
        let again = gate.admit(items(&[("a", "MISSED"), ("c", "missed")]));
        assert_eq!(again.react.len(), 1);
        assert_eq!(again.react[0].subscription_id, "c");
    }

    #[test]
    fn pairs_expire_after_the_window() {
        let gate = ReactionGate::new(Duration::from_millis(1), 2);
        assert_eq!(gate.admit(items(&[("a", "missed")])).react.len(), 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(gate.admit(items(&[("a", "missed")])).react.len(), 1);
    }
}
