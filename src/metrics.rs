//! The member's Prometheus metrics: one [`Registry`] per member (never the
//! process-wide default one, so two members in one process do not collide),
//! created at boot (`node.rs`) and handed to the actors that feed it.
//!
//! Names, types, labels and meanings are etcd 3.4's where they match, so existing
//! dashboards and alert rules work; `stead_*` metrics show what etcd cannot (the
//! actors). A metric is registered only once something real feeds it: nothing
//! here is a placeholder.
//!
//! Who feeds what:
//! - `RaftActor`: `etcd_server_has_leader`, `…_is_leader`, `…_is_learner` (from
//!   the member table the store sends it),
//!   `…_leader_changes_seen_total`, `…_proposals_committed_total`,
//!   `…_heartbeat_send_failures_total` (a heartbeat this leader sent more than
//!   two heartbeat intervals after the last one to that peer).
//! - `StoreActor`: `…_proposals_applied_total`, `…_slow_apply_total` (an entry
//!   that took over `SLOW_APPLY` to apply), `etcd_disk_backend_commit_duration_seconds`,
//!   `etcd_mvcc_{put,delete,range,txn}_total`, `etcd_debugging_mvcc_keys_total`,
//!   `…_current_revision`, `…_compact_revision`.
//! - The member's start (`node`): `etcd_server_id{server_id}`,
//!   `…_version{server_version}`, `…_quota_backend_bytes`.
//! - `GET /health`: `etcd_server_health_success`, `…_health_failures`.
//! - `ClientService`: `…_proposals_pending`, `…_proposals_failed_total`,
//!   `…_slow_read_indexes_total` (a ReadIndex round over 500 ms or without a
//!   leader), `…_read_indexes_failed_total` (a linearizable read that got no
//!   read index in time); at each
//!   scrape it asks the store for the backend size (`etcd_mvcc_db_total_size_in_bytes`
//!   and, as etcd 3.4 also names it, `etcd_debugging_mvcc_db_total_size_in_bytes`)
//!   and the watch hub for its figures (`etcd_debugging_mvcc_watcher_total`,
//!   `…_watch_stream_total`, `…_slow_watcher_total` (watchers catching up),
//!   `…_events_total`).
//! - The WAL writer thread: `etcd_disk_wal_fsync_duration_seconds`.
//! - `RaftActor`: also `etcd_network_peer_round_trip_time_seconds{To}`, from a
//!   heartbeat's send to its answer (the leader's view of each follower).
//! - Each `PeerActor`: `etcd_network_peer_sent_bytes_total{To}`,
//!   `…_peer_sent_failures_total{To}` (messages dropped unsent: the link down or
//!   its queue full; etcd's `etcdMembersDown` alert reads its rate), and for its
//!   outbound connection `…_active_peers{Local,Remote}` and
//!   `…_disconnected_peers_total{Local,Remote}`.
//! - `LeaseActor`: `etcd_debugging_lease_{granted,revoked}_total` (as applied on
//!   this member), `…_renewed_total` (renewals this member led) and
//!   `etcd_debugging_server_lease_expired_total` (revokes of expired leases this
//!   member led, once applied).
//! - gRPC and the JSON gateway: `grpc_server_{started,handled}_total` and
//!   `grpc_server_handling_seconds` per unary RPC (etcd's gateway calls its gRPC
//!   server, so etcd counts gateway requests there too; etcd exports the
//!   histogram with `--metrics=extensive`, stead always).
//! - The gRPC codec and the JSON gateway (`net::grpc_codec`):
//!   `etcd_network_client_grpc_{received,sent}_bytes_total`, each message's
//!   protobuf bytes.
//! - The prometheus crate's process collector: `process_*` (CPU, resident
//!   memory, open files, start time), read at each scrape.
//! - `RaftActor`: `stead_raft_log_entries`, the in-memory log's length.
//! - Every actor (raft, store, wal, lease, watch, auth, and one `peer-<id>` per
//!   peer link): `stead_actor_messages_total{actor,message}`,
//!   `stead_actor_handle_seconds{actor}`, and from a probe each actor sends
//!   itself every second (`MailboxProbe`): `stead_actor_mailbox_depth{actor}`
//!   (the messages that were ahead of the probe: the queue it joined) and
//!   `stead_actor_mailbox_wait_seconds{actor}` (how long it waited: how long the
//!   actor kept its mailbox blocked). Actors are never restarted: a failing one
//!   stops the member (fail-stop), so there is no restart count to report.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::etcdserverpb as pb;
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramTimer, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// A member's metrics: a cheap handle (clone it freely) to one registry.
#[derive(Clone)]
pub struct Metrics(Arc<MetricSet>);

