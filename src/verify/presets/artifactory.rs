//! JFrog Artifactory (`kind = "artifactory"`): a webhook with a Secret Token sends
//! `X-JFrog-Event-Auth`. With "Use secret for payload signing" on (`scheme = "signature"`,
//! the default), it holds the lowercase hex HMAC-SHA256 of the body; with it off
//! (`scheme = "token"`), the secret itself. The event type is the body's `domain` and
//! `event_type` joined by a dot (`artifact.deployed`, `docker.pushed`, `build.uploaded`, …),
//! as one name is what routes match. Artifactory sends no delivery id, so its re-sent
//! deliveries cannot be recognised.

use http::HeaderName;

use super::Auth;
use crate::config::{HmacAlgorithm, PresetScheme, Secret, SignatureEncoding};
use crate::verify::fields::{FieldReader, JsonPointer, read_json};
use crate::verify::hmac::HmacVerifier;
use crate::verify::token::TokenVerifier;
use crate::verify::{Rejection, Verified};

const AUTH: HeaderName = HeaderName::from_static("x-jfrog-event-auth");

pub(super) fn auth(scheme: PresetScheme, secrets: &[Secret]) -> Auth {
    match scheme {
        PresetScheme::Signature => {
            let v = HmacVerifier::new(
                AUTH,
                HmacAlgorithm::Sha256,
                SignatureEncoding::Hex,
                None,
                secrets,
                FieldReader::new(None, None),
            );
            Auth::Signature(vec![(AUTH, v)])
        }
        PresetScheme::Token => Auth::Token(TokenVerifier::new(
            AUTH,
            secrets,
            FieldReader::new(None, None),
        )),
    }
}

/// `domain.event_type` from the body; just `event_type` when there is no domain.
pub(super) fn fields(body: &[u8]) -> Result<Verified, Rejection> {
    let domain = JsonPointer::top_level_string("domain");
    let event = JsonPointer::top_level_string("event_type");
    let [domain, event] = read_json(body, [Some(&domain), Some(&event)])?;
    Ok(Verified {
        event_type: match (domain, event) {
            (Some(d), Some(e)) => Some(format!("{d}.{e}")),
            (None, e) => e,
            (Some(_), None) => None,
        },
        delivery_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{headers, sample, sha256_hex, verifier};
    use crate::config::{PresetScheme, Product};
    use crate::verify::Rejection;

    #[test]
    fn a_signed_deploy_verifies_and_is_typed_domain_dot_event() {
        let body = sample("artifactory-deployed.json");
        let v = verifier(
            Product::Artifactory,
            PresetScheme::Signature,
            "jfrog-secret",
        );
        let sig = sha256_hex("jfrog-secret", &body);
        let h = headers(&[
            ("content-type", "application/json"),
            ("x-jfrog-event-auth", &sig),
        ]);
        let got = v.verify(&h, &body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("artifact.deployed"));
        assert_eq!(got.delivery_id, None);
        assert!(v.secret_headers().is_empty());
        let mut tampered = body.clone();
        tampered[3] ^= 1;
        assert_eq!(v.verify(&h, &tampered), Err(Rejection::BadSignature));
        // The secret itself is not a signature.
        let plain = headers(&[("x-jfrog-event-auth", "jfrog-secret")]);
        assert_eq!(v.verify(&plain, &body), Err(Rejection::MalformedSignature));
    }

    #[test]
    fn the_token_scheme_takes_the_secret_itself_and_keeps_the_header_secret() {
        let body = sample("artifactory-docker-pushed.json");
        let v = verifier(Product::Artifactory, PresetScheme::Token, "jfrog-secret");
        let h = headers(&[("x-jfrog-event-auth", "jfrog-secret")]);
        let got = v.verify(&h, &body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("docker.pushed"));
        let wrong = headers(&[("x-jfrog-event-auth", "jfrog-secreT")]);
        assert_eq!(v.verify(&wrong, &body), Err(Rejection::BadSignature));
        assert_eq!(v.secret_headers().len(), 1);
        assert_eq!(v.secret_headers()[0], "x-jfrog-event-auth");
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_after_the_signature_holds() {
        let v = verifier(Product::Artifactory, PresetScheme::Token, "t");
        let h = headers(&[("x-jfrog-event-auth", "t")]);
        assert_eq!(v.verify(&h, b"not json"), Err(Rejection::MalformedJson));
    }
}
