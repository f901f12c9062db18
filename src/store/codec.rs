//! Record encoding: every value redb holds is one format-version byte followed by a postcard
//! body, so a later version can recognise and migrate old records.
//!
//! An event is laid out as `[2][postcard(EventMeta)][body encoding][body]`: the body is not
//! postcard-encoded but appended raw (encoding `0`) or, when that saves at least an eighth,
//! as an LZ4 block (encoding `1`: the body's length as u32 little endian, then the block).
//! Webhook bodies are JSON, which LZ4 shrinks to a third or less at about 1 GB/s on the
//! request's own thread, and every byte less is b-tree work less on the one writer thread
//! (a 10 KB push event: +34% ingest, BENCHMARKS.md).
//!
//! Versions are per record kind. Events are at version 2 (the body encoding); queue values
//! and attempts are at version 2 (replays: a queue entry knows the first attempt of its
//! round, an attempt whether it was a replay). Version 1 records of each, written before,
//! are still read (a version 1 event is `[1][meta][raw body]`). Everything else is at
//! version 1.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::AttemptOutcome;

/// The current version of every record format written by this build.
pub const FORMAT_VERSION: u8 = 1;

/// A record could not be decoded: a newer format, or a damaged value.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Empty value.
    #[error("empty record")]
    Empty,
    /// Written by a newer (or unknown) format version.
    #[error("record format version {0} is not supported by this build (expects {FORMAT_VERSION})")]
    Version(u8),
    /// The postcard body does not parse.
    #[error("damaged record: {0}")]
    Postcard(#[from] postcard::Error),
    /// The event body's encoding byte or compressed block is not valid.
    #[error("damaged event body: {0}")]
    Body(String),
}

/// Everything about an event except its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    pub source: String,
    pub event_type: Option<String>,
    pub delivery_id: Option<String>,
    pub content_type: Option<String>,
    pub received_at_ms: u64,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The version events are written with.
pub const EVENT_VERSION: u8 = 2;

/// Event body encodings (version 2).
const BODY_RAW: u8 = 0;
const BODY_LZ4: u8 = 1;

/// Bodies shorter than this are stored raw: too little to gain.
const COMPRESS_FROM: usize = 256;

/// The largest body a compressed record may declare. A damaged length must not become a
/// huge allocation; LZ4 cannot expand a block more than 255 times either (checked too).
const MAX_DECOMPRESSED: usize = 1 << 30;

/// The version queue values and attempts are written with.
pub const QUEUE_ATTEMPT_VERSION: u8 = 2;

/// A queue entry's value (its key holds sink, due time and event id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueValue {
    /// Number of the next attempt, 1 for the first.
    pub attempt: u32,
    /// Number of the first attempt of this round: 1, or the first attempt after a replay.
    /// The retry budget counts from here.
    pub first_attempt: u32,
}

/// A queue value as version 1 wrote it.
#[derive(Deserialize)]
struct QueueValueV1 {
    attempt: u32,
}

/// Where a delivery stands, kept per (event, sink) so retention and the admin view can tell
/// whether an event still has work without scanning queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingState {
    /// In the sink's queue at this due time.
    Queued { due_ms: u64 },
    /// Dead-lettered; kept until replayed or discarded.
    Dead,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptValue {
    pub started_ms: u64,
    pub duration_ms: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
    pub message_id: Option<String>,
    /// Made in a round started by a replay.
    pub replay: bool,
}

/// An attempt as version 1 writes it since sinks report their own message id.
#[derive(Deserialize)]
struct AttemptValueV1 {
    started_ms: u64,
    duration_ms: u32,
    status: Option<u16>,
    error: Option<String>,
    outcome: AttemptOutcome,
    message_id: Option<String>,
}

/// An attempt as the first version 1 build wrote it, before message ids.
#[derive(Deserialize)]
struct AttemptValueV1NoMessageId {
    started_ms: u64,
    duration_ms: u32,
    status: Option<u16>,
    error: Option<String>,
    outcome: AttemptOutcome,
}

/// A dead letter's value (its key holds sink and event id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadValue {
    pub at_ms: u64,
    pub attempts: u32,
    pub reason: String,
}

