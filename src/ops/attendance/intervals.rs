//! The rules that turn one meeting's observations into attendance: intervals, lobby waits,
//! removals. Pure (no I/O), so every rule has a test.
//!
//! Facts are taken in time order (ties: call start first, call end last, then archive order),
//! and each participant moves between *away*, *in the lobby* and *in the call*:
//! - joining the call opens an interval; a lobby wait that was open ends there as *admitted*;
//! - entering the lobby opens a lobby wait (from the call: the interval ends there);
//! - leaving the roster (`removedState`, the bot's leave) ends the open interval or wait, and
//!   records the removal with Graph's reason; rejoining later opens a new interval (a rejoin)
//!   and clears the removal, which describes the participant's last state only;
//! - the call's end closes every open interval and wait at its time (not a removal);
//! - a fact that changes nothing (a join while in the call, a leave while away) is a duplicate:
//!   Graph's resends, a second subscription on the same meeting, and the bot reporting what Graph
//!   already reported all collapse. The first source to report a change sets its time;
//! - a leave with no join ever seen becomes an interval with an unknown (`null`) join, and an
//!   interval still open after the last fact has an unknown leave, each of 0 seconds: Graph's
//!   own rule for attendance intervals when data is lacking.

use std::collections::{BTreeSet, HashMap};

use time::OffsetDateTime;

use super::model::{
    AttendanceInterval, AttendanceRecord, Identity, LobbyWait, MeetingAttendance, Removed,
    seconds_between,
};
use super::observation::{Happening, Observation, Person, Presence, Source};

/// One meeting's facts, linked from every source (see `collect`).
#[derive(Debug, Clone, Default)]
pub struct MeetingEvents {
    pub id: String,
    pub join_url: Option<String>,
    pub title: Option<String>,
    pub bot_meeting_ids: BTreeSet<String>,
    /// Archived events that told something about this meeting.
    pub events: usize,
    pub observations: Vec<Observation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unseen,
    Away,
    Lobby(OffsetDateTime),
    InCall(OffsetDateTime),
}

/// One participant while the facts are applied.
struct Track {
    identity: Identity,
    role: Option<String>,
    state: State,
    intervals: Vec<AttendanceInterval>,
    lobby: Vec<LobbyWait>,
    removed: Option<Removed>,
}

impl Track {
    fn new(who: &Person) -> Self {
        Track {
            identity: Identity {
                id: who.key.clone(),
                display_name: None,
                tenant_id: None,
            },
            role: None,
            state: State::Unseen,
            intervals: Vec::new(),
            lobby: Vec::new(),
            removed: None,
        }
    }

    /// Later names and roles win (people rename; roles change); an absent one changes nothing.
    fn learn(&mut self, who: &Person) {
        if let Some(name) = who.display_name.as_ref().filter(|n| !n.trim().is_empty()) {
            self.identity.display_name = Some(name.clone());
        }
        if self.identity.tenant_id.is_none() {
            self.identity.tenant_id.clone_from(&who.tenant_id);
        }
        if who.role.is_some() {
            self.role.clone_from(&who.role);
        }
    }

    fn close_interval(&mut self, since: OffsetDateTime, at: OffsetDateTime) {
        self.intervals.push(AttendanceInterval {
            join_date_time: Some(since),
            leave_date_time: Some(at),
            duration_in_seconds: seconds_between(since, at),
        });
    }

    fn close_wait(&mut self, since: OffsetDateTime, at: OffsetDateTime, admitted: bool) {
        self.lobby.push(LobbyWait {
            lobby_enter_date_time: since,
            lobby_exit_date_time: Some(at),
            admitted,
            duration_in_seconds: seconds_between(since, at),
        });
    }

