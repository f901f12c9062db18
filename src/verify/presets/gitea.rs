//! Gitea and Forgejo (`kind = "gitea"`). With a secret, each request is signed with the bare
//! lowercase hex HMAC-SHA256 of the body, in `X-Gitea-Signature` (Gitea) or
//! `X-Forgejo-Signature` (Forgejo, which sends the same tag in `X-Gitea-Signature` too; its
//! own header is the one checked when present). The event type is `X-Gitea-Event` /
//! `X-Forgejo-Event` (`push`, `create`, `release`, `pull_request`, …), the delivery id
//! `X-Gitea-Delivery` / `X-Forgejo-Delivery`.
//!
//! `scheme = "token"` checks the webhook's Authorization Header setting instead, which both
//! send verbatim in `Authorization`: weaker, as the secret itself crosses the wire and the
//! body is not covered.

use http::{HeaderMap, HeaderName, header};

use super::Auth;
use crate::config::{HmacAlgorithm, PresetScheme, Secret, SignatureEncoding};
use crate::verify::Verified;
use crate::verify::fields::{FieldReader, header_text};
use crate::verify::hmac::HmacVerifier;
use crate::verify::token::TokenVerifier;

const FORGEJO_SIGNATURE: HeaderName = HeaderName::from_static("x-forgejo-signature");
const GITEA_SIGNATURE: HeaderName = HeaderName::from_static("x-gitea-signature");
const FORGEJO_EVENT: HeaderName = HeaderName::from_static("x-forgejo-event");
const GITEA_EVENT: HeaderName = HeaderName::from_static("x-gitea-event");
const FORGEJO_DELIVERY: HeaderName = HeaderName::from_static("x-forgejo-delivery");
const GITEA_DELIVERY: HeaderName = HeaderName::from_static("x-gitea-delivery");

pub(super) fn auth(scheme: PresetScheme, secrets: &[Secret]) -> Auth {
    match scheme {
        PresetScheme::Signature => {
            let signed_in = |name: HeaderName| {
                let v = HmacVerifier::new(
                    name.clone(),
                    HmacAlgorithm::Sha256,
                    SignatureEncoding::Hex,
                    None,
                    secrets,
                    FieldReader::new(None, None),
                );
                (name, v)
            };
            Auth::Signature(vec![
                signed_in(FORGEJO_SIGNATURE),
                signed_in(GITEA_SIGNATURE),
            ])
        }
        PresetScheme::Token => Auth::Token(TokenVerifier::new(
            header::AUTHORIZATION,
            secrets,
            FieldReader::new(None, None),
        )),
    }
}

pub(super) fn fields(headers: &HeaderMap) -> Verified {
    Verified {
        event_type: header_text(headers, &FORGEJO_EVENT)
            .or_else(|| header_text(headers, &GITEA_EVENT)),
        delivery_id: header_text(headers, &FORGEJO_DELIVERY)
            .or_else(|| header_text(headers, &GITEA_DELIVERY)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{headers, sample, sha256_hex, verifier};
    use crate::config::{PresetScheme, Product};
    use crate::verify::Rejection;

    const DELIVERY: &str = "2f1c7a3e-8d4b-4e2a-9b6c-1a0d3e5f7b90";

    #[test]
    fn a_gitea_push_verifies_and_names_its_type_and_delivery() {
        let body = sample("gitea-push.json");
        let v = verifier(Product::Gitea, PresetScheme::Signature, "gitea-secret");
        let sig = sha256_hex("gitea-secret", &body);
        let h = headers(&[
            ("content-type", "application/json"),
            ("x-gitea-event", "push"),
            ("x-gitea-event-type", "push"),
            ("x-gitea-delivery", DELIVERY),
            ("x-gitea-signature", &sig),
            ("x-gogs-event", "push"),
            ("x-gogs-delivery", DELIVERY),
            ("x-gogs-signature", &sig),
        ]);
        let got = v.verify(&h, &body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("push"));
        assert_eq!(got.delivery_id.as_deref(), Some(DELIVERY));
        let mut tampered = body.clone();
        tampered[1] ^= 1;
        assert_eq!(v.verify(&h, &tampered), Err(Rejection::BadSignature));
        let wrong = verifier(Product::Gitea, PresetScheme::Signature, "other");
        assert_eq!(wrong.verify(&h, &body), Err(Rejection::BadSignature));
        assert_eq!(
            v.verify(&headers(&[("x-gitea-event", "push")]), &body),
            Err(Rejection::MissingSignature)
        );
    }

    #[test]
    fn forgejo_headers_verify_and_a_bad_forgejo_signature_is_not_rescued() {
        let body = sample("gitea-push.json");
        let v = verifier(Product::Gitea, PresetScheme::Signature, "s");
        let good = sha256_hex("s", &body);
        let h = headers(&[
            ("x-forgejo-event", "push"),
            ("x-forgejo-delivery", DELIVERY),
            ("x-forgejo-signature", &good),
            ("x-gitea-event", "push"),
            ("x-gitea-delivery", DELIVERY),
            ("x-gitea-signature", &good),
        ]);
        let got = v.verify(&h, &body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("push"));
        assert_eq!(got.delivery_id.as_deref(), Some(DELIVERY));
        let bad = sha256_hex("t", &body);
        let mixed = headers(&[("x-forgejo-signature", &bad), ("x-gitea-signature", &good)]);
        assert_eq!(v.verify(&mixed, &body), Err(Rejection::BadSignature));
    }

    #[test]
    fn the_token_scheme_checks_the_authorization_header_and_keeps_it_secret() {
        let v = verifier(Product::Gitea, PresetScheme::Token, "Bearer gitea-token");
        let body = sample("gitea-push.json");
        let ok = headers(&[
            ("authorization", "Bearer gitea-token"),
            ("x-gitea-event", "push"),
        ]);
        assert_eq!(
            v.verify(&ok, &body).unwrap().event_type.as_deref(),
            Some("push")
        );
        let bad = headers(&[("authorization", "Bearer other")]);
        assert_eq!(v.verify(&bad, &body), Err(Rejection::BadSignature));
        assert_eq!(v.secret_headers(), &[http::header::AUTHORIZATION]);
    }
}
