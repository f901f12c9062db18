//! Shared tokens: a header whose value must equal one of the configured secrets. Also the
//! `X-Gitlab-Token` half of the GitLab verifier, through [`TokenSet`].
//!
//! Invariants: the comparison takes the same time whatever the presented value shares with a
//! secret, and does not stop at a length mismatch: both sides are reduced to SHA-256 digests
//! (fixed length; equal digests mean equal values) and the digests are compared in constant
//! time, against every secret. The token header is reported by `secret_headers` so ingress
//! never stores or forwards it.

use std::fmt;

use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::fields::FieldReader;
use super::{Expected, Rejection, Verified, explain_credential};
use crate::config::Secret;

/// Accepted token values, held as digests so comparing never depends on their length.
#[derive(Clone)]
pub(super) struct TokenSet {
    digests: Vec<[u8; 32]>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSet({} tokens)", self.digests.len())
    }
}

impl TokenSet {
    /// Digests every configured token once.
    pub(super) fn new(secrets: &[Secret]) -> TokenSet {
        TokenSet {
            digests: secrets
                .iter()
                .map(|s| Sha256::digest(s.expose()).into())
                .collect(),
        }
    }

    /// Whether no token is configured.
    pub(super) fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` equals one of the tokens, in time that depends only on its length.
    pub(super) fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        let mut matched = Choice::from(0);
        for digest in &self.digests {
            matched |= digest.ct_eq(&presented);
        }
        matched.into()
    }

    /// Checks header `name`: absent is [`Rejection::MissingSignature`], any value no token
    /// equals is [`Rejection::BadSignature`].
    pub(super) fn check(&self, headers: &HeaderMap, name: &HeaderName) -> Result<(), Rejection> {
        let value = headers.get(name).ok_or(Rejection::MissingSignature)?;
        if self.matches(value.as_bytes()) {
            Ok(())
        } else {
            Err(Rejection::BadSignature)
        }
    }
}

/// Verifier for `kind = "token"`.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    /// One element, so `secret_headers` can lend it as a slice.
    header: [HeaderName; 1],
    tokens: TokenSet,
    fields: FieldReader,
}

impl TokenVerifier {
    /// Builds the verifier for `header` and its accepted secrets.
    pub(super) fn new(
        header: HeaderName,
        secrets: &[Secret],
        fields: FieldReader,
    ) -> TokenVerifier {
        TokenVerifier {
            header: [header],
            tokens: TokenSet::new(secrets),
            fields,
        }
    }

    /// Checks the token, then reads event type and delivery id where configured.
    pub(super) fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        self.tokens.check(headers, &self.header[0])?;
        self.fields.read(headers, body)
    }

    /// The sender-facing reason for `rejection`; see [`super::Verifier::explain`].
    pub(super) fn explain(&self, rejection: Rejection) -> String {
        explain_credential(rejection, self.header[0].as_str(), Expected::Token)
    }

    /// The token header: it carries the secret itself.
    pub(super) fn secret_headers(&self) -> &[HeaderName] {
        &self.header
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldLocation;
    use http::HeaderValue;
    use proptest::prelude::*;

    const HEADER: HeaderName = HeaderName::from_static("x-api-token");

    fn verifier(secrets: &[&str], fields: FieldReader) -> TokenVerifier {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(s.as_bytes())).collect();
        TokenVerifier::new(HEADER, &secrets, fields)
    }

    fn with_token(token: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_bytes(token).unwrap());
        h
    }

    #[test]
    fn exact_token_passes_and_anything_else_is_bad() {
        let v = verifier(&["token-secret"], FieldReader::new(None, None));
        assert_eq!(
            v.verify(&with_token(b"token-secret"), b"{}"),
            Ok(Verified::default())
        );
        for bad in [
            &b"token-secre"[..],
            b"token-secret ",
            b"Token-secret",
            b"",
            b"token-secretx",
        ] {
            assert_eq!(
                v.verify(&with_token(bad), b"{}"),
                Err(Rejection::BadSignature),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            v.verify(&HeaderMap::new(), b"{}"),
            Err(Rejection::MissingSignature)
        );
    }

    #[test]
    fn any_listed_token_passes_so_tokens_rotate() {
        let v = verifier(&["old", "new"], FieldReader::new(None, None));
        assert!(v.verify(&with_token(b"old"), b"").is_ok());
        assert!(v.verify(&with_token(b"new"), b"").is_ok());
        assert!(v.verify(&with_token(b"older"), b"").is_err());
        let none = verifier(&[], FieldReader::new(None, None));
        assert_eq!(
            none.verify(&with_token(b""), b""),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn fields_are_read_only_after_the_token_holds() {
        let fields = FieldReader::new(
            Some(&FieldLocation::JsonPointer("/type".into())),
            Some(&FieldLocation::Header(HeaderName::from_static("x-id"))),
        );
        let v = verifier(&["t"], fields);
        let mut h = with_token(b"t");
        h.insert("x-id", HeaderValue::from_static("d-1"));
        let got = v.verify(&h, br#"{"type":"ping"}"#).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("ping"));
        assert_eq!(got.delivery_id.as_deref(), Some("d-1"));
        assert_eq!(v.verify(&h, b"not json"), Err(Rejection::MalformedJson));
        assert_eq!(
            v.verify(&with_token(b"u"), b"not json"),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn the_token_header_is_secret_and_debug_shows_no_token() {
        let v = verifier(&["token-secret"], FieldReader::new(None, None));
        assert_eq!(v.secret_headers(), &[HEADER]);
        assert!(!format!("{v:?}").contains("token-secret"));
    }

    proptest! {
        #[test]
        fn only_the_exact_value_matches(token in proptest::collection::vec(any::<u8>(), 0..64), other in proptest::collection::vec(any::<u8>(), 0..64)) {
            let set = TokenSet::new(&[Secret::new(token.clone())]);
            prop_assert!(set.matches(&token));
            prop_assert_eq!(set.matches(&other), other == token);
        }

        #[test]
        fn arbitrary_header_values_never_panic(value in proptest::collection::vec(any::<u8>(), 0..100)) {
            let v = verifier(&["token-secret"], FieldReader::new(None, None));
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                let mut h = HeaderMap::new();
                h.insert(HEADER, value);
                let _ = v.verify(&h, b"");
            }
        }
    }
}
