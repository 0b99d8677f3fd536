//! One run at a time of a piece of work, joined by whoever asks while it runs.
//!
//! The reconcile is the renewer's only expensive operation (a listing of Graph's subscriptions
//! and one call per change). The timer, a repeated `POST /renew` and the lifecycle reactions all
//! want "a reconcile after now"; a reconcile already running when they ask started before their
//! reason to ask only by moments, so they join it instead of queueing another: thirty calls of
//! `POST /renew` in a second cost one reconcile, and a reaction never makes the timer wait.
//!
//! The work runs in its own task, so a caller that goes away (a closed connection) does not
//! cancel it for the others.

use std::future::Future;
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tracing::instrument::WithSubscriber;

/// See the module docs. `T` is what every joiner gets (cloned).
pub struct SingleFlight<T: Clone + Send + Sync + 'static> {
    current: Mutex<Option<Shared<BoxFuture<'static, Option<T>>>>>,
}

impl<T: Clone + Send + Sync + 'static> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            current: Mutex::new(None),
        }
    }
}

/// Whether a call started the work or joined a run in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flight {
    Started,
    Joined,
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Runs `start()`'s future, or joins the run in progress. `None` only if the work panicked.
    pub async fn run<Fut>(&self, start: impl FnOnce() -> Fut) -> (Option<T>, Flight)
    where
        Fut: Future<Output = T> + Send + 'static,
    {
        let (run, flight) = {
            let mut current = self.current.lock().expect("single-flight lock");
            match current.as_ref() {
                Some(run) => (run.clone(), Flight::Joined),
                None => {
                    // The work logs through the subscriber of whoever started it.
                    let task = tokio::spawn(start().with_current_subscriber());
                    let run = async move { task.await.ok() }.boxed().shared();
                    *current = Some(run.clone());
                    (run, Flight::Started)
                }
            }
        };
        let out = run.clone().await;
        let mut current = self.current.lock().expect("single-flight lock");
        if current.as_ref().is_some_and(|c| c.ptr_eq(&run)) {
            *current = None;
        }
        (out, flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_join_one_run_and_later_callers_start_another() {
        let flight = Arc::new(SingleFlight::<usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, wait) = tokio::sync::watch::channel(false);
        let start = |runs: Arc<AtomicUsize>, mut wait: tokio::sync::watch::Receiver<bool>| {
            move || async move {
                let _ = wait.wait_for(|go| *go).await;
                runs.fetch_add(1, Ordering::SeqCst) + 1
            }
        };
        let callers: Vec<_> = (0..30)
            .map(|_| {
                let (flight, runs, wait) = (flight.clone(), runs.clone(), wait.clone());
                tokio::spawn(async move { flight.run(start(runs, wait)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send(true).unwrap();
        let mut started = 0;
        for c in callers {
            let (out, how) = c.await.unwrap();
            assert_eq!(out, Some(1));
            started += (how == Flight::Started) as usize;
        }
        assert_eq!(started, 1);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let (out, how) = flight.run(start(runs.clone(), wait)).await;
        assert_eq!((out, how), (Some(2), Flight::Started));
    }
}
