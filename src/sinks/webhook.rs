//! The webhook sink (`kind = "webhook"`): POSTs the original body, byte for byte with its
//! original `Content-Type`, signed with the Standard Webhooks headers (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`), so any Standard Webhooks library verifies it.
//!
//! Invariants: the `webhook-id` is the event id, identical on every attempt, so receivers
//! can drop duplicates. The sink URL often carries a secret: it never appears in an error
//! or a log line (reqwest errors carry it, so messages are built here from the error's
//! causes only). The sink decides *whether* a failure is worth retrying; it never retries
//! by itself.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use sha2::Sha256;

use super::{Delivery, Outcome, Sink, SinkBuildError, SinkError};
use crate::config::{Outbound, Secret, WebhookSinkConfig};

/// How much of a response body is read so the connection can be reused; a longer body is
/// dropped with its connection.
const DRAIN_LIMIT: usize = 64 * 1024;
/// How much of an error response body goes into the error message.
const SNIPPET_BYTES: usize = 200;

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const SOURCE: HeaderName = HeaderName::from_static("x-hookrelay-source");
const EVENT_TYPE: HeaderName = HeaderName::from_static("x-hookrelay-event-type");
const ATTEMPT: HeaderName = HeaderName::from_static("x-hookrelay-attempt");

/// Delivers events to one HTTP(S) receiver; one connection pool per sink.
pub struct WebhookSink {
    name: Arc<str>,
    client: reqwest::Client,
    url: reqwest::Url,
    signing_keys: Vec<Secret>,
    headers: HeaderMap,
    timeout: Duration,
}

// By hand: the URL may carry a secret, so Debug shows everything but it.
impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("signing_keys", &self.signing_keys.len())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// Builds the sink and its HTTP client; `timeout` bounds one whole attempt.
    pub fn new(
        name: &str,
        config: &WebhookSinkConfig,
        outbound: &Outbound,
        timeout: Duration,
    ) -> Result<WebhookSink, SinkBuildError> {
        let fail = |message: String| SinkBuildError {
            sink: name.to_string(),
            message,
        };
        // url's parse errors describe the problem without echoing the input.
        let url = reqwest::Url::parse(&config.url).map_err(|e| {
            fail(format!(
                "url is not a valid URL ({e}); set [sinks.{name}] url to an http:// or https:// address"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail(format!(
                "url scheme \"{}\" is not supported; set [sinks.{name}] url to an http:// or https:// address",
                url.scheme()
            )));
        }
        let client = super::http::client(name, outbound, timeout)?;
        Ok(WebhookSink {
            name: Arc::from(name),
            client,
            url,
            signing_keys: config.signing_keys.clone(),
            headers: config
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            timeout,
        })
    }

    /// The request headers for one attempt at Unix time `timestamp` (seconds).
    fn request_headers(&self, delivery: &Delivery, timestamp: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(ct) = &delivery.event.content_type
            && let Ok(value) = HeaderValue::from_bytes(ct.as_bytes())
        {
            headers.insert(CONTENT_TYPE, value);
        }
        // A compressed body (`gzip`, say) is readable only with its encoding, so the
        // encoding travels with the bytes.
        if let Some((_, encoding)) = delivery
            .event
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(CONTENT_ENCODING.as_str()))
            && let Ok(value) = HeaderValue::from_bytes(encoding)
        {
            headers.insert(CONTENT_ENCODING, value);
        }
        if let Ok(value) = HeaderValue::from_str(&delivery.event.source) {
            headers.insert(SOURCE, value);
        }
        // The sender chose the event type: a value that is no valid header is left out
        // rather than failing the delivery.
        if let Some(event_type) = &delivery.event.event_type
            && let Ok(value) = HeaderValue::from_bytes(event_type.as_bytes())
        {
            headers.insert(EVENT_TYPE, value);
        }
        headers.insert(ATTEMPT, HeaderValue::from(delivery.attempt));
        // Static headers may replace any of the above (a fixed Content-Type, say)...
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        // ...but never the signed ones: the signature covers exactly these values.
        let id = delivery.event.id.hyphenated().to_string();
        if !self.signing_keys.is_empty() {
            // Space-separated, as Standard Webhooks says: a receiver that holds either key
            // verifies, so the key can be rotated without a window of failed deliveries.
            let signature = self
                .signing_keys
                .iter()
                .map(|key| sign(key.expose(), &id, timestamp, &delivery.event.body))
                .collect::<Vec<_>>()
                .join(" ");
            headers.insert(
                WEBHOOK_SIGNATURE,
                HeaderValue::from_str(&signature).expect("base64 is a valid header value"),
            );
        }
        headers.insert(
            WEBHOOK_ID,
            HeaderValue::from_str(&id).expect("a UUID is a valid header value"),
        );
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        headers
    }
}

