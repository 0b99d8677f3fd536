//! `cargo bench --bench attendance`: `handler attendance` over an archive of 100,000 events,
//! seconds and peak RSS, with the figures BENCHMARKS.md records.
//!
//! It writes a filesystem archive in the archive's own layout and record formats (Graph
//! `callevent` event records, the bot's meeting records, and chat messages that the report must
//! skip), then runs the release binary under `/usr/bin/time -v` for `--format json` and
//! `--format html`, next to `handler report` on the same archive (which also reads every event
//! once): the ratio says what the attendance rules cost over reading the archive. Under
//! `cargo test` (no `--bench`) the same binary runs on 2,500 events and checks the output.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use teams_notifications::archive::records::sha256_hex;
use teams_notifications::archive::{Kind, ObjectName};

/// Events per meeting: 200 Graph callevents, 25 bot records, 25 chat messages.
const PER_MEETING: usize = 250;
const PARTICIPANTS: usize = 40;

fn write(root: &Path, partition: &str, body: &Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let name = ObjectName::new(
        Kind::Events,
        Some((2026, 11, 23)),
        partition,
        &sha256_hex(&bytes),
    );
    let path = root.join(name.as_str());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn at(meeting: usize, second: usize) -> String {
    let t = time::macros::datetime!(2026-11-23 08:00:00 UTC)
        + time::Duration::seconds((meeting * 600 + second) as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn join_url(meeting: usize) -> String {
    format!(
        "https://teams.microsoft.com/l/meetup-join/19%3ameeting_bench{meeting:06}%40thread.v2/0"
    )
}

/// One Graph callevent record: event `i` of `meeting`.
fn callevent(meeting: usize, i: usize) -> Value {
    let encoded: String =
        url::form_urlencoded::byte_serialize(join_url(meeting).as_bytes()).collect();
    let resource =
        format!("communications/onlineMeetings(joinWebUrl='{encoded}')/meetingCallEvents");
    let mut payload = json!({"@odata.type": "#microsoft.graph.callevent", "@odata.id": resource,
        "id": format!("{meeting}-{i}"), "eventDateTime": at(meeting, i * 2)});
    match i {
        0 => payload["eventType"] = "callStarted".into(),
        199 => payload["eventType"] = "callEnded".into(),
        _ => {
            let p = i % PARTICIPANTS;
            let phase = i / PARTICIPANTS;
            let lobby = p.is_multiple_of(4) && phase == 0;
            let leaving = phase % 2 == 1 && !p.is_multiple_of(4);
            let mut entry = json!({"info": {"identity": {"user": {"id": format!("user-{p}"),
                "displayName": format!("Participant {p}"), "tenantId": "t"}}},
                "isInLobby": lobby, "id": format!("call-{p}")});
            if leaving {
                entry["removedState"] = json!({"reason": "Participant has left the meeting call."});
            }
            payload["eventType"] = "rosterUpdated".into();
            payload["participants@delta"] = json!([entry]);
        }
    }
    json!({"receivedAt": at(meeting, i * 2 + 1), "subscriptionId": format!("sub-{}", meeting % 7),
        "tenantId": "t", "changeType": "updated", "resource": resource, "eventKind": "callevent",
        "rich": true, "certificateId": "bench", "summary": "callevent", "payload": payload})
}

fn bot_record(meeting: usize, i: usize) -> Value {
    let id = format!("bot-meeting-{meeting}");
    let (kind, value) = if i == 0 {
        (
            "meetingStart",
            json!({"Title": format!("Meeting {meeting}"), "Id": id, "JoinUrl": join_url(meeting), "StartTime": at(meeting, 0)}),
        )
    } else {
        let p = i % PARTICIPANTS;
        let kind = if i % 2 == 1 {
            "meetingParticipantJoin"
        } else {
            "meetingParticipantLeave"
        };
        (
            kind,
            json!({"members": [{"user": {"id": format!("29:{p}"), "name": format!("Participant {p}"),
            "aadObjectId": format!("user-{p}")}, "meeting": {"inMeeting": i % 2 == 1, "role": "Attendee"}}]}),
        )
    };
    json!({"receivedAt": at(meeting, i * 16), "source": "bot", "eventKind": kind, "meetingId": id,
        "timestamp": at(meeting, i * 16), "summary": kind,
        "activity": {"type": "event", "timestamp": at(meeting, i * 16), "value": value,
            "channelData": {"meeting": {"id": id}}}})
}

fn chat_message(meeting: usize, i: usize) -> Value {
    json!({"receivedAt": at(meeting, i), "subscriptionId": "sub-chat", "eventKind": "chatMessage",
        "rich": true, "summary": "message", "payload": {"id": format!("{meeting}-{i}"),
        "body": {"contentType": "text", "content": "Notes from the meeting, as discussed."}}})
}

/// Writes `meetings` meetings' events; the number of events.
fn generate(root: &Path, meetings: usize) -> usize {
    for m in 0..meetings {
        (0..200).for_each(|i| write(root, &format!("sub-{}", m % 7), &callevent(m, i)));
        (0..25).for_each(|i| write(root, "bot", &bot_record(m, i)));
        (0..25).for_each(|i| write(root, "sub-chat", &chat_message(m, i)));
    }
    meetings * PER_MEETING
}

/// `/usr/bin/time -v` figures of one run.
struct Run {
    wall_s: f64,
    cpu_s: f64,
    peak_rss_mib: f64,
}

fn measure(archive: &Path, args: &[&str]) -> Run {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_handler"))
        .args(args)
        .env("ARCHIVE_DIR", archive)
        .env("RUST_LOG", "error")
        .output()
        .expect("/usr/bin/time runs (Debian package `time`)");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "handler {args:?} failed:\n{report}");
    let field = |name: &str| -> &str {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name:?} in {report}"))
            .trim()
    };
    let wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss):");
    let wall_s = wall
        .split(':')
        .fold(0.0, |acc, part| acc * 60.0 + part.parse::<f64>().unwrap());
    let cpu_s = field("User time (seconds):").parse::<f64>().unwrap()
        + field("System time (seconds):").parse::<f64>().unwrap();
    let peak_rss_mib = field("Maximum resident set size (kbytes):")
        .parse::<f64>()
        .unwrap()
        / 1024.0;
    Run {
        wall_s,
        cpu_s,
        peak_rss_mib,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let meetings = if full { 400 } else { 10 };
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let events = generate(&archive, meetings);
    let out = dir.path().join("out");
    let out_s = out.to_str().unwrap();
    let runs = [
        (
            "handler report --json (reads every event)",
            vec!["report", "--json"],
        ),
        (
            "handler attendance --format json",
            vec!["attendance", "--format", "json", "--out", out_s],
        ),
        (
            "handler attendance --format html",
            vec!["attendance", "--format", "html", "--out", out_s],
        ),
    ];
    println!(
        "archive: {events} events ({meetings} meetings; per meeting 200 callevents, 25 bot records, 25 chat messages)"
    );
    let mut baseline = None;
    for (label, args) in runs {
        let run = measure(&archive, &args);
        let base = *baseline.get_or_insert(run.wall_s);
        println!(
            "{label:<45} {:>6.2} s wall ({:>7.0} events/s, {:.2}x report)  {:>6.2} s CPU  peak RSS {:>6.1} MiB",
            run.wall_s,
            events as f64 / run.wall_s.max(0.001),
            run.wall_s / base.max(0.001),
            run.cpu_s,
            run.peak_rss_mib
        );
    }
    // The last run wrote the page; the JSON run is checked for the meetings it found.
    let json_run: Value = {
        Command::new(env!("CARGO_BIN_EXE_handler"))
            .args(["attendance", "--format", "json", "--out", out_s])
            .env("ARCHIVE_DIR", &archive)
            .env("RUST_LOG", "error")
            .status()
            .unwrap();
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
    };
    let found = json_run["value"].as_array().unwrap();
    assert_eq!(
        found.len(),
        meetings,
        "one report per meeting (Graph and bot linked by join URL)"
    );
    assert!(
        found.iter().all(|m| m["sources"] == json!(["graph", "bot"])
            && m["totalParticipantCount"] == PARTICIPANTS)
    );
}
