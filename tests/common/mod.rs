//! Test support: the real `hookrelay` binary on an ephemeral loopback port, loopback HTTP
//! receivers that push every request into a channel, and signing helpers.
//!
//! Each test owns a temp dir holding its config and redb file. Nothing here sleeps to wait
//! for an event: receivers and log lines are awaited with a timeout.

#![allow(dead_code)]

pub mod admin;
pub mod browser;
pub mod faults;
pub mod moto;
pub mod nats;
pub mod presets;
pub mod python;
pub mod reload;
pub mod smtp;
pub mod tls;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

/// How long any awaited event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// The real binary, running on a config written into its own temp dir.
pub struct Relay {
    pub dir: PathBuf,
    pub addr: SocketAddr,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    config_path: PathBuf,
}

impl Relay {
    /// Writes `config` (its `[storage]` and `[server] listen` are supplied here: do not set
    /// them) into `dir` and starts the binary on it.
    pub fn start(dir: &Path, config: &str) -> Relay {
        Relay::start_with_server(dir, "", config)
    }

    /// Like [`Relay::start`], with extra `[server]` keys.
    pub fn start_with_server(dir: &Path, server: &str, config: &str) -> Relay {
        let config_path = dir.join("hookrelay.toml");
        let full = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\n{server}\n\n[storage]\npath = \"store/hookrelay.redb\"\n\n{config}"
        );
        std::fs::write(&config_path, full).unwrap();
        Relay::start_with_file(dir, &config_path)
    }

    /// Starts the binary on an existing config file.
    pub fn start_with_file(dir: &Path, config_path: &Path) -> Relay {
        Relay::start_with_file_and_env(dir, config_path, &[])
    }

    /// Like [`Relay::start_with_file`], with extra environment variables for the relay.
    pub fn start_with_file_and_env(dir: &Path, config_path: &Path, env: &[(&str, &str)]) -> Relay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(config_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the hookrelay binary");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                let mut addr_tx = Some(addr_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let addr = addr_tx.as_ref().and(listen_addr(&line));
                    // Kept before the address is sent, so a test that starts reading the log
                    // once the relay listens finds every line up to "listening".
                    logs.lock().unwrap().push(line);
                    if let (Some(tx), Some(addr)) = (&addr_tx, addr) {
                        let _ = tx.send(addr);
                        addr_tx = None;
                    }
                }
            });
        }
        let addr = match addr_rx.recv_timeout(WAIT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "hookrelay did not start listening; its log:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Relay {
            dir: dir.to_path_buf(),
            addr,
            child,
            logs,
            config_path: config_path.to_path_buf(),
        }
    }

    /// `http://127.0.0.1:PORT/hooks/{source}`.
    pub fn hook_url(&self, source: &str) -> String {
        format!("http://{}/hooks/{source}", self.addr)
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line containing {needle:?}; log:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(mut self) -> PathBuf {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.config_path.clone()
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY-free: `kill` via the command line keeps the tests free of libc.
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hookrelay did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listen_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if !value.get("message")?.as_str()?.contains("listening") {
        return None;
    }
    value.get("listen")?.as_str()?.parse().ok()
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("request has no {name} header: {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

/// A scripted answer: status, extra headers, body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn with_body(mut self, body: &str) -> Answer {
        self.body = body.into();
        self
    }
}

/// A loopback HTTP server that records every request. It answers from its script in order,
/// then with the default answer (204) forever.
pub struct Receiver {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Received>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), Vec::new()).await
    }

    pub async fn with_script(script: Vec<Answer>) -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), script).await
    }

    pub async fn start_on(addr: SocketAddr, script: Vec<Answer>) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let task = {
            let script = script.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let tx = tx.clone();
                    let script = script.clone();
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |request: http::Request<hyper::body::Incoming>| {
                                let tx = tx.clone();
                                let script = script.clone();
                                async move {
                                    let (parts, body) = request.into_parts();
                                    let body = body
                                        .collect()
                                        .await
                                        .map(|b| b.to_bytes())
                                        .unwrap_or_default();
                                    let _ = tx.send(Received {
                                        method: parts.method.to_string(),
                                        path: parts.uri.path().to_string(),
                                        headers: parts.headers,
                                        body,
                                        at: Instant::now(),
                                    });
                                    let answer = script
                                        .lock()
                                        .unwrap()
                                        .pop_front()
                                        .unwrap_or(Answer::status(204));
                                    let mut response =
                                        http::Response::new(Full::new(Bytes::from(answer.body)));
                                    *response.status_mut() =
                                        StatusCode::from_u16(answer.status).unwrap();
                                    for (name, value) in answer.headers {
                                        response.headers_mut().insert(
                                            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                                            http::HeaderValue::from_str(&value).unwrap(),
                                        );
                                    }
                                    Ok::<_, Infallible>(response)
                                }
                            });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Receiver {
            addr,
            rx,
            script,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next request, or a test failure after [`WAIT`].
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("the receiver got no request in time")
            .expect("receiver channel closed")
    }

    /// Stops listening (the port then refuses connections).
    pub fn stop(self) -> SocketAddr {
        self.task.abort();
        self.addr
    }
}

/// A plain HTTP client for talking to the relay.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// An answer from the relay.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: serde_json::Value,
}

impl Reply {
    pub fn id(&self) -> String {
        self.json["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {:?}", self.json))
            .to_string()
    }
}

/// POSTs `body` with `headers` and returns status, headers and the JSON answer.
pub async fn post(url: &str, headers: &[(&str, String)], body: impl Into<Vec<u8>>) -> Reply {
    let mut request = client().post(url).body(body.into());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("request to hookrelay");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Reply {
        status,
        headers,
        json,
    }
}

/// `sha256=<hex>` as GitHub sends it.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// GitHub-style headers for a push with this delivery id.
pub fn github_headers(
    secret: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        ("x-github-event", event.to_string()),
        ("x-github-delivery", delivery.to_string()),
        ("x-hub-signature-256", github_signature(secret, body)),
    ]
}

/// Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`) for
/// `body`, signed with a `whsec_…` secret, as any sender library would make them.
pub fn standard_headers(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", format!("v1,{signature}")),
    ]
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
