//! [`ReplayBody`]: a request body that can be sent again.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::TryCloneBody;

/// The default buffer cap: 64 KiB.
pub const DEFAULT_REPLAY_CAP: usize = 64 * 1024;

/// Wraps a request body so the request can be retried.
///
/// While the first attempt streams the body, each chunk is also kept (a
/// reference-counted `Bytes`, no copy for `Bytes` bodies), up to a cap (64
/// KiB by default). A retry's copy replays the kept chunks, then, if the
/// first attempt stopped early, goes on reading the original body where it
/// left off. A body that outgrows the cap is still sent whole by the first
/// attempt; it is just never retried (the retry layer asks
/// [`TryCloneBody::can_replay`] first).
///
/// A body whose size hint already exceeds the cap is not buffered at all.
///
/// ```
/// use buttress_retry::http::{ReplayBody, TryCloneBody};
/// use http_body_util::BodyExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = ReplayBody::new(http_body_util::Full::new(bytes::Bytes::from_static(b"hello")));
/// let copy = body.try_clone_body().unwrap();
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
/// assert!(copy.can_replay());
/// assert_eq!(copy.collect().await.unwrap().to_bytes(), "hello");
/// # }
/// ```
///
/// Copies are meant to be sent one after another (retries). A copy that
/// needs the original body while another copy is reading it fails with
/// [`ReplayError::InUse`].
pub struct ReplayBody<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// The original body, while this copy is reading it.
    inner: Option<B>,
    /// Kept chunks this copy has sent.
    replayed: usize,
    trailers_sent: bool,
    hint: SizeHint,
}

struct Shared<B> {
    /// The original body when no copy is reading it.
    parked: Option<B>,
    chunks: Vec<Bytes>,
    len: usize,
    cap: usize,
    over_cap: bool,
    done: bool,
    trailers: Option<HeaderMap>,
}

/// Why a [`ReplayBody`] copy could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// The body outgrew the buffer cap (or its read failed), so it cannot be sent again.
    NotReplayable,
    /// Another copy is still reading the original body.
    InUse,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReplayable => f.write_str("request body cannot be replayed"),
            Self::InUse => f.write_str("request body is being read by another attempt"),
        }
    }
}

impl std::error::Error for ReplayError {}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("replayed", &self.replayed)
            .field("reading", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

fn lock<B>(m: &Mutex<Shared<B>>) -> MutexGuard<'_, Shared<B>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B: Body> ReplayBody<B> {
    /// Wraps `body`, buffering up to 64 KiB ([`DEFAULT_REPLAY_CAP`]).
    pub fn new(body: B) -> Self {
        Self::with_cap(body, DEFAULT_REPLAY_CAP)
    }

    /// Wraps `body`, buffering up to `cap` bytes.
    pub fn with_cap(body: B, cap: usize) -> Self {
        let hint = body.size_hint();
        let too_big = usize::try_from(hint.lower()).map_or(true, |n| n > cap);
        Self {
            shared: Arc::new(Mutex::new(Shared {
                parked: None,
                chunks: Vec::new(),
                len: 0,
                cap,
                over_cap: too_big,
                done: false,
                trailers: None,
            })),
            inner: Some(body),
            replayed: 0,
            trailers_sent: false,
            hint,
        }
    }
}

impl<B> ReplayBody<B> {
    /// Whether the body has outgrown its cap (and so will not be retried).
    pub fn is_over_cap(&self) -> bool {
        lock(&self.shared).over_cap
    }
}

impl<B> TryCloneBody for ReplayBody<B> {
    fn try_clone_body(&self) -> Option<Self> {
        if lock(&self.shared).over_cap {
            return None;
        }
        Some(Self {
            shared: Arc::clone(&self.shared),
            inner: None,
            replayed: 0,
            trailers_sent: false,
            hint: self.hint,
        })
    }

    fn can_replay(&self) -> bool {
        let s = lock(&self.shared);
        !s.over_cap && (s.done || s.parked.is_some() || self.inner.is_some())
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            lock(&self.shared).parked = Some(inner);
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut shared = lock(&this.shared);
        if this.replayed < shared.chunks.len() {
            let chunk = shared.chunks[this.replayed].clone();
            this.replayed += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if shared.done {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = &shared.trailers {
                    return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
                }
            }
            return Poll::Ready(None);
        }
        if this.inner.is_none() {
            if shared.over_cap {
                // The kept chunks are gone: what is left of the original
                // body would arrive truncated.
                return Poll::Ready(Some(Err(Box::new(ReplayError::NotReplayable))));
            }
            this.inner = shared.parked.take();
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(ReplayError::InUse))));
        };
        loop {
            match ready!(Pin::new(&mut *inner).poll_frame(cx)) {
                None => {
                    shared.done = true;
                    this.trailers_sent = true;
                    this.inner = None;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => {
                    shared.over_cap = true;
                    shared.chunks = Vec::new();
                    return Poll::Ready(Some(Err(e.into())));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        if !shared.over_cap {
                            if shared.len + bytes.len() <= shared.cap {
                                shared.len += bytes.len();
                                shared.chunks.push(bytes.clone());
                                this.replayed = shared.chunks.len();
                            } else {
                                shared.over_cap = true;
                                shared.chunks = Vec::new();
                            }
                        }
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            if !shared.over_cap {
                                shared.trailers = Some(trailers.clone());
                            }
                            this.trailers_sent = true;
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        // A frame kind http-body 1.0 does not define: skip it.
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = lock(&self.shared);
        if s.done {
            return self.replayed >= s.chunks.len() && (self.trailers_sent || s.trailers.is_none());
        }
        match &self.inner {
            Some(inner) => self.replayed >= s.chunks.len() && inner.is_end_stream(),
            None => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        let s = lock(&self.shared);
        if s.done && !s.over_cap {
            return SizeHint::with_exact(s.len as u64);
        }
        self.hint
    }
}
