//! A real SMTP server for the mail tests: `aiosmtpd` (from PyPI, installed by `.ci/run` or
//! into the test virtualenv) on an ephemeral loopback port. Every accepted mail is parsed
//! by Python's `email` package and handed to the test as JSON; recipients whose local part
//! is `reject` get a permanent 550, `full` a transient 452 every time, `busy` a transient
//! 451 the first time, and `greylist` a transient 450 the first two times (once for the
//! whole list, once alone).
//!
//! [`SmtpServer::start_tls`] serves with a certificate: STARTTLS required before any mail
//! (`require_starttls`), or TLS from the first byte (an SSL socket); optionally demanding
//! a client certificate signed by a given CA.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::WAIT;
use super::python::python_with;

const SERVER: &str = r#"
import asyncio, json, os, ssl, sys
from email import message_from_bytes
from email.policy import default
from aiosmtpd.smtp import SMTP

busy_seen = set()
greylist_seen = {}

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local == "reject":
            return "550 5.1.1 no such user here"
        if local == "full":
            return "452 4.2.2 mailbox full"
        if local == "busy" and address not in busy_seen:
            busy_seen.add(address)
            return "451 4.3.0 try again later"
        if local == "greylist":
            greylist_seen[address] = greylist_seen.get(address, 0) + 1
            if greylist_seen[address] <= 2:
                return "450 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = message_from_bytes(raw, policy=default)
        parts = {}
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                parts[part.get_content_type()] = part.get_content()
        print(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "header_names": [k.lower() for k in msg.keys()],
            "content_type": msg.get_content_type(),
            "parts": parts,
            "crlf_only": b"\n" not in raw.replace(b"\r\n", b""),
        }), flush=True)
        return "250 Message accepted"

async def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "none"
    context = None
    if mode != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        if len(sys.argv) > 4:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(sys.argv[4])
    loop = asyncio.get_running_loop()
    if mode == "starttls":
        factory = lambda: SMTP(Handler(), require_starttls=True, tls_context=context)
        server = await loop.create_server(factory, "127.0.0.1", 0)
    elif mode == "implicit":
        server = await loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", 0, ssl=context)
    else:
        port = int(os.environ.get("SMTP_TEST_PORT", "0"))
        server = await loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", port)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await server.serve_forever()

asyncio.run(main())
"#;

/// The running server; killed on drop.
pub struct SmtpServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    mails: mpsc::Receiver<serde_json::Value>,
}

impl SmtpServer {
    /// Starts a plain-text server and waits until it listens.
    pub fn start() -> SmtpServer {
        SmtpServer::spawn(&["none"], None)
    }

    /// Starts a plain-text server on `port` (one a test freed) and waits until it listens.
    pub fn start_on(port: u16) -> SmtpServer {
        SmtpServer::spawn(&["none"], Some(port))
    }

    /// Starts a server with the certificate `dir/{name}.pem` and key `dir/{name}.key`:
    /// `implicit` TLS from the first byte, else STARTTLS required. With `client_ca`, a
    /// client certificate signed by that CA (PEM file) is required too.
    pub fn start_tls(
        implicit: bool,
        dir: &Path,
        name: &str,
        client_ca: Option<&Path>,
    ) -> SmtpServer {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        let mut args = vec![
            if implicit { "implicit" } else { "starttls" }.to_string(),
            cert.display().to_string(),
            key.display().to_string(),
        ];
        args.extend(client_ca.map(|ca| ca.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        SmtpServer::spawn(&args, None)
    }

    fn spawn(args: &[&str], port: Option<u16>) -> SmtpServer {
        let python = python_with(&["aiosmtpd"], &["aiosmtpd"]);
        let mut child = Command::new(python)
            .args(["-c", SERVER])
            .args(args)
            .env("SMTP_TEST_PORT", port.unwrap_or(0).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the aiosmtpd test server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && tx.send(value).is_err()
                {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(WAIT)
            .expect("the aiosmtpd test server did not start");
        let port = first["port"].as_u64().expect("the server prints its port") as u16;
        SmtpServer {
            port,
            child,
            mails: rx,
        }
    }

    /// The next accepted mail, or a test failure after [`WAIT`].
    pub fn next(&self) -> serde_json::Value {
        self.mails
            .recv_timeout(WAIT)
            .expect("the SMTP server got no mail in time")
    }
}

impl SmtpServer {
    /// A mail accepted by now, if any; waits a moment for one in flight.
    pub fn try_next(&self) -> Option<serde_json::Value> {
        self.mails
            .recv_timeout(std::time::Duration::from_millis(300))
            .ok()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
