//! What one archived event says about a meeting, whichever source it came from: the common
//! language between the readers (`from_graph`, `from_bot`) and the interval rules (`intervals`).

use time::OffsetDateTime;

use super::link::JoinKey;

/// Which source said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Graph's `callevent` change notifications (meetingCallEvents).
    Graph,
    /// The Teams bot's meeting events (Bot Framework).
    Bot,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Graph => "graph",
            Source::Bot => "bot",
        }
    }
}

/// A fact with its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub at: OffsetDateTime,
    pub source: Source,
    /// When the record was archived: orders facts of the same instant from different events.
    pub received_at: String,
    /// The position inside its event (a roster update lists several participants in order).
    pub seq: u32,
    pub what: Happening,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Happening {
    CallStarted,
    CallEnded,
    Roster {
        who: Person,
        presence: Presence,
    },
    /// Who someone is (name, role), without a change of presence (the bot's participant API).
    Identified {
        who: Person,
    },
}

/// Where a participant is after a roster change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// `isInLobby: true`.
    Lobby,
    /// In the call (`isInLobby: false` without `removedState`; the bot's `inMeeting: true`).
    InCall,
    /// Left the roster (Graph's `removedState`, the bot's leave), with Graph's reason.
    Gone { reason: Option<String> },
}

/// A participant as one event names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// What links the same person across events and sources: the Entra object id (lower case)
    /// when known, else the source's own participant id, prefixed so it cannot collide.
    pub key: String,
    pub display_name: Option<String>,
    pub tenant_id: Option<String>,
    /// `Organizer`, `Presenter`, `Attendee` (bot events only).
    pub role: Option<String>,
}

impl Person {
    /// The linking key of an Entra object id.
    pub fn key_of_object_id(id: &str) -> Option<String> {
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_ascii_lowercase())
    }
}

/// Which meeting a source's event belongs to, before linking.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MeetingRef {
    /// A join URL is known: the events of every source with this key are one meeting.
    Join(JoinKey),
    /// Only the bot's meeting id is known (participant events; `meetingStart` without `JoinUrl`).
    Bot(String),
    /// A Graph event whose resource names no join URL: kept apart, by its resource.
    Resource(String),
}

/// One event's reading: its meeting, facts, and what it tells about the meeting itself.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub meeting: Option<MeetingRef>,
    /// The bot's meeting id, when the event carries one (links it to a join URL).
    pub bot_meeting_id: Option<String>,
    pub title: Option<String>,
    pub observations: Vec<Observation>,
}
