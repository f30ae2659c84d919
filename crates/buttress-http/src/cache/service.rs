//! [`HttpCacheService`]: looks up, serves, revalidates, stores and
//! invalidates per RFC 9111.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use buttress_cache::Entry;
use buttress_cache::store::Store;
use buttress_core::time::Instant;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, ETAG, HeaderValue, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::future::HttpCacheFuture;
use super::handle::{HttpCache, Join, Shared};
use super::stored::{Stored, Variants};
use crate::body::ResponseBody;
use crate::header::CacheControl;
use crate::semantics::{
    Reuse, Timing, VaryKey, cache_key, freshen, freshens, invalidated_keys, strip_hop_by_hop,
};

/// The service [`HttpCacheLayer`](crate::HttpCacheLayer) builds.
///
/// It adds no failure: its error is the inner service's (or a stale
/// response, where stale-if-error allows), and `only-if-cached` with
/// nothing usable is a `504` response.
#[derive(Debug)]
pub struct HttpCacheService<S, St> {
    inner: S,
    cache: HttpCache<St>,
}

impl<S: Clone, St> Clone for HttpCacheService<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl<S, St> HttpCacheService<S, St> {
    pub(crate) fn new(inner: S, cache: HttpCache<St>) -> Self {
        Self { inner, cache }
    }

    /// The shared cache.
    #[must_use]
    pub fn cache(&self) -> &HttpCache<St> {
        &self.cache
    }

    buttress_core::define_inner_service_accessors!();
}

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for HttpCacheService<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    St: Store<String, Variants>,
    ReqB: Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = HttpCacheFuture<ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let shared = Arc::clone(&self.cache.0);
        // A fresh hit an in-process store answers needs no future.
        if let Some(response) = fresh_hit(&shared, &request) {
            return HttpCacheFuture::ready(response.map(|b| ResponseBody::full(b, None)));
        }
        // The documented tower pattern: the ready service goes with the call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        HttpCacheFuture::work(Box::pin(run(shared, inner, request)))
    }
}

fn is_cacheable_method(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The fresh stored response for `request`, when the store answers
/// synchronously and the request takes it without revalidation.
fn fresh_hit<St, B>(shared: &Shared<St>, request: &Request<B>) -> Option<Response<Bytes>>
where
    St: Store<String, Variants>,
{
    if !is_cacheable_method(request.method()) {
        return None;
    }
    let key = cache_key(shared.config.scheme, request.uri(), request.headers())?;
    let entry = shared.store.try_get(&key)??;
    let stored = entry.value().select(request.headers())?;
    let request_cc = CacheControl::parse(request.headers().get_all(CACHE_CONTROL));
    let age = stored.age(Instant::now());
    let reuse = shared
        .config
        .semantics
        .reuse(&request_cc, &stored.cc, stored.lifetime, age);
    (reuse == Reuse::Fresh).then(|| {
        shared.counts.hits.incr();
        stored.respond(age, request.method() == Method::HEAD)
    })
}

fn has_conditionals(headers: &HeaderMap) -> bool {
    [
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ]
    .iter()
    .any(|n| headers.contains_key(n))
}

fn gateway_timeout<B: Body>() -> Response<ResponseBody<B>> {
    let mut r = Response::new(ResponseBody::empty());
    *r.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    r
}

fn served<B: Body>(response: Response<Bytes>) -> Response<ResponseBody<B>> {
    response.map(|b| ResponseBody::full(b, None))
}

async fn call<S, ReqB, ResB>(
    inner: &mut S,
    request: Request<ReqB>,
) -> Result<Response<ResB>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    poll_fn(|cx| inner.poll_ready(cx)).await?;
    inner.call(request).await
}

