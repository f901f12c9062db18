//! GitLab: the `X-Gitlab-Token` shared token, and GitLab's HMAC signing tokens (`whsec_…`),
//! which sign with Standard Webhooks headers. When both are configured both must hold.
//! Event type from `X-Gitlab-Event`; delivery id from `Idempotency-Key` (stable across
//! GitLab's retries), else `X-Gitlab-Event-UUID`; with signing, from the signed
//! `webhook-id`, which GitLab sets to the same value.
//!
//! Invariants: the token check is [`TokenSet`]'s and the signing check is
//! [`StandardVerifier::check`], not copies of them; a source with neither configured
//! accepts nothing. `X-Gitlab-Token` is a secret header: never stored or forwarded.

use std::time::Duration;

use http::{HeaderMap, HeaderName};

use super::fields::header_text;
use super::standard::StandardVerifier;
use super::token::TokenSet;
use super::{Expected, Rejection, Verified, explain_credential};
use crate::config::Secret;

/// The header carrying GitLab's shared token; a secret, so [`super::Verifier::secret_headers`]
/// names it.
pub(super) static TOKEN_HEADER: HeaderName = HeaderName::from_static("x-gitlab-token");
const EVENT: HeaderName = HeaderName::from_static("x-gitlab-event");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const EVENT_UUID: HeaderName = HeaderName::from_static("x-gitlab-event-uuid");

/// Verifier for `kind = "gitlab"`.
#[derive(Debug, Clone)]
pub struct GitlabVerifier {
    /// Empty when only signing is configured.
    tokens: TokenSet,
    /// `None` when only the token is configured.
    signing: Option<StandardVerifier>,
}

impl GitlabVerifier {
    /// Builds the checks that are configured: a token list, signing keys, or both.
    pub(super) fn new(
        tokens: &[Secret],
        signing_keys: &[Secret],
        tolerance: Duration,
    ) -> GitlabVerifier {
        GitlabVerifier {
            tokens: TokenSet::new(tokens),
            signing: (!signing_keys.is_empty())
                .then(|| StandardVerifier::new(signing_keys, tolerance)),
        }
    }

    /// Runs every configured check, then reads event type and delivery id from headers.
    pub(super) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Verified, Rejection> {
        match (&self.signing, self.tokens.is_empty()) {
            // Config validation requires one of the two; should neither be set, fail closed.
            (None, true) => return Err(Rejection::BadSignature),
            (None, false) => self.tokens.check(headers, &TOKEN_HEADER)?,
            (Some(signing), true) => signing.check(headers, body, now_unix)?,
            (Some(signing), false) => {
                self.tokens.check(headers, &TOKEN_HEADER)?;
                signing.check(headers, body, now_unix)?;
            }
        }
        // A signed request's id is the signed `webhook-id` (GitLab sets it equal to
        // `Idempotency-Key`): the unsigned headers could be changed by whoever replays a
        // captured request within the tolerance, making it a "new" delivery.
        let delivery_id = match &self.signing {
            Some(_) => header_text(headers, &super::standard::ID),
            None => {
                header_text(headers, &IDEMPOTENCY_KEY).or_else(|| header_text(headers, &EVENT_UUID))
            }
        };
        Ok(Verified {
            event_type: header_text(headers, &EVENT),
            delivery_id,
        })
    }
}