/// Encodes an event as stored (version 2, see the module's note), on the caller's thread, so
/// the writer only moves bytes.
pub fn encode_event(meta: &EventMeta, body: &[u8]) -> Vec<u8> {
    // Metadata is a few hundred bytes (source, ids, kept headers); one allocation in the
    // common case.
    let mut out =
        Vec::with_capacity(1 + 512 + 5 + lz4_flex::block::get_maximum_output_size(body.len()));
    out.push(EVENT_VERSION);
    postcard::to_io(meta, &mut out).expect("postcard encoding into a Vec cannot fail");
    let start = out.len();
    if body.len() >= COMPRESS_FROM
        && let Ok(len) = u32::try_from(body.len())
    {
        out.push(BODY_LZ4);
        out.extend_from_slice(&len.to_le_bytes());
        let block = out.len();
        out.resize(
            block + lz4_flex::block::get_maximum_output_size(body.len()),
            0,
        );
        match lz4_flex::block::compress_into(body, &mut out[block..]) {
            Ok(written) if written <= body.len() - body.len() / 8 => {
                out.truncate(block + written);
                return out;
            }
            _ => out.truncate(start),
        }
    }
    out.push(BODY_RAW);
    out.extend_from_slice(body);
    out
}

/// Splits an encoded event into its metadata and body (borrowed when stored raw).
pub fn decode_event(bytes: &[u8]) -> Result<(EventMeta, Cow<'_, [u8]>), DecodeError> {
    let (meta, body) = split_event(bytes)?;
    let body = match body {
        StoredBody::Raw(body) => Cow::Borrowed(body),
        StoredBody::Lz4 { len, block } => Cow::Owned(decompress(len, block)?),
    };
    Ok((meta, body))
}

/// An event's metadata and its body's length, without decompressing the body: what dedup
/// and listings need.
pub fn decode_event_head(bytes: &[u8]) -> Result<(EventMeta, usize), DecodeError> {
    let (meta, body) = split_event(bytes)?;
    let len = match body {
        StoredBody::Raw(body) => body.len(),
        StoredBody::Lz4 { len, .. } => len,
    };
    Ok((meta, len))
}

/// An event's body as it lies in the record.
enum StoredBody<'a> {
    Raw(&'a [u8]),
    /// An LZ4 block holding `len` bytes.
    Lz4 {
        len: usize,
        block: &'a [u8],
    },
}

/// An event record's metadata and its body, still as stored; of either version.
fn split_event(bytes: &[u8]) -> Result<(EventMeta, StoredBody<'_>), DecodeError> {
    let (version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if !matches!(*version, FORMAT_VERSION | EVENT_VERSION) {
        return Err(DecodeError::Version(*version));
    }
    let (meta, rest) = postcard::take_from_bytes::<EventMeta>(rest)?;
    if *version == FORMAT_VERSION {
        return Ok((meta, StoredBody::Raw(rest)));
    }
    let body = match rest.split_first() {
        Some((&BODY_RAW, body)) => StoredBody::Raw(body),
        Some((&BODY_LZ4, stored)) => {
            let (len, block) = stored
                .split_first_chunk::<4>()
                .ok_or_else(|| DecodeError::Body("compressed body without its length".into()))?;
            StoredBody::Lz4 {
                len: u32::from_le_bytes(*len) as usize,
                block,
            }
        }
        Some((&other, _)) => return Err(DecodeError::Body(format!("unknown encoding {other}"))),
        None => return Err(DecodeError::Body("no body encoding".into())),
    };
    Ok((meta, body))
}

/// The `len` bytes an LZ4 block holds.
fn decompress(len: usize, block: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if len > MAX_DECOMPRESSED || len > block.len().saturating_mul(255) {
        return Err(DecodeError::Body(format!(
            "a {}-byte block cannot hold a {len}-byte body",
            block.len()
        )));
    }
    let mut body = vec![0u8; len];
    match lz4_flex::block::decompress_into(block, &mut body) {
        Ok(n) if n == len => Ok(body),
        Ok(n) => Err(DecodeError::Body(format!(
            "the block holds {n} bytes, the record says {len}"
        ))),
        Err(err) => Err(DecodeError::Body(err.to_string())),
    }
}

/// Encodes any small record with its version byte.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    postcard::to_io(value, &mut out).expect("postcard encoding into a Vec cannot fail");
    out
}

/// Decodes a small record written by [`encode`].
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    Ok(postcard::from_bytes(check_version(bytes)?)?)
}

/// Encodes a queue value or an attempt, at [`QUEUE_ATTEMPT_VERSION`].
pub fn encode_v2<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![QUEUE_ATTEMPT_VERSION];
    postcard::to_io(value, &mut out).expect("postcard encoding into a Vec cannot fail");
    out
}

