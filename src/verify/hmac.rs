//! `kind = "hmac"`: a generic HMAC signature header, for senders such as Nexus, Gitea,
//! Bitbucket or Artifactory. The header name, digest (SHA-1, SHA-256, SHA-512), encoding
//! (hex in either case, or padded base64) and an optional prefix (such as `sha256=`) are
//! configured; the MAC is over the raw body. Event type and delivery id come from the
//! configured header or JSON pointer.
//!
//! Invariants: a configured prefix must be present; the signature is decoded and checked to
//! be exactly the digest's length before any comparison; every secret is tried and compared
//! in constant time; the body is parsed only after the signature holds.

use std::fmt;

use hmac::Hmac;
use http::{HeaderMap, HeaderName};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::fields::FieldReader;
use super::{
    Expected, MAX_MAC_LEN, Rejection, Verified, any_key_matches, decode_base64, explain_credential,
    keyed,
};
use crate::config::{HmacAlgorithm, Secret, SignatureEncoding};

/// One keyed state per secret, for the configured digest.
#[derive(Clone)]
enum Keys {
    Sha1(Vec<Hmac<Sha1>>),
    Sha256(Vec<Hmac<Sha256>>),
    Sha512(Vec<Hmac<Sha512>>),
}

impl Keys {
    /// The MAC length in bytes.
    fn tag_len(&self) -> usize {
        match self {
            Keys::Sha1(_) => 20,
            Keys::Sha256(_) => 32,
            Keys::Sha512(_) => 64,
        }
    }

    fn len(&self) -> usize {
        match self {
            Keys::Sha1(k) => k.len(),
            Keys::Sha256(k) => k.len(),
            Keys::Sha512(k) => k.len(),
        }
    }

    fn any_matches(&self, body: &[u8], tag: &[u8]) -> bool {
        match self {
            Keys::Sha1(k) => any_key_matches(k, &[body], tag),
            Keys::Sha256(k) => any_key_matches(k, &[body], tag),
            Keys::Sha512(k) => any_key_matches(k, &[body], tag),
        }
    }
}

/// Verifier for `kind = "hmac"`.
#[derive(Clone)]
pub struct HmacVerifier {
    header: HeaderName,
    encoding: SignatureEncoding,
    prefix: Option<Box<[u8]>>,
    keys: Keys,
    fields: FieldReader,
}

