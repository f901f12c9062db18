//! Fuzzes the Standard Webhooks verifier's header parsing: input is
//! `webhook-id \0 webhook-timestamp \0 webhook-signature \0 body`, checked at the reference
//! vector's time so that seeds built from it reach the MAC comparison. Must never panic.
#![no_main]

use std::time::Duration;

use hookrelay::config::{Secret, SourceKind};
use hookrelay::verify::Verifier;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// The decoded key of the reference secret `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`.
const KEY: [u8; 24] = [
    0x31, 0xf2, 0x90, 0xf6, 0xbf, 0x06, 0x29, 0x8a, 0xab, 0x4f, 0x08, 0xd4, 0x3c, 0x3f, 0x08, 0x2c,
    0xf6, 0x48, 0xa3, 0x62, 0xda, 0x2d, 0xa4, 0xb0,
];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == 0);
    let mut headers = HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        if let Some(Ok(value)) = parts.next().map(HeaderValue::from_bytes) {
            headers.insert(name, value);
        }
    }
    let body = parts.next().unwrap_or_default();
    let verifier = Verifier::new(&SourceKind::Standard {
        keys: vec![Secret::new(KEY)],
        tolerance: Duration::from_secs(300),
    });
    // A refusal is explained from the same request: that path must not panic either.
    if let Err(rejection) = verifier.verify(&headers, body, 1_614_265_330) {
        let _ = verifier.explain(rejection, &headers, 1_614_265_330);
    }
});
