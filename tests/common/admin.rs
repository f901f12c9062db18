//! Admin API helpers: find the admin listener's address in the relay's log, and call it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Relay, WAIT, client};

/// The admin listener's address, from its "admin API listening" log line.
pub async fn admin_addr(relay: &Relay) -> SocketAddr {
    let line = relay.wait_for_log("admin API listening").await;
    let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    value["admin_listen"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin_listen address in {line}"))
}

/// One answer from the admin API.
#[derive(Debug)]
pub struct AdminReply {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

impl AdminReply {
    /// The body as JSON; fails the test if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

/// Calls `method` `path` on the admin listener, with `Authorization: Bearer token` if given.
pub async fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> AdminReply {
    call_accepting(addr, method, path, token, None).await
}

/// Like [`call`], with an `Accept` header when `accept` is given.
pub async fn call_accepting(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    accept: Option<&str>,
) -> AdminReply {
    let url = format!("http://{addr}{path}");
    let method = http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("request to the admin API");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.text().await.unwrap();
    AdminReply {
        status,
        content_type,
        text,
    }
}

/// Polls `GET path` until `done` holds for its JSON answer; fails the test after [`WAIT`].
pub async fn wait_until(
    addr: SocketAddr,
    path: &str,
    token: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = call(addr, "GET", path, Some(token)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        let json = reply.json();
        if done(&json) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still not so after {WAIT:?}; last answer of {path}: {json:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