impl Sink for WebhookSink {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.request_headers(delivery, timestamp))
            .body(delivery.event.body.clone());
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                return Outcome::Retry {
                    after: None,
                    error: super::http::transport_error(&self.name, err, self.timeout),
                };
            }
        };
        let status = response.status();
        if let Err(outcome) = super::http::proxy_refused(&self.name, status) {
            return outcome;
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Read (a bounded part of) the body: it explains a refusal, and a fully read
        // response lets the connection go back to the pool.
        let mut head = Vec::new();
        let mut read = 0usize;
        while read <= DRAIN_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    let room = SNIPPET_BYTES.saturating_sub(head.len());
                    head.extend_from_slice(&chunk[..room.min(chunk.len())]);
                }
                // The status is what counts; a body cut short changes nothing.
                Ok(None) | Err(_) => break,
            }
        }
        classify(&self.name, status, retry_after, &head)
    }
}

/// The Standard Webhooks signature of one message: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` keyed with the decoded `whsec_` key bytes.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Decides what a receiver's answer means: 2xx delivered; 408, 429 and 5xx worth retrying;
/// anything else will not succeed by trying again.
fn classify(sink: &str, status: StatusCode, after: Option<Duration>, body: &[u8]) -> Outcome {
    let code = status.as_u16();
    let status_text = match status.canonical_reason() {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    };
    let answered = format!("receiver answered {status_text}");
    let said = snippet(body).map_or(String::new(), |s| format!(": \"{s}\""));
    let error = |message: String| SinkError::new(Some(code), message);
    if status.is_success() {
        Outcome::Delivered {
            status: Some(code),
            message_id: None,
        }
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Outcome::Retry {
            after,
            error: error(format!("{answered}{said}")),
        }
    } else if status.is_redirection() {
        Outcome::Failed(error(format!(
            "receiver redirected with {status_text}; set [sinks.{sink}] url to the final address"
        )))
    } else {
        let fix = match code {
            401 | 403 => format!("Check the credentials in [sinks.{sink}] headers."),
            404 | 405 | 410 => format!("Fix [sinks.{sink}] url or disable the sink."),
            _ => "The receiver refused this event; see its answer.".to_string(),
        };
        Outcome::Failed(error(format!("{answered}{said}; not retrying. {fix}")))
    }
}

/// The start of a response body, fit for one log line: lossy UTF-8, whitespace runs and
/// control characters folded to one space, trimmed; `None` when nothing is left.
pub(super) fn snippet(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(SNIPPET_BYTES)];
    let text = String::from_utf8_lossy(head);
    let folded = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    // A multi-byte character cut at the limit decodes as U+FFFD: drop it.
    let folded = folded.trim_end_matches('\u{FFFD}').trim_end().to_string();
    (!folded.is_empty()).then_some(folded)
}

/// Parses `Retry-After`: delta seconds or an HTTP date (relative to `now`); `None` for
/// anything else. A date in the past means "now".
pub(super) fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A loopback HTTP receiver for tests: records each request and answers from a script.
#[cfg(test)]
pub(crate) mod test_receiver {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::sync::mpsc;

    /// How long a test waits for a request before it fails.
    pub const WAIT: Duration = Duration::from_secs(10);

