//! Standard Webhooks (<https://www.standardwebhooks.com>), exactly as specified: headers
//! `webhook-id`, `webhook-timestamp` (integer Unix seconds) and `webhook-signature`, a
//! space-separated list of `v1,<base64 HMAC-SHA256>` entries over `{id}.{timestamp}.{body}`,
//! keyed with the decoded bytes of a `whsec_` secret. Any one `v1` entry matching any one
//! configured key is enough, so both sender and receiver can rotate keys. Entries of other
//! versions (`v1a,…`) are ignored. The event type is the body's top-level JSON `type`
//! string; the delivery id is `webhook-id`.
//!
//! Invariants: timestamps outside the tolerance, past or future, are refused before any MAC
//! is computed; the body is hashed once per key whatever the number of entries; tags are
//! compared in constant time; the body is parsed as JSON only after the signature holds.
//! GitLab's signing tokens use this same check through [`StandardVerifier::check`].

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::fields::{JsonPointer, header_text, read_json};
use super::{Expected, MAX_MAC_LEN, Rejection, Verified, decode_base64, explain_credential, keyed};
use crate::config::Secret;

pub(super) const ID: HeaderName = HeaderName::from_static("webhook-id");
const TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// HMAC-SHA256 output length.
const TAG_LEN: usize = 32;

/// Verifier for `kind = "standard"`, and the signing half of `kind = "gitlab"`.
#[derive(Clone)]
pub struct StandardVerifier {
    keys: Vec<Hmac<Sha256>>,
    tolerance_secs: u64,
    event_type: JsonPointer,
}

impl fmt::Debug for StandardVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardVerifier")
            .field("keys", &self.keys.len())
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl StandardVerifier {
    /// Keys one HMAC-SHA256 state per decoded key.
    pub(super) fn new(keys: &[Secret], tolerance: Duration) -> StandardVerifier {
        StandardVerifier {
            keys: keyed(keys),
            tolerance_secs: tolerance.as_secs(),
            event_type: JsonPointer::top_level_string("type"),
        }
    }

    /// Checks the signature, then reads `type` from the body and the id from `webhook-id`.
    pub(super) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Verified, Rejection> {
        self.check(headers, body, now_unix)?;
        let [event_type, _] = read_json(body, [Some(&self.event_type), None])?;
        Ok(Verified {
            event_type,
            delivery_id: header_text(headers, &ID),
        })
    }

    /// The signature check alone: headers present, timestamp within tolerance, one `v1`
    /// entry matching one key.
    pub(super) fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), Rejection> {
        let present = |name: &HeaderName| {
            headers
                .get(name)
                .map(|v| v.as_bytes())
                .filter(|v| !v.is_empty())
                .ok_or(Rejection::MissingSignature)
        };
        let id = present(&ID)?;
        let timestamp = present(&TIMESTAMP)?;
        let signature = present(&SIGNATURE)?;

        let (canonical, seconds) =
            parse_timestamp(timestamp).ok_or(Rejection::MalformedTimestamp)?;
        if i128::from(seconds).abs_diff(i128::from(now_unix)) > u128::from(self.tolerance_secs) {
            return Err(Rejection::StaleTimestamp);
        }

        // Hash the body once per key, before looking at entries, so a header with many
        // entries costs comparisons, not hashing.
        let tags: Vec<[u8; TAG_LEN]> = self
            .keys
            .iter()
            .map(|key| {
                let mut mac = key.clone();
                mac.update(id);
                mac.update(b".");
                mac.update(canonical);
                mac.update(b".");
                mac.update(body);
                mac.finalize().into_bytes().into()
            })
            .collect();

        let mut well_formed = false;
        let mut matched = Choice::from(0);
        for candidate in v1_signatures(signature) {
            let mut buf = [0u8; MAX_MAC_LEN];
            let Some(decoded) = decode_base64(candidate, &mut buf).filter(|d| d.len() == TAG_LEN)
            else {
                continue;
            };
            well_formed = true;
            for tag in &tags {
                matched |= tag.as_slice().ct_eq(decoded);
            }
        }
        if !well_formed {
            return Err(Rejection::MalformedSignature);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Rejection::BadSignature)
        }
    }
}

