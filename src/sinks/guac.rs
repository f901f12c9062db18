//! The GUAC sink (`kind = "guac"`): exports the SBOMs and attestations an event carries as
//! one file (or object) per document, where a GUAC collector picks them up: a folder its
//! file collector watches, or an S3-compatible bucket its S3 collector watches.
//!
//! Names are `{event id}-{label}.{ext}`: unique per event and document, and the same on
//! every attempt, so a retry overwrites and never duplicates.
//!
//! Invariants:
//! - Folder: a file appears whole or not at all. It is written under `tmp_path` (outside
//!   the watched folder, since GUAC's file collector reads every file below it), fsync'd,
//!   renamed into place, and the folder fsync'd. Both folders must be on one file system,
//!   which is checked when the sink starts.
//! - S3: one signed `PUT` per object (GUAC's S3 notifications see only those); no multipart
//!   upload. Credentials, URLs and document content never appear in a message.
//! - An event that carries no document is skipped, not retried.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::header::CONTENT_TYPE;
use rand::RngExt as _;
use sha2::{Digest, Sha256};

use super::machine::{self, Document, NoDocument};
use super::webhook::snippet;
use super::{Delivery, Outcome, Sink, SinkBuildError, SinkError};
use crate::config::{DocumentLocation, GuacSinkConfig, GuacTarget, Outbound, S3Config, Secret};

const AMZ_DATE: http::HeaderName = http::HeaderName::from_static("x-amz-date");
const AMZ_CONTENT_SHA256: http::HeaderName = http::HeaderName::from_static("x-amz-content-sha256");

/// Exports documents for GUAC.
pub struct GuacSink {
    name: Arc<str>,
    documents: DocumentLocation,
    target: Target,
}

enum Target {
    Folder { path: PathBuf, tmp_path: PathBuf },
    S3(S3Target),
}

struct S3Target {
    client: reqwest::Client,
    /// Where objects go: `{endpoint}/{bucket}/` (path style) or
    /// `https://{bucket}.s3.{region}.amazonaws.com/` (AWS, virtual-hosted style).
    base: reqwest::Url,
    prefix: String,
    region: String,
    access_key_id: String,
    secret_access_key: Secret,
    timeout: Duration,
}

// By hand: URLs and credentials stay out of Debug.
impl fmt::Debug for GuacSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Folder { path, .. } => format!("folder {}", path.display()),
            Target::S3(_) => "s3".to_string(),
        };
        f.debug_struct("GuacSink")
            .field("name", &self.name)
            .field("target", &target)
            .finish_non_exhaustive()
    }
}

impl GuacSink {
    /// Builds the sink: for a folder, nothing on disk yet (`check`, `test-sink` and reloads
    /// build sinks they throw away, and a folder the relay cannot write must not keep it
    /// from starting: the first delivery creates it); for S3, the HTTP client (trust and
    /// proxy from `outbound`); `timeout` bounds one S3 attempt.
    pub fn new(
        name: &str,
        config: &GuacSinkConfig,
        outbound: &Outbound,
        timeout: Duration,
    ) -> Result<GuacSink, SinkBuildError> {
        let target = match &config.target {
            GuacTarget::Folder { path, tmp_path } => Target::Folder {
                path: path.clone(),
                tmp_path: tmp_path.clone(),
            },
            GuacTarget::S3(s3) => Target::S3(S3Target::new(name, s3, outbound, timeout)?),
        };
        Ok(GuacSink {
            name: Arc::from(name),
            documents: config.documents.clone(),
            target,
        })
    }
}

