//! Fuzzes reading the event type and delivery id through JSON pointers from arbitrary
//! bodies: input is `event-type pointer \0 delivery-id pointer \0 body`. The streaming
//! reader descends only along the pointers; whatever the pointers and the body (deep
//! nesting, huge numbers, escapes, invalid UTF-8), it must never panic, nor read an empty id.
#![no_main]

use hookrelay::config::{FieldLocation, SourceKind};
use hookrelay::verify::Verifier;
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let (Some(event_type), Some(delivery_id), Some(body)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let pointer = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .ok()
            .map(|p| FieldLocation::JsonPointer(p.to_owned()))
    };
    let verifier = Verifier::new(&SourceKind::None {
        event_type: pointer(event_type),
        delivery_id: pointer(delivery_id),
    });
    match verifier.verify(&HeaderMap::new(), body, 0) {
        // An empty id would deduplicate every such request against the first.
        Ok(verified) => assert!(
            verified.delivery_id.as_deref() != Some("")
                && verified.event_type.as_deref() != Some(""),
            "an empty field was read: {verified:?}"
        ),
        // A refusal is explained from the same request: that path must not panic either.
        Err(rejection) => {
            let _ = verifier.explain(rejection, &HeaderMap::new(), 0);
        }
    }
});
