//! Headless Chromium driven over the Chrome DevTools Protocol, for the console's tests.
//!
//! Debian's `chromium` runs headless on a throwaway profile with its DevTools endpoint on an
//! ephemeral loopback port (read from its stderr). The test speaks CDP over one WebSocket to
//! the browser, attached to one page with a flattened session: navigate, evaluate JavaScript,
//! type, click. Conditions are awaited by polling the DOM against a deadline, never by
//! sleeping a fixed time. Exceptions thrown in the page and console errors are collected, so
//! a test can assert that the page ran clean.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use super::WAIT;

/// How long Chromium may take to start and open its DevTools endpoint: a cold start on a
/// busy machine takes seconds.
const LAUNCH: Duration = Duration::from_secs(60);
/// How long one DevTools command may take to be answered.
const COMMAND: Duration = Duration::from_secs(30);
/// Between two polls of the DOM.
const POLL: Duration = Duration::from_millis(50);

/// A headless Chromium and its one page. Dropping it closes the browser.
pub struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    /// The page's flattened DevTools session.
    session: String,
    next_id: u64,
    stderr: Arc<Mutex<Vec<String>>>,
    problems: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Debian's `chromium` headless and attaches to a blank page. Fails the test with
    /// what to install when there is no `chromium`.
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let spawned = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-background-networking",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-gpu",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                // The relay is on loopback: no proxy from the environment may stand between.
                "--no-proxy-server",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "the console tests drive a real browser: install Debian's chromium \
                 (apt-get install chromium)"
            ),
            Err(err) => panic!("could not start chromium: {err}"),
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        {
            let pipe = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            // Reads stderr to its end, so a chatty browser never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut url_tx = Some(url_tx);
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("DevTools listening on ")
                        && let Some(tx) = url_tx.take()
                    {
                        let _ = tx.send(url.trim().to_string());
                    }
                    stderr.lock().unwrap().push(line);
                }
            });
        }
        let url = match url_rx.recv_timeout(LAUNCH) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium did not open its DevTools endpoint within {LAUNCH:?}; its stderr:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
        };
        let address = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("unexpected DevTools URL {url}"));
        let stream = TcpStream::connect(address).expect("connect to chromium's DevTools");
        stream.set_read_timeout(Some(COMMAND)).unwrap();
        stream.set_nodelay(true).unwrap();
        let (socket, _) = tungstenite::client(url.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools WebSocket handshake failed: {e}"));
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            stderr,
            problems: Vec::new(),
            _profile: profile,
        };
        let target = browser.send(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = browser.send(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser
    }

    /// Sends a command to the page and returns its result; fails the test on an error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params)
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap_or_else(|e| panic!("DevTools {method}: {e}"));
        let deadline = Instant::now() + COMMAND;
        loop {
            assert!(
                Instant::now() < deadline,
                "DevTools {method}: no answer within {COMMAND:?}"
            );
            let text = match self.socket.read() {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(frame)) => panic!("DevTools closed the connection: {frame:?}"),
                Ok(_) => continue,
                Err(err) => panic!(
                    "DevTools {method}: {err}; chromium's stderr:\n{}",
                    self.stderr.lock().unwrap().join("\n")
                ),
            };
            let answer: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if answer["id"] == id {
                if let Some(error) = answer.get("error") {
                    panic!("DevTools {method} failed: {error}");
                }
                return answer["result"].clone();
            }
            self.note(&answer);
        }
    }

    /// Keeps what an event says went wrong in the page: an uncaught exception, a console
    /// error, a refused resource or script (a Content-Security-Policy violation).
    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let text = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("an exception");
                self.problems.push(format!("exception: {text}"));
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.problems
                    .push(format!("console.error: {}", params["args"]));
            }
            // Network errors are the API's own answers (a 401 before the token is typed);
            // the test checks those through the page.
            Some("Log.entryAdded")
                if params["entry"]["level"] == "error"
                    && params["entry"]["source"] != "network" =>
            {
                self.problems
                    .push(format!("log: {}", params["entry"]["text"]));
            }
            _ => {}
        }
    }

    /// Opens `url` in the page and waits until it has loaded.
    pub async fn navigate(&mut self, url: &str) {
        let answer = self.call("Page.navigate", json!({ "url": url }));
        assert!(
            answer.get("errorText").is_none(),
            "navigating to {url}: {answer}"
        );
        // `Page.navigate` answers once the navigation starts; the old document may still be
        // the one evaluated.
        self.wait_for(
            &format!("{url} loaded"),
            &format!(
                "location.href === {} && document.readyState === 'complete'",
                js_string(url)
            ),
        )
        .await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(details) = answer.get("exceptionDetails") {
            panic!("evaluating {expression}: {details}");
        }
        answer["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy and returns its value; fails the test after
    /// [`WAIT`] with `what` and what the page shows.
    pub async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let shown = self.eval("document.body ? document.body.innerText : ''");
                panic!(
                    "{what}: not so after {WAIT:?}; the page shows:\n{}\nproblems: {:?}",
                    shown.as_str().unwrap_or_default(),
                    self.problems
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Clicks the element `selector` names, as a user's click would.
    pub fn click(&mut self, selector: &str) {
        let found = self.eval(&format!(
            "(() => {{ const el = document.querySelector({}); if (!el) return false; \
             el.scrollIntoView(); el.click(); return true; }})()",
            js_string(selector)
        ));
        assert_eq!(found, json!(true), "nothing to click at {selector}");
    }

    /// Focuses the input `selector` names and types `text` into it.
    pub fn type_into(&mut self, selector: &str, text: &str) {
        let found = self.eval(&format!(
            "(() => {{ const el = document.querySelector({}); if (!el) return false; \
             el.focus(); el.value = ''; return document.activeElement === el; }})()",
            js_string(selector)
        ));
        assert_eq!(found, json!(true), "no input to type into at {selector}");
        self.call("Input.insertText", json!({ "text": text }));
    }

    /// The text content of the first element `selector` names, or `None`.
    pub fn text(&mut self, selector: &str) -> Option<String> {
        let value = self.eval(&format!(
            "(() => {{ const el = document.querySelector({}); return el ? el.textContent : null; }})()",
            js_string(selector)
        ));
        value.as_str().map(str::to_string)
    }

    /// Exceptions, console errors and refused loads the page has produced so far.
    pub fn problems(&mut self) -> Vec<String> {
        // A round trip delivers the events the browser sent before it.
        self.eval("0");
        self.problems.clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing lets Chromium take its helper processes down with it; a kill is the fallback.
        let message = json!({ "id": u64::MAX, "method": "Browser.close" }).to_string();
        let _ = self.socket.send(Message::text(message));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` as a JavaScript string literal (JSON's string syntax is a subset of it).
pub fn js_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}
