//! Hot functions of ingestion: every verifier on a 1 KiB and a 64 KiB body with a valid
//! signature (so the whole MAC and any JSON read are paid), and routing over 50 routes.
//!
//! Run with `cargo bench --bench verify`; throughput is reported in body bytes per second.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use hookrelay::config::{
    Condition, PresetScheme, Product, SourceConfig, Subject, SummaryField, Test,
};
use hookrelay::config::{
    Config, FieldLocation, HmacAlgorithm, RetryPolicy, RouteConfig, Secret, ServerConfig,
    SignatureEncoding, SinkConfig, SinkKind, SourceKind, StorageConfig, WebhookSinkConfig,
};
use hookrelay::route::Router;
use hookrelay::verify::Verifier;
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

const NOW: i64 = 1_700_000_000;
const SECRET: &[u8] = b"bench-secret-of-a-realistic-length-0123456789";

/// A JSON body of exactly `len` bytes with a `type` and an `id`, as senders send.
fn body(len: usize) -> Vec<u8> {
    let head = br#"{"type":"push","id":"d-1","event":{"kind":"artifact.uploaded"},"pad":""#;
    let tail = br#""}"#;
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(name, HeaderValue::from_str(value).expect("bench header"));
}

/// Each scheme, configured with one secret, and the headers of a valid request for `body`.
fn cases(body: &[u8]) -> Vec<(&'static str, Verifier, HeaderMap)> {
    let b64 = |tag: &[u8]| base64::engine::general_purpose::STANDARD.encode(tag);
    let standard_headers = |ts: i64| {
        let mut h = HeaderMap::new();
        let tag = hmac_sha256(SECRET, &[b"msg_1.", ts.to_string().as_bytes(), b".", body]);
        header(&mut h, "webhook-id", "msg_1");
        header(&mut h, "webhook-timestamp", &ts.to_string());
        header(&mut h, "webhook-signature", &format!("v1,{}", b64(&tag)));
        h
    };
    let mut out = Vec::new();

    let mut h = HeaderMap::new();
    let tag = hmac_sha256(SECRET, &[body]);
    header(
        &mut h,
        "x-hub-signature-256",
        &format!("sha256={}", hex::encode(&tag)),
    );
    header(&mut h, "x-github-event", "push");
    header(
        &mut h,
        "x-github-delivery",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    );
    let v = Verifier::new(&SourceKind::Github {
        secrets: vec![Secret::new(SECRET)],
    });
    out.push(("github", v, h));

    let v = Verifier::new(&SourceKind::Standard {
        keys: vec![Secret::new(SECRET)],
        tolerance: Duration::from_secs(300),
    });
    out.push(("standard", v, standard_headers(NOW)));

    let mut h = standard_headers(NOW);
    header(&mut h, "x-gitlab-token", "gitlab-token");
    header(&mut h, "x-gitlab-event", "Push Hook");
    header(&mut h, "idempotency-key", "msg_1");
    let v = Verifier::new(&SourceKind::Gitlab {
        tokens: vec![Secret::new(&b"gitlab-token"[..])],
        signing_keys: vec![Secret::new(SECRET)],
        tolerance: Duration::from_secs(300),
    });
    out.push(("gitlab", v, h));

    let mut h = HeaderMap::new();
    header(&mut h, "x-signature", &format!("sha256={}", b64(&tag)));
    let v = Verifier::new(&SourceKind::Hmac {
        header: HeaderName::from_static("x-signature"),
        algorithm: HmacAlgorithm::Sha256,
        encoding: SignatureEncoding::Base64,
        prefix: Some("sha256=".to_owned()),
        secrets: vec![Secret::new(SECRET)],
        event_type: Some(FieldLocation::JsonPointer("/event/kind".to_owned())),
        delivery_id: Some(FieldLocation::JsonPointer("/id".to_owned())),
    });
    out.push(("hmac_json_fields", v, h));

    let mut h = HeaderMap::new();
    header(&mut h, "x-api-token", "token-secret");
    header(&mut h, "x-event", "push");
    let v = Verifier::new(&SourceKind::Token {
        header: HeaderName::from_static("x-api-token"),
        secrets: vec![Secret::new(&b"token-secret"[..])],
        event_type: Some(FieldLocation::Header(HeaderName::from_static("x-event"))),
        delivery_id: None,
    });
    out.push(("token", v, h));

    let v = Verifier::new(&SourceKind::None {
        event_type: Some(FieldLocation::JsonPointer("/type".to_owned())),
        delivery_id: None,
    });
    out.push(("none_json_type", v, HeaderMap::new()));
    out
}

