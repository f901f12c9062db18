//! Sonatype Nexus Repository (`kind = "nexus"`): a webhook capability with a Secret Key
//! signs each request with `X-Nexus-Webhook-Signature`, the lowercase hex HMAC-SHA1 of the
//! body. The event type is the webhook id in `X-Nexus-Webhook-Id`
//! (`rm:repository:component`, `rm:repository:asset`, `rm:repository`, `rm:audit`, …), and
//! `X-Nexus-Webhook-Delivery` is a fresh id per delivery.
//!
//! Nexus sends no signature when no key is set; hookrelay requires one.

use http::{HeaderMap, HeaderName};

use super::Auth;
use crate::config::{HmacAlgorithm, Secret, SignatureEncoding};
use crate::verify::Verified;
use crate::verify::fields::{FieldReader, header_text};
use crate::verify::hmac::HmacVerifier;

const SIGNATURE: HeaderName = HeaderName::from_static("x-nexus-webhook-signature");
const EVENT: HeaderName = HeaderName::from_static("x-nexus-webhook-id");
const DELIVERY: HeaderName = HeaderName::from_static("x-nexus-webhook-delivery");

pub(super) fn auth(secrets: &[Secret]) -> Auth {
    let v = HmacVerifier::new(
        SIGNATURE,
        HmacAlgorithm::Sha1,
        SignatureEncoding::Hex,
        None,
        secrets,
        FieldReader::new(None, None),
    );
    Auth::Signature(vec![(SIGNATURE, v)])
}

pub(super) fn fields(headers: &HeaderMap) -> Verified {
    Verified {
        event_type: header_text(headers, &EVENT),
        delivery_id: header_text(headers, &DELIVERY),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{headers, sample, sha1_hex, verifier};
    use crate::config::{PresetScheme, Product};
    use crate::verify::Rejection;

    #[test]
    fn a_documented_component_event_verifies_and_names_its_type_and_delivery() {
        let body = sample("nexus-component.json");
        let v = verifier(Product::Nexus, PresetScheme::Signature, "nexus-key");
        let sig = sha1_hex("nexus-key", &body);
        let h = headers(&[
            ("content-type", "application/json; charset=UTF-8"),
            ("x-nexus-webhook-id", "rm:repository:component"),
            (
                "x-nexus-webhook-delivery",
                "7f8e2a51-3c1b-4e0d-9a65-0b8d2e4c1f37",
            ),
            ("x-nexus-webhook-signature", &sig),
        ]);
        let got = v.verify(&h, &body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("rm:repository:component"));
        assert_eq!(
            got.delivery_id.as_deref(),
            Some("7f8e2a51-3c1b-4e0d-9a65-0b8d2e4c1f37")
        );
        assert!(v.secret_headers().is_empty());

        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert_eq!(v.verify(&h, &tampered), Err(Rejection::BadSignature));
        let wrong = verifier(Product::Nexus, PresetScheme::Signature, "other-key");
        assert_eq!(wrong.verify(&h, &body), Err(Rejection::BadSignature));
        let unsigned = headers(&[("x-nexus-webhook-id", "rm:repository:component")]);
        assert_eq!(v.verify(&unsigned, &body), Err(Rejection::MissingSignature));
    }

    #[test]
    fn an_event_type_nexus_adds_later_is_passed_on() {
        let v = verifier(Product::Nexus, PresetScheme::Signature, "k");
        let body = br#"{"action":"PURGED"}"#;
        let h = headers(&[
            ("x-nexus-webhook-id", "rm:repository:something-new"),
            ("x-nexus-webhook-signature", &sha1_hex("k", body)),
        ]);
        let got = v.verify(&h, body).unwrap();
        assert_eq!(
            got.event_type.as_deref(),
            Some("rm:repository:something-new")
        );
        assert_eq!(got.delivery_id, None);
    }
}