impl Sink for GuacSink {
    fn kind(&self) -> &'static str {
        "guac"
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let documents = match machine::find(&delivery.event.body, &self.documents, true) {
            Ok(docs) => docs,
            Err(NoDocument::Missing(why)) => {
                return Outcome::Skipped {
                    reason: format!("no document to export in this event: {why}"),
                };
            }
            Err(NoDocument::Invalid(why)) => {
                return Outcome::Failed(SinkError::new(
                    None,
                    format!("a document in the event cannot be read: {why}"),
                ));
            }
        };
        for doc in &documents {
            let name = object_name(delivery, doc);
            let outcome = match &self.target {
                Target::Folder { path, tmp_path } => {
                    write_file(&self.name, path, tmp_path, &name, doc.bytes.clone()).await
                }
                Target::S3(s3) => s3.put(&self.name, &name, &doc.bytes).await,
            };
            // Documents already written are simply written again by the retry.
            if !matches!(outcome, Outcome::Delivered { .. }) {
                return outcome;
            }
        }
        Outcome::Delivered {
            status: None,
            message_id: None,
        }
    }
}

/// `{event id}-{label}.{ext}`, the extension guessed from the content.
fn object_name(delivery: &Delivery, doc: &Document) -> String {
    let first = doc
        .bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(&doc.bytes)
        .iter()
        .find(|b| !b.is_ascii_whitespace());
    let ext = match first {
        Some(b'{' | b'[') => "json",
        Some(b'<') => "xml",
        _ => "txt",
    };
    format!("{}-{}.{ext}", delivery.event.id.hyphenated(), doc.label)
}

/// Writes one file atomically: temp file, fsync, rename, fsync of the folder.
async fn write_file(sink: &str, dir: &Path, tmp_dir: &Path, name: &str, bytes: Bytes) -> Outcome {
    let (dir, tmp_dir, name) = (dir.to_path_buf(), tmp_dir.to_path_buf(), name.to_string());
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        // Unique, so two attempts at once never share a temp file.
        let tmp = tmp_dir.join(format!("{name}.{:016x}.tmp", rand::rng().random::<u64>()));
        let result = (|| {
            fs::create_dir_all(&dir)?;
            fs::create_dir_all(&tmp_dir)?;
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, dir.join(&name))?;
            // GUAC's file collector takes only files modified after its last pass ended:
            // stamped now, once in place, the file is newer than any pass that could have
            // missed it (stamped when written, one renamed in during a pass was skipped).
            file.set_modified(std::time::SystemTime::now())?;
            File::open(&dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    })
    .await;
    match written {
        Ok(Ok(())) => Outcome::Delivered {
            status: None,
            message_id: None,
        },
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::CrossesDevices => machine::retry(
            None,
            format!(
                "path and tmp_path are on different file systems, so a file cannot be renamed \
                 into place; set [sinks.{sink}] tmp_path to a folder beside path on its file \
                 system"
            ),
        ),
        Ok(Err(e)) => machine::retry(
            None,
            format!(
                "cannot write the document file: {e}; check free space and permissions of \
                 [sinks.{sink}] path and tmp_path"
            ),
        ),
        Err(e) => machine::retry(None, format!("the file write was interrupted: {e}")),
    }
}