impl Deref for Metrics {
    type Target = MetricSet;
    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The metrics themselves; fields are the handles their feeders update.
pub struct MetricSet {
    registry: Registry,
    // etcd_server_*
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub is_learner: IntGauge,
    pub leader_changes_seen: IntCounter,
    pub heartbeat_send_failures: IntCounter,
    pub slow_read_indexes: IntCounter,
    pub read_indexes_failed: IntCounter,
    /// etcd's is a gauge set to the commit index.
    pub proposals_committed: IntGauge,
    /// etcd's is a gauge set to the applied index.
    pub proposals_applied: IntGauge,
    pub proposals_pending: IntGauge,
    pub slow_apply: IntCounter,
    pub lease_granted: IntCounter,
    pub lease_revoked: IntCounter,
    pub lease_renewed: IntCounter,
    pub lease_expired: IntCounter,
    pub proposals_failed: IntCounter,
    server_id: IntGaugeVec,
    server_version: IntGaugeVec,
    quota_backend_bytes: IntGauge,
    health_success: IntCounter,
    health_failures: IntCounter,
    // etcd_disk_*
    pub wal_fsync_seconds: Histogram,
    pub backend_commit_seconds: Histogram,
    // etcd_mvcc_* and etcd_debugging_mvcc_*
    db_total_size_bytes: IntGauge,
    db_total_size_bytes_debugging: IntGauge,
    pub mvcc_put: IntCounter,
    pub mvcc_delete: IntCounter,
    pub mvcc_range: IntCounter,
    pub mvcc_txn: IntCounter,
    pub keys_total: IntGauge,
    pub current_revision: IntGauge,
    pub compact_revision: IntGauge,
    watcher_total: IntGauge,
    watch_stream_total: IntGauge,
    slow_watchers: IntGauge,
    watch_events: IntCounter,
    // etcd_network_*, labelled by the remote member's hex id
    pub peer_sent_bytes: IntCounterVec,
    pub peer_received_bytes: IntCounterVec,
    pub peer_sent_failures: IntCounterVec,
    pub active_peers: IntGaugeVec,
    pub disconnected_peers: IntCounterVec,
    pub peer_round_trip_seconds: HistogramVec,
    // go-grpc-prometheus's, as etcd exports them
    grpc_started: IntCounterVec,
    grpc_handled: IntCounterVec,
    grpc_handling_seconds: HistogramVec,
    // stead's own
    raft_log_entries: IntGauge,
    actor_messages: IntCounterVec,
    actor_handle_seconds: HistogramVec,
    actor_mailbox_depth: IntGaugeVec,
    actor_mailbox_wait_seconds: HistogramVec,
    /// Per thread name: CPU, run-queue wait, context switches (read at scrape).
    threads: crate::threads::ThreadMetrics,
}

/// etcd's buckets for disk latencies: 1 ms doubling up to ~8 s.
fn disk_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 14).expect("valid buckets")
}

/// Handling times: 1 µs to ~4 s, ×4 each.
fn handle_buckets() -> Vec<f64> {
    exponential_buckets(0.000_001, 4.0, 12).expect("valid buckets")
}

