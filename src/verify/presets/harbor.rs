//! Harbor (`kind = "harbor"`): Harbor does not sign its webhooks. A policy's Auth Header
//! value arrives verbatim in `Authorization`, and is all there is to check, so `secret` is
//! exactly that value (often `Bearer <token>` or `Basic <base64>`). The event type is the
//! body's `type` (`PUSH_ARTIFACT`, `PULL_ARTIFACT`, `DELETE_ARTIFACT`, `SCANNING_COMPLETED`,
//! `SCANNING_FAILED`, `QUOTA_EXCEED`, `REPLICATION`, …). In the Default payload format
//! Harbor sends no delivery id; in the CloudEvents format the event's `id`, the same on
//! Harbor's retries, is one (and `type` reads `harbor.artifact.pushed`, …).

use http::header;

use super::Auth;
use crate::config::Secret;
use crate::verify::fields::{FieldReader, JsonPointer, read_json};
use crate::verify::token::TokenVerifier;
use crate::verify::{Rejection, Verified};

pub(super) fn auth(secrets: &[Secret]) -> Auth {
    Auth::Token(TokenVerifier::new(
        header::AUTHORIZATION,
        secrets,
        FieldReader::new(None, None),
    ))
}

pub(super) fn fields(body: &[u8]) -> Result<Verified, Rejection> {
    let kind = JsonPointer::top_level_string("type");
    // Only a CloudEvent has a top-level `id`; the Default format's body has none.
    let id = JsonPointer::top_level_string("id");
    let [event_type, delivery_id] = read_json(body, [Some(&kind), Some(&id)])?;
    Ok(Verified {
        event_type,
        delivery_id,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{headers, sample, verifier};
    use crate::config::{PresetScheme, Product};
    use crate::verify::Rejection;

    #[test]
    fn a_push_with_the_auth_header_verifies_and_is_typed_by_its_body() {
        let body = sample("harbor-push.json");
        let v = verifier(Product::Harbor, PresetScheme::Token, "Bearer harbor-token");
        let h = headers(&[
            ("content-type", "application/json"),
            ("authorization", "Bearer harbor-token"),
        ]);
        let got = v.verify(&h, &body).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("PUSH_ARTIFACT"));
        assert_eq!(got.delivery_id, None);
        assert_eq!(v.secret_headers(), &[http::header::AUTHORIZATION]);
        // The CloudEvents payload format: typed by its `type`, its `id` the delivery id.
        let cloud_event = br#"{"specversion":"1.0","requestid":"2eedfab8","id":"4b2f89a6-548d-4c12-9993-a1f5790b97d2","source":"/projects/1/webhook/policies/3","type":"harbor.artifact.pushed","datacontenttype":"application/json","time":"2023-03-06T06:08:43Z","data":{"repository":{"name":"busybox"}},"operator":"admin"}"#;
        let got = v.verify(&h, cloud_event).unwrap();
        assert_eq!(got.event_type.as_deref(), Some("harbor.artifact.pushed"));
        assert_eq!(
            got.delivery_id.as_deref(),
            Some("4b2f89a6-548d-4c12-9993-a1f5790b97d2")
        );
        let wrong = headers(&[("authorization", "Bearer harbor-tokeN")]);
        assert_eq!(v.verify(&wrong, &body), Err(Rejection::BadSignature));
        assert_eq!(
            v.verify(&headers(&[]), &body),
            Err(Rejection::MissingSignature)
        );
    }
}
