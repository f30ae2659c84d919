//! [`CacheHeadersService`].

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::conditional::{Conditions, Precondition};
use crate::future::{Ctx, ResponseFuture};
use crate::handle::CacheHeaders;
use crate::respond;
use crate::validators::Lookup;

/// The service [`CacheHeadersLayer`](crate::CacheHeadersLayer) builds.
///
/// It adds no failure: its error is the inner service's, and a failed
/// precondition is a `412` response.
#[derive(Clone, Debug)]
pub struct CacheHeadersService<S> {
    inner: S,
    handle: CacheHeaders,
}

impl<S> CacheHeadersService<S> {
    pub(crate) fn new(inner: S, handle: CacheHeaders) -> Self {
        Self { inner, handle }
    }

    /// The shared configuration and counts.
    #[must_use]
    pub fn handle(&self) -> &CacheHeaders {
        &self.handle
    }

    buttress_core::define_inner_service_accessors!();
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for CacheHeadersService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let config = &self.handle.0.config;
        let conditions = if config.conditional {
            Conditions::from_headers(request.headers())
        } else {
            Conditions::default()
        };
        let method = request.method().clone();
        let (request, policy, lookup) = if config.needs_parts() {
            let (parts, body) = request.into_parts();
            let policy = config.policy_for(&parts);
            let lookup = match &config.lookup {
                Some(lookup) if !conditions.is_empty() => lookup.lookup(&parts),
                _ => Lookup::Unknown,
            };
            (Request::from_parts(parts, body), policy, lookup)
        } else {
            let policy = config.route_policy(request.uri().path()).cloned();
            (request, policy, Lookup::Unknown)
        };
        let ctx = Ctx {
            handle: self.handle.clone(),
            policy,
            method,
            conditions,
        };
        let validators = match &lookup {
            Lookup::Present(v) => Some(v),
            _ => None,
        };
        if !matches!(lookup, Lookup::Unknown) {
            let counts = &self.handle.0.counts;
            match ctx.conditions.evaluate(&ctx.method, validators) {
                Precondition::NotModified => {
                    counts.not_modified.incr();
                    let mut response = respond::not_modified_from(validators);
                    if let Some(policy) = &ctx.policy {
                        respond::apply_policy(&policy.0, response.headers_mut());
                    }
                    return ResponseFuture::ready(response, ctx);
                }
                Precondition::Failed => {
                    counts.precondition_failed.incr();
                    return ResponseFuture::ready(respond::precondition_failed(), ctx);
                }
                Precondition::Proceed => {}
            }
        }
        ResponseFuture::waiting(self.inner.call(request), ctx)
    }
}
