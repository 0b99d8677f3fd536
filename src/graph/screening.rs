//! The cheap first pass over a notification body: split it into its items without building
//! them, refuse a body with more than a set number of items, and read each item's
//! `clientState` and `subscriptionId` as borrowed strings.
//!
//! Anyone who knows the notification URL can post 4 MiB of `{"value":[{},{},…]}` (1.4 million
//! items) without knowing the clientState. Only items whose clientState matches are worth
//! building into a [`ChangeNotification`]; this pass costs one scan of the body and a small
//! fixed allocation per item (a slice of the body), and stops at the first item past the limit.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::notification::{ChangeNotification, ParseError, strip_trailing_commas};

/// A body split into items, each still a slice of the body.
#[derive(Debug)]
pub struct Screened<'a> {
    /// The items of `value`, in order.
    pub items: Vec<ScreenedItem<'a>>,
    /// `validationTokens`, unparsed (read only when a batch with resource data gets that far).
    tokens: Vec<&'a RawValue>,
}

/// One item: its JSON text and the two fields the first pass reads.
#[derive(Debug)]
pub struct ScreenedItem<'a> {
    pub raw: &'a RawValue,
    pub client_state: Option<Cow<'a, str>>,
    pub subscription_id: Option<Cow<'a, str>>,
}

/// Why a body was refused by the first pass.
#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    /// 413: more items (or validationTokens) than a request may carry.
    #[error("more than {limit} {what} in one request")]
    TooMany { what: &'static str, limit: usize },
    /// 400: not a notification collection.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// The fields of an item the first pass reads; everything else is skipped unbuilt.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default, rename = "clientState")]
    client_state: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "subscriptionId")]
    subscription_id: Option<Cow<'a, str>>,
}

/// Screens `body`. A body that is not JSON only because of trailing commas (Microsoft's
/// published samples have them) is relaxed into `relaxed`, which the result then borrows.
pub fn screen<'a>(
    body: &'a [u8],
    relaxed: &'a mut Option<Vec<u8>>,
    max_items: usize,
) -> Result<Screened<'a>, ScreenError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty.into());
    }
    let first = match split(body, max_items) {
        Err(Split::Json(e)) if e.is_syntax() || e.is_eof() => e,
        other => return finish(other),
    };
    let Some(text) = strip_trailing_commas(body) else {
        return Err(ParseError::NotJson(first).into());
    };
    let text: &'a [u8] = relaxed.insert(text);
    match split(text, max_items) {
        Err(Split::Json(e)) if e.is_syntax() || e.is_eof() => {
            Err(ParseError::NotJson(first).into())
        }
        other => finish(other),
    }
}

fn finish(split: Result<Screened<'_>, Split>) -> Result<Screened<'_>, ScreenError> {
    match split {
        Ok(s) if s.items.is_empty() => Err(ParseError::NoItems.into()),
        Ok(s) => Ok(s),
        Err(Split::TooMany(what, limit)) => Err(ScreenError::TooMany { what, limit }),
        Err(Split::Json(e)) => Err(ParseError::WrongShape(e).into()),
    }
}

impl<'a> Screened<'a> {
    /// The `validationTokens`; a token that is not a string makes the body the wrong shape.
    pub fn validation_tokens(&self) -> Result<Vec<String>, ParseError> {
        self.tokens
            .iter()
            .map(|raw| serde_json::from_str(raw.get()).map_err(ParseError::WrongTokens))
            .collect()
    }
}

impl ScreenedItem<'_> {
    /// Builds the full item (only for items that passed the clientState check).
    pub fn build(&self) -> Result<ChangeNotification, ParseError> {
        serde_json::from_str(self.raw.get()).map_err(ParseError::WrongShape)
    }
}

