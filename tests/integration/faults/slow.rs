//! Slow clients: connections that send their headers or their body a trickle at a time must
//! not stop `GET /` (the host's readiness poll) or Graph's validation handshake, and a client
//! stuck mid-body must not keep the process alive past the shutdown drain.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::process::{Launch, PATIENCE};
use super::scratch;

/// More than the connection cap under an open-files limit of 1024 (half of it).
const SLOW_HEADERS: usize = 600;
const SLOW_BODIES: usize = 100;

/// Lets this test process hold the slow connections (its own soft limit may be 1024).
fn raise_own_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(65_536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

async fn slow_connection(addr: &str, body_started: bool) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let head = if body_started {
        "POST /api/notifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"value\":["
    } else {
        "POST /api/notifications HTTP/1.1\r\nHost: x\r\nContent-"
    };
    s.write_all(head.as_bytes()).await.ok()?;
    Some(s)
}

/// Reads what the server sends before it closes (or `wait` passes).
async fn answer_of(mut s: TcpStream, wait: Duration) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_leave_readiness_and_handshakes_answering() {
    raise_own_open_files_limit();
    let s = scratch();
    let handler = Launch::new(&s.archive, &s.log)
        .set("BODY_READ_TIMEOUT_S", "3")
        .set("SHUTDOWN_DRAIN_S", "2")
        .open_files(1024)
        .start()
        .await;
    let addr = handler.url.trim_start_matches("http://").to_string();
    let mut slow_bodies = Vec::new();
    for _ in 0..SLOW_BODIES {
        slow_bodies.extend(slow_connection(&addr, true).await);
    }
    let mut slow_headers = Vec::new();
    for _ in 0..SLOW_HEADERS {
        slow_headers.extend(slow_connection(&addr, false).await);
    }
    assert!(slow_bodies.len() + slow_headers.len() >= SLOW_BODIES + 500);

    // While they hang: readiness and the handshake answer (within a liveness bound).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for n in 0..10 {
        let ready = http.get(&handler.url).send().await.expect("GET / answers");
        assert!(ready.status().is_success());
        let token = format!("Validation%3A+%3Cscript%3Ealert({n})%3C%2Fscript%3E");
        let r = http
            .post(format!(
                "{}/api/notifications?validationToken={token}",
                handler.url
            ))
            .send()
            .await
            .expect("the handshake answers");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(
            r.text().await.unwrap(),
            format!("Validation: <script>alert({n})</script>")
        );
    }

    // A body that stops coming is answered 408 once BODY_READ_TIMEOUT_S passes.
    let stuck = slow_bodies.pop().unwrap();
    let answer = answer_of(stuck, PATIENCE).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");

    assert!(handler.terminate(PATIENCE).await.is_some());
}

#[tokio::test]
async fn sigterm_with_a_client_stuck_mid_body_exits_within_the_drain_bound() {
    let s = scratch();
    // The body deadline is far away: only the drain bound can end the stuck request.
    let handler = Launch::new(&s.archive, &s.log)
        .set("BODY_READ_TIMEOUT_S", "120")
        .set("SHUTDOWN_DRAIN_S", "2")
        .start()
        .await;
    let addr = handler.url.trim_start_matches("http://").to_string();
    let _stuck = slow_connection(&addr, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exited = handler.terminate(Duration::from_secs(2 + 8)).await;
    assert!(
        exited.is_some(),
        "still running 10 s after SIGTERM with SHUTDOWN_DRAIN_S=2"
    );
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("shutdown drain bound reached"), "{log}");
}
