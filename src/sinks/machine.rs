//! What the machine-readable sinks (`dependency-track`, `guac`) share: finding the documents
//! an event carries, and sending a request (with the client of `http.rs`) and reading the
//! service's answer.
//!
//! Invariants: a document is found the same way on every attempt, so its label (and the
//! name built from it) is stable across retries. Messages name the pointer or the status,
//! never a URL, a secret or the document's content.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::StatusCode;
use http::header::RETRY_AFTER;
use serde_json::value::RawValue;

use super::webhook::parse_retry_after;
use super::{Outcome, SinkError};
use crate::config::{DocumentEncoding, DocumentLocation};

/// How much of an answer is read: enough for any error document or upload token.
const ANSWER_LIMIT: usize = 64 * 1024;

/// One document found in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Stable within the event: `0` for the body or the first pointer, `1-3` for the fourth
    /// element of the array at the second pointer.
    pub label: String,
    /// The document's bytes.
    pub bytes: Bytes,
}

/// Why an event yields no usable document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoDocument {
    /// The event carries none where the sink looks: skip it.
    Missing(String),
    /// It carries one that cannot be read (bad base64, say): retrying will not help.
    Invalid(String),
}

/// Finds the documents `location` names in `body`. With `split_arrays`, an array at a
/// pointer is a list of documents; otherwise it is one document. Places that hold nothing
/// are passed over; `Missing` only when no place held anything.
pub fn find(
    body: &Bytes,
    location: &DocumentLocation,
    split_arrays: bool,
) -> Result<Vec<Document>, NoDocument> {
    if location.pointers.is_empty() {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(NoDocument::Missing("the body is empty".to_string()));
        }
        let bytes = match location.encoding {
            DocumentEncoding::Json => body.clone(),
            DocumentEncoding::Base64 => {
                let text = std::str::from_utf8(body)
                    .map_err(|_| NoDocument::Invalid("the body is not base64 text".to_string()))?;
                decode_base64(text).map_err(|e| NoDocument::Invalid(format!("the body {e}")))?
            }
        };
        return Ok(vec![Document {
            label: "0".to_string(),
            bytes,
        }]);
    }
    let root: &RawValue = serde_json::from_slice(body).map_err(|_| {
        NoDocument::Missing(format!(
            "the body is not JSON, so {} finds nothing",
            location.pointers.join(", ")
        ))
    })?;
    let mut found = Vec::new();
    let mut empty = Vec::new();
    for (i, pointer) in location.pointers.iter().enumerate() {
        match raw_pointer(root, pointer) {
            None => empty.push(pointer.as_str()),
            Some(value) if value.get() == "null" => empty.push(pointer.as_str()),
            Some(value) if split_arrays && value.get().starts_with('[') => {
                let items: Vec<&RawValue> = serde_json::from_str(value.get())
                    .map_err(|e| NoDocument::Invalid(format!("{pointer} {e}")))?;
                if items.is_empty() {
                    empty.push(pointer.as_str());
                }
                for (j, item) in items.iter().enumerate() {
                    let bytes = encode(item, location.encoding)
                        .map_err(|e| NoDocument::Invalid(format!("{pointer}/{j} {e}")))?;
                    found.push(Document {
                        label: format!("{i}-{j}"),
                        bytes,
                    });
                }
            }
            Some(value) => {
                let bytes = encode(value, location.encoding)
                    .map_err(|e| NoDocument::Invalid(format!("{pointer} {e}")))?;
                found.push(Document {
                    label: i.to_string(),
                    bytes,
                });
            }
        }
    }
    if found.is_empty() {
        return Err(NoDocument::Missing(format!(
            "nothing at {} in the body",
            empty.join(", ")
        )));
    }
    Ok(found)
}