impl Metrics {
    /// A fresh registry with every metric in it.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        macro_rules! metric {
            ($ty:ty, $opts:expr) => {{
                let m = <$ty>::with_opts($opts).expect("valid metric");
                reg(Box::new(m.clone()));
                m
            }};
        }
        macro_rules! vec_metric {
            ($ty:ty, $opts:expr, $labels:expr) => {{
                let m = <$ty>::new($opts, $labels).expect("valid metric");
                reg(Box::new(m.clone()));
                m
            }};
        }
        let o = |ns: &str, sub: &str, name: &str, help: &str| Opts::new(name, help).namespace(ns).subsystem(sub);
        let h = |ns: &str, sub: &str, name: &str, help: &str, buckets: Vec<f64>| {
            HistogramOpts::new(name, help).namespace(ns).subsystem(sub).buckets(buckets)
        };
        reg(Box::new(crate::net::grpc_codec::RECEIVED_BYTES.clone()));
        reg(Box::new(crate::net::grpc_codec::SENT_BYTES.clone()));
        // `process_*`: CPU, resident memory, open files, start time (read at
        // each scrape), as every Go server exports them.
        reg(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        let set = MetricSet {
            has_leader: metric!(IntGauge, o("etcd", "server", "has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")),
            is_leader: metric!(IntGauge, o("etcd", "server", "is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")),
            is_learner: metric!(IntGauge, o("etcd", "server", "is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.")),
            leader_changes_seen: metric!(IntCounter, o("etcd", "server", "leader_changes_seen_total", "The number of leader changes seen.")),
            slow_read_indexes: metric!(IntCounter, o("etcd", "server", "slow_read_indexes_total", "The total number of pending read indexes not in sync with leader's or timed out read index requests.")),
            read_indexes_failed: metric!(IntCounter, o("etcd", "server", "read_indexes_failed_total", "The total number of failed read indexes seen.")),
            heartbeat_send_failures: metric!(IntCounter, o("etcd", "server", "heartbeat_send_failures_total", "The total number of leader heartbeat send failures (likely overloaded from slow disk).")),
            proposals_committed: metric!(IntGauge, o("etcd", "server", "proposals_committed_total", "The total number of consensus proposals committed.")),
            proposals_applied: metric!(IntGauge, o("etcd", "server", "proposals_applied_total", "The total number of consensus proposals applied.")),
            proposals_pending: metric!(IntGauge, o("etcd", "server", "proposals_pending", "The current number of pending proposals to commit.")),
            slow_apply: metric!(IntCounter, o("etcd", "server", "slow_apply_total", "The total number of slow apply requests (likely overloaded from slow disk).")),
            lease_granted: metric!(IntCounter, o("etcd_debugging", "lease", "granted_total", "The total number of granted leases.")),
            lease_revoked: metric!(IntCounter, o("etcd_debugging", "lease", "revoked_total", "The total number of revoked leases.")),
            lease_renewed: metric!(IntCounter, o("etcd_debugging", "lease", "renewed_total", "The number of renewed leases seen by the leader.")),
            lease_expired: metric!(IntCounter, o("etcd_debugging", "server", "lease_expired_total", "The total number of expired leases.")),
            proposals_failed: metric!(IntCounter, o("etcd", "server", "proposals_failed_total", "The total number of failed proposals seen.")),
            server_id: vec_metric!(
                IntGaugeVec,
                o("etcd", "server", "id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID."),
                &["server_id"]
            ),
            server_version: vec_metric!(
                IntGaugeVec,
                o("etcd", "server", "version", "Which version is running. 1 for 'server_version' label with current version."),
                &["server_version"]
            ),
            quota_backend_bytes: metric!(IntGauge, o("etcd", "server", "quota_backend_bytes", "Current backend storage quota size in bytes.")),
            health_success: metric!(IntCounter, o("etcd", "server", "health_success", "The total number of successful health checks")),
            health_failures: metric!(IntCounter, o("etcd", "server", "health_failures", "The total number of failed health checks")),
            wal_fsync_seconds: metric!(Histogram, h("etcd", "disk", "wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.", disk_buckets())),
            backend_commit_seconds: metric!(Histogram, h("etcd", "disk", "backend_commit_duration_seconds", "The latency distributions of commit called by backend.", disk_buckets())),
            db_total_size_bytes: metric!(IntGauge, o("etcd", "mvcc", "db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")),
            // etcd 3.4 exports both names; its own Grafana dashboard reads this one.
            db_total_size_bytes_debugging: metric!(IntGauge, o("etcd_debugging", "mvcc", "db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")),
            mvcc_put: metric!(IntCounter, o("etcd", "mvcc", "put_total", "Total number of puts seen by this member.")),
            mvcc_delete: metric!(IntCounter, o("etcd", "mvcc", "delete_total", "Total number of deletes seen by this member.")),
            mvcc_range: metric!(IntCounter, o("etcd", "mvcc", "range_total", "Total number of ranges seen by this member.")),
            mvcc_txn: metric!(IntCounter, o("etcd", "mvcc", "txn_total", "Total number of txns seen by this member.")),
            keys_total: metric!(IntGauge, o("etcd_debugging", "mvcc", "keys_total", "Total number of keys.")),
            current_revision: metric!(IntGauge, o("etcd_debugging", "mvcc", "current_revision", "The current revision of store.")),
            compact_revision: metric!(IntGauge, o("etcd_debugging", "mvcc", "compact_revision", "The revision of the last compaction in store.")),
            watcher_total: metric!(IntGauge, o("etcd_debugging", "mvcc", "watcher_total", "Total number of watchers.")),
            watch_stream_total: metric!(IntGauge, o("etcd_debugging", "mvcc", "watch_stream_total", "Total number of watch streams.")),
            slow_watchers: metric!(IntGauge, o("etcd_debugging", "mvcc", "slow_watcher_total", "Total number of unsynced slow watchers.")),
            watch_events: metric!(IntCounter, o("etcd_debugging", "mvcc", "events_total", "Total number of events sent by this member.")),
            peer_sent_bytes: vec_metric!(
                IntCounterVec,
                o("etcd", "network", "peer_sent_bytes_total", "The total number of bytes sent to peers."),
                &["To"]
            ),
            peer_received_bytes: vec_metric!(
                IntCounterVec,
                o("etcd", "network", "peer_received_bytes_total", "The total number of bytes received from peers."),
                &["From"]
            ),
            peer_sent_failures: vec_metric!(
                IntCounterVec,
                o("etcd", "network", "peer_sent_failures_total", "The total number of send failures from peers."),
                &["To"]
            ),
            active_peers: vec_metric!(
                IntGaugeVec,
                o("etcd", "network", "active_peers", "The current number of active peer connections."),
                &["Local", "Remote"]
            ),
            disconnected_peers: vec_metric!(
                IntCounterVec,
                o("etcd", "network", "disconnected_peers_total", "The total number of disconnected peers."),
                &["Local", "Remote"]
            ),
            peer_round_trip_seconds: vec_metric!(
                HistogramVec,
                h(
                    "etcd",
                    "network",
                    "peer_round_trip_time_seconds",
                    "Round-Trip-Time histogram between peers (here: a leader's heartbeat to its answer).",
                    exponential_buckets(0.0001, 2.0, 14).expect("valid buckets")
                ),
                &["To"]
            ),
            grpc_started: vec_metric!(
                IntCounterVec,
                Opts::new("grpc_server_started_total", "Total number of RPCs started on the server."),
                &["grpc_method", "grpc_service", "grpc_type"]
            ),
            grpc_handled: vec_metric!(
                IntCounterVec,
                Opts::new("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure."),
                &["grpc_code", "grpc_method", "grpc_service", "grpc_type"]
            ),
            grpc_handling_seconds: vec_metric!(
                HistogramVec,
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server."
                )
                .buckets(exponential_buckets(0.0001, 2.0, 18).expect("valid buckets")),
                &["grpc_method", "grpc_service", "grpc_type"]
            ),
            raft_log_entries: metric!(
                IntGauge,
                o("stead", "raft", "log_entries", "Entries the in-memory Raft log holds (the tail kept for lagging followers, and entries not yet flushed to the backend).")
            ),
            actor_messages: vec_metric!(
                IntCounterVec,
                o("stead", "actor", "messages_total", "Messages an actor has handled, by actor and message type."),
                &["actor", "message"]
            ),
            actor_handle_seconds: vec_metric!(
                HistogramVec,
                h("stead", "actor", "handle_seconds", "Time an actor spent in its message handlers (the synchronous part).", handle_buckets()),
                &["actor"]
            ),
            actor_mailbox_depth: vec_metric!(
                IntGaugeVec,
                o("stead", "actor", "mailbox_depth", "Messages ahead of the actor's last mailbox probe (sampled every second)."),
                &["actor"]
            ),
            actor_mailbox_wait_seconds: vec_metric!(
                HistogramVec,
                h("stead", "actor", "mailbox_wait_seconds", "Time the actor's mailbox probe waited behind other messages.", handle_buckets()),
                &["actor"]
            ),
            threads: crate::threads::ThreadMetrics::new(&registry).expect("metric names are unique"),
            registry,
        };
        Metrics(Arc::new(set))
    }

    /// Who this member is: its id (hex) and the etcd version it speaks, and
    /// its backend quota (left at 0 when quotas are off, as etcd leaves it).
    pub fn describe_member(&self, member_id: u64, version: &str, quota_bytes: Option<u64>) {
        self.server_id.with_label_values(&[format!("{member_id:x}").as_str()]).set(1);
        self.server_version.with_label_values(&[version]).set(1);
        if let Some(bytes) = quota_bytes {
            self.quota_backend_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// One answer of `GET /health`.
    pub fn count_health_check(&self, healthy: bool) {
        if healthy {
            self.health_success.inc();
        } else {
            self.health_failures.inc();
        }
    }

    /// The watch hub's figures: its gauges, and its event count (a total the
    /// hub keeps, so the counter moves by what it grew since the last scrape).
    pub fn set_watch_hub(&self, stats: &crate::actors::watch::HubStats) {
        self.watcher_total.set(i64::try_from(stats.watchers).unwrap_or(i64::MAX));
        self.watch_stream_total.set(i64::try_from(stats.streams).unwrap_or(i64::MAX));
        self.slow_watchers.set(i64::try_from(stats.unsynced).unwrap_or(i64::MAX));
        self.watch_events.inc_by(stats.events_sent.saturating_sub(self.watch_events.get()));
    }

    /// The backend's size, under etcd's two names for it.
    pub fn set_db_total_size(&self, bytes: u64) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.db_total_size_bytes.set(bytes);
        self.db_total_size_bytes_debugging.set(bytes);
    }

    /// The backend's size as last set.
    pub fn db_total_size(&self) -> u64 {
        u64::try_from(self.db_total_size_bytes.get()).unwrap_or(0)
    }

    /// Everything, in Prometheus' text format. Blocking: the process
    /// collector reads `/proc` (call it off any actor's loop).
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding our own well-formed families into memory cannot fail.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Reads the member's threads into the `stead_thread_*` metrics. Blocking:
    /// it reads `/proc` (call it off any actor's loop).
    pub fn refresh_threads(&self) {
        self.threads.refresh();
    }

    /// The instruments of one actor (`actor` is its label value).
    pub fn actor(&self, actor: impl Into<Arc<str>>) -> ActorMetrics {
        let actor: Arc<str> = actor.into();
        ActorMetrics {
            seconds: self.actor_handle_seconds.with_label_values(&[&*actor]),
            depth: self.actor_mailbox_depth.with_label_values(&[&*actor]),
            wait: self.actor_mailbox_wait_seconds.with_label_values(&[&*actor]),
            messages: self.actor_messages.clone(),
            handled: Arc::new(AtomicU64::new(0)),
            actor,
        }
    }

    /// A unary RPC started (`service` as etcd names it, e.g. `etcdserverpb.KV`).
    pub fn rpc_started(&self, rpc: Rpc) {
        self.grpc_started.with_label_values(&[rpc.method, rpc.service, "unary"]).inc();
    }

    /// A unary RPC started at `started` finished with `code` (gRPC's code name:
    /// `OK`, `InvalidArgument`, …).
    pub fn rpc_handled(&self, rpc: Rpc, code: &str, started: Instant) {
        self.grpc_handled.with_label_values(&[code, rpc.method, rpc.service, "unary"]).inc();
        let seconds = self.grpc_handling_seconds.with_label_values(&[rpc.method, rpc.service, "unary"]);
        observe(&seconds, started.elapsed());
    }

    /// The in-memory Raft log's length (`stead_raft_log_entries`).
    pub fn set_raft_log_entries(&self, entries: u64) {
        self.raft_log_entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// A proposal accepted by Raft and waiting to be applied: counted in
    /// `etcd_server_proposals_pending` until the guard drops.
    pub fn pending_proposal(&self) -> GaugeGuard {
        self.proposals_pending.inc();
        GaugeGuard(self.proposals_pending.clone())
    }

    /// Counts one mvcc operation mix as etcd's `metricsTxnWrite.End` does.
    pub fn count_mvcc(&self, ops: MvccOps) {
        self.mvcc_put.inc_by(ops.puts);
        self.mvcc_delete.inc_by(ops.deletes);
        self.mvcc_range.inc_by(ops.ranges);
        if ops.puts + ops.deletes + ops.ranges > 1 {
            self.mvcc_txn.inc();
        }
    }
}

/// Holds one unit of a gauge; gives it back when dropped.
pub struct GaugeGuard(IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// gRPC's name for a status code number, as Go's `codes.Code.String()` spells it
/// (the `grpc_code` label).
pub fn grpc_code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code).ok().and_then(|c| NAMES.get(c)).copied().unwrap_or("Unknown")
}

