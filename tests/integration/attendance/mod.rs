//! `handler attendance` end to end: a scripted meeting (join, lobby, admit, leave, rejoin,
//! removed, a resend and a second subscription's copy) enters as Graph sends it (rich
//! notifications, encrypted for the test certificate, with validationTokens, over HTTP); the
//! bot's meeting events are written as the bot endpoint archives them; then the real binary
//! reports in every format, and the HTML page is opened in a real headless Chromium.

mod browser;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use teams_notifications::archive::fs::FsArchive;
use teams_notifications::archive::records::sha256_hex;
use teams_notifications::archive::{Archive, Kind, ObjectName};
use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::simulate::Step;

use crate::rich::{Rig, rig};

const JOIN_URL: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NDQ0ZTcwYjYtYTJkMi00ZjEwLWI1NTktMjNmMWU2YzA4OGE3%40thread.v2/0?context=%7b%22Tid%22%3a%22f69f5191-20ae-4093-8dae-3ec09edeb253%22%2c%22Oid%22%3a%2211111111-aaaa-4bbb-8ccc-000000000001%22%7d";
const THREAD: &str = "19:meeting_NDQ0ZTcwYjYtYTJkMi00ZjEwLWI1NTktMjNmMWU2YzA4OGE3@thread.v2";
const BOT_MEETING: &str = "MCMxOTptZWV0aW5nX05EUTBaVGN3WWpZdFlUSmtNaTAwWmpFd0xXSTFOVGt0TWpObU1XVTJZekE0T0dFM0B0aHJlYWQudjIjMA==";
const TENANT: &str = "f69f5191-20ae-4093-8dae-3ec09edeb253";
const ADELE: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const MEGAN: &str = "11111111-aaaa-4bbb-8ccc-000000000002";
const LEE: &str = "11111111-aaaa-4bbb-8ccc-000000000003";
const NAMES: [&str; 5] = [
    "Adele Vance",
    "Guest Caller",
    "Lee Gu",
    "Megan Bowen",
    "Nestor Wilke",
];

/// `10:mm:ss` on the scripted day.
fn t(clock: &str) -> String {
    format!("2026-11-23T{clock}Z")
}

/// The meeting's resource exactly as Graph names it (the join URL encoded once more).
fn resource() -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(JOIN_URL.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("communications/onlineMeetings(joinWebUrl='{encoded}')/meetingCallEvents")
}

fn user(id: &str, name: &str) -> Value {
    json!({"user": {"id": id, "displayName": name, "tenantId": TENANT}})
}

fn entry(identity: Value, participant: &str, lobby: bool, removed: Option<&str>) -> Value {
    let mut p = json!({"info": {"identity": identity}, "isInLobby": lobby, "id": participant});
    if let Some(reason) = removed {
        p["removedState"] = json!({ "reason": reason });
    }
    p
}

fn call_event(n: u32, kind: &str, at: &str, roster: Vec<Value>) -> Step {
    let mut payload = json!({
        "@odata.type": "#microsoft.graph.callevent", "@odata.id": resource(),
        "id": format!("callevent-{n}"), "eventType": kind, "eventDateTime": t(at),
    });
    if !roster.is_empty() {
        payload["participants@delta"] = Value::Array(roster);
    }
    Step {
        resource: resource(),
        odata_type: "#microsoft.graph.callevent",
        change_type: "updated",
        payload,
    }
}