/// The value an RFC 6901 `pointer` names in `root`, as the sender wrote it: a document is
/// passed on byte for byte (its key order, number forms and spacing), not re-serialized.
fn raw_pointer<'a>(root: &'a RawValue, pointer: &str) -> Option<&'a RawValue> {
    if pointer.is_empty() {
        return Some(root);
    }
    let mut current = root;
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        let text = current.get();
        current = if text.starts_with('{') {
            // A later duplicate key wins, as in `serde_json::Value`.
            let members: HashMap<Cow<'a, str>, &'a RawValue> = serde_json::from_str(text).ok()?;
            members.get(token.as_str()).copied()?
        } else if text.starts_with('[') {
            // Array indexes are decimal without leading zeros.
            if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
                return None;
            }
            let index: usize = token
                .parse()
                .ok()
                .filter(|_| token.bytes().all(|b| b.is_ascii_digit()))?;
            let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
            items.get(index).copied()?
        } else {
            return None;
        };
    }
    Some(current)
}

/// A JSON value as document bytes: a string is the document's text (or its base64), any
/// other value is the document itself, exactly as it stands in the body.
fn encode(value: &RawValue, encoding: DocumentEncoding) -> Result<Bytes, String> {
    let text = value.get();
    match (text.starts_with('"'), encoding) {
        (true, _) => {
            let text: String =
                serde_json::from_str(text).map_err(|e| format!("is not a JSON string ({e})"))?;
            match encoding {
                DocumentEncoding::Json => Ok(Bytes::from(text.into_bytes())),
                DocumentEncoding::Base64 => decode_base64(&text),
            }
        }
        (false, DocumentEncoding::Base64) => {
            Err("is not a string, but encoding = \"base64\" expects one".to_string())
        }
        (false, DocumentEncoding::Json) => Ok(Bytes::copy_from_slice(text.as_bytes())),
    }
}

/// Decodes base64 text, tolerating line breaks (many tools wrap at 76 columns).
fn decode_base64(text: &str) -> Result<Bytes, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64
        .decode(compact.as_bytes())
        .map(Bytes::from)
        .map_err(|_| "is not valid base64 (A-Z a-z 0-9 + / with = padding)".to_string())
}

/// A service's answer: status, the delay it asked for, and the start of its body.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// `Retry-After`, when given.
    pub retry_after: Option<Duration>,
    /// The body, up to a bound.
    pub body: Vec<u8>,
}