    /// One request the receiver got.
    #[derive(Debug, Clone)]
    pub struct Received {
        /// The request method.
        pub method: String,
        /// The request headers.
        pub headers: HeaderMap,
        /// The request body.
        pub body: Bytes,
        /// When the receiver had read the whole request.
        pub at: Instant,
    }

    impl Received {
        /// A header's value as text; fails the test when missing.
        pub fn header(&self, name: &str) -> &str {
            self.headers
                .get(name)
                .unwrap_or_else(|| panic!("request has no {name} header"))
                .to_str()
                .unwrap()
        }
    }

    /// A scripted answer.
    #[derive(Debug, Clone)]
    pub struct Answer {
        /// The status code.
        pub status: u16,
        /// Extra response headers.
        pub headers: Vec<(&'static str, String)>,
        /// The response body.
        pub body: String,
    }

    impl Answer {
        /// An answer with this status and nothing else.
        pub fn status(status: u16) -> Answer {
            Answer {
                status,
                headers: Vec::new(),
                body: String::new(),
            }
        }
        /// Adds a response header.
        pub fn header(mut self, name: &'static str, value: &str) -> Answer {
            self.headers.push((name, value.to_string()));
            self
        }
        /// Sets the response body.
        pub fn body(mut self, body: &str) -> Answer {
            self.body = body.to_string();
            self
        }
    }

