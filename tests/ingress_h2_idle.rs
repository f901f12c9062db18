//! HTTPS ingress over HTTP/2 closes a connection that stays idle past the configured
//! `header_timeout`, as HTTP/1.1 keep-alive connections are: otherwise a sender that opens
//! HTTP/2 connections and leaves them open (answering pings) holds connection slots for
//! ever. Driven with a bare hyper HTTP/2 client over rustls, whose connection future ends
//! when the server closes the connection.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls::{Ca, install_provider};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const SECRET: &str = "h2-idle-secret";
/// The configured idle timeout (`[server] header_timeout`).
const IDLE: Duration = Duration::from_secs(1);

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.issue(dir.path(), "server");
    let relay = Relay::start_with_server(
        dir.path(),
        "header_timeout = \"1s\"\ntls = { cert_file = \"server.pem\", key_file = \"server.key\" }",
        &format!("[sources.github]\nkind = \"github\"\nsecret = \"{SECRET}\"\n"),
    );

    install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);

    let body = b"{\"zen\":\"idle\"}".to_vec();
    let mut request = http::Request::post("https://localhost/hooks/github");
    for (name, value) in github_headers(SECRET, "push", "idle-1", &body) {
        request = request.header(name, value);
    }
    let response = sender
        .send_request(request.body(Full::new(bytes::Bytes::from(body))).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    response.into_body().collect().await.unwrap();
    let idle_since = Instant::now();

    // The server closes the connection once it has been idle for IDLE; the client's
    // connection future then ends.
    let closed = tokio::time::timeout(WAIT, connection).await;
    assert!(
        closed.is_ok(),
        "the idle HTTP/2 connection was still open after {WAIT:?}"
    );
    let idle_for = idle_since.elapsed();
    assert!(
        idle_for >= IDLE - Duration::from_millis(100),
        "closed after {idle_for:?}, before the idle timeout"
    );
    assert!(
        sender.is_closed(),
        "the connection no longer takes requests"
    );
}
