//! Reads a request's event type and delivery id from where the source's configuration says
//! they are: a header, or an RFC 6901 JSON pointer into the body.
//!
//! Invariants: the body is parsed only when a pointer is configured, at most once per request
//! however many pointers there are, and without building a tree: the parser descends along
//! the pointers and skips everything else, so nothing is allocated for the parts of the body
//! no pointer names (serde_json's depth limit also bounds nesting).
//! A body that is not JSON when a pointer needs it is [`Rejection::MalformedJson`]; a
//! pointer that leads nowhere, to something other than a string or a number, or to an empty
//! string, gives `None` (an empty delivery id is no id, as in a header).

use std::fmt;

use http::{HeaderMap, HeaderName};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Rejection, Verified};
use crate::config::FieldLocation;

/// A compiled RFC 6901 JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JsonPointer {
    /// Reference tokens, unescaped (`~1` is `/`, `~0` is `~`).
    tokens: Vec<String>,
    /// Whether a number at the pointer counts (as its decimal text) or only a string does.
    numbers: bool,
}

impl JsonPointer {
    /// Compiles `pointer`; `None` unless it is empty (the whole document) or starts with `/`.
    pub(super) fn parse(pointer: &str) -> Option<JsonPointer> {
        let tokens = if pointer.is_empty() {
            Vec::new()
        } else {
            pointer
                .strip_prefix('/')?
                .split('/')
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect()
        };
        Some(JsonPointer {
            tokens,
            numbers: true,
        })
    }

    /// A pointer to a top-level member that only counts when it is a string.
    pub(super) fn top_level_string(member: &str) -> JsonPointer {
        JsonPointer {
            tokens: vec![member.to_owned()],
            numbers: false,
        }
    }
}

/// Where one field comes from, compiled.
#[derive(Debug, Clone)]
enum Field {
    Header(HeaderName),
    Json(JsonPointer),
    /// A pointer that is not RFC 6901. Config validation refuses those; should one get
    /// through anyway it reads nothing rather than panic in the request path.
    Invalid,
}

impl Field {
    fn new(location: &FieldLocation) -> Field {
        match location {
            FieldLocation::Header(name) => Field::Header(name.clone()),
            FieldLocation::JsonPointer(pointer) => {
                JsonPointer::parse(pointer).map_or(Field::Invalid, Field::Json)
            }
        }
    }
}

/// Reads the event type and delivery id of a source whose locations are configurable.
#[derive(Debug, Clone)]
pub(super) struct FieldReader {
    event_type: Option<Field>,
    delivery_id: Option<Field>,
}

impl FieldReader {
    /// Compiles the configured locations; `None` means the scheme has no such field.
    pub(super) fn new(
        event_type: Option<&FieldLocation>,
        delivery_id: Option<&FieldLocation>,
    ) -> FieldReader {
        FieldReader {
            event_type: event_type.map(Field::new),
            delivery_id: delivery_id.map(Field::new),
        }
    }

    /// Reads both fields; the body is parsed once, and only if a pointer needs it.
    pub(super) fn read(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        let [from_json_type, from_json_id] = match (
            json_pointer(&self.event_type),
            json_pointer(&self.delivery_id),
        ) {
            (None, None) => [None, None],
            (a, b) => read_json(body, [a, b])?,
        };
        let pick = |f: &Option<Field>, json: Option<String>| match f {
            Some(Field::Header(name)) => header_text(headers, name),
            Some(Field::Json(_)) => json,
            Some(Field::Invalid) | None => None,
        };
        Ok(Verified {
            event_type: pick(&self.event_type, from_json_type),
            delivery_id: pick(&self.delivery_id, from_json_id),
        })
    }
}

/// The pointer of a field read from the body, if it is one.
fn json_pointer(field: &Option<Field>) -> Option<&JsonPointer> {
    match field {
        Some(Field::Json(p)) => Some(p),
        _ => None,
    }
}

/// The first value of header `name` as text; `None` when absent, empty or not UTF-8.
///
/// Empty counts as absent so that senders who send an empty delivery id are not all
/// deduplicated against each other.
pub(super) fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let value = headers.get(name)?;
    let text = std::str::from_utf8(value.as_bytes()).ok()?;
    (!text.is_empty()).then(|| text.to_owned())
}

