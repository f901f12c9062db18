//! Fuzzes every product preset (`nexus`, `artifactory`, `harbor`, `gitea`, `bitbucket`, each
//! of its schemes) on arbitrary headers and bodies, past its authenticity check: the input's
//! first byte picks the preset and whether the request carries the right signature or token
//! (computed here over the fuzzed body), the rest is `header lines \0 body` with one
//! `name: value` per `\n`-separated line.
//!
//! Whatever the product's headers and body hold, reading its event type and delivery id must
//! never panic; a correctly signed request is never refused for its signature (only a body
//! the preset must read as JSON and cannot may be refused); and a delivery id, the dedup
//! key, is never read as an empty string.
#![no_main]

use std::sync::LazyLock;

use hmac::{KeyInit, Mac};
use hookrelay::config::Config;
use hookrelay::verify::{Rejection, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "preset-secret";

/// How a preset proves authenticity, so the target can sign like the product does.
#[derive(Clone, Copy)]
enum Auth {
    /// Lowercase hex HMAC of the body, in these headers, after this prefix.
    Sha1Hex(&'static [&'static str]),
    Sha256Hex(&'static [&'static str], &'static str),
    /// The secret itself in this header.
    Token(&'static str),
}

/// One source per preset and scheme, in the order the first input byte picks them.
const SOURCES: &[(&str, &str, Auth)] = &[
    (
        "nexus",
        "kind = \"nexus\"",
        Auth::Sha1Hex(&["x-nexus-webhook-signature"]),
    ),
    (
        "artifactory-sig",
        "kind = \"artifactory\"",
        Auth::Sha256Hex(&["x-jfrog-event-auth"], ""),
    ),
    (
        "artifactory-token",
        "kind = \"artifactory\"\nscheme = \"token\"",
        Auth::Token("x-jfrog-event-auth"),
    ),
    ("harbor", "kind = \"harbor\"", Auth::Token("authorization")),
    (
        "gitea-sig",
        "kind = \"gitea\"",
        Auth::Sha256Hex(&["x-forgejo-signature", "x-gitea-signature"], ""),
    ),
    (
        "gitea-token",
        "kind = \"gitea\"\nscheme = \"token\"",
        Auth::Token("authorization"),
    ),
    (
        "bitbucket",
        "kind = \"bitbucket\"",
        Auth::Sha256Hex(&["x-hub-signature"], "sha256="),
    ),
];

static VERIFIERS: LazyLock<Vec<(Verifier, Auth)>> = LazyLock::new(|| {
    let mut text = String::new();
    for (name, kind, _) in SOURCES {
        text.push_str(&format!(
            "[sources.{name}]\n{kind}\nsecret = \"{SECRET}\"\n\n"
        ));
    }
    let config = Config::parse(&text, "fuzz.toml").expect("the fuzz config is valid");
    SOURCES
        .iter()
        .map(|(name, _, auth)| {
            let source = config
                .sources
                .iter()
                .find(|s| s.name == *name)
                .expect("every preset source is in the config");
            (Verifier::new(&source.kind), *auth)
        })
        .collect()
});

fn hex_mac<M: Mac + KeyInit>(body: &[u8]) -> String {
    let mut mac = <M as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn sign(auth: Auth, body: &[u8], headers: &mut HeaderMap) {
    let mut put = |name: &'static str, value: String| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("hex and the secret are valid header values"),
        );
    };
    match auth {
        Auth::Sha1Hex(names) => {
            let signature = hex_mac::<hmac::Hmac<sha1::Sha1>>(body);
            names.iter().for_each(|n| put(n, signature.clone()));
        }
        Auth::Sha256Hex(names, prefix) => {
            let signature = format!("{prefix}{}", hex_mac::<hmac::Hmac<sha2::Sha256>>(body));
            names.iter().for_each(|n| put(n, signature.clone()));
        }
        Auth::Token(name) => put(name, SECRET.to_owned()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (verifier, auth) = &VERIFIERS[usize::from(pick & 0x7f) % VERIFIERS.len()];
    let signed = pick & 0x80 != 0;
    let mut parts = rest.splitn(2, |&b| b == 0);
    let lines = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    let mut headers = HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    if signed {
        sign(*auth, body, &mut headers);
    }

    let result = verifier.verify(&headers, body, 0);
    if let Err(rejection) = result {
        let _ = verifier.explain(rejection, &headers, 0);
    }
    if signed {
        assert!(
            matches!(result, Ok(_) | Err(Rejection::MalformedJson)),
            "a correctly signed request was refused: {result:?}"
        );
    }
    if let Ok(verified) = result {
        // An empty delivery id would deduplicate every such request against the first.
        assert_ne!(
            verified.delivery_id.as_deref(),
            Some(""),
            "an empty delivery id was read"
        );
    }
});
