//! Verification: one verifier per scheme decides whether a request is authentic and reads
//! its event type and delivery id.
//!
//! Invariant: verifiers are pure and synchronous: bytes and an `http::HeaderMap` in, a
//! verdict out. They know nothing of hyper's server types, the store or routing. Every
//! secret comparison is constant-time; no secret, signature or body reaches a log line or a
//! [`Rejection`].

mod fields;
mod github;
mod gitlab;
mod hmac;
mod none;
mod presets;
mod standard;
mod token;

use ::hmac::{KeyInit, Mac};
use base64::Engine as _;
use http::HeaderMap;
use subtle::{Choice, ConstantTimeEq};

use crate::config::{Secret, SourceKind};
use fields::FieldReader;

/// What a verified request tells about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// The sender's event type (`push`, `release`, …), when the scheme carries one.
    pub event_type: Option<String>,
    /// The sender's id for this delivery, stable across its retries; used for dedup.
    pub delivery_id: Option<String>,
}

/// Why a request was refused. Rejections are ordinary traffic: cheap, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The signature or token header is absent.
    #[error("signature header missing")]
    MissingSignature,
    /// A signature or token header is present but cannot be parsed (bad encoding, length).
    #[error("signature header malformed")]
    MalformedSignature,
    /// The signature or token does not match any configured secret.
    #[error("signature mismatch")]
    BadSignature,
    /// A Standard Webhooks timestamp is outside the tolerance (a missing one is
    /// [`Rejection::MissingSignature`]).
    #[error("timestamp outside tolerance")]
    StaleTimestamp,
    /// A Standard Webhooks timestamp is not a whole number of seconds: a sender's bug, not
    /// a clock to check.
    #[error("timestamp malformed")]
    MalformedTimestamp,
    /// The body must be JSON (to read the event type or delivery id) and is not.
    #[error("body is not valid JSON")]
    MalformedJson,
}

impl Rejection {
    /// A fixed, bounded code for metrics labels and logs.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::MissingSignature => "missing_signature",
            Rejection::MalformedSignature => "malformed_signature",
            Rejection::BadSignature => "bad_signature",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::MalformedTimestamp => "malformed_timestamp",
            Rejection::MalformedJson => "malformed_json",
        }
    }

    /// Whether the refusal is about authenticity (401) rather than the body's shape (400).
    pub fn is_unauthorized(self) -> bool {
        !matches!(self, Rejection::MalformedJson)
    }
}

/// A source's verifier, built once from its configuration.
///
/// A closed set: an enum that delegates, so the compiler lists every place a new scheme
/// must be wired.
#[derive(Debug)]
pub enum Verifier {
    /// `kind = "github"`.
    Github(github::GithubVerifier),
    /// `kind = "gitlab"`.
    Gitlab(gitlab::GitlabVerifier),
    /// `kind = "standard"`.
    Standard(standard::StandardVerifier),
    /// `kind = "hmac"`.
    Hmac(hmac::HmacVerifier),
    /// `kind = "token"`.
    Token(token::TokenVerifier),
    /// `kind = "none"`.
    None(none::NoneVerifier),
    /// A product preset: `kind = "nexus"`, `"artifactory"`, `"harbor"`, `"gitea"`,
    /// `"bitbucket"`.
    Preset(presets::PresetVerifier),
}

