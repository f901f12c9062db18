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
    /// A Standard Webhooks timestamp is unparsable or outside the tolerance (a missing one is
    /// [`Rejection::MissingSignature`]).
    #[error("timestamp outside tolerance")]
    StaleTimestamp,
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
