//! Fuzzes the config loader: any text must yield a `Config` or a `ConfigError`, never a
//! panic or a hang. `${file:..}` references in the input are resolved for real, which only
//! ever reads: the loader opens regular files alone, at most 64 KiB of each, so paths such
//! as `/dev/zero` or a FIFO cannot stall a run.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = hookrelay::config::Config::parse(s, "fuzz.toml");
    }
});