impl Verifier {
    /// Builds the verifier for a validated source kind.
    pub fn new(kind: &SourceKind) -> Verifier {
        match kind {
            SourceKind::Github { secrets } => {
                Verifier::Github(github::GithubVerifier::new(secrets))
            }
            SourceKind::Gitlab {
                tokens,
                signing_keys,
                tolerance,
            } => Verifier::Gitlab(gitlab::GitlabVerifier::new(
                tokens,
                signing_keys,
                *tolerance,
            )),
            SourceKind::Standard { keys, tolerance } => {
                Verifier::Standard(standard::StandardVerifier::new(keys, *tolerance))
            }
            SourceKind::Hmac {
                header,
                algorithm,
                encoding,
                prefix,
                secrets,
                event_type,
                delivery_id,
            } => Verifier::Hmac(hmac::HmacVerifier::new(
                header.clone(),
                *algorithm,
                *encoding,
                prefix.as_deref(),
                secrets,
                FieldReader::new(event_type.as_ref(), delivery_id.as_ref()),
            )),
            SourceKind::Token {
                header,
                secrets,
                event_type,
                delivery_id,
            } => Verifier::Token(token::TokenVerifier::new(
                header.clone(),
                secrets,
                FieldReader::new(event_type.as_ref(), delivery_id.as_ref()),
            )),
            SourceKind::None {
                event_type,
                delivery_id,
            } => Verifier::None(none::NoneVerifier::new(FieldReader::new(
                event_type.as_ref(),
                delivery_id.as_ref(),
            ))),
            SourceKind::Preset {
                product,
                scheme,
                secrets,
            } => Verifier::Preset(presets::PresetVerifier::new(*product, *scheme, secrets)),
        }
    }

    /// Checks the request and reads its event type and delivery id.
    ///
    /// `now_unix` is the current time in seconds, passed in so tests control it.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Verified, Rejection> {
        match self {
            Verifier::Github(v) => v.verify(headers, body),
            Verifier::Gitlab(v) => v.verify(headers, body, now_unix),
            Verifier::Standard(v) => v.verify(headers, body, now_unix),
            Verifier::Hmac(v) => v.verify(headers, body),
            Verifier::Token(v) => v.verify(headers, body),
            Verifier::None(v) => v.verify(headers, body),
            Verifier::Preset(v) => v.verify(headers, body),
        }
    }

    /// Tells the sender which header is wrong and what to change: the body of a `401` or
    /// `400`. Senders show it in their delivery logs, often the only feedback the person
    /// setting up the webhook gets. Worked out again from the request on the refusal path,
    /// so [`Verifier::verify`] stays allocation-free.
    pub fn explain(&self, rejection: Rejection, headers: &HeaderMap, now_unix: i64) -> String {
        match self {
            Verifier::Github(_) => github::explain(rejection, headers),
            Verifier::Gitlab(v) => v.explain(rejection, headers, now_unix),
            Verifier::Standard(v) => v.explain(rejection, headers, now_unix),
            Verifier::Hmac(v) => v.explain(rejection),
            Verifier::Token(v) => v.explain(rejection),
            Verifier::None(_) => explain_credential(rejection, "", Expected::Nothing),
            Verifier::Preset(v) => v.explain(rejection, headers),
        }
    }

    /// Headers that carry a secret (a token) and so must never be stored or shown.
    pub fn secret_headers(&self) -> &[http::HeaderName] {
        match self {
            Verifier::Gitlab(_) => std::slice::from_ref(&gitlab::TOKEN_HEADER),
            Verifier::Token(v) => v.secret_headers(),
            Verifier::Preset(v) => v.secret_headers(),
            Verifier::Github(_) | Verifier::Standard(_) | Verifier::Hmac(_) | Verifier::None(_) => {
                &[]
            }
        }
    }
}

/// What the header a rejection is about should have carried.
#[derive(Debug, Clone, Copy)]
enum Expected<'a> {
    /// A signature written as `form`.
    Signature { form: &'a str },
    /// The source's token itself.
    Token,
    /// No credential at all (`kind = "none"`): only the body can be refused.
    Nothing,
}

