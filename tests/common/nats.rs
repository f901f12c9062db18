//! A real `nats-server -js` on a loopback port, for the nats sink's tests. Debian's
//! `nats-server` package provides it (`.ci/run` installs it); without it the tests fail
//! saying so.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::WAIT;

pub mod jwt;

/// A running `nats-server` with JetStream, stopped when dropped.
pub struct NatsServer {
    /// `nats://127.0.0.1:PORT` (`tls://` for a server started with that scheme).
    pub url: String,
    child: Child,
}

impl NatsServer {
    /// Starts a server storing JetStream data under `dir`; returns once it is ready.
    pub fn start(dir: &Path) -> NatsServer {
        NatsServer::start_on(dir, free_port())
    }

    /// Like [`NatsServer::start`], on a given loopback port (one a test freed).
    pub fn start_on(dir: &Path, port: u16) -> NatsServer {
        let mut command = Command::new("nats-server");
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir);
        NatsServer::spawn(command, port, "nats")
    }

    /// Starts a server from a configuration file written into `dir`: JetStream under `dir`,
    /// a loopback port, and `extra` (an `authorization` block, `tls`, ...). `scheme` is the
    /// URL's: `nats` or `tls`.
    pub fn start_with(dir: &Path, extra: &str, scheme: &str) -> NatsServer {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let conf = dir.join("nats-server.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {:?} }}\n{extra}\n",
                dir.join("js")
            ),
        )
        .unwrap();
        let mut command = Command::new("nats-server");
        command.arg("-c").arg(&conf);
        NatsServer::spawn(command, port, scheme)
    }

    fn spawn(mut command: Command, port: u16, scheme: &str) -> NatsServer {
        let mut child = command
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
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready") {
                    let _ = tx.send(Ok(()));
                }
                seen.push(line);
            }
            // Exited before it was ready: its log says why (a bad configuration, mostly).
            let _ = tx.send(Err(seen.join("\n")));
        });
        match rx.recv_timeout(WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("nats-server exited before it was ready:\n{log}"),
            Err(_) => {
                let _ = child.kill();
                panic!("nats-server did not become ready on port {port}");
            }
        }
        NatsServer {
            url: format!("{scheme}://127.0.0.1:{port}"),
            child,
        }
    }

    /// A JetStream context on a fresh connection.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        self.jetstream_with(async_nats::ConnectOptions::new()).await
    }

    /// A JetStream context on a fresh connection made with `options` (credentials, TLS).
    pub async fn jetstream_with(
        &self,
        options: async_nats::ConnectOptions,
    ) -> async_nats::jetstream::Context {
        let client = options.connect(&self.url).await.unwrap();
        async_nats::jetstream::new(client)
    }
}

/// A loopback port free right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
