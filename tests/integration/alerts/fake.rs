//! A FAKE alert route on loopback: stands in for a Teams Workflows webhook ("Post to a channel
//! when a webhook request is received" answers `202 Accepted` with an empty body), a generic
//! webhook receiver, or the Bot Connector's activities endpoint. Every request is recorded at
//! arrival (method, path and query, headers, body). Its mode says how it answers: a status, or
//! never (the connection is accepted and the request read, then nothing is sent back).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Seen {
    pub path_and_query: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the route got JSON")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Answer(u16),
    /// Accept, read the request, never answer.
    Hang,
}

struct Shared {
    mode: Mutex<Mode>,
    seen: Mutex<Vec<Seen>>,
}

pub struct FakeRoute {
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRoute {
    /// Serves on a free port.
    pub async fn start(mode: Mode) -> Self {
        Self::start_on(0, mode).await
    }

    /// Serves on `port` (0 = any): a route that was down comes back on its own address.
    pub async fn start_on(port: u16, mode: Mode) -> Self {
        Self::serve(port, mode, None).await
    }

    /// Serves https with a certificate for 127.0.0.1 from `tls` (the tests' CA).
    pub async fn start_tls(tls: tokio_rustls::TlsAcceptor, mode: Mode) -> Self {
        Self::serve(0, mode, Some(tls)).await
    }

    async fn serve(port: u16, mode: Mode, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            seen: Mutex::new(Vec::new()),
        });
        let state = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(TokioIo::new(tcp), service).await,
                        Some(tls) => match tls.accept(tcp).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        FakeRoute { port, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` requests arrived; returns them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen();
            if seen.len() >= n || Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FakeRoute {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(state: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    state.seen.lock().unwrap().push(Seen {
        path_and_query,
        headers,
        body,
    });
    let mode = *state.mode.lock().unwrap();
    match mode {
        Mode::Answer(status) => Response::builder()
            .status(status)
            .body(Full::new(Bytes::new()))
            .unwrap(),
        Mode::Hang => std::future::pending().await,
    }
}
