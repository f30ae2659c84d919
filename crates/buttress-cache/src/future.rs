//! The futures of the crate's services: [`ResponseFuture`] for
//! [`CacheService`](crate::CacheService), [`InvalidateFuture`] for
//! [`InvalidateService`](crate::InvalidateService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use pin_project_lite::pin_project;

pub(crate) type LoadFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// The future of a [`CacheService`](crate::CacheService) call.
///
/// A hit (fresh, or stale while a refresh runs) is ready at once and holds
/// the value: no allocation, no boxing. A miss, a bypass, or a lookup in a
/// store that cannot answer synchronously is a boxed future in a second,
/// one-pointer box: two allocations, next to the backend call. Dropping a
/// miss's future while it leads a coalesced load hands the load to one
/// of its waiters.
pub struct ResponseFuture<T> {
    kind: Kind<T>,
}

// The boxed load sits in a second box so that `Load` is a thin pointer:
// with a value that is one pointer too (`Arc<T>`, the recommended
// response), a hit's future is a tag and a pointer, which the calling
// convention passes in two registers rather than through memory.
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

/// The invalidation an [`InvalidateService`](crate::InvalidateService)
/// runs once its write has succeeded.
pub(crate) type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

pin_project! {
    /// The future of an [`InvalidateService`](crate::InvalidateService)
    /// call: the write, then (on success) the invalidation, boxed (a write
    /// path, not a hit path).
    pub struct InvalidateFuture<Fut, T> {
        #[pin]
        state: State<Fut, T>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, T> {
        Calling { #[pin] future: Fut, invalidate: Option<Pending> },
        Invalidating { invalidate: Pending, response: Option<T> },
    }
}

impl<Fut, T> InvalidateFuture<Fut, T> {
    /// The write `future`, then `invalidate` if it succeeds.
    pub(crate) fn new(future: Fut, invalidate: Option<Pending>) -> Self {
        Self {
            state: State::Calling { future, invalidate },
        }
    }
}

impl<Fut, T> fmt::Debug for InvalidateFuture<Fut, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidateFuture").finish_non_exhaustive()
    }
}

impl<Fut, T, E> Future for InvalidateFuture<Fut, T>
where
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future, invalidate } => {
                    let response = ready!(future.poll(cx))?;
                    match invalidate.take() {
                        None => return Poll::Ready(Ok(response)),
                        Some(invalidate) => this.state.set(State::Invalidating {
                            invalidate,
                            response: Some(response),
                        }),
                    }
                }
                StateProj::Invalidating {
                    invalidate,
                    response,
                } => {
                    ready!(invalidate.as_mut().poll(cx));
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}
