//! A real `nats-server -js` on a loopback port, for the nats sink's tests. Debian's
//! `nats-server` package provides it (`.ci/run` installs it); without it the tests fail
//! saying so.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::WAIT;

/// A running `nats-server` with JetStream, stopped when dropped.
pub struct NatsServer {
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
}

impl NatsServer {
    /// Starts a server storing JetStream data under `dir`; returns once it is ready.
    pub fn start(dir: &Path) -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nats-server ({e}): install it (Debian/Ubuntu: apt-get install \
                     nats-server; .ci/run does) to run the nats sink's tests"
                )
            });
        // The server logs to stderr; "Server is ready" means it accepts clients.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(WAIT).is_err() {
            let _ = child.kill();
            panic!("nats-server did not become ready on port {port}");
        }
        NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            child,
        }
    }

    /// A JetStream context on a fresh connection.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(&self.url).await.unwrap();
        async_nats::jetstream::new(client)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