/// etcd's unary RPCs (`service`, `method`), the ones `grpc_server_*` counts; a
/// request for anything else is not counted (an arbitrary path must not become a
/// label value). Streams (Watch, LeaseKeepAlive, Snapshot) are not counted yet.
pub fn etcd_unary_rpc(path: &str) -> Option<Rpc> {
    const UNARY: &[(&str, &[&str])] = &[
        ("etcdserverpb.KV", &["Range", "Put", "DeleteRange", "Txn", "Compact"]),
        ("etcdserverpb.Lease", &["LeaseGrant", "LeaseRevoke", "LeaseTimeToLive", "LeaseLeases"]),
        ("etcdserverpb.Cluster", &["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"]),
        ("etcdserverpb.Maintenance", &["Alarm", "Status", "Defragment", "Hash", "HashKV", "MoveLeader"]),
        (
            "etcdserverpb.Auth",
            &[
                "AuthEnable",
                "AuthDisable",
                "Authenticate",
                "UserAdd",
                "UserGet",
                "UserList",
                "UserDelete",
                "UserChangePassword",
                "UserGrantRole",
                "UserRevokeRole",
                "RoleAdd",
                "RoleGet",
                "RoleList",
                "RoleDelete",
                "RoleGrantPermission",
                "RoleRevokePermission",
            ],
        ),
    ];
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let (service, methods) = UNARY.iter().find(|(s, _)| *s == service)?;
    let method = methods.iter().find(|m| **m == method)?;
    Some(Rpc { service, method })
}

