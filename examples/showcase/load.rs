//! The load: `clients` tasks, each sending at a fixed pace, every request
//! in its own task so a hanging backend does not slow the senders down
//! (an open loop: users keep arriving whatever the latency).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tower::ServiceExt;

use crate::measure::{Outcome, Recorder, Sample};
use crate::scenario::Timeline;
use crate::variants::Svc;

/// Drives `service` for the whole scenario, then waits for the last
/// answers.
pub(crate) async fn drive(service: Svc, timeline: Timeline, recorder: Arc<Recorder>) {
    let scenario = timeline.scenario();
    let clients = scenario.clients.max(1);
    let period = Duration::from_secs_f64(f64::from(clients) / f64::from(scenario.rate));
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        // Stagger the clients so the requests are evenly spread.
        let first = timeline.start_instant() + period * client / clients;
        tasks.spawn(send(
            service.clone(),
            timeline.clone(),
            Arc::clone(&recorder),
            first,
            period,
        ));
    }
    tasks.join_all().await;
}

async fn send(
    service: Svc,
    timeline: Timeline,
    recorder: Arc<Recorder>,
    first: Instant,
    period: Duration,
) {
    let end = timeline.scenario().duration();
    let mut ticks = interval_at(first, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut requests = JoinSet::new();
    let mut id = 0;
    loop {
        if timeline.offset(ticks.tick().await) >= end {
            break;
        }
        id += 1;
        let service = service.clone();
        let recorder = Arc::clone(&recorder);
        let timeline = timeline.clone();
        recorder.start();
        requests.spawn(async move {
            let sent = Instant::now();
            let phase = timeline.scenario().phase_at(timeline.offset(sent));
            let result = service.oneshot(id).await;
            recorder.finish(Sample {
                phase,
                latency: sent.elapsed(),
                outcome: Outcome::of(&result),
            });
        });
        while requests.try_join_next().is_some() {}
    }
    requests.join_all().await;
}
