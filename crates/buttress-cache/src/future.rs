//! The cache's response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use buttress_core::BoxError;

pub(crate) type LoadFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// The future of a [`CacheService`](crate::CacheService) call.
///
/// A hit (fresh, or stale while a refresh runs) is ready at once and holds
/// the value: no allocation, no boxing. A miss, a bypass, or a lookup in a
/// store that cannot answer synchronously is one boxed future (the
/// backend call dominates its cost). Dropping a miss's future while it
/// leads a coalesced load hands the load to one of its waiters.
pub struct ResponseFuture<T> {
    kind: Kind<T>,
}

// The load is boxed twice so that `Load` holds a thin pointer: with a
// value that is one pointer too (`Arc<T>`, the recommended response), the
// future is then a tag and a pointer, which the calling convention passes
// in two registers. With the fat `Box<dyn Future>` it was a 16-byte
// aggregate passed through memory: a hit's future written as two 8-byte
// stores and read back by the caller's 16-byte load, a store-forwarding
// stall on every hit. The second box costs a miss one small allocation
// next to the backend call.
enum Kind<T> {
    Ready(Option<T>),
    Load(Box<LoadFuture<T>>),
}

impl<T> ResponseFuture<T> {
    #[inline]
    pub(crate) fn ready(value: T) -> Self {
        Self {
            kind: Kind::Ready(Some(value)),
        }
    }

    pub(crate) fn load(future: LoadFuture<T>) -> Self {
        Self {
            kind: Kind::Load(Box::new(future)),
        }
    }
}

// The value is never pinned: moving it out on completion is fine.
impl<T> Unpin for ResponseFuture<T> {}

impl<T> fmt::Debug for ResponseFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Ready(_) => "hit",
            Kind::Load(_) => "load",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<T> Future for ResponseFuture<T> {
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are `Unpin`: no projection needed.
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Ready(value) => match value.take() {
                Some(value) => Poll::Ready(Ok(value)),
                None => Poll::Ready(Err("cache ResponseFuture polled after completion".into())),
            },
            Kind::Load(future) => future.as_mut().as_mut().poll(cx),
        }
    }
}
