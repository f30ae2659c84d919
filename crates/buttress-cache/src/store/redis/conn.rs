//! What a store talks to: one Redis node, or a Redis Cluster; and how a
//! batch of writes is sent to either.

use std::collections::HashMap;
use std::sync::OnceLock;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// Where a store's commands go.
pub(crate) enum Target {
    /// One node, over a [`ConnectionManager`] made on first use.
    Node {
        client: redis::Client,
        manager: ConnectionManagerConfig,
        conn: OnceLock<ConnectionManager>,
    },
    /// A Redis Cluster, over redis-rs's async cluster connection (made on
    /// first use); `nodes` are the seed nodes, which the invalidation
    /// listener subscribes through.
    Cluster {
        client: ClusterClient,
        conn: tokio::sync::OnceCell<ClusterConnection>,
        nodes: Box<[redis::Client]>,
    },
}

impl Target {
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    /// The connection, made the first time a command needs it: a node's
    /// lazily (it connects in the background), a cluster's by asking the
    /// seed nodes for the slot map (within the caller's timeout; a caller
    /// that gives up leaves it to the next).
    pub(crate) async fn connection(&self) -> RedisResult<Conn> {
        match self {
            Self::Node {
                client,
                manager,
                conn,
            } => {
                if let Some(conn) = conn.get() {
                    return Ok(Conn::Node(conn.clone()));
                }
                let made =
                    ConnectionManager::new_lazy_with_config(client.clone(), manager.clone())?;
                Ok(Conn::Node(conn.get_or_init(|| made).clone()))
            }
            Self::Cluster { client, conn, .. } => conn
                .get_or_try_init(|| client.get_async_connection())
                .await
                .map(|c| Conn::Cluster(c.clone())),
        }
    }

    /// The client the invalidation listener subscribes with on its
    /// `attempt`-th try: the node, or the seed nodes in turn (a `PUBLISH`
    /// on a cluster reaches the subscribers of every node).
    pub(crate) fn pubsub_client(&self, attempt: usize) -> &redis::Client {
        match self {
            Self::Node { client, .. } => client,
            Self::Cluster { nodes, .. } => &nodes[attempt % nodes.len()],
        }
    }
}

/// A connection to either target.
#[derive(Clone)]
pub(crate) enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Writes (and their announcements) sent together. On one node: one
/// pipeline, each announcement right after its write. On a cluster a
/// pipeline must stay within one hash slot: one pipeline per slot, sent
/// concurrently, and the announcements (all on the channel's slot) in
/// one more pipeline once every write is acknowledged, so that no
/// instance hears of a write before Redis holds it.
pub(crate) struct Batch {
    cluster: bool,
    writes: HashMap<Option<Slot>, Pipeline>,
    announcements: Pipeline,
}

impl Batch {
    pub(crate) fn new(cluster: bool) -> Self {
        Self {
            cluster,
            writes: HashMap::new(),
            announcements: redis::pipe(),
        }
    }

    /// The pipeline for commands on `key`.
    pub(crate) fn on(&mut self, key: &[u8]) -> &mut Pipeline {
        let slot = self.cluster.then(|| Slot::for_key(key));
        self.writes.entry(slot).or_insert_with(redis::pipe)
    }

    /// The pipeline for an announcement of a change to `key`.
    pub(crate) fn announce_on(&mut self, key: &[u8]) -> &mut Pipeline {
        if self.cluster {
            &mut self.announcements
        } else {
            self.on(key)
        }
    }

    pub(crate) async fn send(self, conn: Conn) -> RedisResult<()> {
        let Self {
            writes,
            announcements,
            ..
        } = self;
        try_join_all(writes.into_values().map(|pipe| {
            let mut conn = conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        }))
        .await?;
        if !announcements.is_empty() {
            announcements.query_async::<()>(&mut conn.clone()).await?;
        }
        Ok(())
    }
}