impl GitlabVerifier {
    /// The sender-facing reason for `rejection`; see [`super::Verifier::explain`]. The token
    /// is checked first in `verify`, so when it fails here it is what was refused.
    pub(super) fn explain(
        &self,
        rejection: Rejection,
        headers: &HeaderMap,
        now_unix: i64,
    ) -> String {
        let token_refused =
            !self.tokens.is_empty() && self.tokens.check(headers, &TOKEN_HEADER).is_err();
        match &self.signing {
            Some(_) if !token_refused && !headers.contains_key("webhook-signature") => {
                // GitLab signs only when the webhook has a signing token of its own.
                format!(
                    "no webhook-signature header: this source checks GitLab's signing; add \
                     a signing token to the webhook in GitLab (the source's signing_token){}",
                    if self.tokens.is_empty() && headers.contains_key(&TOKEN_HEADER) {
                        ", or set token = \"…\" on this source to check X-Gitlab-Token instead"
                    } else {
                        ""
                    }
                )
            }
            Some(signing) if !token_refused => signing.explain(rejection, headers, now_unix),
            _ => explain_credential(rejection, "X-Gitlab-Token", Expected::Token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::standard::tests::{
        VECTOR_ID, VECTOR_PAYLOAD, VECTOR_SECRET, VECTOR_SIGNATURE, VECTOR_TIMESTAMP, key, sign,
    };
    use http::HeaderValue;
    use proptest::prelude::*;

    const TOLERANCE: Duration = Duration::from_secs(300);

    fn tokens(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|t| Secret::new(t.as_bytes())).collect()
    }

    fn signed(id: &str, ts: i64, body: &[u8]) -> HeaderMap {
        crate::verify::standard::tests::headers(
            id,
            &ts.to_string(),
            &sign(VECTOR_SECRET, id, ts, body),
        )
    }

    fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
        h.insert(name, HeaderValue::from_str(value).unwrap());
    }

    #[test]
    fn token_only_accepts_any_listed_token() {
        let v = GitlabVerifier::new(&tokens(&["old", "new"]), &[], TOLERANCE);
        let mut h = HeaderMap::new();
        set(&mut h, "x-gitlab-event", "Push Hook");
        set(&mut h, "x-gitlab-event-uuid", "uuid-1");
        assert_eq!(v.verify(&h, b"{}", 0), Err(Rejection::MissingSignature));
        set(&mut h, "x-gitlab-token", "nope");
        assert_eq!(v.verify(&h, b"{}", 0), Err(Rejection::BadSignature));
        for token in ["old", "new"] {
            set(&mut h, "x-gitlab-token", token);
            let got = v.verify(&h, b"{}", 0).unwrap();
            assert_eq!(got.event_type.as_deref(), Some("Push Hook"));
            assert_eq!(got.delivery_id.as_deref(), Some("uuid-1"));
        }
    }

    #[test]
    fn signing_only_is_standard_webhooks_on_the_reference_vector() {
        let v = GitlabVerifier::new(&[], &[key(VECTOR_SECRET)], TOLERANCE);
        let mut h = crate::verify::standard::tests::headers(
            VECTOR_ID,
            &VECTOR_TIMESTAMP.to_string(),
            VECTOR_SIGNATURE,
        );
        set(&mut h, "idempotency-key", VECTOR_ID);
        set(&mut h, "x-gitlab-event-uuid", "uuid-1");
        let got = v.verify(&h, VECTOR_PAYLOAD, VECTOR_TIMESTAMP).unwrap();
        assert_eq!(
            got.delivery_id.as_deref(),
            Some(VECTOR_ID),
            "Idempotency-Key wins"
        );
        assert_eq!(
            v.verify(&h, b"{\"test\": 1}", VECTOR_TIMESTAMP),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            v.verify(&h, VECTOR_PAYLOAD, VECTOR_TIMESTAMP + 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            v.verify(&HeaderMap::new(), VECTOR_PAYLOAD, VECTOR_TIMESTAMP),
            Err(Rejection::MissingSignature)
        );
    }

    #[test]
    fn a_signed_request_is_known_by_its_signed_id_whatever_the_unsigned_headers_say() {
        let v = GitlabVerifier::new(&[], &[key(VECTOR_SECRET)], TOLERANCE);
        let body = b"{\"object_kind\":\"push\"}";
        let now = 1_700_000_000;
        let mut captured = signed("idem-7", now, body);
        set(&mut captured, "idempotency-key", "idem-7");
        // Replayed within the tolerance with the unsigned keys changed or removed: still the
        // same delivery, so dedup answers it as a duplicate.
        let mut rekeyed = captured.clone();
        set(&mut rekeyed, "idempotency-key", "fresh");
        set(&mut rekeyed, "x-gitlab-event-uuid", "fresh-uuid");
        let mut stripped = captured.clone();
        stripped.remove("idempotency-key");
        for h in [&captured, &rekeyed, &stripped] {
            let got = v.verify(h, body, now).unwrap();
            assert_eq!(got.delivery_id.as_deref(), Some("idem-7"));
        }
    }

    #[test]
    fn both_configured_means_both_must_hold() {
        let v = GitlabVerifier::new(&tokens(&["gitlab-token"]), &[key(VECTOR_SECRET)], TOLERANCE);
        let body = b"{\"object_kind\":\"push\"}";
        let now = 1_700_000_000;

        let mut good = signed("idem-1", now, body);
        set(&mut good, "x-gitlab-token", "gitlab-token");
        set(&mut good, "idempotency-key", "idem-1");
        assert!(v.verify(&good, body, now).is_ok());

        let mut wrong_token = good.clone();
        set(&mut wrong_token, "x-gitlab-token", "nope");
        assert_eq!(
            v.verify(&wrong_token, body, now),
            Err(Rejection::BadSignature)
        );

        let mut no_token = good.clone();
        no_token.remove("x-gitlab-token");
        assert_eq!(
            v.verify(&no_token, body, now),
            Err(Rejection::MissingSignature)
        );

        let mut unsigned = HeaderMap::new();
        set(&mut unsigned, "x-gitlab-token", "gitlab-token");
        assert_eq!(
            v.verify(&unsigned, body, now),
            Err(Rejection::MissingSignature)
        );

        assert_eq!(
            v.verify(&good, b"{\"object_kind\":\"tag\"}", now),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            v.verify(&good, body, now - 600),
            Err(Rejection::StaleTimestamp)
        );
    }

    #[test]
    fn neither_configured_accepts_nothing() {
        let v = GitlabVerifier::new(&[], &[], TOLERANCE);
        let mut h = HeaderMap::new();
        set(&mut h, "x-gitlab-token", "");
        assert_eq!(v.verify(&h, b"", 0), Err(Rejection::BadSignature));
    }

    #[test]
    fn the_token_header_is_secret_and_debug_shows_no_secret() {
        let v = crate::verify::Verifier::new(&crate::config::SourceKind::Gitlab {
            tokens: tokens(&["gitlab-token"]),
            signing_keys: vec![key(VECTOR_SECRET)],
            tolerance: TOLERANCE,
        });
        assert_eq!(
            v.secret_headers(),
            [HeaderName::from_static("x-gitlab-token")]
        );
        let shown = format!("{v:?}");
        assert!(
            !shown.contains("gitlab-token") && !shown.contains("MfKQ9r8G"),
            "{shown}"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic_or_verify(
            token in proptest::collection::vec(any::<u8>(), 0..40),
            sig in proptest::collection::vec(any::<u8>(), 0..120),
            ts in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let v = GitlabVerifier::new(&tokens(&["gitlab-token"]), &[key(VECTOR_SECRET)], TOLERANCE);
            let mut h = HeaderMap::new();
            for (name, value) in [("x-gitlab-token", token), ("webhook-signature", sig), ("webhook-timestamp", ts)] {
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    h.insert(name, value);
                }
            }
            h.insert("webhook-id", HeaderValue::from_static("msg_1"));
            let verdict = v.verify(&h, b"{}", 1_700_000_000);
            prop_assert!(verdict.is_err());
        }
    }
}
