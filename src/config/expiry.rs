//! When a certificate ends (its `notAfter`, read from the DER), and the warning an operator
//! gets while there is still time to renew it: the relay's HTTPS certificate and each sink's
//! client certificate are checked by `hookrelay check`, at start and at every reload.

use std::time::{Duration, SystemTime};

/// How long before its end a certificate is worth a warning: renewal tools act a month
/// ahead, so one this close has missed its renewal.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// What to tell the operator about a certificate ending at `not_after`, if anything: it has
/// expired, or it will within two weeks. `what` names it ("the certificate in \"…\""),
/// `refused` says who refuses it once expired, `remedy` what to do. Expiry is a warning, not
/// an error: refusing to start would not serve anyone better.
pub fn expiry_warning(
    what: &str,
    not_after: Option<SystemTime>,
    refused: &str,
    remedy: &str,
) -> Option<String> {
    let end = not_after?;
    let shown = humantime::format_rfc3339_seconds(end);
    match end.duration_since(SystemTime::now()) {
        Err(_) => Some(format!("{what} expired at {shown}: {refused}; {remedy}")),
        Ok(left) if left < EXPIRY_WARNING => Some(format!(
            "{what} expires at {shown}, in {}: {remedy}",
            days_and_hours(left)
        )),
        Ok(_) => None,
    }
}

/// `9 days 23 h`, `1 day`, `5 h`: what is left, to the hour.
fn days_and_hours(left: Duration) -> String {
    let hours = left.as_secs() / 3600;
    let (days, hours) = (hours / 24, hours % 24);
    let days = match days {
        0 => String::new(),
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    };
    match (days.is_empty(), hours) {
        (true, h) => format!("{h} h"),
        (false, 0) => days,
        (false, h) => format!("{days} {h} h"),
    }
}

/// A certificate's `notAfter`, read from its DER (RFC 5280 §4.1): the certificate and
/// its TBSCertificate are sequences; after the optional `[0]` version come the serial
/// number, the signature algorithm and the issuer, then the validity with `notBefore` and
/// `notAfter`. `None` for anything else: the warning is a courtesy, not a check.
pub fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (certificate, _) = der_item(der, Some(0x30))?;
    let (tbs, _) = der_item(certificate, Some(0x30))?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_item(rest, None)?.1;
    }
    for _ in 0..3 {
        rest = der_item(rest, None)?.1;
    }
    let (validity, _) = der_item(rest, Some(0x30))?;
    let after_start = der_item(validity, None)?.1;
    let tag = *after_start.first()?;
    let (time, _) = der_item(after_start, Some(tag))?;
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    // UTCTime is YYMMDDHHMMSS (years 1950-2049), GeneralizedTime YYYYMMDDHHMMSS.
    let full = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: u32 = text[..2].parse().ok()?;
            format!("{}{text}", if yy < 50 { "20" } else { "19" })
        }
        (0x18, 14) => text.to_string(),
        _ => return None,
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// One DER item at the start of `input` (of tag `want`, when given): its content and what
/// follows it.
fn der_item(input: &[u8], want: Option<u8>) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if want.is_some_and(|w| w != tag) {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate valid until `year`-`month`-`day`, as DER.
    pub(crate) fn certificate_ending(year: i32, month: u8, day: u8) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn not_after_is_read_from_utc_and_generalized_times() {
        // rcgen writes UTCTime up to 2049 and GeneralizedTime from 2050 (RFC 5280).
        for (y, m, d, want) in [
            (2020, 5, 17, "2020-05-17T00:00:00Z"),
            (2049, 12, 31, "2049-12-31T00:00:00Z"),
            (2051, 2, 3, "2051-02-03T00:00:00Z"),
        ] {
            let end = not_after(&certificate_ending(y, m, d)).expect("a notAfter");
            assert_eq!(humantime::format_rfc3339_seconds(end).to_string(), want);
        }
        assert_eq!(not_after(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(not_after(b""), None);
    }

    #[test]
    fn an_expired_or_expiring_certificate_gets_a_warning() {
        let warn = |end| expiry_warning("the certificate in \"c.pem\"", end, "refused", "renew");
        let expired = not_after(&certificate_ending(2020, 5, 17));
        assert_eq!(
            warn(expired).expect("expired"),
            "the certificate in \"c.pem\" expired at 2020-05-17T00:00:00Z: refused; renew"
        );
        let soon = Some(SystemTime::now() + Duration::from_secs(3 * 24 * 3600 + 600));
        let warning = warn(soon).expect("soon");
        assert!(
            warning.contains("expires at") && warning.ends_with(", in 3 days: renew"),
            "{warning}"
        );
        let later = Some(SystemTime::now() + Duration::from_secs(90 * 24 * 3600));
        assert_eq!(warn(later), None);
        assert_eq!(warn(None), None);
    }
}
