//! Test bodies and helpers shared by the layer's tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use buttress_http::{CacheHeaders, CacheHeadersService};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};

/// A body of the given chunks with a chosen size hint, optional trailers
/// and an optional error after the chunks.
#[derive(Debug, Default)]
pub struct Chunks {
    pub chunks: VecDeque<Bytes>,
    pub hint: SizeHint,
    pub trailers: Option<HeaderMap>,
    pub fail: bool,
}

impl Chunks {
    /// Chunks whose size hint is exact.
    pub fn exact(chunks: &[&'static str]) -> Self {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Self {
            chunks: chunks
                .iter()
                .map(|c| Bytes::from_static(c.as_bytes()))
                .collect(),
            hint: SizeHint::with_exact(len),
            ..Self::default()
        }
    }

    /// Chunks with no upper bound in the size hint (a stream).
    pub fn streamed(chunks: &[&'static str]) -> Self {
        Self {
            hint: SizeHint::default(),
            ..Self::exact(chunks)
        }
    }
}

/// The error a failing [`Chunks`] yields.
#[derive(Debug)]
pub struct BodyFailed;

impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("body failed")
    }
}

impl std::error::Error for BodyFailed {}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        if let Some(c) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(c))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        if std::mem::take(&mut self.fail) {
            return Poll::Ready(Some(Err(BodyFailed)));
        }
        Poll::Ready(None)
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// A handler answering every request with `make(&request)`, counting calls.
pub fn handler<F>(
    make: F,
) -> (
    impl Service<Request<()>, Response = Response<Chunks>, Error = Infallible, Future = impl Send>
    + Clone,
    Arc<AtomicUsize>,
)
where
    F: Fn(&Request<()>) -> Response<Chunks> + Clone + Send + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = tower::service_fn(move |req: Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let response = make(&req);
        async move { Ok::<_, Infallible>(response) }
    });
    (svc, calls)
}

/// `handle`'s layer around `inner`.
pub fn layered<S>(handle: &CacheHeaders, inner: S) -> CacheHeadersService<S> {
    tower::Layer::layer(&handle.layer(), inner)
}

/// Calls `svc` with `request`; the response's parts and its whole body.
pub async fn call<S>(
    svc: &S,
    request: Request<()>,
) -> (http::response::Parts, Result<Bytes, BodyFailed>)
where
    S: Service<
            Request<()>,
            Response = Response<buttress_http::ResponseBody<Chunks>>,
            Error = Infallible,
        > + Clone,
{
    let response = svc
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes());
    (parts, bytes)
}

/// A GET of `path` with the given fields.
pub fn get(path: &str, fields: &[(&str, &str)]) -> Request<()> {
    request(http::Method::GET, path, fields)
}

/// A request of `method` on `path` with the given fields.
pub fn request(method: http::Method, path: &str, fields: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in fields {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

/// A 200 with `body` (exact size hint) and the given fields.
pub fn ok(body: &'static str, fields: &[(&'static str, &'static str)]) -> Response<Chunks> {
    let mut r = Response::new(Chunks::exact(&[body]));
    for (k, v) in fields {
        r.headers_mut()
            .append(*k, http::HeaderValue::from_static(v));
    }
    r
}

/// Every value of field `name`, joined with ", ".
pub fn field(parts: &http::response::Parts, name: &str) -> Option<String> {
    let all: Vec<_> = parts
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (!all.is_empty()).then(|| all.join(", "))
}

/// Header fields of a table row.
pub type Fields = &'static [(&'static str, &'static str)];
