//! The command line as scripts meet it: `check` exit codes and messages, `--help`, and the
//! sample config shipped in `config/`.

mod common;

use std::path::Path;
use std::process::Command;

fn hookrelay(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(args)
        .output()
        .expect("run hookrelay")
}

#[test]
fn the_sample_config_is_valid() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hookrelay.toml");
    let out = hookrelay(&["check", "--config", sample]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_reports_every_problem_with_file_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[sources.github]
kind = "github"
secret = "s"

[sinks.builds-slack]
kind = "webhook"
url = "http://127.0.0.1:9/"

[[routes]]
from = "github"
to = ["build-slack"]
colour = "blue"
"#,
    )
    .unwrap();
    let out = hookrelay(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:11:")),
        "names file and line of the dangling sink:\n{stderr}"
    );
    assert!(
        stderr.contains("did you mean \"builds-slack\""),
        "suggests the near name:\n{stderr}"
    );
    assert!(
        stderr.contains("colour"),
        "names the unknown key:\n{stderr}"
    );
}

#[test]
fn a_missing_config_file_is_named_and_exits_2() {
    let out = hookrelay(&["check", "--config", "/nonexistent/hookrelay.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/hookrelay.toml"));
}

#[test]
fn serve_with_a_bad_config_exits_2_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = \"not an address\"\n").unwrap();
    let out = hookrelay(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));
}

#[test]
fn help_documents_commands_and_exit_codes() {
    let out = hookrelay(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["serve", "check", "Exit codes", "invalid configuration"] {
        assert!(text.contains(needle), "--help mentions {needle}:\n{text}");
    }
    for command in ["serve", "check"] {
        let out = hookrelay(&[command, "--help"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("--config"));
    }
}

#[test]
fn an_empty_rust_log_logs_at_info_instead_of_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"store/h.redb\"\n[sources.open]\nkind = \"none\"\n",
    )
    .unwrap();
    // Starting waits for the "listening" line: with nothing logged it would never come.
    let relay = common::Relay::start_with_file_and_env(dir.path(), &path, &[("RUST_LOG", "")]);
    assert!(relay.logs().iter().any(|l| l.contains("listening")));
}

/// Writes `cert.pem` and `key.pem` into `dir`: a self-signed certificate that expired on
/// 2020-05-17.
fn write_expired_certificate(dir: &Path) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 5, 17);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

#[test]
fn an_expired_https_certificate_is_a_warning_from_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    write_expired_certificate(dir.path());
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         tls = { cert_file = \"cert.pem\", key_file = \"key.pem\" }\n\
         [storage]\npath = \"store/h.redb\"\n[sources.open]\nkind = \"none\"\n",
    )
    .unwrap();
    // Still valid: a warning, exit 0.
    let out = hookrelay(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the certificate in") && stderr.contains("expired at 2020-05-17"),
        "{stderr}"
    );
    let relay = common::Relay::start_with_file(dir.path(), &path);
    let logs = relay.logs().join("\n");
    assert!(logs.contains("expired at 2020-05-17"), "{logs}");
}

#[test]
fn an_expired_sink_client_certificate_is_a_warning_naming_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    write_expired_certificate(dir.path());
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"store/h.redb\"\n\
         [sources.open]\nkind = \"none\"\n\
         [sinks.audit]\nkind = \"webhook\"\nurl = \"https://127.0.0.1:9/hook\"\n\
         client_cert = \"cert.pem\"\nclient_key = \"key.pem\"\n",
    )
    .unwrap();
    let out = hookrelay(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cert = dir.path().join("cert.pem");
    let expected = format!(
        "warning: sinks.audit: the client certificate in \"{}\" expired at \
         2020-05-17T00:00:00Z: receivers that ask for a client certificate refuse the \
         connection; renew it, then reload the relay (SIGHUP)",
        cert.display()
    );
    assert!(stderr.lines().any(|line| line == expected), "{stderr}");
    let relay = common::Relay::start_with_file(dir.path(), &path);
    let logs = relay.logs().join("\n");
    assert!(
        logs.lines().any(
            |l| l.contains("the client certificate in") && l.contains(r#""key":"sinks.audit""#)
        ),
        "{logs}"
    );
}

#[tokio::test]
async fn sigusr1_and_sigusr2_are_logged_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"store/h.redb\"\n\
         [sources.github]\nkind = \"github\"\nsecret = \"s\"\n",
    )
    .unwrap();
    let relay = common::Relay::start_with_file(dir.path(), &path);
    for signal in ["USR1", "USR2"] {
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), relay.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let line = relay
            .wait_for_log(&format!("\"signal\":\"SIG{signal}\""))
            .await;
        assert!(line.contains("signal ignored"), "{line}");
    }
    // Still running: it stops on SIGTERM, cleanly.
    assert!(relay.terminate().success());
}

#[test]
fn a_port_in_use_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"{}\"\n[storage]\npath = \"store/h.redb\"\n\
             [sources.github]\nkind = \"github\"\nsecret = \"s\"\n",
            held.local_addr().unwrap()
        ),
    )
    .unwrap();
    let out = hookrelay(&["serve", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another process holds the port") && stderr.contains("[server] listen"),
        "{stderr}"
    );
}

#[test]
fn an_empty_file_checks_with_a_warning_that_nothing_will_be_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(&path, "").unwrap();
    let out = hookrelay(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: sources: no enabled [sources.NAME]: every webhook gets 404"),
        "{stderr}"
    );
}

#[test]
fn a_source_no_route_takes_events_from_is_a_warning_from_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"store/h.redb\"\n\
         [sources.github]\nkind = \"github\"\nsecret = \"a-secret-long-enough\"\n\
         [sources.nexus]\nkind = \"github\"\nsecret = \"another-long-secret\"\n\
         [sinks.audit]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         [[routes]]\nfrom = \"github\"\nto = [\"audit\"]\n",
    )
    .unwrap();
    let out = hookrelay(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("warning:")).count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: sources.nexus: no route takes its events")
            && stderr.contains("from = \"nexus\""),
        "{stderr}"
    );
    let relay = common::Relay::start_with_file(dir.path(), &path);
    let logs = relay.logs().join("\n");
    assert!(
        logs.lines()
            .any(|l| l.contains("no route takes its events")
                && l.contains(r#""key":"sources.nexus""#)),
        "{logs}"
    );
}