/// Follows up to two pointers through `body` in one pass.
pub(super) fn read_json(
    body: &[u8],
    pointers: [Option<&JsonPointer>; 2],
) -> Result<[Option<String>; 2], Rejection> {
    let seed = Seed {
        targets: pointers.map(|p| p.map(|p| (p.tokens.as_slice(), p.numbers))),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = seed
        .deserialize(&mut de)
        .map_err(|_| Rejection::MalformedJson)?;
    de.end().map_err(|_| Rejection::MalformedJson)?;
    Ok(found)
}

/// What remains of each pointer at the current depth: its tokens still to follow and
/// whether numbers count. `None` means that pointer does not go through this value.
#[derive(Clone, Copy)]
struct Seed<'p> {
    targets: [Option<(&'p [String], bool)>; 2],
}

impl Seed<'_> {
    fn is_empty(&self) -> bool {
        self.targets.iter().all(Option::is_none)
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = [Option<String>; 2];

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        if self.is_empty() {
            de.deserialize_ignored_any(IgnoredAny)?;
            return Ok([None, None]);
        }
        de.deserialize_any(self)
    }
}

impl<'p> Seed<'p> {
    /// The value here, for every pointer that ends here.
    fn leaf(&self, text: &str, is_number: bool) -> [Option<String>; 2] {
        self.targets.map(|t| match t {
            Some(([], numbers)) if (numbers || !is_number) && !text.is_empty() => {
                Some(text.to_owned())
            }
            _ => None,
        })
    }

    /// The pointers whose next token `matches` the child (a key or an index), one level down.
    fn child(&self, matches: impl Fn(&str) -> bool) -> Seed<'p> {
        Seed {
            targets: self.targets.map(|t| match t {
                Some(([first, rest @ ..], numbers)) if matches(first) => Some((rest, numbers)),
                _ => None,
            }),
        }
    }
}

/// Merges a child's findings: a later duplicate key replaces an earlier one, as in
/// `serde_json::Value`, so we read what any JSON consumer downstream reads.
fn merge(into: &mut [Option<String>; 2], child: &Seed<'_>, found: [Option<String>; 2]) {
    for ((slot, target), value) in into.iter_mut().zip(child.targets).zip(found) {
        if target.is_some() {
            *slot = value;
        }
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = [Option<String>; 2];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.leaf(v, false))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.leaf(&v.to_string(), true))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.leaf(&v.to_string(), true))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // serde_json's own rendering, so `1.0` reads as it would through `Value`.
        let text = serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string());
        Ok(self.leaf(&text, true))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = [None, None];
        while let Some(key) = map.next_key_seed(KeySeed(self))? {
            let child = self.child(|token| key.as_deref() == Some(token));
            let value = map.next_value_seed(child)?;
            merge(&mut found, &child, value);
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = [None, None];
        let mut index = 0usize;
        loop {
            let child = self.child(|token| array_index(token) == Some(index));
            match seq.next_element_seed(child)? {
                Some(value) => merge(&mut found, &child, value),
                None => break,
            }
            index += 1;
        }
        Ok(found)
    }
}