/// An RPC's labels.
#[derive(Debug, Clone, Copy)]
pub struct Rpc {
    pub service: &'static str,
    pub method: &'static str,
}

/// The mvcc operations one request did, as etcd counts them: each range (a Range
/// request, each compare of a txn, the read behind `prev_kv`), put and delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MvccOps {
    pub puts: u64,
    pub deletes: u64,
    pub ranges: u64,
}

impl MvccOps {
    /// A Range request (or a read-only txn's range).
    pub fn range() -> MvccOps {
        MvccOps { ranges: 1, ..Default::default() }
    }

    /// A put: the write, and the read behind `prev_kv` / `ignore_value` / `ignore_lease`.
    pub fn put(p: &pb::PutRequest) -> MvccOps {
        MvccOps { puts: 1, deletes: 0, ranges: u64::from(p.prev_kv || p.ignore_value || p.ignore_lease) }
    }

    /// A delete: the write, and the read behind `prev_kv`.
    pub fn delete(d: &pb::DeleteRangeRequest) -> MvccOps {
        MvccOps { puts: 0, deletes: 1, ranges: u64::from(d.prev_kv) }
    }

    /// A txn that ran (`r` is its answer): one range per compare on the path
    /// taken, and the operations of the branches that ran.
    pub fn txn(t: &pb::TxnRequest, r: &pb::TxnResponse) -> MvccOps {
        use pb::{request_op::Request as Op, response_op::Response as Resp};
        let mut ops = MvccOps { ranges: t.compare.len() as u64, ..Default::default() };
        let branch = if r.succeeded { &t.success } else { &t.failure };
        for (op, resp) in branch.iter().zip(&r.responses) {
            let more = match (&op.request, &resp.response) {
                (Some(Op::RequestRange(_)), _) => MvccOps::range(),
                (Some(Op::RequestPut(p)), _) => MvccOps::put(p),
                (Some(Op::RequestDeleteRange(d)), _) => MvccOps::delete(d),
                (Some(Op::RequestTxn(nt)), Some(Resp::ResponseTxn(nr))) => MvccOps::txn(nt, nr),
                _ => MvccOps::default(),
            };
            ops.puts += more.puts;
            ops.deletes += more.deletes;
            ops.ranges += more.ranges;
        }
        ops
    }
}