/// Renders directives as a `Cache-Control` value, for judging a response
/// by a targeted field (RFC 9213) with the same rules.
fn render(cc: &CacheControl) -> Option<HeaderValue> {
    let mut out: Vec<String> = Vec::new();
    let secs = |name: &str, d: Option<Duration>, out: &mut Vec<String>| {
        if let Some(d) = d {
            out.push(format!("{name}={}", d.as_secs()));
        }
    };
    secs("max-age", cc.max_age, &mut out);
    secs("s-maxage", cc.s_maxage, &mut out);
    secs(
        "stale-while-revalidate",
        cc.stale_while_revalidate,
        &mut out,
    );
    secs("stale-if-error", cc.stale_if_error, &mut out);
    for (on, name) in [
        (cc.no_cache, "no-cache"),
        (cc.no_store, "no-store"),
        (cc.must_revalidate, "must-revalidate"),
        (cc.proxy_revalidate, "proxy-revalidate"),
        (cc.private, "private"),
        (cc.public, "public"),
        (cc.immutable, "immutable"),
    ] {
        if on {
            out.push(name.to_owned());
        }
    }
    HeaderValue::from_str(&out.join(", ")).ok()
}

/// The fields a response is judged by: its own, or with `Cache-Control`
/// replaced by the honoured targeted field when it has a valid one.
fn judged<St>(shared: &Shared<St>, headers: &HeaderMap) -> Option<HeaderMap> {
    let target = shared.config.target.as_ref()?;
    if !headers.contains_key(target) {
        return None;
    }
    let cc = CacheControl::parse_targeted(headers.get_all(target))?;
    let mut judged = headers.clone();
    judged.remove(CACHE_CONTROL);
    if let Some(v) = render(&cc) {
        judged.insert(CACHE_CONTROL, v);
    }
    Some(judged)
}

/// Buffers `body` up to `cap`: the bytes, or the response to pass on
/// (too large, or failed) when it cannot be stored.
enum Buffered<B: Body> {
    Whole(Bytes),
    Trailers(Bytes, HeaderMap),
    PassOn(ResponseBody<B>, bool),
}

async fn buffer<B: Body>(body: B, cap: u64) -> Buffered<B> {
    let mut body = Box::pin(body);
    let mut buf = BytesMut::new();
    loop {
        match poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            None => return Buffered::Whole(buf.freeze()),
            Some(Err(e)) => return Buffered::PassOn(ResponseBody::failed(buf.freeze(), e), false),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    buf.extend_from_slice(&data.copy_to_bytes(data.remaining()));
                    if buf.len() as u64 > cap {
                        return Buffered::PassOn(ResponseBody::prefixed(buf.freeze(), body), true);
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return Buffered::Trailers(buf.freeze(), trailers);
                    }
                }
            },
        }
    }
}

/// Everything but a synchronous fresh hit.
async fn run<S, St, ReqB, ResB>(
    shared: Arc<Shared<St>>,
    mut inner: S,
    request: Request<ReqB>,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    St: Store<String, Variants>,
    ReqB: Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    let config = &shared.config;
    let counts = &shared.counts;
    let method = request.method().clone();
    let key = if is_cacheable_method(&method) {
        cache_key(config.scheme, request.uri(), request.headers())
    } else {
        None
    };
    let Some(key) = key else {
        counts.bypassed.incr();
        let uri = request.uri().clone();
        let request_headers = request.headers().clone();
        let response = call(&mut inner, request).await?;
        for k in invalidated_keys(
            config.scheme,
            &method,
            &uri,
            &request_headers,
            response.status(),
            response.headers(),
        ) {
            shared.store.delete(&k).await;
            counts.invalidations.incr();
        }
        return Ok(response.map(ResponseBody::inner));
    };
    let head = method == Method::HEAD;
    let request_cc = CacheControl::parse(request.headers().get_all(CACHE_CONTROL));
    let variants = shared
        .store
        .get(&key)
        .await
        .map(Entry::into_value)
        .unwrap_or_default();
    let now = Instant::now();
    let selected = variants.select(request.headers());
    if let Some(stored) = &selected {
        let age = stored.age(now);
        match config
            .semantics
            .reuse(&request_cc, &stored.cc, stored.lifetime, age)
        {
            Reuse::Fresh => {
                counts.hits.incr();
                return Ok(served(stored.respond(age, head)));
            }
            Reuse::StaleWhileRevalidate => {
                counts.stale.incr();
                if let Ok(rt) = tokio::runtime::Handle::try_current()
                    && shared.claim(&key)
                {
                    let bg = Arc::clone(&shared);
                    let key2 = key.clone();
                    let stored2 = Arc::clone(stored);
                    rt.spawn(async move {
                        let _ = fetch(
                            Arc::clone(&bg),
                            inner,
                            request,
                            key2.clone(),
                            variants,
                            Some(stored2),
                            request_cc,
                            false,
                        )
                        .await;
                        bg.release(&key2);
                    });
                }
                return Ok(served(stored.respond(age, head)));
            }
            Reuse::Stale => {
                counts.stale.incr();
                return Ok(served(stored.respond(age, head)));
            }
            _ => {}
        }
    }
    // Coalescing: one upstream request per key for plain misses; the
    // others wait for it, then take what it stored if it fits them.
    let mut variants = variants;
    let mut _lead = None;
    if selected.is_none() && !request_cc.only_if_cached && !request_cc.no_cache {
        match shared.join(&key) {
            Join::Lead(lead) => _lead = Some(lead),
            Join::Wait(mut done) => {
                // Closed when the leader ends, however it ends.
                let _ = done.changed().await;
                if let Some(now_stored) = shared.store.get(&key).await.map(Entry::into_value) {
                    if let Some(stored) = now_stored.select(request.headers()) {
                        let age = stored.age(Instant::now());
                        if config
                            .semantics
                            .reuse(&request_cc, &stored.cc, stored.lifetime, age)
                            == Reuse::Fresh
                        {
                            counts.hits.incr();
                            counts.coalesced.incr();
                            return Ok(served(stored.respond(age, head)));
                        }
                    }
                    variants = now_stored;
                }
            }
        }
    }
    fetch(
        Arc::clone(&shared),
        inner,
        request,
        key,
        variants,
        selected,
        request_cc,
        true,
    )
    .await
}