/// Decodes a queue value of either version.
pub fn decode_queue(bytes: &[u8]) -> Result<QueueValue, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&FORMAT_VERSION, rest)) => {
            let old: QueueValueV1 = postcard::from_bytes(rest)?;
            Ok(QueueValue {
                attempt: old.attempt,
                first_attempt: 1,
            })
        }
        Some((&QUEUE_ATTEMPT_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&other, _)) => Err(DecodeError::Version(other)),
    }
}

/// Decodes an attempt of either version.
pub fn decode_attempt(bytes: &[u8]) -> Result<AttemptValue, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&FORMAT_VERSION, rest)) => {
            // Version 1 gained the message id without a version bump: a record too short
            // for it is the older layout.
            let old = match postcard::from_bytes::<AttemptValueV1>(rest) {
                Ok(old) => old,
                Err(_) => {
                    let older: AttemptValueV1NoMessageId = postcard::from_bytes(rest)?;
                    AttemptValueV1 {
                        started_ms: older.started_ms,
                        duration_ms: older.duration_ms,
                        status: older.status,
                        error: older.error,
                        outcome: older.outcome,
                        message_id: None,
                    }
                }
            };
            Ok(AttemptValue {
                started_ms: old.started_ms,
                duration_ms: old.duration_ms,
                status: old.status,
                error: old.error,
                outcome: old.outcome,
                message_id: old.message_id,
                replay: false,
            })
        }
        Some((&QUEUE_ATTEMPT_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&other, _)) => Err(DecodeError::Version(other)),
    }
}

