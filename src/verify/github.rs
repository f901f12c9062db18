//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`; event type
//! from `X-GitHub-Event`, delivery id from `X-GitHub-Delivery`.
//!
//! Invariants: the signature is decoded to bytes and compared with every configured secret's
//! MAC in constant time (any one matching, so a secret can be rotated); nothing here logs.

use std::fmt;

use hmac::Hmac;
use http::{HeaderMap, HeaderName};
use sha2::Sha256;

use super::fields::header_text;
use super::{Expected, Rejection, Verified, any_key_matches, explain_credential, keyed};
use crate::config::Secret;

const SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");
const EVENT: HeaderName = HeaderName::from_static("x-github-event");
const DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
const PREFIX: &[u8] = b"sha256=";

/// Verifier for `kind = "github"`.
#[derive(Clone)]
pub struct GithubVerifier {
    keys: Vec<Hmac<Sha256>>,
}

impl fmt::Debug for GithubVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubVerifier")
            .field("secrets", &self.keys.len())
            .finish()
    }
}

impl GithubVerifier {
    /// Keys one HMAC-SHA256 state per secret.
    pub(super) fn new(secrets: &[Secret]) -> GithubVerifier {
        GithubVerifier {
            keys: keyed(secrets),
        }
    }

    /// Checks `X-Hub-Signature-256` against the body and reads event type and delivery id.
    pub(super) fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        let header = headers.get(SIGNATURE).ok_or(Rejection::MissingSignature)?;
        let hex = header
            .as_bytes()
            .strip_prefix(PREFIX)
            .ok_or(Rejection::MalformedSignature)?;
        let mut tag = [0u8; 32];
        hex::decode_to_slice(hex, &mut tag).map_err(|_| Rejection::MalformedSignature)?;
        if !any_key_matches(&self.keys, &[body], &tag) {
            return Err(Rejection::BadSignature);
        }
        Ok(Verified {
            event_type: header_text(headers, &EVENT),
            delivery_id: header_text(headers, &DELIVERY),
        })
    }
}

/// The sender-facing reason for `rejection`; see [`super::Verifier::explain`].
pub(super) fn explain(rejection: Rejection, headers: &HeaderMap) -> String {
    if rejection == Rejection::MissingSignature && headers.contains_key("x-hub-signature") {
        return "no X-Hub-Signature-256 header, only the SHA-1 X-Hub-Signature: the relay checks \
                X-Hub-Signature-256, which GitHub sends whenever the webhook has a secret"
            .to_owned();
    }
    explain_credential(
        rejection,
        "X-Hub-Signature-256",
        Expected::Signature {
            form: "sha256=<64 hex digits of the HMAC-SHA256 of the body>",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    // GitHub's documented test values ("Validating webhook deliveries", "Testing the webhook
    // payload validation").
    const DOC_SECRET: &str = "It's a Secret to Everybody";
    const DOC_PAYLOAD: &[u8] = b"Hello, World!";
    const DOC_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn verifier(secrets: &[&str]) -> GithubVerifier {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(s.as_bytes())).collect();
        GithubVerifier::new(&secrets)
    }

    fn headers(signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE, HeaderValue::from_str(signature).unwrap());
        h.insert(EVENT, HeaderValue::from_static("push"));
        h.insert(
            DELIVERY,
            HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        );
        h
    }

    #[test]
    fn accepts_githubs_documented_vector() {
        let got = verifier(&[DOC_SECRET])
            .verify(&headers(DOC_SIGNATURE), DOC_PAYLOAD)
            .unwrap();
        assert_eq!(got.event_type.as_deref(), Some("push"));
        assert_eq!(
            got.delivery_id.as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
    }

    #[test]
    fn uppercase_hex_is_the_same_signature() {
        let upper = format!("sha256={}", DOC_SIGNATURE[7..].to_ascii_uppercase());
        assert!(
            verifier(&[DOC_SECRET])
                .verify(&headers(&upper), DOC_PAYLOAD)
                .is_ok()
        );
    }

    #[test]
    fn any_listed_secret_verifies_so_secrets_rotate() {
        let v = verifier(&["the new secret", DOC_SECRET]);
        assert!(v.verify(&headers(DOC_SIGNATURE), DOC_PAYLOAD).is_ok());
        let v = verifier(&[DOC_SECRET, "the new secret"]);
        assert!(v.verify(&headers(DOC_SIGNATURE), DOC_PAYLOAD).is_ok());
    }

    #[test]
    fn wrong_secret_or_tampered_body_is_bad_signature() {
        let v = verifier(&["not the secret"]);
        assert_eq!(
            v.verify(&headers(DOC_SIGNATURE), DOC_PAYLOAD),
            Err(Rejection::BadSignature)
        );
        let v = verifier(&[DOC_SECRET]);
        assert_eq!(
            v.verify(&headers(DOC_SIGNATURE), b"Hello, World?"),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verifier(&[]).verify(&headers(DOC_SIGNATURE), DOC_PAYLOAD),
            Err(Rejection::BadSignature),
            "no secret verifies nothing"
        );
    }

    #[test]
    fn missing_and_malformed_headers() {
        let v = verifier(&[DOC_SECRET]);
        assert_eq!(
            v.verify(&HeaderMap::new(), DOC_PAYLOAD),
            Err(Rejection::MissingSignature)
        );
        for bad in [
            "",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1700",
            "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=",
        ] {
            assert_eq!(
                v.verify(&headers(bad), DOC_PAYLOAD),
                Err(Rejection::MalformedSignature),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!("{:?}", verifier(&[DOC_SECRET]));
        assert!(!shown.contains("Secret to Everybody"), "{shown}");
    }

    proptest! {
        #[test]
        fn arbitrary_signature_headers_never_panic_or_verify(value in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut h = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                h.insert(SIGNATURE, value);
            }
            prop_assert!(verifier(&[DOC_SECRET]).verify(&h, b"some other body").is_err());
        }
    }
}