/// One actor's instruments. Start each handler with `let _t =
/// self.metrics.handling("Message");`: it counts the message, and the returned
/// timer observes the handling time when it drops.
#[derive(Clone)]
pub struct ActorMetrics {
    actor: Arc<str>,
    messages: IntCounterVec,
    seconds: Histogram,
    depth: IntGauge,
    wait: Histogram,
    /// Every message handled so far (the probe's yardstick).
    handled: Arc<AtomicU64>,
}

/// etcd's `--experimental-warning-apply-duration` default: an apply, or a client
/// request, slower than this is logged (and an apply counted as slow).
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// How often each actor probes its own mailbox.
pub const MAILBOX_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A probe an actor sends itself: when it comes out of the mailbox, the
/// messages handled since it went in were the queue ahead of it.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct MailboxProbe {
    sent_at: Instant,
    handled_before: u64,
}

impl ActorMetrics {
    /// Instruments not registered anywhere (an actor built without a member's
    /// metrics, as in unit tests).
    pub fn detached(actor: &'static str) -> ActorMetrics {
        Metrics::new().actor(actor)
    }

    pub fn handling(&self, message: &'static str) -> HistogramTimer {
        self.messages.with_label_values(&[&*self.actor, message]).inc();
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.seconds.start_timer()
    }