impl S3Target {
    fn new(
        name: &str,
        config: &S3Config,
        outbound: &Outbound,
        timeout: Duration,
    ) -> Result<S3Target, SinkBuildError> {
        let fail = |message: String| SinkBuildError {
            sink: name.to_string(),
            message,
        };
        let base = match &config.endpoint {
            Some(endpoint) => {
                let mut url = reqwest::Url::parse(endpoint).map_err(|e| {
                    fail(format!(
                        "endpoint is not a valid URL ({e}); fix [sinks.{name}] endpoint"
                    ))
                })?;
                let path = format!("{}/{}/", url.path().trim_end_matches('/'), config.bucket);
                url.set_path(&path);
                url
            }
            None => reqwest::Url::parse(&format!(
                "https://{}.s3.{}.amazonaws.com/",
                config.bucket, config.region
            ))
            .map_err(|e| fail(format!("bucket and region do not form an AWS URL ({e})")))?,
        };
        let access_key_id = String::from_utf8(config.access_key_id.expose().to_vec())
            .ok()
            .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                fail(format!(
                    "access_key_id is not printable ASCII; check [sinks.{name}] access_key_id"
                ))
            })?;
        Ok(S3Target {
            client: super::http::client(name, outbound, timeout)?,
            base,
            prefix: config.prefix.clone(),
            region: config.region.clone(),
            access_key_id,
            secret_access_key: config.secret_access_key.clone(),
            timeout,
        })
    }

    /// One signed `PUT` of one object.
    async fn put(&self, sink: &str, name: &str, bytes: &Bytes) -> Outcome {
        let key = format!("{}{name}", self.prefix);
        let url = match self.base.join(&uri_encode(&key, false)) {
            Ok(url) => url,
            Err(e) => return machine::retry(None, format!("cannot form the object URL: {e}")),
        };
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return machine::retry(None, "the object URL has no host".to_string()),
        };
        let payload_hash = hex::encode(Sha256::digest(bytes));
        let amz_date = amz_date(SystemTime::now());
        let content_type = if name.ends_with(".json") {
            "application/json"
        } else if name.ends_with(".xml") {
            "application/xml"
        } else {
            "text/plain"
        };
        let headers = [
            ("content-type", content_type),
            ("host", host.as_str()),
            ("x-amz-content-sha256", payload_hash.as_str()),
            ("x-amz-date", amz_date.as_str()),
        ];
        let authorization = authorization(
            &SigningKey {
                access_key_id: &self.access_key_id,
                secret: self.secret_access_key.expose(),
                region: &self.region,
            },
            "PUT",
            url.path(),
            &headers,
            &payload_hash,
            &amz_date,
        );
        let request = self
            .client
            .put(url)
            .header(CONTENT_TYPE, content_type)
            .header(AMZ_CONTENT_SHA256, payload_hash.as_str())
            .header(AMZ_DATE, amz_date.as_str())
            .header(http::header::AUTHORIZATION, authorization)
            .body(bytes.clone());
        let answer = match machine::send(request, sink, self.timeout).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        let status = answer.status;
        if status.is_success() {
            return Outcome::Delivered {
                status: Some(status.as_u16()),
                message_id: None,
            };
        }
        // S3 errors are XML: `<Code>` says what is wrong.
        let code = xml_field(&answer.body, "Code").or_else(|| snippet(&answer.body));
        let said = code.map_or(String::new(), |c| format!(": \"{c}\""));
        let answered = format!("storage answered {}{said}", machine::status_text(status));
        let error = |message: String| SinkError::new(Some(status.as_u16()), message);
        if machine::transient(status) {
            return Outcome::Retry {
                after: answer.retry_after,
                error: error(answered),
            };
        }
        let fix = match status.as_u16() {
            401 | 403 => {
                format!("Check [sinks.{sink}] access_key_id, secret_access_key and region.")
            }
            404 => format!("Create the bucket, or fix [sinks.{sink}] bucket and endpoint."),
            _ => "The storage refused the object; see its answer.".to_string(),
        };
        Outcome::Failed(error(format!("{answered}; not retrying. {fix}")))
    }
}

/// The text of the first `<name>…</name>` in an XML body.
fn xml_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + text[start..].find(&format!("</{name}>"))?;
    snippet(&text.as_bytes()[start..end])
}

/// `20130524T000000Z`: the SigV4 timestamp, UTC.
fn amz_date(now: SystemTime) -> String {
    // RFC 3339 `2013-05-24T00:00:00Z` without its separators.
    humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect()
}

/// Who signs, and for which region.
struct SigningKey<'a> {
    access_key_id: &'a str,
    secret: &'a [u8],
    region: &'a str,
}

