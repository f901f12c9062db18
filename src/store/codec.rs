//! Record encoding: every value redb holds is one format-version byte followed by a postcard
//! body, so a later version can recognise and migrate old records.
//!
//! An event is laid out as `[version][postcard(EventMeta)][body bytes]`: the body is appended
//! raw, not postcard-encoded, so writing it is one copy and reading it back needs no parse.
//!
//! Versions are per record kind. Queue values and attempts are at version 2 (replays: a
//! queue entry knows the first attempt of its round, an attempt whether it was a replay);
//! their version 1 records, written before, are still read. Everything else is at version 1.

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

/// Encodes an event as stored: `[version][meta][body]`, the body appended raw so reading it
/// back needs no copy. Done on the caller's thread, so the writer only moves bytes.
pub fn encode_event(meta: &EventMeta, body: &[u8]) -> Vec<u8> {
    // Metadata is a few hundred bytes (source, ids, kept headers); one allocation in the
    // common case.
    let mut out = Vec::with_capacity(1 + 512 + body.len());
    out.push(FORMAT_VERSION);
    postcard::to_io(meta, &mut out).expect("postcard encoding into a Vec cannot fail");
    out.extend_from_slice(body);
    out
}

/// Splits an encoded event into its metadata and body.
pub fn decode_event(bytes: &[u8]) -> Result<(EventMeta, &[u8]), DecodeError> {
    let rest = check_version(bytes)?;
    let (meta, body) = postcard::take_from_bytes::<EventMeta>(rest)?;
    Ok((meta, body))
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
    fn event_round_trips_with_body_appended_raw() {
        let body = b"{\"a\":1}";
        let out = encode_event(&meta(), body);
        assert_eq!(out[0], FORMAT_VERSION);
        assert!(out.ends_with(body));
        let (decoded, decoded_body) = decode_event(&out).unwrap();
        assert_eq!(decoded, meta());
        assert_eq!(decoded_body, body);
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
