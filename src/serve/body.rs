//! Request bodies, bounded twice: each at most `--max-body` bytes (413, answered as soon as the
//! declared length or the bytes received pass the limit, chunked bodies included), and all the
//! bodies buffered at once, across every connection, at most `--max-body-total` bytes (503 with
//! Retry-After: the server is busy, not the request wrong). Without the second bound, the
//! connection limit times the body limit is the memory a crowd of uploads can take (512 x 16 MiB
//! = 8 GiB by default).
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// After a 413, what the client still sends is read and discarded, up to this much and for at
/// most [`DRAIN_TIME`], so that it can read its answer instead of meeting a reset connection.
const DRAIN_BEYOND_LIMIT: u64 = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Why a body was not read: what the API answers (its status and code), said in words.
#[derive(Debug)]
pub struct BodyRefused {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The server is busy, not the request wrong: the client may retry shortly.
    pub retry: bool,
}

impl BodyRefused {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> BodyRefused {
        BodyRefused { status, code, message: message.into(), retry: false }
    }
}

/// The bytes of request bodies the whole server buffers at once.
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total: u64,
}

/// Bytes of the budget held by one request until it is dropped (with the request's body).
pub struct Reserved {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reserved {
    fn none() -> Reserved {
        Reserved { permit: None }
    }

    fn add(&mut self, more: OwnedSemaphorePermit) {
        match &mut self.permit {
            Some(p) => p.merge(more),
            None => self.permit = Some(more),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.permit.as_ref().map_or(0, |p| p.num_permits() as u64)
    }
}

impl BodyBudget {
    pub fn new(total: u64) -> BodyBudget {
        let permits = usize::try_from(total).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        BodyBudget { permits: Arc::new(Semaphore::new(permits)), total }
    }

    /// Bytes held by bodies now.
    pub fn in_use(&self) -> u64 {
        self.total.saturating_sub(self.permits.available_permits() as u64)
    }

    /// Takes `bytes` more for `reserved`, or answers 503 when the server holds its limit.
    fn take(&self, reserved: &mut Reserved, bytes: u64) -> Result<(), BodyRefused> {
        if bytes == 0 {
            return Ok(());
        }
        let busy = || BodyRefused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "bodies_full",
            message: format!("the server holds its limit of {} bytes of request bodies at once (--max-body-total); retry shortly", self.total),
            retry: true,
        };
        let n = u32::try_from(bytes).map_err(|_| busy())?;
        match self.permits.clone().try_acquire_many_owned(n) {
            Ok(p) => {
                reserved.add(p);
                Ok(())
            }
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(busy()),
        }
    }
}

fn too_large(limit: u64) -> BodyRefused {
    BodyRefused::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the body is larger than the limit of {limit} bytes (--max-body)"))
}

/// Reads and discards the rest of a refused body in the background (bounded in bytes and time),
/// so that the client, still sending, reads its 413 instead of a reset.
fn drain_in_background(mut body: Body, already: u64) {
    tokio::spawn(async move {
        let mut read = already;
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > DRAIN_BEYOND_LIMIT {
                    break;
                }
            }
        })
        .await;
    });
}

/// The body, at most `limit` bytes, its bytes held in `budget` until the returned [`Reserved`]
/// is dropped. A larger one is a 413 at once: from its declared length before anything is read,
/// or as soon as the bytes received pass the limit (a chunked body too); a client that waits for
/// `100 Continue` is answered without sending anything. A body that does not fit the server's
/// budget is a 503.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64, budget: &BodyBudget) -> Result<(Bytes, Reserved), BodyRefused> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let expects_continue = headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if declared.is_some_and(|n| n > limit) {
        if !expects_continue {
            drain_in_background(body, 0);
        }
        return Err(too_large(limit));
    }
    let mut reserved = Reserved::none();
    // A declared length is taken from the budget whole, before reading: refused at once when the
    // server is full, and never half read.
    if let Some(n) = declared {
        budget.take(&mut reserved, n)?;
    }
    let mut body = body;
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyRefused::new(StatusCode::BAD_REQUEST, "bad_body", format!("cannot read the body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        let total = buf.len() as u64 + data.len() as u64;
        if total > limit {
            drain_in_background(body, total);
            return Err(too_large(limit));
        }
        let held = reserved.bytes();
        if total > held {
            budget.take(&mut reserved, total - held)?;
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), reserved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn chunked(parts: Vec<&'static [u8]>) -> Body {
        let stream = futures_util::stream::iter(parts.into_iter().map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p))));
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn bodies_within_the_limits_are_read_and_hold_the_budget_until_dropped() {
        let budget = BodyBudget::new(10);
        let (bytes, held) = read_body(&headers(&[("content-length", "6")]), Body::from("abcdef"), 8, &budget).await.unwrap();
        assert_eq!((&bytes[..], held.bytes(), budget.in_use()), (&b"abcdef"[..], 6, 6));
        // A second body that does not fit what is left: 503, whether declared or chunked.
        let err = read_body(&headers(&[("content-length", "5")]), Body::from("12345"), 8, &budget).await.err().unwrap();
        assert_eq!((err.status, err.code), (StatusCode::SERVICE_UNAVAILABLE, "bodies_full"));
        let err = read_body(&HeaderMap::new(), chunked(vec![b"123", b"45"]), 8, &budget).await.err().unwrap();
        assert_eq!(err.code, "bodies_full");
        assert_eq!(budget.in_use(), 6, "a refused body holds nothing");
        drop(held);
        assert_eq!(budget.in_use(), 0);
        let (bytes, held) = read_body(&HeaderMap::new(), chunked(vec![b"123", b"45"]), 8, &budget).await.unwrap();
        assert_eq!((&bytes[..], held.bytes()), (&b"12345"[..], 5));
    }

    /// Over the limit: 413 from the declared length, or as soon as the received bytes pass it,
    /// without waiting for a body that never ends.
    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_as_soon_as_it_passes_it() {
        let budget = BodyBudget::new(1 << 20);
        let err = read_body(&headers(&[("content-length", "9")]), Body::from("123456789"), 8, &budget).await.err().unwrap();
        assert_eq!((err.status, err.code), (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
        let never_ends = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"12345")), Ok(Bytes::from_static(b"6789"))])
            .chain(futures_util::stream::pending());
        let refused = tokio::time::timeout(Duration::from_secs(5), read_body(&HeaderMap::new(), Body::from_stream(never_ends), 8, &budget)).await;
        assert_eq!(refused.expect("answered before the body ended").err().unwrap().code, "body_too_large");
        assert_eq!(budget.in_use(), 0);
    }
}