/// An RFC 6901 array index: `0` or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let digits_only = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// Reads an object key, keeping it only when some pointer names it next, so keys that no
/// pointer names cost no allocation.
struct KeySeed<'p>(Seed<'p>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Option<String>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<String>, E> {
        let wanted = self
            .0
            .targets
            .iter()
            .flatten()
            .any(|(tokens, _)| tokens.first().is_some_and(|first| first == v));
        Ok(wanted.then(|| v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(p: &str) -> FieldLocation {
        FieldLocation::JsonPointer(p.to_owned())
    }

    fn read(
        event: Option<FieldLocation>,
        id: Option<FieldLocation>,
        body: &[u8],
    ) -> Result<Verified, Rejection> {
        FieldReader::new(event.as_ref(), id.as_ref()).read(&HeaderMap::new(), body)
    }

    #[test]
    fn pointers_read_strings_and_numbers_in_one_pass() {
        let body = br#"{"id":42,"event":{"kind":"artifact.uploaded","n":[1,{"x":"y"}]},"f":1.5}"#;
        let got = read(Some(pointer("/event/kind")), Some(pointer("/id")), body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("artifact.uploaded"));
        assert_eq!(got.delivery_id.as_deref(), Some("42"));
        let got = read(Some(pointer("/event/n/1/x")), Some(pointer("/f")), body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("y"));
        assert_eq!(got.delivery_id.as_deref(), Some("1.5"));
        let got = read(Some(pointer("/id")), Some(pointer("/id")), br#"{"id":-7}"#).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("-7"));
        assert_eq!(got.delivery_id.as_deref(), Some("-7"));
    }

    #[test]
    fn pointers_to_other_values_or_nowhere_give_none() {
        let body = br#"{"a":{"b":true},"c":null,"d":[1],"e":{"f":"g"}}"#;
        for p in [
            "/a", "/a/b", "/c", "/d", "/d/1", "/d/01", "/d/-", "/missing", "/e/f/g", "", "no-slash",
        ] {
            let got = read(Some(pointer(p)), None, body).unwrap();
            assert_eq!(got.event_type, None, "pointer {p:?}");
        }
    }

    #[test]
    fn empty_strings_count_as_absent_like_empty_headers() {
        // Otherwise every event whose sender leaves the id empty is a duplicate of the first.
        let body = br#"{"id":"","type":"","n":{"id":""}}"#;
        let got = read(Some(pointer("/type")), Some(pointer("/id")), body).unwrap();
        assert_eq!(got.event_type, None);
        assert_eq!(got.delivery_id, None);
        let got = read(Some(pointer("/n/id")), None, body).unwrap();
        assert_eq!(got.event_type, None);
    }

    #[test]
    fn pointer_escapes_and_whole_document() {
        let body = br#"{"a/b":{"m~n":"ok"},"":"empty key"}"#;
        let got = read(Some(pointer("/a~1b/m~0n")), Some(pointer("/")), body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("ok"));
        assert_eq!(got.delivery_id.as_deref(), Some("empty key"));
        let got = read(Some(pointer("")), None, br#""top""#).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("top"));
    }

    #[test]
    fn escaped_keys_and_values_are_decoded() {
        let body = br#"{"k\u0065y":"v\u00e9\n"}"#;
        let got = read(Some(pointer("/key")), None, body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("vé\n"));
    }

    #[test]
    fn duplicate_keys_read_the_last_like_serde_json_value() {
        let body = br#"{"t":"first","t":"second","u":"x","u":{}}"#;
        let got = read(Some(pointer("/t")), Some(pointer("/u")), body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("second"));
        assert_eq!(got.delivery_id, None);
    }

    #[test]
    fn non_json_body_is_malformed_only_when_a_pointer_needs_it() {
        for body in [
            &b"type=push"[..],
            b"",
            b"{\"a\":1",
            b"{\"a\":1} trailing",
            b"\xff",
        ] {
            assert_eq!(
                read(Some(pointer("/a")), None, body),
                Err(Rejection::MalformedJson)
            );
        }
        let header = FieldLocation::Header(HeaderName::from_static("x-event"));
        assert_eq!(
            read(Some(header), None, b"not json"),
            Ok(Verified::default())
        );
        assert_eq!(read(None, None, b"not json"), Ok(Verified::default()));
    }

    #[test]
    fn strings_only_pointer_ignores_numbers() {
        let p = JsonPointer::top_level_string("type");
        assert_eq!(
            read_json(br#"{"type":5}"#, [Some(&p), None]),
            Ok([None, None])
        );
        assert_eq!(
            read_json(
                br#"{"data":{"type":"inner"},"type":"outer"}"#,
                [Some(&p), None]
            ),
            Ok([Some("outer".to_owned()), None])
        );
        assert_eq!(
            read_json(br#"["type"]"#, [Some(&p), None]),
            Ok([None, None])
        );
    }

    #[test]
    fn headers_are_read_as_utf8_and_empty_counts_as_absent() {
        let name = HeaderName::from_static("x-delivery");
        let mut headers = HeaderMap::new();
        assert_eq!(header_text(&headers, &name), None);
        headers.insert(name.clone(), http::HeaderValue::from_static(""));
        assert_eq!(header_text(&headers, &name), None);
        headers.insert(
            name.clone(),
            http::HeaderValue::from_bytes("é-1".as_bytes()).unwrap(),
        );
        assert_eq!(header_text(&headers, &name).as_deref(), Some("é-1"));
        headers.insert(
            name.clone(),
            http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(header_text(&headers, &name), None);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let body = "[".repeat(100_000);
        assert_eq!(
            read(Some(pointer("/0")), None, body.as_bytes()),
            Err(Rejection::MalformedJson)
        );
    }
}