    /// A probe to send into this actor's own mailbox now.
    pub fn probe(&self) -> MailboxProbe {
        MailboxProbe { sent_at: Instant::now(), handled_before: self.handled.load(Ordering::Relaxed) }
    }

    /// The probe came out of the mailbox: record what it waited behind.
    pub fn probed(&self, probe: MailboxProbe) {
        let ahead = self.handled.load(Ordering::Relaxed).saturating_sub(probe.handled_before);
        self.depth.set(i64::try_from(ahead).unwrap_or(i64::MAX));
        observe(&self.wait, probe.sent_at.elapsed());
    }
}

/// Starts an actor's mailbox probe: every `MAILBOX_PROBE_INTERVAL` it sends
/// itself a `MailboxProbe` (see [`ActorMetrics::probed`]). The timer keeps the
/// actor alive when its last address goes: only for actors that live as long
/// as the member (peer links are probed by the Raft actor that owns them).
pub fn start_mailbox_probe<A>(ctx: &mut actix::Context<A>, instruments: fn(&A) -> &ActorMetrics)
where
    A: actix::Actor<Context = actix::Context<A>> + actix::Handler<MailboxProbe>,
{
    use actix::AsyncContext;
    ctx.run_interval(MAILBOX_PROBE_INTERVAL, move |act, ctx| {
        ctx.address().do_send(instruments(act).probe());
    });
}