/// Graph's side of the scripted meeting (times with Graph's seven fraction digits).
fn graph_script() -> Vec<Step> {
    let adele = || user(ADELE, "Adele Vance");
    let guest = || json!({"guest": {"id": "guest-7f2c", "displayName": "Guest Caller"}});
    let megan = || user(MEGAN, "Megan Bowen");
    vec![
        call_event(1, "callStarted", "10:00:00.0000000", vec![]),
        call_event(
            2,
            "rosterUpdated",
            "10:01:00.0000000",
            vec![
                entry(adele(), "p-adele", false, None),
                entry(guest(), "p-guest", true, None),
            ],
        ),
        call_event(
            3,
            "rosterUpdated",
            "10:03:30.0000000",
            vec![entry(guest(), "p-guest", false, None)],
        ),
        call_event(
            4,
            "rosterUpdated",
            "10:12:00.0000000",
            vec![entry(
                guest(),
                "p-guest",
                false,
                Some("Participant has left the meeting call."),
            )],
        ),
        call_event(
            5,
            "rosterUpdated",
            "10:15:00.0000000",
            vec![entry(guest(), "p-guest-2", false, None)],
        ),
        call_event(
            6,
            "rosterUpdated",
            "10:20:00.0000000",
            vec![entry(megan(), "p-megan", false, None)],
        ),
        call_event(
            7,
            "rosterUpdated",
            "10:35:00.0000000",
            vec![entry(
                megan(),
                "p-megan",
                false,
                Some("Participant has been removed from the meeting call."),
            )],
        ),
        // Roster updates also report people whose presence did not change.
        call_event(
            8,
            "rosterUpdated",
            "10:40:00.0000000",
            vec![entry(adele(), "p-adele", false, None)],
        ),
        call_event(9, "callEnded", "10:50:00.0000000", vec![]),
    ]
}

/// The bot's meeting events as its endpoint archives them (the bot record contract).
fn bot_records() -> Vec<Value> {
    let record = |kind: &str, meeting: &str, at: &str, join_url: Option<&str>, value: Value| {
        let activity = json!({
            "type": "event", "name": format!("application/vnd.microsoft.{kind}"), "timestamp": t(at),
            "channelId": "msteams", "serviceUrl": "https://smba.trafficmanager.net/amer/",
            "conversation": {"isGroup": true, "conversationType": "groupchat", "id": THREAD},
            "value": value, "channelData": {"tenant": {"id": TENANT}, "meeting": {"id": meeting}}
        });
        let mut r = json!({
            "receivedAt": t(at), "source": "bot", "eventKind": kind, "meetingId": meeting,
            "tenantId": TENANT, "timestamp": t(at), "summary": kind, "activity": activity
        });
        if let Some(u) = join_url {
            r["joinUrl"] = u.into();
        }
        r
    };
    let member = |id: &str, aad: &str, name: &str, role: &str, in_meeting: bool| {
        json!({"user": {"id": id, "name": name, "aadObjectId": aad, "tenantId": TENANT},
               "meeting": {"inMeeting": in_meeting, "role": role}})
    };
    let members = |m: Vec<Value>| json!({ "members": m });
    vec![
        record(
            "meetingStart",
            BOT_MEETING,
            "10:00:01",
            Some(JOIN_URL),
            json!({
            "MeetingType": "Scheduled", "Title": "Quarterly planning", "Id": BOT_MEETING,
            "JoinUrl": JOIN_URL, "StartTime": t("10:00:00")}),
        ),
        record(
            "meetingParticipantJoin",
            BOT_MEETING,
            "10:01:02",
            None,
            members(vec![member(
                "29:adele",
                &ADELE.to_uppercase(),
                "Adele Vance",
                "Organizer",
                true,
            )]),
        ),
        record(
            "meetingParticipantJoin",
            BOT_MEETING,
            "10:05:00",
            None,
            members(vec![member("29:lee", LEE, "Lee Gu", "Attendee", true)]),
        ),
        record(
            "meetingParticipantJoin",
            BOT_MEETING,
            "10:20:01",
            None,
            members(vec![member(
                "29:megan",
                MEGAN,
                "Megan Bowen",
                "Presenter",
                true,
            )]),
        ),
        record(
            "meetingParticipantLeave",
            BOT_MEETING,
            "10:30:00",
            None,
            members(vec![member("29:lee", LEE, "Lee Gu", "Attendee", false)]),
        ),
        record(
            "meetingParticipantLeave",
            BOT_MEETING,
            "10:35:01",
            None,
            members(vec![member(
                "29:megan",
                MEGAN,
                "Megan Bowen",
                "Presenter",
                false,
            )]),
        ),
        record(
            "meetingEnd",
            BOT_MEETING,
            "10:50:02",
            Some(JOIN_URL),
            json!({
            "Id": BOT_MEETING, "JoinUrl": JOIN_URL, "EndTime": t("10:50:00")}),
        ),
        // Another meeting, known only by a bot meeting id: kept apart.
        record(
            "meetingParticipantJoin",
            "other-meeting",
            "11:00:00",
            None,
            members(vec![member(
                "29:nestor",
                "11111111-aaaa-4bbb-8ccc-000000000004",
                "Nestor Wilke",
                "Organizer",
                true,
            )]),
        ),
    ]
}