impl fmt::Debug for HmacVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacVerifier")
            .field("header", &self.header)
            .field("encoding", &self.encoding)
            .field("tag_len", &self.keys.tag_len())
            .field("secrets", &self.keys.len())
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl HmacVerifier {
    /// Keys one HMAC state per secret for `algorithm`.
    pub(super) fn new(
        header: HeaderName,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        prefix: Option<&str>,
        secrets: &[Secret],
        fields: FieldReader,
    ) -> HmacVerifier {
        let keys = match algorithm {
            HmacAlgorithm::Sha1 => Keys::Sha1(keyed(secrets)),
            HmacAlgorithm::Sha256 => Keys::Sha256(keyed(secrets)),
            HmacAlgorithm::Sha512 => Keys::Sha512(keyed(secrets)),
        };
        HmacVerifier {
            header,
            encoding,
            prefix: prefix.map(|p| p.as_bytes().into()),
            keys,
            fields,
        }
    }

    /// Checks the signature header against the body, then reads the configured fields.
    pub(super) fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        let raw = headers
            .get(&self.header)
            .ok_or(Rejection::MissingSignature)?
            .as_bytes();
        let encoded = match &self.prefix {
            Some(prefix) => raw
                .strip_prefix(&prefix[..])
                .ok_or(Rejection::MalformedSignature)?,
            None => raw,
        };
        let mut buf = [0u8; MAX_MAC_LEN];
        let tag = self
            .decode(encoded, &mut buf)
            .ok_or(Rejection::MalformedSignature)?;
        if !self.keys.any_matches(body, tag) {
            return Err(Rejection::BadSignature);
        }
        self.fields.read(headers, body)
    }

    /// The sender-facing reason for `rejection`; see [`super::Verifier::explain`].
    pub(super) fn explain(&self, rejection: Rejection) -> String {
        let digest = match self.keys {
            Keys::Sha1(_) => "SHA1",
            Keys::Sha256(_) => "SHA256",
            Keys::Sha512(_) => "SHA512",
        };
        let encoding = match self.encoding {
            SignatureEncoding::Hex => format!("{} hex digits", 2 * self.keys.tag_len()),
            SignatureEncoding::Base64 => "padded base64".to_owned(),
        };
        let prefix = self
            .prefix
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let form = format!("{prefix}<{encoding} of the HMAC-{digest} of the body>");
        explain_credential(
            rejection,
            self.header.as_str(),
            Expected::Signature { form: &form },
        )
    }

    /// Decodes the signature; `None` unless it is well-formed and exactly the MAC's length.
    fn decode<'b>(&self, encoded: &[u8], buf: &'b mut [u8; MAX_MAC_LEN]) -> Option<&'b [u8]> {
        let len = self.keys.tag_len();
        match self.encoding {
            SignatureEncoding::Hex => {
                let out = &mut buf[..len];
                hex::decode_to_slice(encoded, out).ok()?;
                Some(out)
            }
            SignatureEncoding::Base64 => decode_base64(encoded, buf).filter(|t| t.len() == len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldLocation;
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    use http::HeaderValue;
    use proptest::prelude::*;

    const HEADER: HeaderName = HeaderName::from_static("x-signature");

    fn mac<M: Mac + KeyInit>(secret: &str, body: &[u8]) -> Vec<u8> {
        let mut m = <M as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(body);
        m.finalize().into_bytes().to_vec()
    }

    fn tag(algorithm: HmacAlgorithm, secret: &str, body: &[u8]) -> Vec<u8> {
        match algorithm {
            HmacAlgorithm::Sha1 => mac::<Hmac<Sha1>>(secret, body),
            HmacAlgorithm::Sha256 => mac::<Hmac<Sha256>>(secret, body),
            HmacAlgorithm::Sha512 => mac::<Hmac<Sha512>>(secret, body),
        }
    }

    fn encode(encoding: SignatureEncoding, tag: &[u8]) -> String {
        match encoding {
            SignatureEncoding::Hex => hex::encode(tag),
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(tag),
        }
    }

    fn verifier(
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        prefix: Option<&str>,
        secrets: &[&str],
    ) -> HmacVerifier {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(s.as_bytes())).collect();
        let fields = FieldReader::new(
            Some(&FieldLocation::JsonPointer("/event/kind".into())),
            Some(&FieldLocation::Header(HeaderName::from_static(
                "x-delivery",
            ))),
        );
        HmacVerifier::new(HEADER, algorithm, encoding, prefix, &secrets, fields)
    }

    fn signed(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(value).unwrap());
        h.insert("x-delivery", HeaderValue::from_static("d-1"));
        h
    }

    const ALGORITHMS: [HmacAlgorithm; 3] = [
        HmacAlgorithm::Sha1,
        HmacAlgorithm::Sha256,
        HmacAlgorithm::Sha512,
    ];
    const ENCODINGS: [SignatureEncoding; 2] = [SignatureEncoding::Hex, SignatureEncoding::Base64];
    const BODY: &[u8] = br#"{"event":{"kind":"artifact.uploaded"}}"#;

    #[test]
    fn rfc_4231_case_2_vectors_verify() {
        // RFC 4231 test case 2 (key "Jefe"), and RFC 2202 test case 2 for SHA-1.
        let body = b"what do ya want for nothing?";
        for (algorithm, hex) in [
            (
                HmacAlgorithm::Sha1,
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                HmacAlgorithm::Sha256,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                HmacAlgorithm::Sha512,
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ] {
            let v = HmacVerifier::new(
                HEADER,
                algorithm,
                SignatureEncoding::Hex,
                None,
                &[Secret::new(&b"Jefe"[..])],
                FieldReader::new(None, None),
            );
            assert!(v.verify(&signed(hex), body).is_ok(), "{algorithm:?}");
        }
    }

    #[test]
    fn every_algorithm_and_encoding_accepts_its_own_signature_only() {
        for algorithm in ALGORITHMS {
            for encoding in ENCODINGS {
                let v = verifier(algorithm, encoding, Some("sig="), &["old", "new"]);
                for secret in ["old", "new"] {
                    let good = format!("sig={}", encode(encoding, &tag(algorithm, secret, BODY)));
                    let got = v.verify(&signed(&good), BODY).unwrap();
                    assert_eq!(got.event_type.as_deref(), Some("artifact.uploaded"));
                    assert_eq!(got.delivery_id.as_deref(), Some("d-1"));
                    assert_eq!(
                        v.verify(&signed(&good), b"{\"event\":{}}"),
                        Err(Rejection::BadSignature),
                        "{algorithm:?} {encoding:?} tampered"
                    );
                }
                let wrong = format!("sig={}", encode(encoding, &tag(algorithm, "other", BODY)));
                assert_eq!(
                    v.verify(&signed(&wrong), BODY),
                    Err(Rejection::BadSignature)
                );
                let unprefixed = encode(encoding, &tag(algorithm, "old", BODY));
                assert_eq!(
                    v.verify(&signed(&unprefixed), BODY),
                    Err(Rejection::MalformedSignature),
                    "a configured prefix is required"
                );
                assert_eq!(
                    v.verify(&HeaderMap::new(), BODY),
                    Err(Rejection::MissingSignature)
                );
            }
        }
    }

    #[test]
    fn hex_in_either_case() {
        let v = verifier(HmacAlgorithm::Sha1, SignatureEncoding::Hex, None, &["s"]);
        let upper = hex::encode_upper(tag(HmacAlgorithm::Sha1, "s", BODY));
        assert!(v.verify(&signed(&upper), BODY).is_ok());
    }

    #[test]
    fn a_tag_of_another_length_is_malformed_not_a_panic() {
        for encoding in ENCODINGS {
            let v = verifier(HmacAlgorithm::Sha256, encoding, None, &["s"]);
            for other in [HmacAlgorithm::Sha1, HmacAlgorithm::Sha512] {
                let sig = encode(encoding, &tag(other, "s", BODY));
                assert_eq!(
                    v.verify(&signed(&sig), BODY),
                    Err(Rejection::MalformedSignature),
                    "{encoding:?} {other:?}"
                );
            }
            let long = encode(encoding, &[0u8; 200]);
            assert_eq!(
                v.verify(&signed(&long), BODY),
                Err(Rejection::MalformedSignature)
            );
            assert_eq!(
                v.verify(&signed(""), BODY),
                Err(Rejection::MalformedSignature)
            );
            assert_eq!(
                v.verify(&signed("!!"), BODY),
                Err(Rejection::MalformedSignature)
            );
        }
    }

    #[test]
    fn the_body_is_parsed_only_after_the_signature_holds() {
        let v = verifier(HmacAlgorithm::Sha256, SignatureEncoding::Hex, None, &["s"]);
        let body = b"not json";
        let good = hex::encode(tag(HmacAlgorithm::Sha256, "s", body));
        assert_eq!(
            v.verify(&signed(&good), body),
            Err(Rejection::MalformedJson)
        );
        let bad = hex::encode(tag(HmacAlgorithm::Sha256, "t", body));
        assert_eq!(v.verify(&signed(&bad), body), Err(Rejection::BadSignature));
    }

    #[test]
    fn debug_shows_no_secret() {
        let v = verifier(
            HmacAlgorithm::Sha256,
            SignatureEncoding::Hex,
            None,
            &["hmac-secret-value"],
        );
        assert!(!format!("{v:?}").contains("hmac-secret-value"));
    }

    proptest! {
        #[test]
        fn arbitrary_signature_headers_never_panic(
            value in proptest::collection::vec(any::<u8>(), 0..200),
            algorithm in proptest::sample::select(ALGORITHMS.to_vec()),
            encoding in proptest::sample::select(ENCODINGS.to_vec()),
            prefix in proptest::option::of("[a-z0-9=]{0,8}"),
        ) {
            let v = verifier(algorithm, encoding, prefix.as_deref(), &["s"]);
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                let mut h = HeaderMap::new();
                h.insert(HEADER, value);
                prop_assert!(v.verify(&h, b"body").is_err());
            }
        }
    }
}
