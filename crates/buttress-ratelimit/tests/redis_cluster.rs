//! The shared limiter on a three-master Redis Cluster.

mod common;

use std::time::Duration;

use buttress_ratelimit::{Quota, RateLimiter};
use common::RedisCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_on_every_master_are_limited_exactly() {
    let cluster = RedisCluster::start();
    let quota = Quota::new(3, Duration::from_secs(60)).unwrap();
    let a = RateLimiter::<String>::builder(quota)
        .name("cluster-a")
        .redis_cluster(cluster.clients(), "rl-cluster")
        .build()
        .unwrap();
    let b = RateLimiter::<String>::builder(quota)
        .name("cluster-b")
        .redis_cluster(cluster.clients(), "rl-cluster")
        .build()
        .unwrap();
    // Twenty tenants spread over the three masters' slots.
    for t in 0..20 {
        let key = format!("tenant-{t}");
        let mut admitted = 0;
        for i in 0..5 {
            let limiter = if i % 2 == 0 { &a } else { &b };
            admitted += usize::from(limiter.check(&key).await.is_allowed());
        }
        assert_eq!(admitted, 3, "{key}: two instances share one burst of 3");
    }
    for l in [&a, &b] {
        let s = l.snapshot();
        assert_eq!((s.redis_errors, s.fallbacks), (0, 0), "{s:?}");
    }
    assert_eq!(a.snapshot().allowed + b.snapshot().allowed, 60);
}

#[test]
fn a_cluster_needs_a_node() {
    let err = RateLimiter::<String>::builder(Quota::per_second(1).unwrap())
        .redis_cluster(Vec::new(), "x")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "redis_cluster");
}
