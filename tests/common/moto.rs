//! A real S3-compatible server for tests: `moto` (PyPI) in server mode on an ephemeral
//! loopback port, killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::WAIT;

/// A running `moto.server`.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
}

impl Moto {
    /// Starts the server (installing `moto[server]` into the test virtualenv if needed) and
    /// waits until it says where it listens.
    pub fn start() -> Moto {
        let python =
            super::python::python_with(&["moto", "flask", "flask_cors"], &["moto[server]"]);
        let mut child = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python -m moto.server");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Werkzeug prints " * Running on http://127.0.0.1:PORT"; keep draining afterwards so
        // the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("Running on http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line[at + "Running on ".len()..].trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(WAIT * 4)
            .expect("moto.server did not say where it listens");
        Moto { url, child }
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) {
        let reply = super::client()
            .put(format!("{}/{bucket}", self.url))
            .send()
            .await
            .expect("create bucket");
        assert!(
            reply.status().is_success(),
            "create bucket: {}",
            reply.status()
        );
    }

    /// An object's bytes, or `None` when there is none, read as `access_key_id` (moto keeps
    /// objects private to their owner; it reads the key from the header without checking
    /// the signature).
    pub async fn get(&self, bucket: &str, key: &str, access_key_id: &str) -> Option<Vec<u8>> {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={access_key_id}/20240101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        let reply = super::client()
            .get(format!("{}/{bucket}/{key}", self.url))
            .header("authorization", authorization)
            .send()
            .await
            .expect("get object");
        if reply.status() == 404 {
            return None;
        }
        assert!(reply.status().is_success(), "get {key}: {}", reply.status());
        Some(reply.bytes().await.unwrap().to_vec())
    }

    /// Every key in a bucket, from the ListObjectsV2 XML.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let xml = super::client()
            .get(format!("{}/{bucket}?list-type=2", self.url))
            .send()
            .await
            .expect("list objects")
            .text()
            .await
            .unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