fn check_version(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&FORMAT_VERSION, rest)) => Ok(rest),
        Some((&other, _)) => Err(DecodeError::Version(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta() -> EventMeta {
        EventMeta {
            source: "github".into(),
            event_type: Some("push".into()),
            delivery_id: Some("d-1".into()),
            content_type: Some("application/json".into()),
            received_at_ms: 1_700_000_000_000,
            headers: vec![("x-github-event".into(), b"push".to_vec())],
        }
    }

    #[test]
    fn a_short_body_is_appended_raw() {
        let body = b"{\"a\":1}";
        let out = encode_event(&meta(), body);
        assert_eq!(out[0], EVENT_VERSION);
        assert!(out.ends_with(body));
        assert_eq!(out[out.len() - body.len() - 1], BODY_RAW);
        let (decoded, decoded_body) = decode_event(&out).unwrap();
        assert_eq!(decoded, meta());
        assert!(matches!(decoded_body, Cow::Borrowed(_)));
        assert_eq!(&decoded_body[..], body);
    }

    /// A JSON body like the ones webhooks carry: fields repeated per commit.
    fn json_body(commits: usize) -> Vec<u8> {
        let commits: Vec<String> = (0..commits)
            .map(|i| {
                format!(
                    "{{\"id\":\"{i:040x}\",\"message\":\"Fix parsing of case {i}\",\
                     \"author\":{{\"name\":\"Octo Cat\",\"email\":\"octocat@github.com\"}},\
                     \"modified\":[\"src/module_{i}.rs\"]}}"
                )
            })
            .collect();
        format!(
            "{{\"ref\":\"refs/heads/main\",\"commits\":[{}]}}",
            commits.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn a_json_body_is_stored_compressed_and_read_back_byte_for_byte() {
        let body = json_body(20);
        let out = encode_event(&meta(), &body);
        assert!(
            out.len() < body.len() / 2,
            "{} bytes stored for a {}-byte body",
            out.len(),
            body.len()
        );
        let (decoded, decoded_body) = decode_event(&out).unwrap();
        assert_eq!(decoded, meta());
        assert_eq!(&decoded_body[..], &body[..]);
        assert_eq!(decode_event_head(&out).unwrap(), (meta(), body.len()));
    }

    #[test]
    fn a_body_that_does_not_shrink_is_stored_raw() {
        // A xorshift stream: nothing for LZ4 to find.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let body: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let out = encode_event(&meta(), &body);
        assert!(out.ends_with(&body));
        assert_eq!(out[out.len() - body.len() - 1], BODY_RAW);
        assert_eq!(&decode_event(&out).unwrap().1[..], &body[..]);
    }

    #[test]
    fn the_fuzz_seed_of_a_compressed_event_decodes() {
        // Written by hand (a literals-only LZ4 block), so the fuzzer starts from a valid one.
        let seed = include_bytes!("../../fuzz/corpus/record_decode/event-v2-lz4");
        let (meta, body) = decode_event(seed).unwrap();
        assert_eq!(meta.source, "github");
        assert!(body.starts_with(b"{\"commits\":["), "{body:?}");
    }

    #[test]
    fn version_1_events_are_still_read() {
        let body = json_body(3);
        let mut v1 = vec![FORMAT_VERSION];
        postcard::to_io(&meta(), &mut v1).unwrap();
        v1.extend_from_slice(&body);
        let (decoded, decoded_body) = decode_event(&v1).unwrap();
        assert_eq!(decoded, meta());
        assert_eq!(&decoded_body[..], &body[..]);
        assert_eq!(decode_event_head(&v1).unwrap(), (meta(), body.len()));
    }

    #[test]
    fn a_damaged_compressed_body_is_an_error_not_a_huge_allocation() {
        let body = json_body(20);
        let out = encode_event(&meta(), &body);
        // The encoding byte follows the version byte and the metadata.
        let head = 1 + postcard::to_allocvec(&meta()).unwrap().len();
        // The declared length, just after the encoding byte, claims 3 GiB.
        let mut lying = out.clone();
        lying[head + 1..head + 5].copy_from_slice(&(3u32 << 30).to_le_bytes());
        let err = decode_event(&lying).unwrap_err().to_string();
        assert!(err.contains("cannot hold"), "{err}");
        // A block cut short.
        let cut = &out[..out.len() - 10];
        assert!(decode_event(cut).is_err());
        // An encoding this build does not know.
        let mut unknown = out.clone();
        unknown[head] = 9;
        assert!(
            decode_event(&unknown)
                .unwrap_err()
                .to_string()
                .contains("unknown encoding 9")
        );
    }

    #[test]
    fn unknown_version_is_refused_not_misread() {
        let mut bytes = encode_v2(&QueueValue {
            attempt: 3,
            first_attempt: 1,
        });
        bytes[0] = 9;
        assert!(matches!(decode_queue(&bytes), Err(DecodeError::Version(9))));
        assert!(matches!(decode_queue(&[]), Err(DecodeError::Empty)));
        assert!(matches!(decode::<DeadValue>(&[]), Err(DecodeError::Empty)));
    }

    #[test]
    fn version_1_queue_values_and_attempts_are_still_read() {
        // Bytes as the version 1 build wrote them.
        #[derive(Serialize)]
        struct V1Queue {
            attempt: u32,
        }
        #[derive(Serialize)]
        struct V1Attempt {
            started_ms: u64,
            duration_ms: u32,
            status: Option<u16>,
            error: Option<String>,
            outcome: AttemptOutcome,
        }
        let queue = decode_queue(&encode(&V1Queue { attempt: 4 })).unwrap();
        assert_eq!(
            queue,
            QueueValue {
                attempt: 4,
                first_attempt: 1
            }
        );
        let attempt = decode_attempt(&encode(&V1Attempt {
            started_ms: 5,
            duration_ms: 6,
            status: Some(503),
            error: Some("busy".into()),
            outcome: AttemptOutcome::Retrying,
        }))
        .unwrap();
        assert_eq!(attempt.status, Some(503));
        assert_eq!(attempt.message_id, None);
        assert!(!attempt.replay);
        #[derive(Serialize)]
        struct V1AttemptWithId {
            started_ms: u64,
            duration_ms: u32,
            status: Option<u16>,
            error: Option<String>,
            outcome: AttemptOutcome,
            message_id: Option<String>,
        }
        let with_id = decode_attempt(&encode(&V1AttemptWithId {
            started_ms: 5,
            duration_ms: 6,
            status: Some(200),
            error: None,
            outcome: AttemptOutcome::Delivered,
            message_id: Some("ts-1".into()),
        }))
        .unwrap();
        assert_eq!(with_id.message_id.as_deref(), Some("ts-1"));
        assert!(!with_id.replay);
        let current = AttemptValue {
            replay: true,
            ..attempt.clone()
        };
        assert_eq!(decode_attempt(&encode_v2(&current)).unwrap(), current);
    }

    proptest! {
        #[test]
        fn events_round_trip(
            source in ".{0,40}",
            event_type in proptest::option::of(".{0,40}"),
            received in any::<u64>(),
            headers in proptest::collection::vec((".{0,20}", proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let meta = EventMeta { source, event_type, delivery_id: None, content_type: None, received_at_ms: received, headers };
            let out = encode_event(&meta, &body);
            let (m, b) = decode_event(&out).unwrap();
            prop_assert_eq!(m, meta);
            prop_assert_eq!(b, &body[..]);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_event(&bytes);
            let _ = decode_attempt(&bytes);
            let _ = decode_queue(&bytes);
            let _ = decode::<DeadValue>(&bytes);
            let _ = decode::<PendingState>(&bytes);
        }
    }
}
