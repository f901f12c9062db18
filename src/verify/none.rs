//! `kind = "none"`: no verification at all. Every request is accepted; event type and
//! delivery id are read where configured. Ingress warns at start for such sources.
//!
//! Invariant: the only refusal is a body that is not JSON when a pointer needs it.

use http::HeaderMap;

use super::fields::FieldReader;
use super::{Rejection, Verified};

/// Verifier for `kind = "none"`.
#[derive(Debug, Clone)]
pub struct NoneVerifier {
    fields: FieldReader,
}

impl NoneVerifier {
    /// Builds the verifier around its field locations.
    pub(super) fn new(fields: FieldReader) -> NoneVerifier {
        NoneVerifier { fields }
    }

    /// Accepts the request and reads its event type and delivery id.
    pub(super) fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        self.fields.read(headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldLocation;
    use http::{HeaderName, HeaderValue};

    #[test]
    fn accepts_anything_and_reads_configured_fields() {
        let v = NoneVerifier::new(FieldReader::new(
            Some(&FieldLocation::JsonPointer("/type".into())),
            Some(&FieldLocation::Header(HeaderName::from_static("x-id"))),
        ));
        let mut h = HeaderMap::new();
        h.insert("x-id", HeaderValue::from_static("abc"));
        let got = v.verify(&h, br#"{"type":"ping"}"#).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("ping"));
        assert_eq!(got.delivery_id.as_deref(), Some("abc"));
        assert_eq!(v.verify(&HeaderMap::new(), b"{}"), Ok(Verified::default()));
        assert_eq!(v.verify(&h, b"ping"), Err(Rejection::MalformedJson));

        let bare = NoneVerifier::new(FieldReader::new(None, None));
        assert_eq!(
            bare.verify(&h, b"\xff\x00 anything"),
            Ok(Verified::default())
        );
    }
}
