//! Times as the admin API and the offline commands read and write them: RFC 3339.

use std::time::{Duration, UNIX_EPOCH};

/// Unix milliseconds as RFC 3339 in UTC, to the millisecond.
pub fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// An RFC 3339 time as Unix milliseconds: `2024-05-01T12:00:00Z`, with a fraction, with a
/// numeric offset (`+02:00`, `-05:00`), `t` and `z` in either case, or (leniently) no zone
/// at all, read as UTC. `None` for anything else, and for times before 1970.
pub fn parse_ms(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_uppercase();
    // A numeric offset: `±HH:MM` at the end, after the time of day.
    let (local, offset_secs) = match text.len().checked_sub(6).map(|at| text.split_at(at)) {
        Some((local, zone))
            if local.contains('T')
                && matches!(zone.as_bytes()[0], b'+' | b'-')
                && zone.as_bytes()[3] == b':' =>
        {
            let hours: i64 = zone[1..3].parse().ok()?;
            let minutes: i64 = zone[4..6].parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            (local.to_owned(), sign * (hours * 3600 + minutes * 60))
        }
        _ => (text.clone(), 0),
    };
    let utc = humantime::parse_rfc3339_weak(local.trim_end_matches('Z')).ok()?;
    let ms = i128::try_from(utc.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    // 12:00+02:00 is 10:00 UTC.
    u64::try_from(ms - i128::from(offset_secs) * 1000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_are_read_with_any_offset() {
        let noon = parse_ms("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(format_ms(noon), "2024-05-01T12:00:00.000Z");
        assert_eq!(parse_ms("2024-05-01t12:00:00z"), Some(noon));
        assert_eq!(parse_ms("2024-05-01T12:00:00"), Some(noon));
        assert_eq!(parse_ms("2024-05-01T14:00:00+02:00"), Some(noon));
        assert_eq!(parse_ms("2024-05-01T07:00:00-05:00"), Some(noon));
        assert_eq!(parse_ms("2024-05-01T12:00:00.250Z"), Some(noon + 250));
        assert_eq!(parse_ms("2024-05-01T14:00:00.250+02:00"), Some(noon + 250));
        for bad in [
            "yesterday",
            "2024-05-01T12:00:00+25:00",
            "2024-05-01T12:00:00+0200",
            "",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
        assert_eq!(parse_ms("1970-01-01T00:30:00+01:00"), None, "before 1970");
    }
}
