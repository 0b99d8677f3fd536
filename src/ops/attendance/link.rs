//! Which events belong to one meeting: the join URL, decoded and normalised.
//!
//! Graph names a meeting's callevents by its resource
//! `communications/onlineMeetings(joinWebUrl='{URL-encoded join URL}')/meetingCallEvents`; the
//! bot's `meetingStart`/`meetingEnd` carry the same join URL as Teams shows it (`JoinUrl`), and
//! its participant events only the bot's meeting id (`channelData.meeting.id`). The same URL
//! reaches us encoded zero, one or two times, with `%3a` or `%3A`, with or without the
//! `?context=` query (tenant and organiser ids, not part of the meeting's identity). The key is
//! the URL percent-decoded until it stops changing, scheme and host lower-cased, query, fragment
//! and trailing `/` removed: every spelling of one meeting's URL gives one key.

use percent_encoding::percent_decode_str;

/// A meeting's identity across sources (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JoinKey(String);

impl JoinKey {
    /// The key of a join URL in any of its spellings; `None` if it is not an http(s) URL.
    pub fn from_url(url: &str) -> Option<JoinKey> {
        let decoded = decode_fully(url.trim());
        let (scheme, rest) = decoded.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return None;
        }
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return None;
        }
        let path = path.trim_end_matches('/');
        Some(JoinKey(format!(
            "{scheme}://{}/{path}",
            host.to_ascii_lowercase()
        )))
    }

    /// The normalised URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The meeting's chat thread id (`19:meeting_...@thread.v2`) when the URL is a Teams
    /// `meetup-join` link: a short, stable name for people and for `--meeting`.
    pub fn thread_id(&self) -> Option<&str> {
        let (_, after) = self.0.split_once("/meetup-join/")?;
        let thread = after.split('/').next()?;
        (!thread.is_empty()).then_some(thread)
    }
}

/// Percent-decodes until the text stops changing (at most 4 rounds: Graph's resource holds the
/// URL encoded once more than Teams shows it, and Teams' own URL is already encoded once).
fn decode_fully(s: &str) -> String {
    let mut current = s.to_string();
    for _ in 0..4 {
        let next = percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// The join URL inside a Graph meeting resource or `@odata.id`
/// (`...onlineMeetings(joinWebUrl='...')...`), still encoded as Graph has it.
pub fn join_url_in_resource(resource: &str) -> Option<&str> {
    const OPEN: &str = "joinWebUrl='";
    let start = resource.find(OPEN)? + OPEN.len();
    let len = resource[start..].find('\'')?;
    let url = &resource[start..start + len];
    (!url.is_empty()).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEAMS: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%40thread.v2/0?context=%7b%22Tid%22%3a%22909c6581-5130-43e9-88f3-fcb3582cde37%22%2c%22Oid%22%3a%22048c94fb-dda6-48b8-9fc8-6740ee418fb9%22%7d";
    /// Microsoft's meeting call events document: the resource as Graph requires it.
    const RESOURCE: &str = "communications/onlineMeetings(joinWebUrl='https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join%2F19%253ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%2540thread.v2%2F0%3Fcontext%3D%257b%2522Tid%2522%253a%2522909c6581-5130-43e9-88f3-fcb3582cde37%2522%252c%2522Oid%2522%253a%2522048c94fb-dda6-48b8-9fc8-6740ee418fb9%2522%257d')/meetingCallEvents";

    #[test]
    fn every_spelling_of_one_join_url_is_one_key() {
        let from_graph = JoinKey::from_url(join_url_in_resource(RESOURCE).unwrap()).unwrap();
        let from_teams = JoinKey::from_url(TEAMS).unwrap();
        let upper = JoinKey::from_url(
            "HTTPS://Teams.Microsoft.com/l/meetup-join/19%3Ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%40thread.v2/0/",
        )
        .unwrap();
        let plain = JoinKey::from_url(
            " https://teams.microsoft.com/l/meetup-join/19:meeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj@thread.v2/0 ",
        )
        .unwrap();
        assert_eq!(from_graph, from_teams);
        assert_eq!(from_teams, upper);
        assert_eq!(upper, plain);
        assert_eq!(
            from_graph.as_str(),
            "https://teams.microsoft.com/l/meetup-join/19:meeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj@thread.v2/0"
        );
        assert_eq!(
            from_graph.thread_id(),
            Some("19:meeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj@thread.v2")
        );
    }

    #[test]
    fn other_meetings_and_non_urls_differ() {
        let a = JoinKey::from_url(TEAMS).unwrap();
        // The thread id is case-sensitive (base64): a different meeting.
        let b = JoinKey::from_url(&TEAMS.replace("ZmYwZTEy", "zmYwZTEy")).unwrap();
        assert_ne!(a, b);
        for bad in [
            "",
            "join_url",
            "ftp://x/y",
            "https://",
            "javascript:alert(1)",
        ] {
            assert_eq!(JoinKey::from_url(bad), None, "{bad}");
        }
        assert_eq!(join_url_in_resource("communications/onlineMeetings"), None);
        assert_eq!(join_url_in_resource("x(joinWebUrl='')"), None);
    }
}
