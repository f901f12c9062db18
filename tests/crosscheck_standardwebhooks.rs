//! Cross-checks our Standard Webhooks signatures against an independent implementation, the
//! PyPI package `standardwebhooks`, in both directions:
//!
//! - Python signs bodies (JSON with non-ASCII text, and an empty body) with a fresh random
//!   `whsec_` secret; our `Verifier` for `kind = "standard"` accepts each signature and
//!   refuses the same signature over a tampered body.
//! - We sign the way the webhook sink does, `v1,` + base64(HMAC-SHA256(key,
//!   "{id}.{timestamp}.{body}")), and Python's `Webhook(secret).verify(...)` accepts it
//!   (and refuses it over a tampered body, so its acceptance means something).
//!
//! The package comes from the system `python3` when installed there (CI installs it), else
//! from a virtualenv the test support makes under the target dir; it never passes vacuously.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use hookrelay::config::{Secret, SourceKind};
use hookrelay::verify::{Rejection, Verifier};
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use sha2::Sha256;

/// Bodies as text, since the Python library handles bodies as `str`. The last is not JSON.
const BODIES: [&str; 4] = [
    r#"{"type":"invoice.paid","data":{"amount":42}}"#,
    "{\"type\":\"caf\u{e9}.cr\u{e9}\u{e9}\",\"text\":\"na\u{ef}ve \u{2603} \u{65e5}\u{672c}\u{8a9e}\"}",
    "{\n  \"type\" : \"spaced\" ,\n  \"nested\": {\"type\": \"no\"}\n}\n",
    "",
];

/// Runs `script` with `input` as JSON on stdin and parses its stdout as JSON.
fn python(script: &str, input: &Value) -> Value {
    let python = common::python::python_with(&["standardwebhooks"], &["standardwebhooks"]);
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.to_string().as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("wait for python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python3 prints JSON")
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit i64")
}

fn verifier(whsec: &str) -> Verifier {
    let key = BASE64
        .decode(whsec.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 key");
    Verifier::new(&SourceKind::Standard {
        keys: vec![Secret::new(key)],
        tolerance: Duration::from_secs(300),
    })
}

fn headers(id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature.to_owned()),
    ] {
        h.insert(name, HeaderValue::from_str(&value).expect("header value"));
    }
    h
}

/// What the webhook sink sends: `v1,` + base64(HMAC-SHA256(key, "{id}.{ts}.{body}")).
fn sign_like_the_sink(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

const PYTHON_SIGNS: &str = r#"
import base64, json, os, sys
from datetime import datetime, timezone
from standardwebhooks.webhooks import Webhook
data = json.load(sys.stdin)
secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
wh = Webhook(secret)
ts = data["now"]
signed = []
for i, body in enumerate(data["bodies"]):
    msg_id = "msg_py_%d" % i
    sig = wh.sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body)
    signed.append({"id": msg_id, "timestamp": ts, "signature": sig})
print(json.dumps({"secret": secret, "signed": signed}))
"#;

const PYTHON_VERIFIES: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
data = json.load(sys.stdin)
wh = Webhook(data["secret"])
verdicts = []
for case in data["cases"]:
    try:
        wh.verify(case["body"].encode(), case["headers"], json_parse=False)
        verdicts.append("ok")
    except Exception as e:
        verdicts.append("refused: %s" % e)
print(json.dumps(verdicts))
"#;

#[test]
fn our_verifier_accepts_what_python_standardwebhooks_signs() {
    let ts = now();
    let out = python(PYTHON_SIGNS, &json!({ "now": ts, "bodies": BODIES }));
    let secret = out["secret"].as_str().expect("secret");
    let verifier = verifier(secret);
    let signed = out["signed"].as_array().expect("signed list");
    assert_eq!(signed.len(), BODIES.len());
    for (body, case) in BODIES.iter().zip(signed) {
        let h = headers(
            case["id"].as_str().expect("id"),
            case["timestamp"].as_i64().expect("timestamp"),
            case["signature"].as_str().expect("signature"),
        );
        let verdict = verifier.verify(&h, body.as_bytes(), now());
        if body.is_empty() {
            // The signature holds; the empty body is then refused for not being JSON.
            assert_eq!(verdict, Err(Rejection::MalformedJson), "empty body");
        } else {
            let got = verdict.unwrap_or_else(|r| panic!("refused {body:?}: {r}"));
            let expected: Value = serde_json::from_str(body).expect("test body is JSON");
            assert_eq!(got.event_type.as_deref(), expected["type"].as_str());
            assert_eq!(got.delivery_id.as_deref(), case["id"].as_str());
        }
        let tampered = format!("{body} ");
        assert_eq!(
            verifier.verify(&h, tampered.as_bytes(), now()),
            Err(Rejection::BadSignature),
            "tampered {body:?}"
        );
    }
}

#[test]
fn python_standardwebhooks_accepts_what_we_sign() {
    // Python makes the random secret so that its own decoding of `whsec_` is the one used.
    let secret = python(PYTHON_SIGNS, &json!({ "now": now(), "bodies": [] }))["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 key");
    let ts = now();
    let mut cases = Vec::new();
    for (i, body) in BODIES.iter().enumerate() {
        let id = format!("msg_rs_{i}");
        let signature = sign_like_the_sink(&key, &id, ts, body.as_bytes());
        let headers = json!({
            "webhook-id": id,
            "webhook-timestamp": ts.to_string(),
            "webhook-signature": signature,
        });
        cases.push(json!({ "body": body, "headers": headers }));
        cases.push(json!({ "body": format!("{body}x"), "headers": headers }));
        // As the sink sends during a key rotation: another key's signature first.
        let rotating = format!(
            "{} {signature}",
            sign_like_the_sink(b"the other key", &id, ts, body.as_bytes())
        );
        let headers = json!({
            "webhook-id": id,
            "webhook-timestamp": ts.to_string(),
            "webhook-signature": rotating,
        });
        cases.push(json!({ "body": body, "headers": headers }));
    }
    let verdicts = python(
        PYTHON_VERIFIES,
        &json!({ "secret": secret, "cases": cases }),
    );
    let verdicts = verdicts.as_array().expect("verdict list");
    assert_eq!(verdicts.len(), 3 * BODIES.len());
    for (body, triple) in BODIES.iter().zip(verdicts.chunks(3)) {
        assert_eq!(
            triple[0], "ok",
            "python refused our signature over {body:?}"
        );
        assert_ne!(triple[1], "ok", "python accepted a tampered {body:?}");
        assert_eq!(
            triple[2], "ok",
            "python refused two signatures over {body:?}"
        );
    }
}