    fn apply(&mut self, at: OffsetDateTime, presence: &Presence) {
        match (self.state, presence) {
            (State::Lobby(_), Presence::Lobby) | (State::InCall(_), Presence::InCall) => {}
            (State::Unseen | State::Away, Presence::Lobby) => {
                self.state = State::Lobby(at);
                self.removed = None;
            }
            (State::Unseen | State::Away, Presence::InCall) => {
                self.state = State::InCall(at);
                self.removed = None;
            }
            (State::Lobby(since), Presence::InCall) => {
                self.close_wait(since, at, true);
                self.state = State::InCall(at);
            }
            (State::InCall(since), Presence::Lobby) => {
                self.close_interval(since, at);
                self.state = State::Lobby(at);
            }
            (State::Lobby(since), Presence::Gone { reason }) => {
                self.close_wait(since, at, false);
                self.leave(at, reason);
            }
            (State::InCall(since), Presence::Gone { reason }) => {
                self.close_interval(since, at);
                self.leave(at, reason);
            }
            (State::Unseen, Presence::Gone { reason }) => {
                self.intervals.push(AttendanceInterval {
                    join_date_time: None,
                    leave_date_time: Some(at),
                    duration_in_seconds: 0,
                });
                self.leave(at, reason);
            }
            (State::Away, Presence::Gone { reason }) => {
                // A duplicate leave; it may bring the reason the first report lacked.
                if let Some(r) = self.removed.as_mut().filter(|r| r.reason.is_none()) {
                    r.reason.clone_from(reason);
                }
            }
        }
    }

    fn leave(&mut self, at: OffsetDateTime, reason: &Option<String>) {
        self.state = State::Away;
        self.removed = Some(Removed {
            reason: reason.clone(),
            date_time: at,
        });
    }

    fn call_ended(&mut self, at: OffsetDateTime) {
        match self.state {
            State::InCall(since) => self.close_interval(since, at),
            State::Lobby(since) => self.close_wait(since, at, false),
            State::Unseen | State::Away => return,
        }
        self.state = State::Away;
    }

    fn finish(mut self) -> Option<AttendanceRecord> {
        match self.state {
            State::InCall(since) => self.intervals.push(AttendanceInterval {
                join_date_time: Some(since),
                leave_date_time: None,
                duration_in_seconds: 0,
            }),
            State::Lobby(since) => self.lobby.push(LobbyWait {
                lobby_enter_date_time: since,
                lobby_exit_date_time: None,
                admitted: false,
                duration_in_seconds: 0,
            }),
            State::Unseen | State::Away => {}
        }
        if self.intervals.is_empty() && self.lobby.is_empty() {
            return None; // only identified (the bot's participant API), never in the meeting
        }
        Some(AttendanceRecord {
            role: self.role.unwrap_or_else(|| "None".to_string()),
            total_attendance_in_seconds: self.intervals.iter().map(|i| i.duration_in_seconds).sum(),
            total_lobby_wait_in_seconds: self.lobby.iter().map(|w| w.duration_in_seconds).sum(),
            identity: self.identity,
            attendance_intervals: self.intervals,
            lobby_waits: self.lobby,
            removed_state: self.removed,
        })
    }
}

/// Orders facts: by time; at one instant the call's start first and its end last; then in the
/// order they were archived and listed.
fn order_key(o: &Observation) -> (OffsetDateTime, u8, &str, u32) {
    let rank = match o.what {
        Happening::CallStarted => 0,
        Happening::Roster { .. } | Happening::Identified { .. } => 1,
        Happening::CallEnded => 2,
    };
    (o.at, rank, o.received_at.as_str(), o.seq)
}

/// Applies the rules (module docs) to one meeting.
pub fn attendance(mut meeting: MeetingEvents) -> MeetingAttendance {
    meeting
        .observations
        .sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    let mut tracks: Vec<Track> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut start: Option<OffsetDateTime> = None;
    let mut end: Option<OffsetDateTime> = None;
    let mut sources = BTreeSet::new();
    for o in &meeting.observations {
        sources.insert(o.source);
        match &o.what {
            Happening::CallStarted => {
                start = Some(start.map_or(o.at, |s| s.min(o.at)));
                // A new call after an end: the meeting is running again.
                end = end.filter(|e| *e >= o.at);
            }
            Happening::CallEnded => {
                tracks.iter_mut().for_each(|t| t.call_ended(o.at));
                end = Some(end.map_or(o.at, |e| e.max(o.at)));
            }
            Happening::Roster { who, presence } => {
                let track = track_of(&mut tracks, &mut index, who);
                track.learn(who);
                track.apply(o.at, presence);
            }
            Happening::Identified { who } => track_of(&mut tracks, &mut index, who).learn(who),
        }
    }
    let mut records: Vec<AttendanceRecord> = tracks.into_iter().filter_map(Track::finish).collect();
    records.sort_by_cached_key(|r| {
        let first = first_time(r);
        (first.is_none(), first, r.name().to_string())
    });
    MeetingAttendance {
        id: meeting.id,
        meeting_start_date_time: start,
        meeting_end_date_time: end,
        total_participant_count: records.len(),
        attendance_records: records,
        join_web_url: meeting.join_url,
        title: meeting.title,
        bot_meeting_ids: meeting.bot_meeting_ids.into_iter().collect(),
        sources: sources.into_iter().map(Source::name).collect(),
        events: meeting.events,
    }
}