enum Split {
    TooMany(&'static str, usize),
    Json(serde_json::Error),
}

fn split(body: &[u8], max_items: usize) -> Result<Screened<'_>, Split> {
    let over = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = CollectionSeed {
        max_items,
        over: &over,
    }
    .deserialize(&mut de)
    .and_then(|(raw_items, tokens)| {
        de.end()?;
        let items = raw_items
            .into_iter()
            .map(|raw| {
                let probe: Probe = serde_json::from_str(raw.get())?;
                Ok(ScreenedItem {
                    raw,
                    client_state: probe.client_state,
                    subscription_id: probe.subscription_id,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        Ok(Screened { items, tokens })
    });
    match (parsed, over.get()) {
        (_, Some((what, limit))) => Err(Split::TooMany(what, limit)),
        (Ok(s), None) => Ok(s),
        (Err(e), None) => Err(Split::Json(e)),
    }
}

type Over = Cell<Option<(&'static str, usize)>>;

/// `{"value": [...], "validationTokens": [...], …}` with both arrays bounded.
struct CollectionSeed<'f> {
    max_items: usize,
    over: &'f Over,
}

impl<'de> DeserializeSeed<'de> for CollectionSeed<'_> {
    type Value = (Vec<&'de RawValue>, Vec<&'de RawValue>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CollectionSeed<'_> {
    type Value = (Vec<&'de RawValue>, Vec<&'de RawValue>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a changeNotificationCollection object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = None;
        let mut tokens = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let (slot, what) = match key.as_ref() {
                "value" => (&mut value, "items"),
                "validationTokens" => (&mut tokens, "validationTokens"),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            *slot = Some(map.next_value_seed(Bounded {
                what,
                limit: self.max_items,
                over: self.over,
            })?);
        }
        let value = value.ok_or_else(|| de::Error::missing_field("value"))?;
        Ok((value, tokens.unwrap_or_default()))
    }
}

/// An array of at most `limit` raw elements; one more sets `over` and stops the parse.
struct Bounded<'f> {
    what: &'static str,
    limit: usize,
    over: &'f Over,
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of {}", self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.limit));
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if out.len() == self.limit {
                self.over.set(Some((self.what, self.limit)));
                return Err(de::Error::custom("too many elements"));
            }
            out.push(raw);
        }
        Ok(out)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::invalid_type(de::Unexpected::Unit, &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(clientState, subscriptionId)` of each item.
    type Pairs = Vec<(Option<String>, Option<String>)>;

    fn run(body: &[u8], max: usize) -> Result<Pairs, ScreenError> {
        let mut relaxed = None;
        let s = screen(body, &mut relaxed, max)?;
        Ok(s.items
            .iter()
            .map(|i| {
                (
                    i.client_state.as_deref().map(str::to_string),
                    i.subscription_id.as_deref().map(str::to_string),
                )
            })
            .collect())
    }

    #[test]
    fn items_are_read_without_being_built() {
        let got = run(
            br#"{"value":[{"clientState":"a","subscriptionId":"s\n1","resourceData":{"x":[1,2]}},{}],"other":1}"#,
            10,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![(Some("a".into()), Some("s\n1".into())), (None, None)]
        );
    }

    #[test]
    fn the_item_limit_stops_the_parse() {
        let body = format!("{{\"value\":[{}]}}", vec!["{}"; 1_001].join(","));
        assert_eq!(run(body.as_bytes(), 1_001).unwrap().len(), 1_001);
        assert!(matches!(
            run(body.as_bytes(), 999).unwrap_err(),
            ScreenError::TooMany {
                what: "items",
                limit: 999
            }
        ));
        // The limit holds even when the rest of the body is not JSON.
        let broken = format!("{{\"value\":[{},", vec!["{}"; 20].join(","));
        assert!(matches!(
            run(broken.as_bytes(), 10),
            Err(ScreenError::TooMany { .. })
        ));
    }

    #[test]
    fn shapes_and_trailing_commas() {
        assert!(matches!(
            run(b" ", 5).unwrap_err(),
            ScreenError::Parse(ParseError::Empty)
        ));
        assert!(matches!(
            run(br#"{"value":[]}"#, 5).unwrap_err(),
            ScreenError::Parse(ParseError::NoItems)
        ));
        for bad in [
            &b"[]"[..],
            b"{}",
            b"{\"value\":3}",
            b"{\"value\":[3]}",
            b"{\"value\":[{\"clientState\":1}]}",
            b"{\"value\":[],\"value\":[]}",
        ] {
            assert!(
                matches!(
                    run(bad, 5),
                    Err(ScreenError::Parse(ParseError::WrongShape(_)))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            run(b"nope", 5),
            Err(ScreenError::Parse(ParseError::NotJson(_)))
        ));
        let got = run(
            br#"{"value":[{"subscriptionId":"s","clientState":"c",},],}"#,
            5,
        )
        .unwrap();
        assert_eq!(got, vec![(Some("c".into()), Some("s".into()))]);
    }

    #[test]
    fn full_items_and_tokens_are_built_on_demand() {
        let mut relaxed = None;
        let s = screen(
            br#"{"value":[{"subscriptionId":"s","changeType":"created"}],"validationTokens":["t"]}"#,
            &mut relaxed,
            5,
        )
        .unwrap();
        assert_eq!(
            s.items[0]
                .build()
                .unwrap()
                .change_type
                .as_ref()
                .map(|c| c.as_str()),
            Some("created")
        );
        assert_eq!(s.validation_tokens().unwrap(), vec!["t".to_string()]);
        let s = screen(br#"{"value":[{}],"validationTokens":[1]}"#, &mut relaxed, 5).unwrap();
        assert!(s.validation_tokens().is_err());
    }
}
