//! Fuzzes how Dependency-Track and GUAC find the documents an event carries: input is
//! `flags \0 pointer \0 body` (flag bit 0: split arrays; bit 1: base64). Whatever the body
//! and the pointer (deep nesting, escapes, huge numbers, invalid UTF-8), finding must
//! never panic.
#![no_main]

use bytes::Bytes;
use hookrelay::config::{DocumentEncoding, DocumentLocation};
use hookrelay::sinks::machine::find;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let (Some(flags), Some(pointer), Some(body)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let Ok(pointer) = std::str::from_utf8(pointer) else {
        return;
    };
    let flags = flags.first().copied().unwrap_or(0);
    let encoding = if flags & 2 == 0 {
        DocumentEncoding::Json
    } else {
        DocumentEncoding::Base64
    };
    let location = DocumentLocation {
        pointers: vec![pointer.to_owned()],
        encoding,
    };
    let _ = find(&Bytes::copy_from_slice(body), &location, flags & 1 == 1);
});