fn track_of<'a>(
    tracks: &'a mut Vec<Track>,
    index: &mut HashMap<String, usize>,
    who: &Person,
) -> &'a mut Track {
    let i = *index.entry(who.key.clone()).or_insert_with(|| {
        tracks.push(Track::new(who));
        tracks.len() - 1
    });
    &mut tracks[i]
}

/// When the participant first showed up (lobby or call), if known.
fn first_time(r: &AttendanceRecord) -> Option<OffsetDateTime> {
    let joins = r
        .attendance_intervals
        .iter()
        .filter_map(|i| i.join_date_time);
    let waits = r.lobby_waits.iter().map(|w| w.lobby_enter_date_time);
    joins.chain(waits).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-23 10:00:00 UTC);

    fn at(seconds: i64) -> OffsetDateTime {
        T0 + time::Duration::seconds(seconds)
    }

    fn who(key: &str, role: Option<&str>) -> Person {
        Person {
            key: key.into(),
            display_name: Some(key.to_uppercase()),
            tenant_id: None,
            role: role.map(str::to_string),
        }
    }

    fn fact(s: i64, source: Source, what: Happening) -> Observation {
        Observation {
            at: at(s),
            source,
            received_at: String::new(),
            seq: 0,
            what,
        }
    }

    fn roster(s: i64, key: &str, presence: Presence) -> Observation {
        fact(
            s,
            Source::Graph,
            Happening::Roster {
                who: who(key, None),
                presence,
            },
        )
    }

    fn gone(reason: &str) -> Presence {
        Presence::Gone {
            reason: Some(reason.into()),
        }
    }

    fn run(observations: Vec<Observation>) -> MeetingAttendance {
        attendance(MeetingEvents {
            id: "m".into(),
            observations,
            ..MeetingEvents::default()
        })
    }

    fn spans(r: &AttendanceRecord) -> Vec<(Option<i64>, Option<i64>, i64)> {
        let rel = |t: Option<OffsetDateTime>| t.map(|t| (t - T0).whole_seconds());
        r.attendance_intervals
            .iter()
            .map(|i| {
                (
                    rel(i.join_date_time),
                    rel(i.leave_date_time),
                    i.duration_in_seconds,
                )
            })
            .collect()
    }

    #[test]
    fn lobby_admit_leave_rejoin_removed_and_the_call_end() {
        let mut facts = vec![
            fact(0, Source::Graph, Happening::CallStarted),
            roster(60, "ann", Presence::InCall),
            roster(120, "bob", Presence::Lobby),
            roster(300, "bob", Presence::InCall),
            roster(900, "bob", gone("Participant has left the meeting call.")),
            roster(1200, "bob", Presence::InCall),
            roster(1500, "cid", Presence::Lobby),
            roster(1530, "cid", gone("Participant has left the meeting call.")),
            roster(
                2100,
                "bob",
                gone("Participant was removed from the meeting."),
            ),
            fact(2700, Source::Graph, Happening::CallEnded),
        ];
        // Out of order in the archive: the rules sort.
        facts.reverse();
        let m = run(facts);
        assert_eq!(m.meeting_start_date_time, Some(at(0)));
        assert_eq!(m.meeting_end_date_time, Some(at(2700)));
        let [ann, bob, cid] = &m.attendance_records[..] else {
            panic!("{m:#?}")
        };
        assert_eq!(spans(ann), vec![(Some(60), Some(2700), 2640)]);
        assert_eq!(
            ann.removed_state, None,
            "closed by the call end, not removed"
        );
        assert_eq!(
            spans(bob),
            vec![(Some(300), Some(900), 600), (Some(1200), Some(2100), 900)]
        );
        assert_eq!(bob.total_attendance_in_seconds, 1500);
        assert_eq!(
            bob.lobby_waits,
            vec![LobbyWait {
                lobby_enter_date_time: at(120),
                lobby_exit_date_time: Some(at(300)),
                admitted: true,
                duration_in_seconds: 180
            }]
        );
        assert_eq!(bob.total_lobby_wait_in_seconds, 180);
        assert_eq!(
            bob.removed_state,
            Some(Removed {
                reason: Some("Participant was removed from the meeting.".into()),
                date_time: at(2100)
            })
        );
        assert_eq!(spans(cid), vec![]);
        assert!(!cid.lobby_waits[0].admitted);
        assert_eq!(cid.total_lobby_wait_in_seconds, 30);
        assert_eq!(m.total_participant_count, 3);
    }

    #[test]
    fn duplicates_and_a_second_source_change_nothing_but_may_add_role_and_reason() {
        let bot = |s: i64, presence: Presence| {
            fact(
                s,
                Source::Bot,
                Happening::Roster {
                    who: who("ann", Some("Organizer")),
                    presence,
                },
            )
        };
        let m = run(vec![
            roster(60, "ann", Presence::InCall),
            roster(60, "ann", Presence::InCall),
            bot(61, Presence::InCall),
            roster(400, "ann", Presence::InCall),
            bot(599, Presence::Gone { reason: None }),
            roster(600, "ann", gone("Participant has left the meeting call.")),
            roster(600, "ann", gone("Participant has left the meeting call.")),
        ]);
        let ann = &m.attendance_records[0];
        assert_eq!(spans(ann), vec![(Some(60), Some(599), 539)]);
        assert_eq!(ann.role, "Organizer");
        assert_eq!(
            ann.removed_state.as_ref().unwrap().reason.as_deref(),
            Some("Participant has left the meeting call.")
        );
        assert_eq!(m.sources, vec!["graph", "bot"]);
        assert_eq!(m.meeting_end_date_time, None);
    }

    #[test]
    fn lacking_data_follows_graphs_rule_and_a_new_call_reopens_the_meeting() {
        let m = run(vec![
            roster(
                10,
                "ann",
                gone("Participant has entered an inactive state in the roster."),
            ),
            roster(20, "bob", Presence::InCall),
            roster(30, "cid", Presence::Lobby),
            fact(
                40,
                Source::Graph,
                Happening::Identified {
                    who: who("dee", Some("Presenter")),
                },
            ),
        ]);
        let names: Vec<&str> = m
            .attendance_records
            .iter()
            .map(AttendanceRecord::name)
            .collect();
        assert_eq!(
            names,
            vec!["BOB", "CID", "ANN"],
            "known joins first; the never-present is left out"
        );
        assert_eq!(spans(&m.attendance_records[0]), vec![(Some(20), None, 0)]);
        assert_eq!(
            m.attendance_records[1].lobby_waits[0].lobby_exit_date_time,
            None
        );
        assert_eq!(spans(&m.attendance_records[2]), vec![(None, Some(10), 0)]);
        assert_eq!(m.attendance_records[0].role, "None");

        let again = run(vec![
            fact(0, Source::Graph, Happening::CallStarted),
            roster(10, "ann", Presence::InCall),
            fact(100, Source::Graph, Happening::CallEnded),
            fact(200, Source::Graph, Happening::CallStarted),
            roster(210, "ann", Presence::InCall),
        ]);
        assert_eq!(
            again.meeting_end_date_time, None,
            "the second call is still running"
        );
        assert_eq!(
            spans(&again.attendance_records[0]),
            vec![(Some(10), Some(100), 90), (Some(210), None, 0)]
        );
    }

    #[test]
    fn sent_back_to_the_lobby_ends_the_interval() {
        let m = run(vec![
            roster(0, "ann", Presence::InCall),
            roster(50, "ann", Presence::Lobby),
            roster(80, "ann", Presence::InCall),
            fact(100, Source::Graph, Happening::CallEnded),
        ]);
        let ann = &m.attendance_records[0];
        assert_eq!(
            spans(ann),
            vec![(Some(0), Some(50), 50), (Some(80), Some(100), 20)]
        );
        assert_eq!(ann.total_lobby_wait_in_seconds, 30);
    }
}