impl StandardVerifier {
    /// The sender-facing reason for `rejection`; see [`super::Verifier::explain`].
    pub(super) fn explain(
        &self,
        rejection: Rejection,
        headers: &HeaderMap,
        now_unix: i64,
    ) -> String {
        let value = |name: &HeaderName| {
            headers
                .get(name)
                .map(|v| v.as_bytes())
                .filter(|v| !v.is_empty())
        };
        if rejection == Rejection::MissingSignature {
            // The first absent one, in the order `check` looks for them.
            if let Some(name) = [&ID, &TIMESTAMP, &SIGNATURE]
                .into_iter()
                .find(|n| value(n).is_none())
            {
                return format!(
                    "no {name} header: a Standard Webhooks sender sends webhook-id, \
                     webhook-timestamp and webhook-signature with every request"
                );
            }
        }
        if matches!(
            rejection,
            Rejection::StaleTimestamp | Rejection::MalformedTimestamp
        ) {
            let Some((_, seconds)) = value(&TIMESTAMP).and_then(parse_timestamp) else {
                return "webhook-timestamp is not a whole number of seconds since \
                        1970-01-01 00:00 UTC"
                    .to_owned();
            };
            let skew = i128::from(seconds) - i128::from(now_unix);
            let direction = if skew < 0 { "behind" } else { "ahead of" };
            return format!(
                "webhook-timestamp is {} s {direction} the relay's clock, more than the {} s \
                 tolerance: check the clocks of the sender and the relay, or resend a fresh \
                 request rather than an old one",
                skew.unsigned_abs(),
                self.tolerance_secs
            );
        }
        explain_credential(
            rejection,
            "webhook-signature",
            Expected::Signature {
                form: "v1,<base64 of the HMAC-SHA256 of id.timestamp.body> \
                       (several separated by spaces)",
            },
        )
    }
}

/// The base64 part of each `v1,` entry in a `webhook-signature` header.
fn v1_signatures(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    header
        .split(|&b| b == b' ')
        .filter_map(|entry| entry.strip_prefix(b"v1,"))
}

