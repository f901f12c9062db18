//! TLS test support: a private CA with server and client certificates (rcgen), a loopback
//! HTTPS receiver that trusts only that CA and demands a client certificate, a loopback
//! HTTP CONNECT proxy that records where it was asked to go, and SIGHUP for the relay.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::{Received, Relay, WAIT};

/// A certificate authority that can issue server and client certificates into a folder.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl Ca {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).unwrap();
        path.to_path_buf()
    }

    /// Issues a certificate for `127.0.0.1` and `localhost` named `name`, writing
    /// `dir/{name}.pem` and `dir/{name}.key`; returns the certificate's DER.
    pub fn issue(&self, dir: &Path, name: &str) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        cert.der().clone()
    }
}

/// Installs the ring provider once per test process (reqwest and rustls are built without
/// a default one).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTPS client that trusts only the given CA certificates (PEM), connects directly, and
/// presents `identity` (certificate then key, PEM) when given.
pub fn https_client(cas: &[&str], identity: Option<&[u8]>) -> reqwest::ClientBuilder {
    install_provider();
    let roots = cas
        .iter()
        .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .tls_certs_only(roots);
    if let Some(identity) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(identity).unwrap());
    }
    builder
}

/// `dir/{name}.pem` followed by `dir/{name}.key`, as reqwest's `Identity::from_pem` wants.
pub fn identity_pem(dir: &Path, name: &str) -> Vec<u8> {
    let mut pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
    pem.extend(std::fs::read(dir.join(format!("{name}.key"))).unwrap());
    pem
}

/// The certificate a TLS server at `addr` presents to a client that trusts `ca_pems`.
pub async fn served_certificate(addr: SocketAddr, ca_pems: &[&str]) -> CertificateDer<'static> {
    install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake in time")
        .expect("TLS handshake");
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// What a [`TlsReceiver`] got: the request, and the client certificate it came with.
pub struct TlsReceived {
    pub request: Received,
    pub client_certificate: Option<CertificateDer<'static>>,
}

/// A loopback HTTPS receiver (HTTP/1.1) that trusts only one CA, requires a client
/// certificate signed by it, and answers 204 to every request.
pub struct TlsReceiver {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<TlsReceived>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsReceiver {
    /// Serves `dir/{name}.pem` and `.key`; client certificates must chain to `ca_pem`.
    pub async fn start(dir: &Path, name: &str, ca_pem: &str) -> TlsReceiver {
        install_provider();
        let chain = CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key")))
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    // A refused handshake is what some tests expect: nothing to record.
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client_certificate = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first().cloned());
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            let client_certificate = client_certificate.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let _ = tx.send(TlsReceived {
                                    request: Received {
                                        method: parts.method.to_string(),
                                        path: parts.uri.path().to_string(),
                                        headers: parts.headers,
                                        body,
                                        at: Instant::now(),
                                    },
                                    client_certificate,
                                });
                                let mut response = http::Response::new(Full::new(Bytes::new()));
                                *response.status_mut() = http::StatusCode::NO_CONTENT;
                                Ok::<_, Infallible>(response)
                            }
                        });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TlsReceiver { addr, rx, task }
    }

    /// `https://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/hook", self.addr.port())
    }

    /// The next request, or a test failure after [`WAIT`].
    pub async fn next(&mut self) -> TlsReceived {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("the TLS receiver got no request in time")
            .expect("TLS receiver channel closed")
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback HTTP proxy that only tunnels (`CONNECT host:port`), recording each target.
pub struct ConnectProxy {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start() -> ConnectProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut client = BufReader::new(client);
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if client.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let end = line == "\r\n";
                        head.push_str(&line);
                        if end {
                            break;
                        }
                    }
                    let first = head.lines().next().unwrap_or_default().to_string();
                    let mut words = first.split(' ');
                    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
                        let _ = client
                            .get_mut()
                            .write_all(
                                b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                        return;
                    };
                    let _ = tx.send(target.to_string());
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                        let _ = client
                            .get_mut()
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                            .await;
                        return;
                    };
                    // The client sends nothing before our answer, so the reader holds no bytes.
                    let mut client = client.into_inner();
                    if client
                        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        ConnectProxy { addr, rx, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `CONNECT` target, or a test failure after [`WAIT`].
    pub async fn next_target(&mut self) -> String {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("the proxy got no CONNECT in time")
            .expect("proxy channel closed")
    }
    /// A `CONNECT` target already received, if any.
    pub fn try_target(&mut self) -> Option<String> {
        self.rx.try_recv().ok()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Sends SIGHUP to the relay.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -HUP failed");
    }

    /// `https://127.0.0.1:PORT/hooks/{source}`.
    pub fn https_hook_url(&self, source: &str) -> String {
        format!("https://127.0.0.1:{}/hooks/{source}", self.addr.port())
    }

    /// Waits until one log line contains every needle.
    pub async fn wait_for_log_with(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self
                .logs()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line containing all of {needles:?}; log:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Replaces `dir/{to}.pem` and `.key` with `dir/{from}.pem` and `.key` the way renewal tools
/// do: written beside, then renamed over, so a reader never sees half a file.
pub fn renew(dir: &Path, from: &str, to: &str) {
    for ext in ["key", "pem"] {
        let staged = dir.join(format!("{to}.{ext}.new"));
        std::fs::copy(dir.join(format!("{from}.{ext}")), &staged).unwrap();
        std::fs::rename(&staged, dir.join(format!("{to}.{ext}"))).unwrap();
    }
}