/// Sends `request` and reads the answer, or says why there is none (always worth a retry).
pub async fn send(
    request: reqwest::RequestBuilder,
    sink: &str,
    timeout: Duration,
) -> Result<Answer, Outcome> {
    let mut response = request.send().await.map_err(|err| Outcome::Retry {
        after: None,
        error: super::http::transport_error(sink, err, timeout),
    })?;
    let status = response.status();
    super::http::proxy_refused(sink, status)?;
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut body = Vec::new();
    while body.len() < ANSWER_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = ANSWER_LIMIT - body.len();
                body.extend_from_slice(&chunk[..room.min(chunk.len())]);
            }
            // The status is what counts; a body cut short changes nothing.
            Ok(None) | Err(_) => break,
        }
    }
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// Whether a status is worth another try: 408, 429 and 5xx.
pub fn transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Outcome::Retry` with no status.
pub fn retry(after: Option<Duration>, message: String) -> Outcome {
    Outcome::Retry {
        after,
        error: SinkError::new(None, message),
    }
}

/// `404 Not Found` and the like: the code and its reason phrase.
pub fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(pointers: &[&str], encoding: DocumentEncoding) -> DocumentLocation {
        DocumentLocation {
            pointers: pointers.iter().map(|p| p.to_string()).collect(),
            encoding,
        }
    }

    fn texts(docs: &[Document]) -> Vec<(&str, &str)> {
        docs.iter()
            .map(|d| (d.label.as_str(), std::str::from_utf8(&d.bytes).unwrap()))
            .collect()
    }

    #[test]
    fn the_body_itself_is_taken_byte_for_byte() {
        let body = Bytes::from_static(b"<bom xmlns=\"http://cyclonedx.org/schema/bom/1.5\"/>\n");
        let docs = find(&body, &location(&[], DocumentEncoding::Json), true).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].label, "0");
        assert_eq!(docs[0].bytes, body);
    }

    #[test]
    fn a_base64_body_is_decoded_even_when_wrapped() {
        let body = Bytes::from_static(b"eyJib21Gb3Jt\nYXQiOiJDeWNsb25lRFgifQ==\n");
        let docs = find(&body, &location(&[], DocumentEncoding::Base64), true).unwrap();
        assert_eq!(texts(&docs), [("0", r#"{"bomFormat":"CycloneDX"}"#)]);
    }

    #[test]
    fn pointers_find_objects_strings_and_array_elements_with_stable_labels() {
        let body = Bytes::from_static(
            br#"{"sbom":{"bomFormat":"CycloneDX"},"att":[{"a":1},"text"],"none":null}"#,
        );
        let loc = location(&["/none", "/sbom", "/att"], DocumentEncoding::Json);
        let docs = find(&body, &loc, true).unwrap();
        assert_eq!(
            texts(&docs),
            [
                ("1", r#"{"bomFormat":"CycloneDX"}"#),
                ("2-0", r#"{"a":1}"#),
                ("2-1", "text")
            ]
        );
        // Without splitting, an array is one document.
        let docs = find(&body, &location(&["/att"], DocumentEncoding::Json), false).unwrap();
        assert_eq!(texts(&docs), [("0", r#"[{"a":1},"text"]"#)]);
    }

    #[test]
    fn a_document_at_a_pointer_keeps_the_senders_bytes() {
        // Key order, number forms and escapes as sent: a BOM's hash or signature over its
        // own bytes still holds downstream.
        let sbom = r#"{"specVersion":"1.5","bomFormat":"CycloneDX","n":1.10,"big":12345678901234567890123,"s":"\u00e9"}"#;
        let body = Bytes::from(format!(r#"{{"meta":{{"a":[0,{{"sbom":{sbom}}}]}},"x":1}}"#));
        let docs = find(
            &body,
            &location(&["/meta/a/1/sbom"], DocumentEncoding::Json),
            true,
        )
        .unwrap();
        assert_eq!(texts(&docs), [("0", sbom)]);
        // Pointers that lead nowhere, RFC 6901 style.
        for pointer in ["/meta/a/01", "/meta/a/-", "/meta/a/+1", "/x/y", "/meta/b"] {
            let err = find(&body, &location(&[pointer], DocumentEncoding::Json), true).unwrap_err();
            assert!(matches!(err, NoDocument::Missing(_)), "{pointer}: {err:?}");
        }
        let escaped = Bytes::from_static(b" \n{\"a/b\" : { \"m~n\" :  {\"k\":2} } } \n");
        let docs = find(
            &escaped,
            &location(&["/a~1b/m~0n"], DocumentEncoding::Json),
            true,
        )
        .unwrap();
        assert_eq!(texts(&docs), [("0", r#"{"k":2}"#)]);
    }

    #[test]
    fn nothing_found_is_missing_and_names_where_it_looked() {
        let body = Bytes::from_static(br#"{"ref":"main"}"#);
        let err = find(&body, &location(&["/sbom"], DocumentEncoding::Json), true).unwrap_err();
        assert_eq!(
            err,
            NoDocument::Missing("nothing at /sbom in the body".to_string())
        );
        let err = find(
            &Bytes::from_static(b"not json"),
            &location(&["/sbom"], DocumentEncoding::Json),
            true,
        )
        .unwrap_err();
        assert!(matches!(err, NoDocument::Missing(m) if m.contains("not JSON")));
        let err = find(&Bytes::new(), &location(&[], DocumentEncoding::Json), true).unwrap_err();
        assert!(matches!(err, NoDocument::Missing(_)));
    }

    #[test]
    fn unreadable_base64_is_invalid_not_missing() {
        let body = Bytes::from_static(br#"{"sbom":"!!!","n":1}"#);
        let err = find(&body, &location(&["/sbom"], DocumentEncoding::Base64), true).unwrap_err();
        assert!(
            matches!(&err, NoDocument::Invalid(m) if m.starts_with("/sbom is not valid base64")),
            "{err:?}"
        );
        let err = find(&body, &location(&["/n"], DocumentEncoding::Base64), true).unwrap_err();
        assert!(matches!(err, NoDocument::Invalid(m) if m.contains("not a string")));
    }
}
