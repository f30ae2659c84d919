//! The response future of [`CacheHeadersService`](crate::CacheHeadersService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG};
use http::{Method, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;
use crate::conditional::{Conditions, Current, Precondition};
use crate::handle::CacheHeaders;
use crate::policy::CachePolicy;
use crate::respond::{self, Buffer};

pub use crate::cache::future::HttpCacheFuture;

/// What a response needs from its request: the policy chosen for it, its
/// method and its precondition fields.
pub(crate) struct Ctx {
    pub(crate) handle: CacheHeaders,
    pub(crate) policy: Option<CachePolicy>,
    pub(crate) method: Method,
    pub(crate) conditions: Conditions,
}

pin_project! {
    /// The response future of [`CacheHeadersService`](crate::CacheHeadersService):
    /// the inner service's response with its caching fields set, its body
    /// buffered and tagged when it qualifies, or a `304` / `412`.
    pub struct ResponseFuture<F, B: Body> {
        #[pin]
        state: State<F, B>,
        ctx: Ctx,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B: Body> {
        Ready { response: Option<Response<ResponseBody<B>>> },
        Waiting { #[pin] future: F },
        // The body is boxed so that it can move into the response when it
        // runs past the cap (one allocation, on a path that buffers anyway).
        Buffering { parts: Option<http::response::Parts>, body: Option<Pin<Box<B>>>, buffer: Buffer },
    }
}

impl<F, B: Body> ResponseFuture<F, B> {
    pub(crate) fn waiting(future: F, ctx: Ctx) -> Self {
        Self {
            state: State::Waiting { future },
            ctx,
        }
    }

    pub(crate) fn ready(response: Response<ResponseBody<B>>, ctx: Ctx) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
            ctx,
        }
    }
}

impl<F, B: Body> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Ctx {
    /// Whether the layer may give this response an ETag: a `200` to a GET
    /// or HEAD that has none, for a whole representation.
    fn may_tag<B>(&self, response: &Response<B>) -> bool {
        response.status() == StatusCode::OK
            && (self.method == Method::GET || self.method == Method::HEAD)
            && !response.headers().contains_key(ETAG)
            && !response.headers().contains_key(CONTENT_RANGE)
    }

    /// Whether to buffer the body and hash it: it may be tagged, and its
    /// size hint bounds it within the cap (or has no bound and
    /// `hash_unbounded` is on) (and agrees with a
    /// `Content-Length`, so a HEAD answer without its content is not
    /// tagged as the empty body).
    fn should_hash<B: Body>(&self, response: &Response<B>) -> bool {
        let cap = self.handle.0.config.etag_max_bytes;
        let hint = response.body().size_hint();
        let length = response
            .headers()
            .get(CONTENT_LENGTH)
            .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()));
        cap > 0
            && self.may_tag(response)
            && hint
                .upper()
                .map_or(self.handle.0.config.hash_unbounded, |upper| upper <= cap)
            && length.is_none_or(|len| len.is_some() && len == hint.exact())
    }

    /// The response as it leaves the layer: a weak tag if it qualifies,
    /// the policy's fields, then the preconditions of a safe method
    /// evaluated against it.
    fn finish<B: Body>(
        &self,
        mut response: Response<ResponseBody<B>>,
        hashed: bool,
    ) -> Response<ResponseBody<B>> {
        let shared = &self.handle.0;
        if !hashed && self.may_tag(&response) {
            match respond::weak_etag(response.headers()).filter(|_| shared.config.weak_etags) {
                Some(tag) => {
                    response.headers_mut().insert(ETAG, tag);
                    shared.counts.etags_weak.incr();
                }
                None => shared.counts.etags_skipped.incr(),
            }
        }
        let status = response.status();
        if let Some(policy) = &self.policy
            && (status.is_success() || status == StatusCode::NOT_MODIFIED)
        {
            respond::apply_policy(&policy.0, response.headers_mut());
        }
        if !status.is_success() || self.conditions.is_empty() || !self.method.is_safe() {
            return response;
        }
        match self
            .conditions
            .evaluate_current(&self.method, Some(Current::of_response(response.headers())))
        {
            Precondition::NotModified => {
                shared.counts.not_modified.incr();
                respond::not_modified(response)
            }
            Precondition::Failed => {
                shared.counts.precondition_failed.incr();
                respond::precondition_failed()
            }
            Precondition::Proceed => response,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let done = match this.state.as_mut().project() {
                StateProj::Ready { response } => {
                    // Polled again after completion: an empty 500 rather
                    // than a panic.
                    let response = response.take().unwrap_or_else(|| {
                        let mut r = Response::new(ResponseBody::empty());
                        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        r
                    });
                    return Poll::Ready(Ok(response));
                }
                StateProj::Waiting { future } => {
                    let response = ready!(future.poll(cx))?;
                    if this.ctx.should_hash(&response) {
                        let (parts, body) = response.into_parts();
                        this.state.set(State::Buffering {
                            parts: Some(parts),
                            body: Some(Box::pin(body)),
                            buffer: Buffer::default(),
                        });
                        continue;
                    }
                    this.ctx.finish(response.map(ResponseBody::inner), false)
                }
                StateProj::Buffering {
                    parts,
                    body,
                    buffer,
                } => {
                    let cap = this.ctx.handle.0.config.etag_max_bytes;
                    let take_parts = |p: &mut Option<http::response::Parts>| {
                        p.take().unwrap_or_else(|| Response::new(()).into_parts().0)
                    };
                    loop {
                        let Some(inner) = body.as_mut() else {
                            break Response::from_parts(take_parts(parts), ResponseBody::empty());
                        };
                        match ready!(inner.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(mut data) => {
                                    buffer.push(data.copy_to_bytes(data.remaining()));
                                    if buffer.len() > cap
                                        && let Some(rest) = body.take()
                                    {
                                        // Past the cap (a body without a bound, or
                                        // one that broke its size hint): what was
                                        // read goes first, the rest streams, untagged.
                                        let response = Response::from_parts(
                                            take_parts(parts),
                                            ResponseBody::prefixed(buffer.take(), rest),
                                        );
                                        break this.ctx.finish(response, false);
                                    }
                                }
                                Err(frame) => {
                                    if let Ok(trailers) = frame.into_trailers() {
                                        buffer.trailers = Some(trailers);
                                    }
                                }
                            },
                            Some(Err(error)) => {
                                break Response::from_parts(
                                    take_parts(parts),
                                    ResponseBody::failed(buffer.take(), error),
                                );
                            }
                            None => {
                                let mut head = take_parts(parts);
                                let data = buffer.take();
                                head.headers.insert(ETAG, respond::body_etag(&data));
                                this.ctx.handle.0.counts.etags_strong.incr();
                                let response = Response::from_parts(
                                    head,
                                    ResponseBody::full(data, buffer.trailers.take()),
                                );
                                break this.ctx.finish(response, true);
                            }
                        }
                    }
                }
            };
            this.state.set(State::Ready { response: None });
            return Poll::Ready(Ok(done));
        }
    }
}
