//! Bitbucket Cloud and Bitbucket Data Center (`kind = "bitbucket"`): a webhook with a secret
//! signs each request with `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>` (SHA-256
//! despite the header's GitHub-style name). The event type is `X-Event-Key` (`repo:push`,
//! `pullrequest:created` on Cloud; `repo:refs_changed`, `pr:opened` on Data Center). The
//! delivery id is Cloud's `X-Request-UUID` or Data Center's `X-Request-Id`. (Cloud's
//! `X-Hook-UUID` names the webhook, not the delivery, so it is not a delivery id.)

use http::{HeaderMap, HeaderName};

use super::Auth;
use crate::config::{HmacAlgorithm, Secret, SignatureEncoding};
use crate::verify::Verified;
use crate::verify::fields::{FieldReader, header_text};
use crate::verify::hmac::HmacVerifier;

const SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature");
const EVENT: HeaderName = HeaderName::from_static("x-event-key");
const CLOUD_DELIVERY: HeaderName = HeaderName::from_static("x-request-uuid");
const DATA_CENTER_DELIVERY: HeaderName = HeaderName::from_static("x-request-id");

pub(super) fn auth(secrets: &[Secret]) -> Auth {
    let v = HmacVerifier::new(
        SIGNATURE,
        HmacAlgorithm::Sha256,
        SignatureEncoding::Hex,
        Some("sha256="),
        secrets,
        FieldReader::new(None, None),
    );
    Auth::Signature(vec![(SIGNATURE, v)])
}

pub(super) fn fields(headers: &HeaderMap) -> Verified {
    Verified {
        event_type: header_text(headers, &EVENT),
        delivery_id: header_text(headers, &CLOUD_DELIVERY)
            .or_else(|| header_text(headers, &DATA_CENTER_DELIVERY)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{headers, sample, sha256_hex, verifier};
    use crate::config::{PresetScheme, Product};
    use crate::verify::Rejection;

    #[test]
    fn a_cloud_push_verifies_with_its_request_uuid() {
        let body = sample("bitbucket-cloud-push.json");
        let v = verifier(Product::Bitbucket, PresetScheme::Signature, "bb-secret");
        let sig = format!("sha256={}", sha256_hex("bb-secret", &body));
        let h = headers(&[
            ("content-type", "application/json"),
            ("x-event-key", "repo:push"),
            ("x-hook-uuid", "{0b7e7a94-27a1-4e4c-8a07-b0d1c4d0a1f2}"),
            ("x-request-uuid", "{5a6e0e0f-6c4e-4bd7-9d0a-4b5f2b6f3c11}"),
            ("x-attempt-number", "1"),
            ("x-hub-signature", &sig),
        ]);
        let got = v.verify(&h, &body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("repo:push"));
        assert_eq!(
            got.delivery_id.as_deref(),
            Some("{5a6e0e0f-6c4e-4bd7-9d0a-4b5f2b6f3c11}")
        );
        let mut tampered = body.clone();
        tampered.push(b' ');
        assert_eq!(v.verify(&h, &tampered), Err(Rejection::BadSignature));
    }

    #[test]
    fn a_data_center_refs_change_verifies_with_its_request_id() {
        let body = sample("bitbucket-dc-refs-changed.json");
        let v = verifier(Product::Bitbucket, PresetScheme::Signature, "bb-secret");
        let hex = sha256_hex("bb-secret", &body);
        let h = headers(&[
            ("x-event-key", "repo:refs_changed"),
            ("x-request-id", "c1a3f0d2-9e8b-4f6a-b5c4-d3e2f1a0b9c8"),
            ("x-hub-signature", &format!("sha256={hex}")),
        ]);
        let got = v.verify(&h, &body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("repo:refs_changed"));
        assert_eq!(
            got.delivery_id.as_deref(),
            Some("c1a3f0d2-9e8b-4f6a-b5c4-d3e2f1a0b9c8")
        );
        // Without the documented prefix the header is not Bitbucket's.
        let bare = headers(&[("x-hub-signature", &hex)]);
        assert_eq!(v.verify(&bare, &body), Err(Rejection::MalformedSignature));
        let wrong = verifier(Product::Bitbucket, PresetScheme::Signature, "other");
        assert_eq!(wrong.verify(&h, &body), Err(Rejection::BadSignature));
    }
}