fn verifiers(c: &mut Criterion) {
    for len in [1024, 64 * 1024] {
        let body = body(len);
        let mut group = c.benchmark_group(format!("verify_{}KiB", len / 1024));
        group.throughput(Throughput::Bytes(len as u64));
        for (name, verifier, headers) in cases(&body) {
            assert!(
                verifier.verify(&headers, &body, NOW).is_ok(),
                "the {name} bench request must be valid"
            );
            group.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
                b.iter(|| verifier.verify(black_box(&headers), black_box(body), NOW))
            });
        }
        group.finish();
    }
}

/// 10 sources, 50 routes (half with globs), 20 sinks.
fn route_config() -> Config {
    let sink = |i: usize| SinkConfig {
        name: format!("sink-{i:02}"),
        enabled: !i.is_multiple_of(7),
        paused: false,
        rate: None,
        concurrency: 1,
        retry: RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        },
        timeout: Duration::from_secs(10),
        outbound: Default::default(),
        kind: SinkKind::Webhook(WebhookSinkConfig {
            url: "http://127.0.0.1:9/".to_owned(),
            signing_keys: Vec::new(),
            headers: Vec::new(),
        }),
    };
    let routes = (0..50)
        .map(|i| RouteConfig {
            from: vec![
                format!("source-{}", i % 10),
                format!("source-{}", (i + 3) % 10),
            ],
            events: match i % 4 {
                0 => Vec::new(),
                1 => vec!["push".to_owned(), "release".to_owned()],
                2 => vec!["pull_request*".to_owned(), "issue?".to_owned()],
                _ => vec!["*.paid".to_owned(), "{tag,branch}_*".to_owned()],
            },
            to: vec![
                format!("sink-{:02}", i % 20),
                format!("sink-{:02}", (i * 7) % 20),
            ],
            filter: Vec::new(),
        })
        .collect();
    Config {
        server: ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            max_body: 1 << 20,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            max_connections: 64,
            max_buffered: 1 << 24,
            tls: None,
        },
        storage: StorageConfig {
            path: "unused.redb".into(),
            retention: Duration::from_secs(3600),
        },
        sources: Vec::new(),
        sinks: (0..20).map(sink).collect(),
        routes,
        admin: None,
        notices: Default::default(),
    }
}

fn route(c: &mut Criterion) {
    let router = Router::new(&route_config());
    let mut group = c.benchmark_group("route_50_routes");
    for (name, source, event) in [
        ("glob_hit", "source-1", Some("push")),
        ("glob_pattern_hit", "source-2", Some("pull_request_review")),
        ("untyped", "source-3", None),
        ("no_route", "unknown", Some("push")),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| router.sinks_for(black_box(source), black_box(event), b"{}"))
        });
    }
    group.finish();

    // A Nexus source whose route filters on the summary: the cost of one parse and summary.
    let mut config = route_config();
    config.sources = vec![SourceConfig {
        name: "nexus".to_owned(),
        enabled: true,
        kind: SourceKind::Preset {
            product: Product::Nexus,
            scheme: PresetScheme::Signature,
            secrets: vec![Secret::new(&b"k"[..])],
        },
        summary: Vec::new(),
    }];
    config.routes.push(RouteConfig {
        from: vec!["nexus".to_owned()],
        events: Vec::new(),
        to: vec!["sink-00".to_owned()],
        filter: vec![Condition {
            subject: Subject::Summary(SummaryField::Repository),
            test: Test::AnyOf(vec!["releases".to_owned(), "staging-*".to_owned()]),
        }],
    });
    let router = Router::new(&config);
    let body = include_bytes!("../tests/fixtures/presets/nexus-component.json");
    let mut group = c.benchmark_group("route_where");
    group.bench_function("nexus_summary_repository", |b| {
        b.iter(|| router.sinks_for("nexus", Some("rm:repository:component"), black_box(body)))
    });
    group.finish();
}

criterion_group!(benches, verifiers, route);
criterion_main!(benches);
