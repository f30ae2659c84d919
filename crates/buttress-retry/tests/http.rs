//! The retry layer on `http::Request`s: idempotency, replayable bodies,
//! `Retry-After`, gRPC pushback, deadlines visible to the inner service.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_core::grpc::GrpcClassifier;
use buttress_core::http::HttpClassifier;
use buttress_retry::http::{HttpReplay, ReplayBody};
use buttress_retry::{Deadline, RetryLayer, RetryPolicy};
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

/// What the backend saw of one attempt.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    body: Bytes,
    deadline_left: Option<Duration>,
    grpc_timeout: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A body in several chunks with no size hint, like a streamed upload.
struct Chunks(Vec<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(if self.0.is_empty() {
            None
        } else {
            Some(Ok(Frame::data(self.0.remove(0))))
        })
    }
}

/// A backend that reads the whole body, logs it, and answers with `respond`.
fn backend<B>(
    log: Log,
    respond: fn(usize) -> Response<()>,
) -> impl tower::Service<
    Request<B>,
    Response = Response<()>,
    Error = buttress_core::BoxError,
    Future = impl Send,
> + Clone
+ Send
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<buttress_core::BoxError>,
{
    service_fn(move |req: Request<B>| {
        let log = log.clone();
        async move {
            let deadline_left = req.extensions().get::<Deadline>().map(|d| d.remaining());
            let grpc_timeout = req
                .headers()
                .get("grpc-timeout")
                .map(|v| v.to_str().unwrap().to_owned());
            let at = Instant::now();
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(Into::into)?
                .to_bytes();
            let n = {
                let mut l = log.lock().unwrap();
                l.push(Seen {
                    at,
                    body,
                    deadline_left,
                    grpc_timeout,
                });
                l.len()
            };
            Ok(respond(n))
        }
    })
}

fn status(code: u16) -> Response<()> {
    Response::builder().status(code).body(()).unwrap()
}

