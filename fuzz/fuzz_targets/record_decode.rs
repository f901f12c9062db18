//! Decoding stored records from arbitrary bytes (a damaged or foreign file) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hookrelay::store::fuzzing::decode_records(data);
});