async fn write_bot_records(archive_dir: &Path) {
    let archive = FsArchive::open(archive_dir).await.unwrap();
    for r in bot_records() {
        let body = serde_json::to_vec(&r).unwrap();
        let name = ObjectName::new(
            Kind::Events,
            Some((2026, 11, 23)),
            "bot",
            &sha256_hex(&body),
        );
        archive.put_if_absent(&name, body.into()).await.unwrap();
    }
}

/// The scripted meeting through the notification path, plus a resend and a copy of one
/// notification from a second subscription on the same meeting.
async fn scripted_archive() -> Rig {
    let r = rig(vec![dev::self_signed("attendance-cert", 30)], &[]).await;
    let key = &r.keys[0];
    let steps = graph_script();
    let mut sent = Vec::new();
    for step in &steps {
        let item = r.item(step, key);
        assert_eq!(
            r.send(vec![item.clone()], &[r.token()]).await,
            reqwest::StatusCode::ACCEPTED
        );
        sent.push(item);
    }
    // Graph resends the same notification (at least once delivery).
    assert_eq!(
        r.send(vec![sent[3].clone()], &[r.token()]).await,
        reqwest::StatusCode::ACCEPTED
    );
    let mut other_subscription = r.item(&steps[5], key);
    other_subscription["subscriptionId"] = "sub-second".into();
    assert_eq!(
        r.send(vec![other_subscription], &[r.token()]).await,
        reqwest::StatusCode::ACCEPTED
    );
    assert_eq!(
        r.app.objects(Kind::Events).await.len(),
        steps.len() + 1,
        "one copy from the second subscription"
    );
    write_bot_records(&r.app.archive_dir).await;
    r
}

fn attendance(archive_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("attendance")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ARCHIVE_DIR", archive_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "handler attendance {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The expected attendance, to the second: (name, role, intervals, lobby waits, removal).
type Expected = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str, i64)>,
    Vec<(&'static str, &'static str, i64, bool)>,
    Option<(&'static str, Option<&'static str>)>,
);

fn expected() -> Vec<Expected> {
    vec![
        (
            "Adele Vance",
            "Organizer",
            vec![("10:01:00", "10:50:00", 2940)],
            vec![],
            None,
        ),
        (
            "Guest Caller",
            "None",
            vec![
                ("10:03:30", "10:12:00", 510),
                ("10:15:00", "10:50:00", 2100),
            ],
            vec![("10:01:00", "10:03:30", 150, true)],
            None,
        ),
        (
            "Lee Gu",
            "Attendee",
            vec![("10:05:00", "10:30:00", 1500)],
            vec![],
            Some(("10:30:00", None)),
        ),
        (
            "Megan Bowen",
            "Presenter",
            vec![("10:20:00", "10:35:00", 900)],
            vec![],
            Some((
                "10:35:00",
                Some("Participant has been removed from the meeting call."),
            )),
        ),
    ]
}