/// gRPC: every call copied, `grpc-timeout` stamped, a 2 s deadline.
fn grpc_policy() -> RetryPolicy<GrpcClassifier, HttpReplay> {
    RetryPolicy::builder()
        .without_budget()
        .classifier(GrpcClassifier::new())
        .replay(HttpReplay::grpc())
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn http_policy() -> buttress_retry::RetryPolicyBuilder<HttpClassifier, HttpReplay> {
    RetryPolicy::builder()
        .without_budget()
        .classifier(HttpClassifier::new())
        .replay(HttpReplay::new())
}

#[tokio::test(start_paused = true)]
async fn a_post_is_sent_exactly_once() {
    let log = Log::default();
    let policy = http_policy().build().unwrap();
    let svc = RetryLayer::new(policy.clone()).layer(backend(log.clone(), |_| status(503)));
    let post = Request::post("http://svc/pay")
        .body(ReplayBody::new(Full::new(Bytes::from_static(b"{}"))))
        .unwrap();
    assert_eq!(svc.clone().oneshot(post).await.unwrap().status(), 503);
    assert_eq!(log.lock().unwrap().len(), 1);
    // Not copied, so never retried; the 503 still counts as a failure.
    assert_eq!(policy.snapshot().failed_not_retried, 1);

    // With an Idempotency-Key it may be retried.
    log.lock().unwrap().clear();
    let keyed = Request::post("http://svc/pay")
        .header("idempotency-key", "8e03978e")
        .body(ReplayBody::new(Full::new(Bytes::from_static(b"{}"))))
        .unwrap();
    svc.clone().oneshot(keyed).await.unwrap();
    let l = log.lock().unwrap();
    assert_eq!(l.len(), 3);
    assert!(l.iter().all(|s| s.body == "{}"));
}

#[tokio::test(start_paused = true)]
async fn only_retryable_statuses_are_retried() {
    for (code, attempts) in [
        (200, 1),
        (404, 1),
        (500, 1),
        (501, 1),
        (429, 3),
        (502, 3),
        (503, 3),
        (504, 3),
    ] {
        let log = Log::default();
        let policy = http_policy().build().unwrap();
        let svc = RetryLayer::new(policy.clone()).layer(backend(
            log.clone(),
            match code {
                200 => |_| status(200),
                404 => |_| status(404),
                500 => |_| status(500),
                501 => |_| status(501),
                429 => |_| status(429),
                502 => |_| status(502),
                503 => |_| status(503),
                _ => |_| status(504),
            },
        ));
        let res = svc
            .oneshot(
                Request::get("http://svc/")
                    .body(ReplayBody::new(String::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), code);
        assert_eq!(log.lock().unwrap().len(), attempts, "{code}");
        // The classifier judges the response as the backend sent it: a 404
        // is a success, a 500 a failure, a retryable status that is still
        // there after the last attempt a failure after retries.
        let s = policy.snapshot();
        let outcome = match code {
            200 | 404 => s.succeeded_first_try,
            500 | 501 => s.failed_not_retried,
            _ => s.failed_after_retry,
        };
        assert_eq!(outcome, 1, "{code}: {s:?}");
        assert_eq!(s.attempts, attempts as u64, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_cap_is_sent_once_and_whole() {
    let chunks: Vec<Bytes> = (0..8u8).map(|i| Bytes::from(vec![i; 512])).collect();
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();

    // 4 KiB streamed through a 1 KiB cap: sent once, whole.
    let log = Log::default();
    let svc = RetryLayer::new(http_policy().build().unwrap())
        .layer(backend(log.clone(), |_| status(503)));
    let req = Request::put("http://svc/blob")
        .body(ReplayBody::with_cap(Chunks(chunks.clone()), 1024))
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), 503);
    let l = log.lock().unwrap().clone();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].body, whole);

    // A known size over the cap is not even buffered.
    let log = Log::default();
    let svc = RetryLayer::new(http_policy().build().unwrap())
        .layer(backend(log.clone(), |_| status(503)));
    let big = ReplayBody::with_cap(Full::new(Bytes::from(whole.clone())), 1024);
    assert!(big.is_over_cap());
    svc.oneshot(Request::put("http://svc/blob").body(big).unwrap())
        .await
        .unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
    assert_eq!(log.lock().unwrap()[0].body, whole);

    // Under the cap: every attempt gets the whole body.
    let log = Log::default();
    let svc = RetryLayer::new(http_policy().build().unwrap())
        .layer(backend(log.clone(), |_| status(503)));
    let req = Request::put("http://svc/blob")
        .body(ReplayBody::new(Chunks(chunks)))
        .unwrap();
    svc.oneshot(req).await.unwrap();
    let l = log.lock().unwrap();
    assert_eq!(l.len(), 3);
    assert!(l.iter().all(|s| s.body == whole));
}

#[tokio::test(start_paused = true)]
async fn retry_after_replaces_the_backoff_and_is_capped() {
    fn busy(n: usize) -> Response<()> {
        if n == 1 {
            Response::builder()
                .status(503)
                .header("retry-after", "2")
                .body(())
                .unwrap()
        } else {
            status(200)
        }
    }
    for (cap, waited) in [
        (Duration::from_secs(30), Duration::from_secs(2)),
        (Duration::from_millis(700), Duration::from_millis(700)),
    ] {
        let log = Log::default();
        let policy = http_policy().max_retry_after(cap).seed(9).build().unwrap();
        let svc = RetryLayer::new(policy).layer(backend(log.clone(), busy));
        let res = svc
            .oneshot(Request::get("http://svc/").body(String::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let l = log.lock().unwrap();
        assert_eq!(
            l[1].at - l[0].at,
            waited,
            "cap {cap:?}: exactly the server's delay, not jittered"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_pushback_and_grpc_timeout() {
    fn unavailable(n: usize) -> Response<()> {
        let b = Response::builder()
            .status(200)
            .header("content-type", "application/grpc");
        match n {
            1 => b
                .header("grpc-status", "14")
                .header("grpc-retry-pushback-ms", "300"),
            2 => b.header("grpc-status", "8"), // RESOURCE_EXHAUSTED without pushback: final
            _ => b.header("grpc-status", "0"),
        }
        .body(())
        .unwrap()
    }
    let log = Log::default();
    let svc = RetryLayer::new(grpc_policy()).layer(backend(log.clone(), unavailable));
    // gRPC calls are POSTs: HttpReplay::grpc copies them.
    let req = Request::post("http://svc/pkg.Svc/Method")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let res = svc.oneshot(req.map(ReplayBody::new)).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "8");
    let l = log.lock().unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[1].at - l[0].at, Duration::from_millis(300));
    assert_eq!(l[0].grpc_timeout.as_deref(), Some("2000000u"));
    assert_eq!(l[1].grpc_timeout.as_deref(), Some("1700000u"));
    assert_eq!(l[0].deadline_left, Some(Duration::from_secs(2)));
    assert_eq!(l[1].deadline_left, Some(Duration::from_millis(1700)));
}

/// A proxy's 503 in front of a gRPC server carries no `grpc-status`: it is
/// UNAVAILABLE, so it is retried (after the proxy's `Retry-After`).
#[tokio::test(start_paused = true)]
async fn a_proxys_503_before_a_grpc_server_is_retried() {
    fn proxy_then_ok(n: usize) -> Response<()> {
        match n {
            1 => Response::builder()
                .status(503)
                .header("retry-after", "1")
                .body(())
                .unwrap(),
            _ => Response::builder()
                .status(200)
                .header("grpc-status", "0")
                .body(())
                .unwrap(),
        }
    }
    let log = Log::default();
    let policy = RetryPolicy::builder()
        .without_budget()
        .classifier(GrpcClassifier::new())
        .replay(HttpReplay::grpc())
        .build()
        .unwrap();
    let svc = RetryLayer::new(policy).layer(backend(log.clone(), proxy_then_ok));
    let req = Request::post("http://svc/pkg.Svc/Method")
        .body(ReplayBody::new(Full::new(Bytes::from_static(
            b"\0\0\0\0\0",
        ))))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    let l = log.lock().unwrap();
    assert_eq!(l.len(), 2, "one retry");
    assert_eq!(
        l[1].at - l[0].at,
        Duration::from_secs(1),
        "after Retry-After"
    );
}

/// The caller's own `grpc-timeout` is a deadline too: a shorter one than
/// the policy's wins, and each attempt is told the time left of it.
#[tokio::test(start_paused = true)]
async fn a_shorter_incoming_grpc_timeout_wins() {
    fn unavailable(n: usize) -> Response<()> {
        let status = if n == 1 { "14" } else { "0" };
        Response::builder()
            .status(200)
            .header("grpc-status", status)
            .header("grpc-retry-pushback-ms", "30")
            .body(())
            .unwrap()
    }
    let log = Log::default();
    let svc = RetryLayer::new(grpc_policy()).layer(backend(log.clone(), unavailable));
    let call = |timeout: &'static str| {
        Request::post("http://svc/pkg.Svc/Method")
            .header("grpc-timeout", timeout)
            .body(ReplayBody::new(Full::new(Bytes::from_static(
                b"\0\0\0\0\0",
            ))))
            .unwrap()
    };
    let res = svc.clone().oneshot(call("100m")).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    {
        let l = log.lock().unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].grpc_timeout.as_deref(), Some("100000u"));
        assert_eq!(l[1].grpc_timeout.as_deref(), Some("70000000n"));
        assert_eq!(l[0].deadline_left, Some(Duration::from_millis(100)));
    }
    log.lock().unwrap().clear();
    // A longer incoming timeout loses to the policy's 2 s; a malformed one
    // is no deadline and is replaced with a well-formed value.
    for incoming in ["5S", "99999999H", "", "5X", "1 S", "123456789m"] {
        let res = svc.clone().oneshot(call(incoming)).await.unwrap();
        assert_eq!(res.headers()["grpc-status"], "0", "{incoming}");
        let l = std::mem::take(&mut *log.lock().unwrap());
        assert_eq!(
            l[0].grpc_timeout.as_deref(),
            Some("2000000u"),
            "{incoming:?}"
        );
    }
    // A timeout all but spent: no retry past it (the retry would wait 30 ms).
    let res = svc.clone().oneshot(call("1n")).await;
    let seen = std::mem::take(&mut *log.lock().unwrap());
    assert!(seen.len() <= 1, "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| matches!(s.grpc_timeout.as_deref(), Some("0n" | "1n"))),
        "{seen:?} {res:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_earlier_upstream_deadline_wins() {
    let log = Log::default();
    let policy = http_policy()
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let svc = RetryLayer::new(policy).layer(backend(log.clone(), |_| status(200)));
    let mut req = Request::get("http://svc/").body(String::new()).unwrap();
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_secs(1)));
    svc.clone().oneshot(req).await.unwrap();
    assert_eq!(
        log.lock().unwrap()[0].deadline_left,
        Some(Duration::from_secs(1))
    );

    let later = Request::get("http://svc/").body(String::new()).unwrap();
    svc.oneshot(later).await.unwrap();
    assert_eq!(
        log.lock().unwrap()[1].deadline_left,
        Some(Duration::from_secs(10))
    );
}

