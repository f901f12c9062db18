//! Fuzzes the generic HMAC verifier's header parsing across its settings: the first input
//! byte picks algorithm, encoding and whether a prefix is required; the rest is
//! `signature \0 body`, with the event type read through a JSON pointer. Must never panic.
#![no_main]

use hookrelay::config::{FieldLocation, HmacAlgorithm, Secret, SignatureEncoding, SourceKind};
use hookrelay::verify::Verifier;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let algorithm = match settings % 3 {
        0 => HmacAlgorithm::Sha1,
        1 => HmacAlgorithm::Sha256,
        _ => HmacAlgorithm::Sha512,
    };
    let encoding = if settings & 0x10 == 0 {
        SignatureEncoding::Hex
    } else {
        SignatureEncoding::Base64
    };
    let prefix = (settings & 0x20 != 0).then(|| "sha256=".to_owned());
    let mut parts = rest.splitn(2, |&b| b == 0);
    let signature = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(signature) {
        headers.insert("x-signature", value);
    }
    let verifier = Verifier::new(&SourceKind::Hmac {
        header: HeaderName::from_static("x-signature"),
        algorithm,
        encoding,
        prefix,
        secrets: vec![Secret::new(&b"hmac-secret"[..])],
        event_type: Some(FieldLocation::JsonPointer("/event/kind".to_owned())),
        delivery_id: Some(FieldLocation::JsonPointer("/id".to_owned())),
    });
    // A refusal is explained from the same request: that path must not panic either.
    if let Err(rejection) = verifier.verify(&headers, body, 0) {
        let _ = verifier.explain(rejection, &headers, 0);
    }
});
