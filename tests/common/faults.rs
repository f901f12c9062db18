//! Fault helpers: a size-limited tmpfs for disk-full tests, raw sockets for hostile
//! clients, and POSIX signals for the relay process.
//!
//! Mounting needs root (or CAP_SYS_ADMIN); CI runs as root. When the mount is refused the
//! test fails with a message that says so, never silently passes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a fixed size mounted on a folder; unmounted when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `"4m"`) on `path`,
    /// creating the folder.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output();
        match output {
            Ok(o) if o.status.success() => Tmpfs {
                path: path.to_path_buf(),
            },
            Ok(o) => panic!(
                "this test needs a size-limited filesystem: `mount -t tmpfs -o size={size} tmpfs {}` \
                 failed ({}): {}\nrun the tests as root (CI does) or with CAP_SYS_ADMIN",
                path.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(err) => panic!(
                "this test needs the `mount` command (util-linux) to make a size-limited tmpfs: {err}"
            ),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a relay that is still being killed may hold the file a moment longer.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Sends `signal` (e.g. `"KILL"`, `"TERM"`) to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

impl super::Relay {
    /// The relay's process id, for signals other than the ones `Relay` offers.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit: the exit status, the time from the signal to the
    /// exit, and every log line including the last ones.
    pub async fn terminate_timed(
        mut self,
    ) -> (std::process::ExitStatus, std::time::Duration, Vec<String>) {
        let sent = std::time::Instant::now();
        signal(self.pid(), "TERM");
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                sent.elapsed() < super::WAIT,
                "hookrelay did not exit within {:?} of SIGTERM",
                super::WAIT
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let took = sent.elapsed();
        // The reader thread gets the last lines once the pipe closes.
        let deadline = std::time::Instant::now() + super::WAIT;
        while !self.logs().iter().any(|l| l.contains("\"stopped\""))
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        (status, took, self.logs())
    }
}

impl super::Receiver {
    /// The next request, or `None` if none arrives within `wait`.
    pub async fn next_within(&mut self, wait: std::time::Duration) -> Option<super::Received> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

/// The relay's log lines that parse as JSON objects.
pub fn json_logs(relay: &super::Relay) -> Vec<serde_json::Value> {
    relay
        .logs()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Polls the relay's JSON log until `done` holds for its lines; fails the test after
/// [`super::WAIT`], naming `what`.
pub async fn wait_for_logs(
    relay: &super::Relay,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + super::WAIT;
    loop {
        let lines = json_logs(relay);
        if done(&lines) {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not so after {:?}; log:\n{}",
            super::WAIT,
            relay.logs().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// A loopback TCP server that accepts every connection and never reads or answers: a
/// receiver that hangs. Connections stay open until it is dropped.
pub struct HangServer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    accepted: tokio::sync::mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl HangServer {
    /// Starts listening on an ephemeral loopback port.
    pub async fn start() -> HangServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, accepted) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // Held here, not in tasks of their own, so aborting this task closes them all.
            let mut held = Vec::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                held.push(stream);
                let _ = tx.send(());
            }
        });
        HangServer {
            addr,
            accepted,
            task,
        }
    }

    /// Waits until `n` more connections were accepted; fails the test after [`super::WAIT`].
    pub async fn accepted(&mut self, n: usize) {
        for i in 0..n {
            tokio::time::timeout(super::WAIT, self.accepted.recv())
                .await
                .unwrap_or_else(|_| panic!("the hanging server got only {i} of {n} connections"))
                .expect("the hanging server's task ended");
        }
    }

    /// Closes the listener and every connection it holds; returns the address, free again.
    pub async fn stop(self) -> std::net::SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

/// A loopback webhook receiver that takes `delay` to answer 204, and while `hang` is set
/// never answers a request whose body contains `"hang":true`: a slow sink with some
/// deliveries stuck. Records each request's `webhook-id` when it arrives and once answered.
pub struct SlowReceiver {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// While true, marked requests are never answered.
    pub hang: std::sync::Arc<std::sync::atomic::AtomicBool>,
    arrived: tokio::sync::mpsc::UnboundedReceiver<(String, bool)>,
    answered: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowReceiver {
    /// Starts on an ephemeral loopback port, hanging marked requests.
    pub async fn start(delay: std::time::Duration) -> SlowReceiver {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};

        use http_body_util::BodyExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hang = Arc::new(AtomicBool::new(true));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let (tx, arrived) = tokio::sync::mpsc::unbounded_channel();
        let task = {
            let (hang, answered) = (hang.clone(), answered.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (tx, hang, answered) = (tx.clone(), hang.clone(), answered.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |request: http::Request<hyper::body::Incoming>| {
                                let (tx, hang, answered) =
                                    (tx.clone(), hang.clone(), answered.clone());
                                async move {
                                    let id = request
                                        .headers()
                                        .get("webhook-id")
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or_default()
                                        .to_string();
                                    let body = request
                                        .into_body()
                                        .collect()
                                        .await
                                        .map(|b| b.to_bytes())
                                        .unwrap_or_default();
                                    let mark = br#""hang":true"#.as_slice();
                                    let marked = body.windows(mark.len()).any(|w| w == mark);
                                    let _ = tx.send((id.clone(), marked));
                                    if marked && hang.load(Ordering::SeqCst) {
                                        std::future::pending::<()>().await;
                                    }
                                    // A slow receiver, not a wait for an event.
                                    tokio::time::sleep(delay).await;
                                    answered.lock().unwrap().push(id);
                                    let mut response = http::Response::new(
                                        http_body_util::Full::new(bytes::Bytes::new()),
                                    );
                                    *response.status_mut() = http::StatusCode::NO_CONTENT;
                                    Ok::<_, std::convert::Infallible>(response)
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        SlowReceiver {
            addr,
            hang,
            arrived,
            answered,
            task,
        }
    }

    /// `http://ADDR/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next request to arrive: its `webhook-id` and whether it was marked to hang.
    pub async fn next(&mut self) -> (String, bool) {
        tokio::time::timeout(super::WAIT, self.arrived.recv())
            .await
            .expect("the slow receiver got no request in time")
            .expect("the slow receiver's channel closed")
    }

    /// Every request that has arrived and was not yet taken by [`SlowReceiver::next`].
    pub fn drain(&mut self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        while let Ok(got) = self.arrived.try_recv() {
            out.push(got);
        }
        out
    }

    /// The ids answered 204 so far, in order.
    pub fn answered(&self) -> Vec<String> {
        self.answered.lock().unwrap().clone()
    }
}

impl Drop for SlowReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
