//! Event Hubs delivery: 100-event invocations of rich notifications, entered as the Functions host
//! enters them (`POST /eventhub` on the real server, built by the real builder, filesystem
//! archive). Prints rich events per CPU-second as a ratio to `openssl speed rsa2048` measured in
//! the same run (one RSA private operation per event is the floor), and the invocation answer's
//! p50/p99. `cargo bench --bench eventhub` runs it in full; `cargo test` runs a small smoke run.

#[path = "common/measure.rs"]
mod measure;

use std::time::{Duration, Instant};

use measure::cpu_time;
use serde_json::{Value, json};
use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::eventhub_host::{self, HostEncoding};
use teams_notifications::devtools::simulate::{self, Step, Target};

const CLIENT_STATE: &str = "bench-client-state";
const TENANT: &str = "f69f5191-20ae-4093-8dae-3ec09edeb253";
const EVENTS: usize = 100;

fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn step(n: usize) -> Step {
    Step {
        resource: format!("chats('19:c@thread.v2')/messages('{n}')"),
        odata_type: "#Microsoft.Graph.chatMessage",
        change_type: "created",
        payload: json!({"id": n.to_string(), "messageType": "message", "body": {"content": format!("message {n} {}", "x".repeat(400))}}),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let invocations = if full() { 60 } else { 3 };
    let dir = tempfile::tempdir().unwrap();
    let key = dev::self_signed("bench", 30);
    let pem = dir.path().join("bench.pem");
    std::fs::write(&pem, dev::to_pem(&key).unwrap()).unwrap();
    let target = Target {
        subscription_id: "sub-bench".into(),
        client_state: CLIENT_STATE.into(),
        tenant_id: TENANT.into(),
    };
    let bodies: Vec<String> = (0..invocations)
        .map(|i| {
            let events: Vec<String> = (0..EVENTS)
                .map(|e| {
                    let item = simulate::rich_item(
                        &step(i * EVENTS + e),
                        &target,
                        &key.certificate,
                        &key.id,
                    )
                    .unwrap();
                    simulate::collection(vec![item], &[])
                })
                .collect();
            eventhub_host::invocation(
                &events,
                HostEncoding::StringOfArray,
                Some((0, 5)),
                "0",
                (i * EVENTS) as i64,
            )
        })
        .collect();

    let settings = [
        (
            "ARCHIVE_DIR",
            dir.path().join("archive").display().to_string(),
        ),
        ("NOTIFICATION_CLIENT_STATE", CLIENT_STATE.to_string()),
        (
            "NOTIFICATION_CERTIFICATES",
            format!("bench={}", pem.display()),
        ),
        (
            "EVENTHUB_SPOOL_DIR",
            dir.path().join("spool").display().to_string(),
        ),
    ];
    let config = teams_notifications::config::Config::from_lookup(|k| {
        settings
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let (latencies, cpu, wall) = rt.block_on(async {
        let app = teams_notifications::startup::build(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/eventhub", listener.local_addr().unwrap());
        tokio::spawn(teams_notifications::functions::routes::run(
            listener,
            app.state(),
            std::future::pending(),
        ));
        let http = reqwest::Client::new();
        let mut latencies = Vec::new();
        let (cpu0, wall0) = (cpu_time(), Instant::now());
        for body in bodies {
            let t = Instant::now();
            let r = http.post(&url).body(body).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let answer: Value = r.json().await.unwrap();
            latencies.push(t.elapsed());
            assert_eq!(answer["ReturnValue"]["events"], EVENTS, "{answer}");
        }
        (latencies, cpu_time() - cpu0, wall0.elapsed())
    });
    let mut sorted = latencies.clone();
    sorted.sort();
    let events = (invocations * EVENTS) as f64;
    let per_cpu_second = events / cpu.as_secs_f64();
    let speed = measure::openssl_speed_rsa2048(if full() { 3 } else { 1 });
    println!(
        "# eventhub bench ({} invocations of {EVENTS} rich events, {} cores)",
        invocations,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("rich events per CPU-second: {per_cpu_second:.0}");
    println!(
        "rich events per second (wall): {:.0}",
        events / wall.as_secs_f64()
    );
    if let Some(speed) = speed {
        println!("openssl speed rsa2048 (sign/s, one core): {speed:.0}");
        println!(
            "ratio events per CPU-second / rsa2048 sign/s: {:.2}",
            per_cpu_second / speed
        );
    }
    println!(
        "invocation answer: p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        percentile(&sorted, 50.0),
        percentile(&sorted, 99.0),
        sorted.last().unwrap()
    );
}
