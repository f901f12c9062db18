//! Product presets (`kind = "nexus"`, `"artifactory"`, `"harbor"`, `"gitea"`,
//! `"bitbucket"`): what each product sends, as its documentation describes it, on top of the
//! generic [`HmacVerifier`](super::hmac::HmacVerifier) and
//! [`TokenVerifier`](super::token::TokenVerifier).
//!
//! A preset adds knowledge, not verifying code: one file per product names its headers,
//! digest, encoding and prefix, and says where its event type and delivery id are. The
//! signature or token check itself is always the generic one.
//!
//! Invariants: authenticity is checked before anything is read from the body; an event type
//! the product may add later is read and passed on like any other, never refused.

mod artifactory;
mod bitbucket;
mod gitea;
mod harbor;
mod nexus;

use http::{HeaderMap, HeaderName};

use super::hmac::HmacVerifier;
use super::token::TokenVerifier;
use super::{Expected, Rejection, Verified, explain_credential};
use crate::config::{PresetScheme, Product, Secret};

/// How a preset checks authenticity: a signature in one of several headers, or a token.
#[derive(Debug, Clone)]
enum Auth {
    /// HMAC signatures, one verifier per header the product may sign in, most specific first
    /// (Forgejo's own header before the Gitea one it also sends). The first header present
    /// is the one checked, so a bad signature there is never rescued by another header.
    Signature(Vec<(HeaderName, HmacVerifier)>),
    /// The secret itself in a header.
    Token(TokenVerifier),
}

impl Auth {
    fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
        match self {
            Auth::Signature(verifiers) => {
                let (_, v) = verifiers
                    .iter()
                    .find(|(name, _)| headers.contains_key(name))
                    .ok_or(Rejection::MissingSignature)?;
                // Built without field locations: this reads nothing, the preset does.
                v.verify(headers, body).map(drop)
            }
            Auth::Token(v) => v.verify(headers, body).map(drop),
        }
    }

    /// The sender-facing reason for `rejection`, about the header that was checked.
    fn explain(&self, rejection: Rejection, headers: &HeaderMap) -> String {
        match self {
            Auth::Signature(verifiers) => {
                let checked = verifiers
                    .iter()
                    .find(|(name, _)| headers.contains_key(name));
                match checked {
                    // Gitea, Forgejo and Gogs send the header empty when the webhook has no
                    // secret: the fix is in the product, not in how it signs.
                    Some((name, _)) if headers.get(name).is_some_and(|v| v.is_empty()) => {
                        format!(
                            "{name} is empty: the webhook in the product has no secret; set its \
                             secret to this source's secret"
                        )
                    }
                    Some((_, v)) => v.explain(rejection),
                    None => {
                        let names: Vec<&str> = verifiers.iter().map(|(n, _)| n.as_str()).collect();
                        let form = Expected::Signature {
                            form: "the product signs with",
                        };
                        explain_credential(rejection, &names.join(" or "), form)
                    }
                }
            }
            Auth::Token(v) => v.explain(rejection),
        }
    }

    fn secret_headers(&self) -> &[HeaderName] {
        match self {
            Auth::Signature(_) => &[],
            Auth::Token(v) => v.secret_headers(),
        }
    }
}

/// Verifier for a product preset.
#[derive(Debug, Clone)]
pub struct PresetVerifier {
    product: Product,
    auth: Auth,
}

impl PresetVerifier {
    /// Builds the product's verifier for its chosen scheme and secrets.
    pub(super) fn new(product: Product, scheme: PresetScheme, secrets: &[Secret]) -> Self {
        let auth = match product {
            Product::Nexus => nexus::auth(secrets),
            Product::Artifactory => artifactory::auth(scheme, secrets),
            Product::Harbor => harbor::auth(secrets),
            Product::Gitea => gitea::auth(scheme, secrets),
            Product::Bitbucket => bitbucket::auth(secrets),
        };
        PresetVerifier { product, auth }
    }

    /// Checks the signature or token, then reads event type and delivery id.
    pub(super) fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        self.auth.check(headers, body)?;
        match self.product {
            Product::Nexus => Ok(nexus::fields(headers)),
            Product::Artifactory => artifactory::fields(body),
            Product::Harbor => harbor::fields(body),
            Product::Gitea => Ok(gitea::fields(headers)),
            Product::Bitbucket => Ok(bitbucket::fields(headers)),
        }
    }

    /// The sender-facing reason for `rejection`; see [`crate::verify::Verifier::explain`].
    pub(super) fn explain(&self, rejection: Rejection, headers: &HeaderMap) -> String {
        let mut reason = self.auth.explain(rejection, headers);
        // Both products can send the secret itself instead of signing with it: a
        // "malformed signature" is then most likely that setting.
        let may_send_the_secret = matches!(self.product, Product::Artifactory | Product::Gitea);
        if may_send_the_secret
            && rejection == Rejection::MalformedSignature
            && matches!(self.auth, Auth::Signature(_))
            && !reason.contains(" is empty: ")
        {
            reason.push_str(
                "; if the product sends the secret itself (payload signing off), set \
                 scheme = \"token\" on this source",
            );
        }
        // Gitea signs the JSON, then sends it form-encoded when the webhook's content type is
        // "application/x-www-form-urlencoded": no body sent that way can verify.
        let form = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if self.product == Product::Gitea && rejection == Rejection::BadSignature && form {
            reason = "the body is form-encoded (the webhook's content type is \
                      application/x-www-form-urlencoded), and Gitea signs the JSON it holds, so \
                      the signature cannot match: set the webhook's POST content type to \
                      application/json"
                .to_owned();
        }
        reason
    }

    /// The token header when the scheme sends the secret itself.
    pub(super) fn secret_headers(&self) -> &[HeaderName] {
        self.auth.secret_headers()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use hmac::{Hmac, KeyInit, Mac};
    use http::{HeaderMap, HeaderValue};

    use super::PresetVerifier;
    use crate::config::{PresetScheme, Product, Secret};

    /// A documented sample body from `tests/fixtures/presets/`.
    pub(crate) fn sample(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/presets/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn hex_mac<M: Mac + KeyInit>(secret: &str, body: &[u8]) -> String {
        let mut mac = <M as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Lowercase hex HMAC-SHA1 of `body`.
    pub(crate) fn sha1_hex(secret: &str, body: &[u8]) -> String {
        hex_mac::<Hmac<sha1::Sha1>>(secret, body)
    }

    /// Lowercase hex HMAC-SHA256 of `body`.
    pub(crate) fn sha256_hex(secret: &str, body: &[u8]) -> String {
        hex_mac::<Hmac<sha2::Sha256>>(secret, body)
    }

    pub(crate) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    pub(crate) fn verifier(product: Product, scheme: PresetScheme, secret: &str) -> PresetVerifier {
        PresetVerifier::new(product, scheme, &[Secret::new(secret.as_bytes())])
    }
}