#[tokio::test]
async fn a_scripted_meeting_is_reported_to_the_second_in_every_format() {
    let r = scripted_archive().await;
    let dir = &r.app.archive_dir;

    // JSON: Graph's meetingAttendanceReport shape.
    let all: Value = serde_json::from_str(&attendance(dir, &["--format", "json"])).unwrap();
    assert_eq!(
        all["value"].as_array().unwrap().len(),
        2,
        "the bot-only meeting is kept apart"
    );
    assert_eq!(all["value"][1]["id"], "other-meeting");
    let json: Value =
        serde_json::from_str(&attendance(dir, &["--format", "json", "--meeting", THREAD])).unwrap();
    let m = &json["value"][0];
    assert_eq!(json["value"].as_array().unwrap().len(), 1);
    assert_eq!(m["id"], THREAD);
    assert_eq!(m["title"], "Quarterly planning");
    assert_eq!(m["meetingStartDateTime"], t("10:00:00"));
    assert_eq!(m["meetingEndDateTime"], t("10:50:00"));
    assert_eq!(m["totalParticipantCount"], 4);
    assert_eq!(m["sources"], json!(["graph", "bot"]));
    assert_eq!(m["botMeetingIds"], json!([BOT_MEETING]));
    let records = m["attendanceRecords"].as_array().unwrap();
    assert_eq!(records.len(), 4);
    for (record, (name, role, intervals, waits, removed)) in records.iter().zip(expected()) {
        assert_eq!(record["identity"]["displayName"], name);
        assert_eq!(record["role"], role, "{name}");
        let got: Vec<Value> = record["attendanceIntervals"].as_array().unwrap().clone();
        let want: Vec<Value> = intervals.iter().map(|(a, b, d)| json!({"joinDateTime": t(a), "leaveDateTime": t(b), "durationInSeconds": d})).collect();
        assert_eq!(got, want, "{name}");
        let total: i64 = intervals.iter().map(|i| i.2).sum();
        assert_eq!(record["totalAttendanceInSeconds"], total, "{name}");
        let want: Vec<Value> = waits.iter().map(|(a, b, d, ok)| json!({"lobbyEnterDateTime": t(a), "lobbyExitDateTime": t(b), "durationInSeconds": d, "admitted": ok})).collect();
        assert_eq!(record["lobbyWaits"], json!(want), "{name}");
        let want = removed.map(|(at, reason)| json!({"reason": reason, "dateTime": t(at)}));
        assert_eq!(record["removedState"], json!(want), "{name}");
    }
    assert_eq!(
        records[0]["identity"]["id"], ADELE,
        "Graph's and the bot's identities are one person"
    );
    assert_eq!(records[1]["identity"]["id"], "guest-7f2c");
    // The same meeting asked for by its join URL in Teams' spelling.
    let by_url: Value = serde_json::from_str(&attendance(
        dir,
        &["--format", "json", "--meeting", JOIN_URL],
    ))
    .unwrap();
    assert_eq!(by_url["value"], json["value"]);

    // CSV: one row per interval and lobby wait.
    let csv = attendance(dir, &["--format", "csv", "--meeting", THREAD]);
    let mut want = vec![
        "meetingId,meetingTitle,participantId,displayName,role,kind,startDateTime,endDateTime,durationInSeconds,admitted,totalAttendanceInSeconds,totalLobbyWaitInSeconds,removedDateTime,removedReason".to_string(),
    ];
    for (name, role, intervals, waits, removed) in expected() {
        let record = records
            .iter()
            .find(|r| r["identity"]["displayName"] == name)
            .unwrap();
        let id = record["identity"]["id"].as_str().unwrap();
        let total: i64 = intervals.iter().map(|i| i.2).sum();
        let lobby: i64 = waits.iter().map(|w| w.2).sum();
        let (removed_at, reason) =
            removed.map_or((String::new(), ""), |(at, r)| (t(at), r.unwrap_or("")));
        for (a, b, d) in &intervals {
            want.push(format!("{THREAD},Quarterly planning,{id},{name},{role},attendance,{},{},{d},,{total},{lobby},{removed_at},{reason}", t(a), t(b)));
        }
        for (a, b, d, _) in &waits {
            want.push(format!("{THREAD},Quarterly planning,{id},{name},{role},lobby,{},{},{d},true,{total},{lobby},{removed_at},{reason}", t(a), t(b)));
        }
    }
    assert_eq!(csv, want.join("\r\n") + "\r\n");

    // Text.
    let text = attendance(dir, &["--meeting", THREAD]);
    for line in [
        "Meeting Quarterly planning",
        "  call       2026-11-23 10:00:00 – 10:50:00 UTC (50m 00s)",
        "  4 participants, 17 events from graph and bot",
        "  Adele Vance (Organizer): 49m 00s in the meeting",
        "      joined  10:01:00 – 10:50:00     49m 00s",
        "  Guest Caller (None): 43m 30s in the meeting, 2m 30s in the lobby",
        "      lobby   10:01:00 – 10:03:30      2m 30s  admitted",
        "      joined  10:03:30 – 10:12:00      8m 30s",
        "      joined  10:15:00 – 10:50:00     35m 00s",
        "  Lee Gu (Attendee): 25m 00s in the meeting",
        "      joined  10:05:00 – 10:30:00     25m 00s",
        "      removed 10:30:00  left",
        "  Megan Bowen (Presenter): 15m 00s in the meeting",
        "      joined  10:20:00 – 10:35:00     15m 00s",
        "      removed 10:35:00  Participant has been removed from the meeting call.",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    // HTML, in a real browser.
    let page_dir = tempfile::tempdir().unwrap();
    let page = page_dir.path().join("attendance.html");
    attendance(dir, &["--format", "html", "--out", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    for external in ["<script", "<link", "src=", "href=", "url(http", "@import"] {
        assert!(
            !html.contains(external),
            "the page must be self-contained ({external})"
        );
    }
    let dom = browser::dump_dom(&page);
    for name in NAMES {
        assert!(dom.contains(name), "{name} missing from the DOM");
    }
    for tip in [
        "Guest Caller waited in the lobby 10:01:00 – 10:03:30 (2m 30s), admitted",
        "Guest Caller in the meeting 10:03:30 – 10:12:00 (8m 30s)",
        "Guest Caller in the meeting 10:15:00 – 10:50:00 (35m 00s)",
        "Adele Vance in the meeting 10:01:00 – 10:50:00 (49m 00s)",
        "Lee Gu in the meeting 10:05:00 – 10:30:00 (25m 00s)",
        "Megan Bowen in the meeting 10:20:00 – 10:35:00 (15m 00s)",
        "Megan Bowen left the roster at 10:35:00: Participant has been removed from the meeting call.",
        "call started 10:00:00 UTC",
        "call ended 10:50:00 UTC",
    ] {
        assert!(dom.contains(tip), "tooltip {tip:?} missing from the DOM");
    }
    assert_eq!(
        dom.matches("class=\"stay\"").count(),
        5 + 2,
        "5 intervals and the two legends'"
    );
    assert_eq!(
        dom.matches("class=\"stay open\"").count(),
        1,
        "the other meeting's open interval"
    );
    let shot = browser::screenshot(&page, 1200, 1100);
    let colours = browser::colour_counts(&shot);
    assert!(
        colours.non_background > 20_000,
        "the page looks blank: {colours:?}"
    );
    assert!(
        colours.bar_blue > 2_000,
        "no attendance bars drawn: {colours:?}"
    );
    assert!(
        colours.lobby_amber > 100,
        "no lobby wait drawn: {colours:?}"
    );
    // Kept for people to look at (the README's picture is made from this page).
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::copy(&shot.path, keep.join("attendance-test.png")).unwrap();
    std::fs::copy(&page, keep.join("attendance-test.html")).unwrap();
}

#[tokio::test]
async fn hostile_names_are_inert_in_every_format() {
    let r = rig(vec![dev::self_signed("hostile-cert", 30)], &[]).await;
    let evil = "=cmd|' /C calc'!A0<img src=x onerror=alert(1)>\u{1b}[2J";
    let step = call_event(
        1,
        "rosterUpdated",
        "10:01:00",
        vec![entry(user("evil-1", evil), "p-evil", false, None)],
    );
    let item = r.item(&step, &r.keys[0]);
    assert_eq!(
        r.send(vec![item], &[r.token()]).await,
        reqwest::StatusCode::ACCEPTED
    );
    let dir = &r.app.archive_dir;
    let html = attendance(dir, &["--format", "html"]);
    assert!(
        !html.contains("<img"),
        "markup from a display name reached the page"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    let csv = attendance(dir, &["--format", "csv"]);
    assert!(
        csv.contains(",'=cmd|"),
        "a formula reached the spreadsheet: {csv}"
    );
    let text = attendance(dir, &["--format", "text"]);
    assert!(
        !text.contains('\u{1b}'),
        "an escape sequence reached the terminal"
    );
    let json: Value = serde_json::from_str(&attendance(dir, &["--format", "json"])).unwrap();
    assert_eq!(
        json["value"][0]["attendanceRecords"][0]["identity"]["displayName"],
        evil
    );
}