    /// Answers from its script in order, then 204 forever.
    pub struct Receiver {
        /// Where it listens.
        pub addr: SocketAddr,
        rx: mpsc::UnboundedReceiver<Received>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Receiver {
        /// Listens on an ephemeral loopback port.
        pub async fn start(script: Vec<Answer>) -> Receiver {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = mpsc::unbounded_channel();
            let script = Arc::new(Mutex::new(VecDeque::from(script)));
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let tx = tx.clone();
                    let script = script.clone();
                    let service = service_fn(move |request: http::Request<_>| {
                        let tx = tx.clone();
                        let script = script.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body: hyper::body::Incoming = body;
                            let body = body.collect().await.unwrap().to_bytes();
                            let answer = script
                                .lock()
                                .unwrap()
                                .pop_front()
                                .unwrap_or(Answer::status(204));
                            let _ = tx.send(Received {
                                method: parts.method.to_string(),
                                headers: parts.headers,
                                body,
                                at: Instant::now(),
                            });
                            let mut response =
                                http::Response::new(Full::new(Bytes::from(answer.body)));
                            *response.status_mut() = StatusCode::from_u16(answer.status).unwrap();
                            for (name, value) in answer.headers {
                                response.headers_mut().insert(name, value.parse().unwrap());
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    tokio::spawn(async move {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Receiver { addr, rx, task }
        }

        /// Its URL.
        pub fn url(&self) -> String {
            format!("http://{}/hook", self.addr)
        }

        /// The next request, or a test failure after [`WAIT`].
        pub async fn next(&mut self) -> Received {
            tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .expect("the receiver got no request in time")
                .expect("the receiver stopped")
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_receiver::{Answer, Receiver};
    use super::*;
    use bytes::Bytes;
    use uuid::Uuid;

    /// The key of the Standard Webhooks specification's test vector.
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn key() -> Vec<u8> {
        BASE64
            .decode(WHSEC.strip_prefix("whsec_").unwrap())
            .unwrap()
    }

    fn sink(url: &str, signed: bool, timeout: Duration) -> WebhookSink {
        let config = WebhookSinkConfig {
            url: url.to_string(),
            signing_keys: if signed {
                vec![Secret::new(key())]
            } else {
                Vec::new()
            },
            headers: vec![(
                HeaderName::from_static("authorization"),
                HeaderValue::from_static("Bearer static-token"),
            )],
        };
        WebhookSink::new("audit", &config, &Outbound::default(), timeout).unwrap()
    }

    fn delivery(body: &'static [u8]) -> Delivery {
        Delivery {
            event: Arc::new(crate::store::StoredEvent {
                id: Uuid::now_v7(),
                source: Arc::from("github"),
                event_type: Some("push".to_string()),
                delivery_id: None,
                headers: Vec::new(),
                content_type: Some("application/json; charset=utf-8".to_string()),
                received_at_ms: 1,
                body: Bytes::from_static(body),
            }),
            summary: None,
            attempt: 3,
        }
    }

    async fn answer_with(answer: Answer) -> Outcome {
        let receiver = Receiver::start(vec![answer]).await;
        sink(&receiver.url(), false, Duration::from_secs(5))
            .deliver(&delivery(b"{}"))
            .await
    }

    fn failed_message(outcome: Outcome) -> String {
        match outcome {
            Outcome::Failed(e) => e.message,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn the_signature_matches_the_standard_webhooks_test_vector() {
        let got = sign(
            &key(),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(got, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[tokio::test]
    async fn the_request_carries_the_body_the_headers_and_a_verifiable_signature() {
        let mut receiver = Receiver::start(Vec::new()).await;
        let sink = sink(&receiver.url(), true, Duration::from_secs(5));
        // Not valid UTF-8 and with a CRLF: the body must still arrive byte for byte.
        let d = delivery(b"{\"a\":\"\xff\xfe\"}\r\n");
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(
            sink.deliver(&d).await,
            Outcome::Delivered {
                status: Some(204),
                message_id: None,
            }
        );
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let got = receiver.next().await;

        assert_eq!(got.method, "POST");
        assert_eq!(&got.body[..], &d.event.body[..]);
        assert_eq!(
            got.header("content-type"),
            "application/json; charset=utf-8"
        );
        assert_eq!(
            got.header("webhook-id"),
            d.event.id.hyphenated().to_string()
        );
        assert_eq!(got.header("x-hookrelay-source"), "github");
        assert_eq!(got.header("x-hookrelay-event-type"), "push");
        assert_eq!(got.header("x-hookrelay-attempt"), "3");
        assert_eq!(got.header("authorization"), "Bearer static-token");
        assert_eq!(
            got.header("user-agent"),
            concat!("hookrelay/", env!("CARGO_PKG_VERSION"))
        );
        let ts: u64 = got.header("webhook-timestamp").parse().unwrap();
        assert!(before <= ts && ts <= after, "timestamp {ts} not now");

        // Verify independently of `sign`, as a receiver would.
        let mut mac = Hmac::<Sha256>::new_from_slice(&key()).unwrap();
        mac.update(format!("{}.{}.", got.header("webhook-id"), ts).as_bytes());
        mac.update(&got.body);
        let signature = got.header("webhook-signature");
        let encoded = signature.strip_prefix("v1,").expect("a v1 signature");
        mac.verify_slice(&BASE64.decode(encoded).unwrap())
            .expect("the signature verifies");
    }

    #[tokio::test]
    async fn two_signing_keys_give_two_signatures_and_either_verifies() {
        let mut receiver = Receiver::start(Vec::new()).await;
        let old_key = b"an older key, still held by some receivers".to_vec();
        let config = WebhookSinkConfig {
            url: receiver.url(),
            signing_keys: vec![Secret::new(key()), Secret::new(old_key.clone())],
            headers: Vec::new(),
        };
        let sink = WebhookSink::new(
            "audit",
            &config,
            &Outbound::default(),
            Duration::from_secs(5),
        )
        .unwrap();
        let d = delivery(b"{\"rotate\":true}");
        assert!(matches!(sink.deliver(&d).await, Outcome::Delivered { .. }));
        let got = receiver.next().await;
        let entries: Vec<&str> = got.header("webhook-signature").split(' ').collect();
        assert_eq!(entries.len(), 2, "{entries:?}");
        let ts = got.header("webhook-timestamp");
        for (entry, key) in entries.iter().zip([key(), old_key]) {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(format!("{}.{ts}.", got.header("webhook-id")).as_bytes());
            mac.update(&got.body);
            let encoded = entry.strip_prefix("v1,").expect("a v1 signature");
            mac.verify_slice(&BASE64.decode(encoded).unwrap())
                .expect("each key's signature verifies");
        }
    }

    #[tokio::test]
    async fn static_headers_cannot_replace_the_signed_ones() {
        let mut receiver = Receiver::start(Vec::new()).await;
        let config = WebhookSinkConfig {
            url: receiver.url(),
            signing_keys: Vec::new(),
            headers: vec![
                (WEBHOOK_ID, HeaderValue::from_static("forged")),
                (CONTENT_TYPE, HeaderValue::from_static("text/plain")),
            ],
        };
        let sink = WebhookSink::new(
            "audit",
            &config,
            &Outbound::default(),
            Duration::from_secs(5),
        )
        .unwrap();
        let d = delivery(b"x");
        sink.deliver(&d).await;
        let got = receiver.next().await;
        assert_eq!(got.header("webhook-id"), d.event.id.to_string());
        assert_eq!(got.headers.get_all("webhook-id").iter().count(), 1);
        assert_eq!(got.header("content-type"), "text/plain");
        assert!(got.headers.get("webhook-signature").is_none());
    }

    #[tokio::test]
    async fn a_missing_content_type_is_not_invented() {
        let mut receiver = Receiver::start(Vec::new()).await;
        let sink = sink(&receiver.url(), false, Duration::from_secs(5));
        let mut d = delivery(b"raw");
        let event = std::sync::Arc::make_mut(&mut d.event);
        event.content_type = None;
        event.event_type = None;
        sink.deliver(&d).await;
        let got = receiver.next().await;
        assert!(got.headers.get("content-type").is_none());
        assert!(got.headers.get("x-hookrelay-event-type").is_none());
    }

    #[tokio::test]
    async fn a_compressed_body_keeps_its_content_encoding() {
        let mut receiver = Receiver::start(Vec::new()).await;
        let sink = sink(&receiver.url(), false, Duration::from_secs(5));
        let mut d = delivery(b"\x1f\x8b\x08\x00 not really gzip");
        std::sync::Arc::make_mut(&mut d.event).headers = vec![
            ("content-encoding".to_string(), b"gzip".to_vec()),
            ("x-other".to_string(), b"not forwarded".to_vec()),
        ];
        sink.deliver(&d).await;
        let got = receiver.next().await;
        assert_eq!(got.header("content-encoding"), "gzip");
        assert_eq!(&got.body[..], b"\x1f\x8b\x08\x00 not really gzip");
        assert!(got.headers.get("x-other").is_none());
    }

    #[tokio::test]
    async fn success_statuses_are_delivered() {
        for status in [200, 202, 204] {
            assert_eq!(
                answer_with(Answer::status(status)).await,
                Outcome::Delivered {
                    status: Some(status),
                    message_id: None,
                }
            );
        }
    }

    #[tokio::test]
    async fn a_bad_request_is_not_retried_and_quotes_the_answer() {
        let outcome = answer_with(Answer::status(400).body("  missing\nfield `ref`  ")).await;
        let Outcome::Failed(error) = outcome else {
            panic!("expected Failed, got {outcome:?}");
        };
        assert_eq!(error.status, Some(400));
        assert_eq!(
            error.message,
            "receiver answered 400 Bad Request: \"missing field `ref`\"; not retrying. \
             The receiver refused this event; see its answer."
        );
    }

    #[tokio::test]
    async fn a_proxy_asking_for_credentials_is_retried_and_named() {
        let outcome = answer_with(Answer::status(407)).await;
        let Outcome::Retry { error, .. } = outcome else {
            panic!("a 407 is the proxy's, not the receiver's refusal: {outcome:?}");
        };
        assert_eq!(error.status, Some(407));
        assert!(
            error
                .message
                .starts_with("the proxy on the way answered 407"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("[sinks.audit] proxy"),
            "{}",
            error.message
        );
    }

    #[tokio::test]
    async fn gone_is_not_retried_and_says_what_to_fix() {
        let message = failed_message(answer_with(Answer::status(410)).await);
        assert_eq!(
            message,
            "receiver answered 410 Gone; not retrying. Fix [sinks.audit] url or disable the sink."
        );
    }

    #[tokio::test]
    async fn too_many_requests_is_retried_after_the_delay_asked_for() {
        let outcome = answer_with(Answer::status(429).header("retry-after", "7")).await;
        let Outcome::Retry { after, error } = outcome else {
            panic!("expected Retry, got {outcome:?}");
        };
        assert_eq!(after, Some(Duration::from_secs(7)));
        assert_eq!(error.status, Some(429));
    }

    #[tokio::test]
    async fn server_errors_and_request_timeouts_are_retried() {
        for status in [408, 500, 502, 503] {
            let outcome = answer_with(Answer::status(status).body("down")).await;
            let Outcome::Retry { after, error } = outcome else {
                panic!("{status}: expected Retry, got {outcome:?}");
            };
            assert_eq!(after, None);
            assert_eq!(error.status, Some(status));
            assert!(error.message.ends_with(": \"down\""), "{}", error.message);
        }
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_not_retried() {
        let receiver = Receiver::start(vec![
            Answer::status(302).header("location", "http://127.0.0.1:1/elsewhere?token=secret"),
        ])
        .await;
        let message = failed_message(
            sink(&receiver.url(), false, Duration::from_secs(5))
                .deliver(&delivery(b"{}"))
                .await,
        );
        assert_eq!(
            message,
            "receiver redirected with 302 Found; set [sinks.audit] url to the final address"
        );
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out() {
        // Accepts connections, reads nothing, answers nothing.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hook?token=secret",
            listener.local_addr().unwrap()
        );
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let outcome = sink(&url, false, Duration::from_millis(300))
            .deliver(&delivery(b"{}"))
            .await;
        hold.abort();
        let Outcome::Retry { after: None, error } = outcome else {
            panic!("expected Retry, got {outcome:?}");
        };
        assert_eq!(error.status, None);
        assert_eq!(
            error.message,
            "timed out after 300ms; raise [sinks.audit] timeout if the receiver is slow"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error_that_hides_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/hook?token=very-secret");
        let outcome = sink(&url, false, Duration::from_secs(5))
            .deliver(&delivery(b"{}"))
            .await;
        let Outcome::Retry { after: None, error } = outcome else {
            panic!("expected Retry, got {outcome:?}");
        };
        assert!(
            error.message.starts_with("could not connect: "),
            "{}",
            error.message
        );
        assert!(!error.message.contains("very-secret"), "{}", error.message);
        assert!(!error.message.contains("127.0.0.1"), "{}", error.message);
    }

    #[test]
    fn a_bad_url_fails_to_build_without_echoing_it() {
        let config = WebhookSinkConfig {
            url: "ftp://user:hunter2@example.com/".to_string(),
            signing_keys: Vec::new(),
            headers: Vec::new(),
        };
        let err = WebhookSink::new(
            "audit",
            &config,
            &Outbound::default(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("[sinks.audit] url"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_url() {
        let sink = sink(
            "https://example.com/hook?token=hunter2",
            true,
            Duration::from_secs(1),
        );
        assert!(!format!("{sink:?}").contains("hunter2"));
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates_and_ignores_garbage() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let parse = |s: &'static str| parse_retry_after(&HeaderValue::from_static(s), now);
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 "), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&HeaderValue::from_str(&later).unwrap(), now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&HeaderValue::from_str(&earlier).unwrap(), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("-5"), None);
        assert_eq!(parse("1.5"), None);
    }

    #[test]
    fn the_snippet_is_bounded_and_one_line() {
        let long = "é".repeat(300);
        let s = snippet(long.as_bytes()).unwrap();
        assert!(s.len() <= SNIPPET_BYTES, "{}", s.len());
        assert!(!s.contains('\u{FFFD}'));
        assert_eq!(snippet(b"a\r\n\tb\x00c"), Some("a b c".to_string()));
        assert_eq!(snippet(b" \n "), None);
    }
}