#[tokio::test(start_paused = true)]
async fn a_copy_continues_a_body_the_first_attempt_left_unread() {
    // The first attempt answers 503 without reading the body; the retry's
    // copy reads it from the start.
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let svc = RetryLayer::new(http_policy().build().unwrap()).layer(service_fn(
        move |req: Request<ReplayBody<Chunks>>| {
            let c = c.clone();
            async move {
                let n = c.lock().unwrap().len();
                if n == 0 {
                    c.lock().unwrap().push(Bytes::new());
                    return Ok::<_, buttress_core::BoxError>(status(503));
                }
                let body = req.into_body().collect().await?.to_bytes();
                c.lock().unwrap().push(body);
                Ok(status(200))
            }
        },
    ));
    let req = Request::put("http://svc/")
        .body(ReplayBody::new(Chunks(vec![
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cd"),
        ])))
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
    assert_eq!(calls.lock().unwrap()[1], "abcd");
}

/// A hedge answering 503 at once does not beat a slower 200: with an HTTP
/// classifier, only a success wins the race; if every attempt fails, the
/// last failure comes back.
#[tokio::test(start_paused = true)]
async fn a_failed_hedge_does_not_win_the_race() {
    use buttress_retry::{HedgeDelay, HedgeLayer, HedgePolicy, RetryBudget};
    // Paused time: the primary's latency, which the hedge (at 10 ms) beats.
    const PRIMARY: Duration = Duration::from_millis(100);
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let hedged = |classify: bool, primary: u16| {
        let calls = Arc::clone(&calls);
        let backend = service_fn(move |_req: Request<()>| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n.is_multiple_of(2) {
                    tokio::time::sleep(PRIMARY).await;
                    Ok::<_, std::io::Error>(status(primary))
                } else {
                    Ok(status(503))
                }
            }
        });
        let budget = RetryBudget::builder()
            .percent(100.0)
            .min_per_second(100)
            .build()
            .unwrap();
        let builder = HedgePolicy::builder()
            .delay(HedgeDelay::Fixed(Duration::from_millis(10)))
            .budget(budget)
            .replay(HttpReplay::new());
        let svc: tower::util::BoxCloneService<Request<()>, Response<()>, std::io::Error> =
            if classify {
                tower::util::BoxCloneService::new(
                    HedgeLayer::new(builder.classifier(HttpClassifier::new()).build().unwrap())
                        .layer(backend),
                )
            } else {
                tower::util::BoxCloneService::new(
                    HedgeLayer::new(builder.build().unwrap()).layer(backend),
                )
            };
        svc
    };
    let get = || Request::get("http://svc/").body(()).unwrap();

    // Without a classifier, any Ok wins: the hedge's 503, at 10 ms.
    let start = Instant::now();
    let res = hedged(false, 200).oneshot(get()).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), start.elapsed()),
        (503, Duration::from_millis(10))
    );

    // With the HTTP classifier, the primary's 200 at 100 ms.
    calls.store(0, std::sync::atomic::Ordering::SeqCst);
    let start = Instant::now();
    let res = hedged(true, 200).oneshot(get()).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), start.elapsed()),
        (200, Duration::from_millis(100))
    );

    // Every attempt fails: the last failure (the primary's 502) comes back.
    calls.store(0, std::sync::atomic::Ordering::SeqCst);
    let res = hedged(true, 502).oneshot(get()).await.unwrap();
    assert_eq!(res.status().as_u16(), 502);
}