/// Forwards a cacheable request (conditional when a stored response can
/// be validated), then serves stale on error where allowed, freshens on a
/// `304`, or stores the new response. `foreground` is false for a
/// background revalidation (stale-while-revalidate), which serves nobody.
#[allow(clippy::too_many_arguments)]
async fn fetch<S, St, ReqB, ResB>(
    shared: Arc<Shared<St>>,
    mut inner: S,
    mut request: Request<ReqB>,
    key: String,
    variants: Variants,
    selected: Option<Arc<Stored>>,
    request_cc: CacheControl,
    foreground: bool,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: Store<String, Variants>,
    ResB: Body,
{
    let config = &shared.config;
    let counts = &shared.counts;
    let method = request.method().clone();
    let head = method == Method::HEAD;
    if request_cc.only_if_cached {
        counts.unsatisfiable.incr();
        return Ok(gateway_timeout());
    }
    // Validate the stored response (§4.3.1), unless the client sent its
    // own preconditions (then its request goes as it is).
    let mut validating = None;
    if let Some(stored) = &selected
        && !has_conditionals(request.headers())
    {
        let headers = request.headers_mut();
        if let Some(tag) = stored.headers.get(ETAG) {
            headers.insert(IF_NONE_MATCH, tag.clone());
        }
        if let Some(modified) = stored.headers.get(LAST_MODIFIED) {
            headers.insert(IF_MODIFIED_SINCE, modified.clone());
        }
        if headers.contains_key(IF_NONE_MATCH) || headers.contains_key(IF_MODIFIED_SINCE) {
            validating = Some(Arc::clone(stored));
        }
    }
    if foreground {
        if validating.is_some() {
            counts.revalidate.incr();
        } else {
            counts.misses.incr();
        }
    }
    let request_headers = request.headers().clone();
    let request_time = SystemTime::now();
    let result = call(&mut inner, request).await;
    // Stale-if-error (RFC 5861 §4): an error or a 500/502/503/504.
    let failed = match &result {
        Err(_) => true,
        Ok(r) => matches!(r.status().as_u16(), 500 | 502 | 503 | 504),
    };
    if failed {
        if validating.is_some() {
            counts.revalidation_errors.incr();
        }
        if let Some(stored) = &selected {
            let age = stored.age(Instant::now());
            if config
                .semantics
                .stale_if_error(&request_cc, &stored.cc, stored.lifetime, age)
            {
                counts.stale.incr();
                return Ok(served(stored.respond(age, head)));
            }
        }
        return result.map(|r| r.map(ResponseBody::inner));
    }
    let response = result?;
    let response_time = SystemTime::now();
    if let (Some(stored), StatusCode::NOT_MODIFIED) = (&validating, response.status()) {
        counts.not_modified.incr();
        if !freshens(&stored.headers, response.headers()) {
            // Not this response's validator: serve what was stored, unchanged.
            return Ok(served(stored.respond(stored.age(Instant::now()), head)));
        }
        let mut headers = stored.headers.clone();
        freshen(&mut headers, response.headers());
        let updated = make_stored(
            &shared,
            stored.status,
            stored.version,
            headers,
            stored.body.clone(),
            stored.vary.clone(),
            Timing::new(request_time, response_time, response.headers()),
        );
        let answer = updated.respond(updated.age(Instant::now()), head);
        put(&shared, key, &variants.without(stored), updated).await;
        return Ok(served(answer));
    }
    if validating.is_some() {
        counts.modified.incr();
    }
    let view = judged(&shared, response.headers());
    let judge = view.as_ref().unwrap_or(response.headers());
    if head
        || !config
            .semantics
            .storable(&method, &request_headers, response.status(), judge)
    {
        if !head {
            counts.uncacheable.incr();
        }
        return Ok(response.map(ResponseBody::inner));
    }
    let Some(vary) = VaryKey::new(response.headers(), &request_headers) else {
        counts.uncacheable.incr();
        return Ok(response.map(ResponseBody::inner));
    };
    let too_long = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .is_some_and(|n| n > config.max_body_bytes)
        || response.body().size_hint().lower() > config.max_body_bytes;
    if too_long {
        counts.too_large.incr();
        return Ok(response.map(ResponseBody::inner));
    }
    let (parts, body) = response.into_parts();
    let data = match buffer(body, config.max_body_bytes).await {
        Buffered::Whole(data) => data,
        Buffered::Trailers(data, trailers) => {
            counts.uncacheable.incr();
            return Ok(Response::from_parts(
                parts,
                ResponseBody::full(data, Some(trailers)),
            ));
        }
        Buffered::PassOn(body, too_large) => {
            if too_large {
                counts.too_large.incr();
            }
            return Ok(Response::from_parts(parts, body));
        }
    };
    let mut stored_headers = parts.headers.clone();
    strip_hop_by_hop(&mut stored_headers);
    let stored = make_stored(
        &shared,
        parts.status,
        parts.version,
        stored_headers,
        data.clone(),
        vary,
        Timing::new(request_time, response_time, &parts.headers),
    );
    put(&shared, key, &variants, stored).await;
    counts.stored.incr();
    Ok(Response::from_parts(parts, ResponseBody::full(data, None)))
}

#[allow(clippy::too_many_arguments)]
fn make_stored<St>(
    shared: &Shared<St>,
    status: StatusCode,
    version: http::Version,
    headers: HeaderMap,
    body: Bytes,
    vary: VaryKey,
    timing: Timing,
) -> Stored {
    let view = judged(shared, &headers);
    let judge = view.as_ref().unwrap_or(&headers);
    let cc = CacheControl::parse(judge.get_all(CACHE_CONTROL));
    let lifetime = shared
        .config
        .semantics
        .freshness_lifetime(status, judge, timing.response_time);
    // The resident time counts from now (response_time), on tokio's
    // clock; the round trip is already in the initial age.
    Stored {
        status,
        version,
        date: timing.date,
        initial_age: timing.initial_age(),
        stored_at: Instant::now(),
        lifetime,
        cc,
        headers,
        body,
        vary,
    }
}

async fn put<St: Store<String, Variants>>(
    shared: &Shared<St>,
    key: String,
    variants: &Variants,
    stored: Stored,
) {
    let all = variants.with(Arc::new(stored), shared.config.max_variants);
    let (weight, fresh_until, keep_until) = all.bounds(shared.config.retain_stale);
    shared
        .store
        .put(
            key,
            Entry::with_bounds(all, fresh_until, keep_until, weight),
        )
        .await;
}
