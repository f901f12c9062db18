//! Fuzzes the token verifier: input is `token \0 body`, with event type and delivery id read
//! through JSON pointers. Must never panic.
#![no_main]

use hookrelay::config::{FieldLocation, Secret, SourceKind};
use hookrelay::verify::Verifier;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let token = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(token) {
        headers.insert("x-api-token", value);
    }
    let verifier = Verifier::new(&SourceKind::Token {
        header: HeaderName::from_static("x-api-token"),
        secrets: vec![Secret::new(&b"token-secret"[..])],
        event_type: Some(FieldLocation::JsonPointer("/type".to_owned())),
        delivery_id: Some(FieldLocation::JsonPointer("/id".to_owned())),
    });
    // A refusal is explained from the same request: that path must not panic either.
    if let Err(rejection) = verifier.verify(&headers, body, 0) {
        let _ = verifier.explain(rejection, &headers, 0);
    }
});
