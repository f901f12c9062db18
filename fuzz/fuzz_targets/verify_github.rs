//! Fuzzes the GitHub verifier's header parsing: input is `signature \0 body`. Must never
//! panic.
#![no_main]

use hookrelay::config::{Secret, SourceKind};
use hookrelay::verify::Verifier;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let signature = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(signature) {
        headers.insert("x-hub-signature-256", value);
    }
    headers.insert("x-github-event", HeaderValue::from_static("push"));
    let verifier = Verifier::new(&SourceKind::Github {
        secrets: vec![Secret::new(&b"It's a Secret to Everybody"[..])],
    });
    // A refusal is explained from the same request: that path must not panic either.
    if let Err(rejection) = verifier.verify(&headers, body, 1_614_265_330) {
        let _ = verifier.explain(rejection, &headers, 1_614_265_330);
    }
});
