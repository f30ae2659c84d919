//! The response future of [`HttpCacheService`](crate::HttpCacheService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`HttpCacheService`](crate::HttpCacheService):
    /// ready at once for a fresh hit an in-process store answered, else
    /// the cache's work (lookup, forwarding, storing) boxed once.
    pub struct HttpCacheFuture<B: Body, E> {
        ready: Option<Response<ResponseBody<B>>>,
        work: Option<Boxed<B, E>>,
    }
}

impl<B: Body, E> HttpCacheFuture<B, E> {
    pub(crate) fn ready(response: Response<ResponseBody<B>>) -> Self {
        Self {
            ready: Some(response),
            work: None,
        }
    }

    pub(crate) fn work(work: Boxed<B, E>) -> Self {
        Self {
            ready: None,
            work: Some(work),
        }
    }
}

impl<B: Body, E> std::fmt::Debug for HttpCacheFuture<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCacheFuture").finish_non_exhaustive()
    }
}

impl<B: Body, E> Future for HttpCacheFuture<B, E> {
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(work) = this.work.as_mut() {
            return work.as_mut().poll(cx);
        }
        // Polled again after completion: an empty 500 rather than a panic.
        Poll::Ready(Ok(this.ready.take().unwrap_or_else(|| {
            let mut r = Response::new(ResponseBody::empty());
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })))
    }
}