/// The SigV4 `Authorization` header for an S3 request without a query string.
/// `headers` are the signed ones: lower-case names, sorted, values trimmed.
fn authorization(
    key: &SigningKey<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    payload_hash: &str,
    amz_date: &str,
) -> String {
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    // The path reqwest sends is already percent-encoded the way S3 canonicalises it.
    let canonical_request =
        format!("{method}\n{path}\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let date = &amz_date[..8];
    let scope = format!("{date}/{}/s3/aws4_request", key.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut signing = [b"AWS4".as_slice(), key.secret].concat();
    for part in [date, key.region, "s3", "aws4_request"] {
        signing = hmac(&signing, part.as_bytes());
    }
    let signature = hex::encode(hmac(&signing, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        key.access_key_id
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Percent-encodes an object key as SigV4 wants: unreserved characters stay, `/` stays
/// unless `slash`, everything else is `%XX`.
fn uri_encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DocumentEncoding;
    use uuid::Uuid;

    /// The signing example of AWS's S3 SigV4 documentation ("Example: PUT Object").
    #[test]
    fn the_signature_matches_the_aws_put_object_example() {
        let key = SigningKey {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret: b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
        };
        let payload_hash = hex::encode(Sha256::digest(b"Welcome to Amazon S3."));
        assert_eq!(
            payload_hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let headers = [
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", payload_hash.as_str()),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ];
        let got = authorization(
            &key,
            "PUT",
            &uri_encode("/test$file.text", false),
            &headers,
            &payload_hash,
            "20130524T000000Z",
        );
        assert_eq!(
            got,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, \
             Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn amz_date_is_compact_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        assert_eq!(amz_date(t), "20130524T000000Z");
    }

    #[test]
    fn names_are_stable_per_event_and_document_with_a_guessed_extension() {
        let id = Uuid::now_v7();
        let d = Delivery {
            event: Arc::new(crate::store::StoredEvent {
                id,
                source: Arc::from("s"),
                event_type: None,
                content_type: None,
                received_at_ms: 0,
                body: Bytes::new(),
                delivery_id: None,
                headers: Vec::new(),
            }),
            summary: None,
            attempt: 1,
        };
        let doc = |label: &str, text: &'static [u8]| Document {
            label: label.to_string(),
            bytes: Bytes::from_static(text),
        };
        assert_eq!(object_name(&d, &doc("0", b" {}")), format!("{id}-0.json"));
        assert_eq!(
            object_name(&d, &doc("1-2", b"<bom/>")),
            format!("{id}-1-2.xml")
        );
        assert_eq!(
            object_name(&d, &doc("3", b"SPDXVersion: SPDX-2.3")),
            format!("{id}-3.txt")
        );
    }

    #[tokio::test]
    async fn a_temp_folder_on_another_file_system_is_explained_at_delivery() {
        use std::os::unix::fs::MetadataExt as _;
        // /dev/shm is a tmpfs on Linux; the test dir usually is not.
        let shm = Path::new("/dev/shm");
        let dir = tempfile::tempdir().unwrap();
        let (Ok(a), Ok(b)) = (fs::metadata(shm), fs::metadata(dir.path())) else {
            return;
        };
        if a.dev() == b.dev() {
            return;
        }
        let tmp = tempfile::tempdir_in(shm).unwrap();
        let config = GuacSinkConfig {
            documents: DocumentLocation {
                pointers: Vec::new(),
                encoding: DocumentEncoding::Json,
            },
            target: GuacTarget::Folder {
                path: dir.path().join("inbox"),
                tmp_path: tmp.path().to_path_buf(),
            },
        };
        // Building touches nothing: `check` and reloads build sinks they throw away.
        let sink =
            GuacSink::new("g", &config, &Outbound::default(), Duration::from_secs(1)).unwrap();
        assert!(!dir.path().join("inbox").exists());
        let outcome = sink.deliver(&crate::sinks::test_delivery()).await;
        let Outcome::Retry { error, .. } = outcome else {
            panic!("a rename across file systems is retried, once fixed: {outcome:?}");
        };
        assert!(
            error.message.contains("different file systems"),
            "{}",
            error.message
        );
    }
}