/// The explanation for a refusal about `header`, in the words every scheme shares.
fn explain_credential(rejection: Rejection, header: &str, expected: Expected<'_>) -> String {
    match (rejection, expected) {
        (Rejection::MalformedJson, _) => "the body is not valid JSON, and this source reads \
            its event type or delivery id from the body"
            .to_owned(),
        (Rejection::MissingSignature, Expected::Token) => {
            format!("no {header} header: the sender must send this source's token in it")
        }
        (Rejection::MissingSignature, _) => format!(
            "no {header} header: the sender must sign each request with this source's secret"
        ),
        (Rejection::MalformedSignature, Expected::Signature { form }) => {
            format!("{header} is not a signature of the form {form}")
        }
        (Rejection::BadSignature, Expected::Token) => format!(
            "{header} does not match this source's token: give the sender the token set in \
             the relay's configuration"
        ),
        (Rejection::BadSignature, _) => format!(
            "{header} does not match the body signed with this source's secret: give the \
             sender the secret set in the relay's configuration, and check that nothing on \
             the way changes the body"
        ),
        // Not produced for these schemes; the short form still names the problem.
        (
            Rejection::MalformedSignature
            | Rejection::StaleTimestamp
            | Rejection::MalformedTimestamp,
            _,
        ) => {
            format!("{header}: {rejection}")
        }
    }
}

/// Longest MAC any scheme uses (HMAC-SHA512), in bytes.
const MAX_MAC_LEN: usize = 64;

/// Keys one HMAC state per secret once, so a request only clones the keyed state instead
/// of hashing each key again.
fn keyed<M: KeyInit>(secrets: &[Secret]) -> Vec<M> {
    secrets
        .iter()
        // HMAC takes keys of any length, so this cannot fail.
        .map(|s| M::new_from_slice(s.expose()).expect("HMAC accepts keys of any length"))
        .collect()
}

/// Whether the MAC of `parts` (concatenated) under any of `keys` equals `tag`.
///
/// Every key is tried even after a match and each comparison is constant-time, so timing
/// tells neither how much of the tag was right nor which key matched.
fn any_key_matches<M: Mac + Clone>(keys: &[M], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut matched = Choice::from(0);
    for key in keys {
        let mut mac = key.clone();
        for part in parts {
            mac.update(part);
        }
        // `ct_eq` on slices of different lengths is false without comparing; tags are
        // checked for the scheme's length before this, so that is never a timing signal.
        matched |= mac.finalize().as_bytes().as_slice().ct_eq(tag);
    }
    matched.into()
}

/// Decodes standard, padded base64 into `out`; `None` when it is not exactly that or
/// longer than any MAC, so oversized input is refused before any work.
fn decode_base64<'o>(input: &[u8], out: &'o mut [u8; MAX_MAC_LEN]) -> Option<&'o [u8]> {
    if input.len() > base64::encoded_len(MAX_MAC_LEN, true)? {
        return None;
    }
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(input, out)
        .ok()?;
    Some(&out[..n])
}

/// Request headers that always carry a credential, whatever the source.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-gitlab-token",
];
/// Header name parts that suggest a credential.
const CREDENTIAL_PARTS: &[&str] = &["token", "secret", "auth", "key", "password"];
/// Headers whose names hold such a part but that carry an id, not a credential.
const NOT_CREDENTIALS: &[&str] = &["idempotency-key"];

/// Whether a kept request header (`name` in lower case) looks like a credential: never shown
/// or written out in clear (the admin API, the offline commands, the archive sink).
pub fn is_credential_header(name: &str) -> bool {
    !NOT_CREDENTIALS.contains(&name)
        && (CREDENTIAL_HEADERS.contains(&name)
            || CREDENTIAL_PARTS.iter().any(|part| name.contains(part)))
}