/// The `MailboxProbe` handler of an actor whose instruments are in `$field`.
#[macro_export]
macro_rules! mailbox_probe_handler {
    ($actor:ty, $field:ident) => {
        impl actix::Handler<$crate::metrics::MailboxProbe> for $actor {
            type Result = ();
            fn handle(&mut self, probe: $crate::metrics::MailboxProbe, _: &mut actix::Context<Self>) {
                self.$field.probed(probe);
            }
        }
    };
}

impl std::fmt::Debug for ActorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActorMetrics({})", self.actor)
    }
}

/// Observes a duration into a histogram in seconds.
pub fn observe(h: &Histogram, d: Duration) {
    h.observe(d.as_secs_f64());
}

/// The value of an unlabelled sample in `text` (the exposition format), for tests
/// and tools: `sample(text, "etcd_server_has_leader")`.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_etcd_names_and_types() {
        let m = Metrics::new();
        m.has_leader.set(1);
        m.is_leader.set(1);
        m.leader_changes_seen.inc();
        observe(&m.wal_fsync_seconds, Duration::from_micros(1500));
        m.count_mvcc(MvccOps { puts: 1, ..Default::default() });
        m.count_mvcc(MvccOps { puts: 2, ranges: 1, deletes: 0 });
        m.rpc_started(Rpc { service: "etcdserverpb.KV", method: "Put" });
        m.rpc_handled(Rpc { service: "etcdserverpb.KV", method: "Put" }, "OK", Instant::now());
        let text = m.encode();
        assert!(text.contains("# TYPE etcd_server_has_leader gauge"), "{text}");
        assert!(text.contains("# TYPE etcd_server_leader_changes_seen_total counter"), "{text}");
        assert!(text.contains("# TYPE etcd_disk_wal_fsync_duration_seconds histogram"), "{text}");
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 0"), "{text}");
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 1"), "{text}");
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 1"), "{text}");
        assert!(
            text.contains(
                "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1"
            ),
            "{text}"
        );
        assert_eq!(sample(&text, "etcd_server_has_leader"), Some(1.0));
        assert_eq!(sample(&text, "etcd_server_is_leader"), Some(1.0));
        assert_eq!(sample(&text, "etcd_disk_wal_fsync_duration_seconds_count"), Some(1.0));
        assert_eq!(sample(&text, "etcd_mvcc_put_total"), Some(3.0));
        assert_eq!(sample(&text, "etcd_mvcc_range_total"), Some(1.0));
        // etcd counts a txn only when it did more than one operation.
        assert_eq!(sample(&text, "etcd_mvcc_txn_total"), Some(1.0));
        assert_eq!(sample(&text, "etcd_mvcc_delete_total"), Some(0.0));
    }

    #[test]
    fn actor_guard_counts_and_times() {
        let m = Metrics::new();
        let raft = m.actor("raft");
        {
            let _t = raft.handling("Propose");
        }
        drop(raft.handling("Propose"));
        drop(raft.handling("Tick"));
        let text = m.encode();
        assert!(text.contains("stead_actor_messages_total{actor=\"raft\",message=\"Propose\"} 2"), "{text}");
        assert!(text.contains("stead_actor_messages_total{actor=\"raft\",message=\"Tick\"} 1"), "{text}");
        assert!(text.contains("stead_actor_handle_seconds_count{actor=\"raft\"} 3"), "{text}");
    }

    #[test]
    fn registries_are_per_member() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.has_leader.set(1);
        assert_eq!(sample(&a.encode(), "etcd_server_has_leader"), Some(1.0));
        assert_eq!(sample(&b.encode(), "etcd_server_has_leader"), Some(0.0));
    }
}
