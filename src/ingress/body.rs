//! Reading a request body within two limits: `max_body` for one request, and `max_buffered`
//! for all of them together.
//!
//! Without the shared limit, memory under hostile load was `max_connections × max_body`
//! (1024 × 25 MiB by default): enough clients each sending a large body, slowly, could
//! exhaust the machine. Every byte read takes a permit from one semaphore, held until the
//! store has answered; a request that would go past the limit is refused at once.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a body was not read.
pub(super) enum BodyError {
    /// Larger than `max_body`; the rest of the body, unread.
    TooLarge(Incoming),
    /// Taking it would go past `max_buffered`; the rest of the body, unread.
    Busy(Incoming),
    /// The connection failed or the framing was broken.
    Read(hyper::Error),
}

/// The body and the share of the memory budget it holds; drop both together.
pub(super) struct Body {
    pub bytes: Bytes,
    pub _held: Option<OwnedSemaphorePermit>,
}

/// Reads the whole body, frame by frame, counting every byte against `max` and `budget`.
pub(super) async fn read(
    mut body: Incoming,
    max: u64,
    budget: &Arc<Semaphore>,
) -> Result<Body, BodyError> {
    let mut held: Option<OwnedSemaphorePermit> = None;
    // The common case, one frame, is kept as it came, with no copy. From a second frame on,
    // frames are appended to one buffer as they come (sized by Content-Length when given),
    // so a large body is never held twice, as frames and then joined.
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            // Trailers carry nothing hookrelay keeps.
            continue;
        };
        total += data.len() as u64;
        if total > max {
            return Err(BodyError::TooLarge(body));
        }
        if data.is_empty() {
            continue;
        }
        // A frame is never larger than max_body, which is at most 1 GiB.
        let Ok(n) = u32::try_from(data.len()) else {
            return Err(BodyError::TooLarge(body));
        };
        let Ok(permit) = budget.clone().try_acquire_many_owned(n) else {
            return Err(BodyError::Busy(body));
        };
        match &mut held {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        match (&mut joined, first.take()) {
            (Some(all), _) => all.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(before)) => {
                let expected = body.size_hint().exact().unwrap_or(0);
                let capacity = (total + expected).min(max) as usize;
                let mut all = BytesMut::with_capacity(capacity);
                all.extend_from_slice(&before);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
        }
    }
    let bytes = match joined {
        Some(all) => all.freeze(),
        None => first.unwrap_or_default(),
    };
    Ok(Body { bytes, _held: held })
}

/// Reads and drops the rest of a refused body, up to `limit` bytes: whether it ended.
///
/// A sender that writes its whole body before reading the answer (most HTTP libraries
/// without `Expect: 100-continue`) gets a reset instead of the refusal (`404`, `405`, `413`,
/// `503`) when the server closes with its body unread; read to the end, the answer reaches
/// it and the connection can stay.
pub(super) async fn discard(mut body: Incoming, limit: u64) -> bool {
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return false };
        if let Some(data) = frame.data_ref() {
            total += data.len() as u64;
            if total > limit {
                return false;
            }
        }
    }
    true
}