/// Whether a request header (`name` in lower case) carries a signature. Not a secret (an
/// HMAC does not reveal its key), so an audit copy keeps it to check the event later; the
/// admin views mask it all the same, as noise to a reader.
pub fn is_signature_header(name: &str) -> bool {
    name.contains("signature")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HmacAlgorithm, PresetScheme, Product, SignatureEncoding};
    use std::time::Duration;

    const NOW: i64 = 1_700_000_000;
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn secrets(values: &[&str]) -> Vec<Secret> {
        values.iter().map(|s| Secret::new(s.as_bytes())).collect()
    }

    /// The standard key as the config hands it over: the bytes after `whsec_`, decoded.
    fn whsec_key() -> Vec<Secret> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(WHSEC.trim_start_matches("whsec_"))
            .unwrap();
        vec![Secret::new(decoded)]
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, http::HeaderValue::from_str(value).unwrap());
        }
        h
    }

    /// Verifies, expects a refusal, and returns the sender's explanation of it.
    fn refusal(verifier: &Verifier, pairs: &[(&'static str, &str)], body: &[u8]) -> String {
        let h = headers(pairs);
        let rejection = verifier.verify(&h, body, NOW).unwrap_err();
        verifier.explain(rejection, &h, NOW)
    }

    #[test]
    fn github_names_its_header_and_the_sha1_only_case() {
        let v = Verifier::new(&SourceKind::Github {
            secrets: secrets(&["s"]),
        });
        assert!(refusal(&v, &[], b"{}").starts_with("no X-Hub-Signature-256 header: "));
        let sha1_only = refusal(&v, &[("x-hub-signature", "sha1=00")], b"{}");
        assert!(
            sha1_only.contains("only the SHA-1 X-Hub-Signature"),
            "{sha1_only}"
        );
        let wrong = refusal(
            &v,
            &[("x-hub-signature-256", &format!("sha256={}", "0".repeat(64)))],
            b"{}",
        );
        assert!(
            wrong.starts_with("X-Hub-Signature-256 does not match"),
            "{wrong}"
        );
    }

    #[test]
    fn standard_names_the_missing_header_and_the_clock_skew() {
        let v = Verifier::new(&SourceKind::Standard {
            keys: whsec_key(),
            tolerance: Duration::from_secs(300),
        });
        let no_timestamp = refusal(
            &v,
            &[("webhook-id", "m1"), ("webhook-signature", "v1,x")],
            b"{}",
        );
        assert!(
            no_timestamp.starts_with("no webhook-timestamp header"),
            "{no_timestamp}"
        );
        let old = (NOW - 400).to_string();
        let stale = refusal(
            &v,
            &[
                ("webhook-id", "m1"),
                ("webhook-timestamp", &old),
                ("webhook-signature", "v1,x"),
            ],
            b"{}",
        );
        assert!(
            stale.starts_with(
                "webhook-timestamp is 400 s behind the relay's clock, more than the 300 s tolerance"
            ),
            "{stale}"
        );
        let future = (NOW + 301).to_string();
        let ahead = refusal(
            &v,
            &[
                ("webhook-id", "m1"),
                ("webhook-timestamp", &future),
                ("webhook-signature", "v1,x"),
            ],
            b"{}",
        );
        assert!(
            ahead.starts_with("webhook-timestamp is 301 s ahead of"),
            "{ahead}"
        );
        let garbage = refusal(
            &v,
            &[
                ("webhook-id", "m1"),
                ("webhook-timestamp", "12.5"),
                ("webhook-signature", "v1,x"),
            ],
            b"{}",
        );
        assert!(
            garbage.starts_with("webhook-timestamp is not a whole number"),
            "{garbage}"
        );
        let now = NOW.to_string();
        let malformed = refusal(
            &v,
            &[
                ("webhook-id", "m1"),
                ("webhook-timestamp", &now),
                ("webhook-signature", "v2,abc"),
            ],
            b"{}",
        );
        assert!(
            malformed.starts_with("webhook-signature is not a signature of the form v1,"),
            "{malformed}"
        );
    }

    #[test]
    fn gitlab_blames_the_token_or_the_signing_whichever_failed() {
        let v = Verifier::new(&SourceKind::Gitlab {
            tokens: secrets(&["tok"]),
            signing_keys: whsec_key(),
            tolerance: Duration::from_secs(300),
        });
        let no_token = refusal(&v, &[], b"{}");
        assert!(
            no_token
                .starts_with("no X-Gitlab-Token header: the sender must send this source's token"),
            "{no_token}"
        );
        let wrong_token = refusal(&v, &[("x-gitlab-token", "nope")], b"{}");
        assert!(
            wrong_token.starts_with("X-Gitlab-Token does not match this source's token"),
            "{wrong_token}"
        );
        let unsigned = refusal(&v, &[("x-gitlab-token", "tok")], b"{}");
        assert!(
            unsigned
                .starts_with("no webhook-signature header: this source checks GitLab's signing"),
            "{unsigned}"
        );
        // Signing only, and the webhook sends just a token: both ways out are named.
        let signing_only = Verifier::new(&SourceKind::Gitlab {
            tokens: Vec::new(),
            signing_keys: whsec_key(),
            tolerance: Duration::from_secs(300),
        });
        let token_sent = refusal(&signing_only, &[("x-gitlab-token", "tok")], b"{}");
        assert!(token_sent.contains("add a signing token"), "{token_sent}");
        assert!(token_sent.contains("set token ="), "{token_sent}");
    }

    #[test]
    fn hmac_and_token_name_the_configured_header_and_form() {
        let v = Verifier::new(&SourceKind::Hmac {
            header: http::HeaderName::from_static("x-sig"),
            algorithm: HmacAlgorithm::Sha512,
            encoding: SignatureEncoding::Hex,
            prefix: Some("sha512=".into()),
            secrets: secrets(&["s"]),
            event_type: None,
            delivery_id: None,
        });
        assert_eq!(
            refusal(&v, &[("x-sig", "sha512=zz")], b"{}"),
            "x-sig is not a signature of the form sha512=<128 hex digits of the HMAC-SHA512 of the body>"
        );
        let v = Verifier::new(&SourceKind::Token {
            header: http::HeaderName::from_static("x-token"),
            secrets: secrets(&["s"]),
            event_type: Some(crate::config::FieldLocation::JsonPointer("/kind".into())),
            delivery_id: None,
        });
        assert!(
            refusal(&v, &[], b"{}")
                .starts_with("no x-token header: the sender must send this source's token")
        );
        assert!(
            refusal(&v, &[("x-token", "s")], b"not json").starts_with("the body is not valid JSON")
        );
    }

    #[test]
    fn artifactory_sending_its_secret_unsigned_is_pointed_to_the_token_scheme() {
        let v = Verifier::new(&SourceKind::Preset {
            product: Product::Artifactory,
            scheme: PresetScheme::Signature,
            secrets: secrets(&["the-secret"]),
        });
        let reason = refusal(&v, &[("x-jfrog-event-auth", "the-secret")], b"{}");
        assert!(
            reason.starts_with("x-jfrog-event-auth is not a signature"),
            "{reason}"
        );
        assert!(
            reason.ends_with("set scheme = \"token\" on this source"),
            "{reason}"
        );
    }

    /// A Gitea source that verifies signatures made with the secret "s".
    fn gitea() -> Verifier {
        Verifier::new(&SourceKind::Preset {
            product: Product::Gitea,
            scheme: PresetScheme::Signature,
            secrets: secrets(&["s"]),
        })
    }

    #[test]
    fn a_gitea_webhook_without_a_secret_is_told_to_set_one() {
        let v = gitea();
        // Gitea sends its signature headers empty when the webhook has no secret.
        let reason = refusal(
            &v,
            &[("x-gitea-signature", ""), ("x-gogs-signature", "")],
            b"{}",
        );
        assert_eq!(
            reason,
            "x-gitea-signature is empty: the webhook in the product has no secret; set its \
             secret to this source's secret"
        );
    }

    #[test]
    fn a_gitea_webhook_sending_a_form_is_told_to_send_json() {
        let v = gitea();
        let reason = refusal(
            &v,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-gitea-signature", &"0".repeat(64)),
            ],
            b"payload=%7B%7D",
        );
        assert!(
            reason.starts_with("the body is form-encoded")
                && reason.ends_with("set the webhook's POST content type to application/json"),
            "{reason}"
        );
    }

    #[test]
    fn presets_list_every_header_they_accept() {
        let v = gitea();
        let missing = refusal(&v, &[], b"{}");
        assert!(
            missing.starts_with("no x-forgejo-signature or x-gitea-signature header"),
            "{missing}"
        );
        let wrong = refusal(&v, &[("x-gitea-signature", &"0".repeat(64))], b"{}");
        assert!(
            wrong.starts_with("x-gitea-signature does not match"),
            "{wrong}"
        );
    }
}
