//! Serving connections so that slow or idle clients cost little: a header read timeout, a
//! connection cap, and a bounded shutdown drain, around any warp filter.
//!
//! warp's own server sets none of these, so the handler drives hyper's HTTP/1 connection
//! builder itself with the warp filter as its service:
//! - a request's headers must arrive within [`HEADER_READ_TIMEOUT`] (hyper closes the
//!   connection otherwise); its body within `BODY_READ_TIMEOUT_S` (the routes answer 408);
//! - at most [`ServeOptions::max_connections`] connections are open (half the open-files limit
//!   by default, so the archive always has descriptors). At the cap, a new connection closes the
//!   oldest one that has no request in flight (still sending headers, or idle between
//!   requests): a flood of slow clients cannot keep the host's readiness poll or Graph's
//!   handshake out. Only when every connection has a request in flight does the new one wait;
//!   those end within the body deadline;
//! - on shutdown, no new connections; open ones finish their requests for at most
//!   `SHUTDOWN_DRAIN_S`, then they are dropped (nothing unanswered was acknowledged, so Graph
//!   retries it).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// Time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of the default connection cap (when the open-files limit is huge).
const MAX_CONNECTIONS_CEILING: usize = 4096;

/// How connections are served.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// `SHUTDOWN_DRAIN_S`: how long in-flight requests may finish after shutdown is asked.
    pub drain: Duration,
}

impl ServeOptions {
    /// The defaults with `drain`; the cap is half the process's open-files limit.
    pub fn new(drain: Duration) -> Self {
        ServeOptions {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: default_max_connections(),
            drain,
        }
    }
}

fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let soft = if ok { limit.rlim_cur as usize } else { 1024 };
    (soft / 2).clamp(16, MAX_CONNECTIONS_CEILING)
}

/// One open connection, as the cap sees it.
struct Slot {
    in_flight: AtomicUsize,
    close: Notify,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
    freed: Notify,
}

impl Registry {
    /// Makes room for one more connection: `true` when there is room (or was made).
    fn make_room(&self, cap: usize) -> bool {
        let open = self.open.lock().expect("registry lock");
        if open.len() < cap {
            return true;
        }
        let idle = open
            .values()
            .find(|s| s.in_flight.load(Ordering::Acquire) == 0);
        match idle {
            Some(slot) => {
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn add(&self, id: u64) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            in_flight: AtomicUsize::new(0),
            close: Notify::new(),
        });
        self.open
            .lock()
            .expect("registry lock")
            .insert(id, slot.clone());
        slot
    }

    fn remove(&self, id: u64) {
        self.open.lock().expect("registry lock").remove(&id);
        self.freed.notify_waiters();
    }

    fn len(&self) -> usize {
        self.open.lock().expect("registry lock").len()
    }
}

/// Counts a request in flight on its connection while it lives.
struct InFlight(Arc<Slot>);

impl InFlight {
    fn enter(slot: &Arc<Slot>) -> Self {
        slot.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(slot.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The service of a connection: a warp filter made a service (`warp::service(filter)`).
pub trait RouteService:
    tower_service::Service<
        warp::http::Request<hyper::body::Incoming>,
        Response = warp::reply::Response,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> RouteService for S where
    S: tower_service::Service<
            warp::http::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `service` (`warp::service(routes)`) on `listener` until `shutdown` resolves, then
/// drains (see the module docs).
pub async fn serve<S: RouteService>(
    listener: TcpListener,
    service: S,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) {
    let service = TowerToHyperService::new(service);
    let registry = Arc::new(Registry::default());
    let (draining, drain_signal) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_id = 0u64;
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, mostly: give the open connections a moment to end.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while !registry.make_room(options.max_connections) {
            tokio::select! {
                _ = &mut shutdown => return drain(registry, draining, options.drain).await,
                _ = registry.freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        next_id += 1;
        let slot = registry.add(next_id);
        let connection = serve_one(
            stream,
            service.clone(),
            slot,
            &options,
            drain_signal.clone(),
        );
        let registry = registry.clone();
        let id = next_id;
        tokio::spawn(async move {
            connection.await;
            registry.remove(id);
        });
    }
    drop(listener);
    drain(registry, draining, options.drain).await;
}

/// Asks every connection to finish, then waits for them at most `bound`.
async fn drain(registry: Arc<Registry>, draining: watch::Sender<bool>, bound: Duration) {
    let _ = draining.send(true);
    let all_closed = async {
        while registry.len() > 0 {
            tokio::select! {
                _ = registry.freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    };
    if tokio::time::timeout(bound, all_closed).await.is_err() {
        tracing::warn!(
            open = registry.len(),
            drain_s = bound.as_secs(),
            "shutdown drain bound reached: dropping connections still open (their requests were not acknowledged)"
        );
    }
}

fn serve_one<S: RouteService>(
    stream: tokio::net::TcpStream,
    service: TowerToHyperService<S>,
    slot: Arc<Slot>,
    options: &ServeOptions,
    mut draining: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let tracked_slot = slot.clone();
    let tracked = hyper::service::service_fn(move |request| {
        let guard = InFlight::enter(&tracked_slot);
        let response = hyper::service::Service::call(&service, request);
        async move {
            let response = response.await;
            drop(guard);
            response
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), tracked);
    async move {
        let mut connection = std::pin::pin!(connection);
        let mut asked_to_finish = *draining.borrow();
        if asked_to_finish {
            connection.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                // Evicted by a newer connection at the cap (it had no request in flight).
                _ = slot.close.notified() => return,
                changed = draining.changed(), if !asked_to_finish => {
                    if changed.is_err() || *draining.borrow() {
                        asked_to_finish = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}