/// Parses `webhook-timestamp`: ASCII digits only (no sign, no fraction, no spaces).
///
/// Returns the digits without leading zeros, which is what senders sign (the reference
/// libraries format the integer), and the value.
fn parse_timestamp(raw: &[u8]) -> Option<(&[u8], i64)> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let start = raw.iter().position(|&b| b != b'0').unwrap_or(raw.len() - 1);
    let canonical = &raw[start..];
    // At most 19 digits fit an i64; longer is garbage, not a time.
    let seconds = std::str::from_utf8(canonical).ok()?.parse().ok()?;
    Some((canonical, seconds))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use base64::Engine as _;
    use http::HeaderValue;
    use proptest::prelude::*;

    // The Standard Webhooks reference test vector (standard-webhooks repository, shared by
    // its libraries' tests).
    pub(crate) const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    pub(crate) const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    pub(crate) const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    pub(crate) const VECTOR_PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    pub(crate) const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    /// Decodes a `whsec_` secret as config does.
    pub(crate) fn key(whsec: &str) -> Secret {
        let b64 = whsec.strip_prefix("whsec_").unwrap();
        Secret::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
    }

    pub(crate) fn headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ID, HeaderValue::from_str(id).unwrap());
        h.insert(TIMESTAMP, HeaderValue::from_str(timestamp).unwrap());
        h.insert(SIGNATURE, HeaderValue::from_str(signature).unwrap());
        h
    }

    /// Signs as a Standard Webhooks sender does.
    pub(crate) fn sign(whsec: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key(whsec).expose()).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag)
        )
    }

    fn verifier(secrets: &[&str]) -> StandardVerifier {
        let keys: Vec<Secret> = secrets.iter().map(|s| key(s)).collect();
        StandardVerifier::new(&keys, FIVE_MINUTES)
    }

    fn vector_headers(signature: &str) -> HeaderMap {
        headers(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), signature)
    }

    #[test]
    fn accepts_the_reference_vector() {
        let got = verifier(&[VECTOR_SECRET])
            .verify(
                &vector_headers(VECTOR_SIGNATURE),
                VECTOR_PAYLOAD,
                VECTOR_TIMESTAMP,
            )
            .unwrap();
        assert_eq!(got.delivery_id.as_deref(), Some(VECTOR_ID));
        assert_eq!(got.event_type, None, "the vector's body has no type");
        assert_eq!(
            sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD),
            VECTOR_SIGNATURE,
            "the test signer agrees with the reference"
        );
    }

    #[test]
    fn event_type_is_the_top_level_type_string() {
        let body = br#"{"data":{"type":"nested"},"type":"invoice.paid"}"#;
        let sig = sign(VECTOR_SECRET, "msg_1", VECTOR_TIMESTAMP, body);
        let got = verifier(&[VECTOR_SECRET])
            .verify(
                &headers("msg_1", "1614265330", &sig),
                body,
                VECTOR_TIMESTAMP,
            )
            .unwrap();
        assert_eq!(got.event_type.as_deref(), Some("invoice.paid"));
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_after_the_signature_holds() {
        let body = b"type=invoice.paid";
        let sig = sign(VECTOR_SECRET, "msg_1", VECTOR_TIMESTAMP, body);
        let v = verifier(&[VECTOR_SECRET]);
        let h = headers("msg_1", "1614265330", &sig);
        assert_eq!(
            v.verify(&h, body, VECTOR_TIMESTAMP),
            Err(Rejection::MalformedJson)
        );
        assert_eq!(
            v.verify(&h, b"type=invoice.unpaid", VECTOR_TIMESTAMP),
            Err(Rejection::BadSignature),
            "an unauthenticated body is never parsed"
        );
    }

    #[test]
    fn any_v1_entry_matching_any_key_is_enough() {
        let other = "whsec_dGhpcyBpcyBhbm90aGVyIGtleSBmb3IgdGVzdHM=";
        let other_sig = sign(other, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD);
        let multi = format!("v1a,abc {other_sig}  v2,zzz {VECTOR_SIGNATURE}");
        let v = verifier(&[VECTOR_SECRET]);
        assert!(
            v.verify(&vector_headers(&multi), VECTOR_PAYLOAD, VECTOR_TIMESTAMP)
                .is_ok()
        );
        let v = verifier(&[other]);
        assert!(
            v.verify(&vector_headers(&multi), VECTOR_PAYLOAD, VECTOR_TIMESTAMP)
                .is_ok()
        );
        let v = verifier(&["whsec_c29tZSB0aGlyZCBrZXk=", VECTOR_SECRET]);
        assert!(
            v.verify(
                &vector_headers(VECTOR_SIGNATURE),
                VECTOR_PAYLOAD,
                VECTOR_TIMESTAMP
            )
            .is_ok()
        );
        let v = verifier(&["whsec_c29tZSB0aGlyZCBrZXk="]);
        assert_eq!(
            v.verify(&vector_headers(&multi), VECTOR_PAYLOAD, VECTOR_TIMESTAMP),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn tampering_with_id_timestamp_or_body_breaks_the_signature() {
        let v = verifier(&[VECTOR_SECRET]);
        let ts = VECTOR_TIMESTAMP;
        let bad = |h: HeaderMap, body: &[u8]| v.verify(&h, body, ts);
        assert_eq!(
            bad(vector_headers(VECTOR_SIGNATURE), br#"{"test": 2432232315}"#),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            bad(
                headers("msg_other", "1614265330", VECTOR_SIGNATURE),
                VECTOR_PAYLOAD
            ),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            bad(
                headers(VECTOR_ID, "1614265331", VECTOR_SIGNATURE),
                VECTOR_PAYLOAD
            ),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn leading_zeros_in_the_timestamp_sign_like_the_integer() {
        let v = verifier(&[VECTOR_SECRET]);
        let h = headers(VECTOR_ID, "01614265330", VECTOR_SIGNATURE);
        assert!(v.verify(&h, VECTOR_PAYLOAD, VECTOR_TIMESTAMP).is_ok());
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_stale_past_and_future() {
        let v = verifier(&[VECTOR_SECRET]);
        let h = vector_headers(VECTOR_SIGNATURE);
        for now in [VECTOR_TIMESTAMP - 300, VECTOR_TIMESTAMP + 300] {
            assert!(v.verify(&h, VECTOR_PAYLOAD, now).is_ok(), "edge {now}");
        }
        for now in [
            VECTOR_TIMESTAMP - 301,
            VECTOR_TIMESTAMP + 301,
            0,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(
                v.verify(&h, VECTOR_PAYLOAD, now),
                Err(Rejection::StaleTimestamp),
                "now {now}"
            );
        }
    }

    #[test]
    fn unparsable_timestamps_are_malformed_not_stale() {
        let v = verifier(&[VECTOR_SECRET]);
        for ts in [
            "+1614265330",
            "-1614265330",
            "1614265330.0",
            "1e9",
            "x",
            " 1614265330",
            "99999999999999999999",
        ] {
            let mut h = vector_headers(VECTOR_SIGNATURE);
            h.insert(TIMESTAMP, HeaderValue::from_str(ts).unwrap());
            assert_eq!(
                v.verify(&h, VECTOR_PAYLOAD, VECTOR_TIMESTAMP),
                Err(Rejection::MalformedTimestamp),
                "{ts:?}"
            );
        }
    }

    #[test]
    fn missing_headers_are_missing_signature() {
        let v = verifier(&[VECTOR_SECRET]);
        for name in [ID, TIMESTAMP, SIGNATURE] {
            let mut h = vector_headers(VECTOR_SIGNATURE);
            h.remove(&name);
            assert_eq!(
                v.verify(&h, VECTOR_PAYLOAD, VECTOR_TIMESTAMP),
                Err(Rejection::MissingSignature),
                "without {name}"
            );
            h.insert(name.clone(), HeaderValue::from_static(""));
            assert_eq!(
                v.verify(&h, VECTOR_PAYLOAD, VECTOR_TIMESTAMP),
                Err(Rejection::MissingSignature),
                "empty {name}"
            );
        }
    }

    #[test]
    fn no_well_formed_v1_entry_is_malformed() {
        let v = verifier(&[VECTOR_SECRET]);
        for sig in [
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,not base64!",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OEg0hM9SsE=",
            "v1,",
            "V1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ] {
            assert_eq!(
                v.verify(&vector_headers(sig), VECTOR_PAYLOAD, VECTOR_TIMESTAMP),
                Err(Rejection::MalformedSignature),
                "{sig:?}"
            );
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let shown = format!("{:?}", verifier(&[VECTOR_SECRET]));
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic_or_verify(
            id in proptest::collection::vec(any::<u8>(), 0..40),
            ts in proptest::collection::vec(any::<u8>(), 0..30),
            sig in proptest::collection::vec(any::<u8>(), 0..200),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            now in any::<i64>(),
        ) {
            let mut h = HeaderMap::new();
            for (name, value) in [(ID, id), (TIMESTAMP, ts), (SIGNATURE, sig)] {
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    h.insert(name, value);
                }
            }
            prop_assert!(verifier(&[VECTOR_SECRET]).verify(&h, &body, now).is_err());
        }

        #[test]
        fn whatever_the_sender_signs_verifies(
            id in "[a-zA-Z0-9_]{1,40}",
            body in proptest::collection::vec(any::<u8>(), 0..256),
            ts in 0i64..4_000_000_000,
        ) {
            let sig = sign(VECTOR_SECRET, &id, ts, &body);
            let h = headers(&id, &ts.to_string(), &sig);
            let verdict = verifier(&[VECTOR_SECRET]).check(&h, &body, ts);
            prop_assert_eq!(verdict, Ok(()));
        }
    }
}
