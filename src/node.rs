//! Boots one member: opens the backend and the WAL, rebuilds the Raft core from
//! what they hold, starts the actors (each on its own arbiter where it may block or
//! run long), waits until the member has a leader and has applied its log, then
//! serves clients. Prints etcd's milestone log lines at etcd's moments, since
//! scripts and supervisors wait for them.
//!
//! Owns start-up order and wiring only; it must never hold state the actors own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;

use crate::actors::auth::{AuthActor, TokenProvider};
use crate::actors::raft::{RaftActor, RaftWiring};
use crate::proto::etcdserverpb as pb;
use crate::actors::store::{GetStatus, HeaderIds, StoreActor, StorePeers};
use crate::actors::watch::{Attach, HubConfig, WatchHub};
use crate::actors::wal::WalActor;
use crate::compactor::{self, AutoCompaction};
use crate::config::{ClusterState, Settings};
use crate::net::listener::ClientServer;
use crate::raft::{self, RaftNode, Restored};
use crate::service::{ClientService, Limits};
use crate::kv::members::{InitialMember, Members};
use crate::metrics::Metrics;
use crate::storage::backend::SledBackend;
use crate::storage::mvcc::MvccStore;
use crate::storage::wal::{Wal, WalWriter, WalWriterOptions};

/// Why a member could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("backend: {0}")]
    Backend(String),
    #[error("WAL: {0}")]
    Wal(#[from] crate::storage::wal::WalError),
    #[error("raft: {0}")]
    Raft(#[from] crate::raft::RaftError),
    /// The data dir does not agree with itself or with the configuration.
    #[error("{0}")]
    Mismatch(String),
    /// The member could not get going (an actor stopped, the cluster did not
    /// answer).
    #[error("{0}")]
    Startup(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Server(std::io::Error),
}

/// `stead --version`, in the shape of `etcd --version`.
pub fn version_text() -> String {
    format!(
        "stead Version: {}\netcd API Version: {}\nGit SHA: {}\nRust Version: rustc\nOS/Arch: {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        crate::service::ETCD_API_VERSION,
        option_env!("STEAD_GIT_SHA").unwrap_or("Not provided"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

/// A new arbiter (an OS thread running actors), named for `top -H` and the
/// `stead_thread_*` metrics.
fn named_arbiter(name: &'static str) -> Arbiter {
    let arbiter = Arbiter::new();
    arbiter.spawn_fn(move || crate::threads::name_current_thread(name));
    arbiter
}

fn create_dir(path: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(path).map_err(|source| NodeError::DataDir { path: path.to_path_buf(), source })
}

/// How long a member started with `--initial-cluster-state existing` on an empty
/// data dir waits for the cluster to call it.
const JOIN_WAIT: Duration = Duration::from_secs(300);

/// Runs the member until it is stopped (SIGINT / SIGTERM).
pub fn run(settings: Settings) -> Result<(), NodeError> {
    let member_dir = settings.data_dir.join("member");
    let wal_dir = member_dir.join("wal");
    let db_dir = member_dir.join("db");
    create_dir(&member_dir)?;
    // Bound before anything else: a port in use is a start-up error, and a joining
    // member learns its identity on this port.
    let peer_addr = settings.listen_peer[0];
    let peer_listener =
        std::net::TcpListener::bind(peer_addr).map_err(|source| NodeError::Listen { addr: peer_addr, source })?;

    let sled_options = crate::storage::backend::SledOptions { cache_capacity_bytes: settings.backend_cache_bytes };
    let backend = SledBackend::open_with(&db_dir, sled_options).map_err(|e| NodeError::Backend(e.to_string()))?;
    let store = MvccStore::open(Arc::new(backend)).map_err(|e| NodeError::Backend(e.to_string()))?;
    let applied = store.consistent_index();
    let members = Members::load(&**store.backend()).map_err(|e| NodeError::Backend(e.to_string()))?;

    let (wal, restored, cluster_id, member_id) = if wal_exists(&wal_dir) {
        open_wal(&wal_dir, &settings, applied)?
    } else {
        if applied > 0 {
            return Err(NodeError::Mismatch(format!(
                "the backend has applied index {applied} but {} holds no WAL: refusing to start with a lost log",
                wal_dir.display()
            )));
        }
        let (cluster_id, member_id) = match settings.cluster_state {
            ClusterState::New => (settings.cluster_id(), settings.member_id()),
            ClusterState::Existing => learn_identity(&peer_listener, JOIN_WAIT)?,
        };
        create_dir(&wal_dir)?;
        (Wal::create(&wal_dir, cluster_id, member_id)?, Restored::default(), cluster_id, member_id)
    };
    tracing::info!(
        "etcdserver: starting server... [version: {}, stead {}] name = {}, data dir = {}, member id = {:x}, cluster id = {:x}",
        crate::service::ETCD_API_VERSION,
        env!("CARGO_PKG_VERSION"),
        settings.name,
        settings.data_dir.display(),
        member_id,
        cluster_id
    );

    // A member joining an existing cluster starts with no membership of its own:
    // it learns the cluster's from the leader's log (bootstrap entry onwards).
    let voters: Vec<u64> = match settings.cluster_state {
        ClusterState::New => settings.initial_cluster.iter().map(|m| m.id).collect(),
        ClusterState::Existing => Vec::new(),
    };
    let mut raft_config = raft::Config::new(member_id, voters);
    raft_config.heartbeat_ticks = 1;
    raft_config.election_ticks = (settings.election_timeout_ms / settings.heartbeat_interval_ms).max(2) as u32;
    let boot_millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    raft_config.seed = boot_millis;
    let node = RaftNode::new(raft_config, restored)?;
    // This member's metrics: its own registry, handed to whatever feeds it.
    let metrics = Metrics::new();
    metrics.describe_member(
        member_id,
        crate::service::ETCD_API_VERSION,
        crate::quota::Quota::from_flag(settings.quota_backend_bytes).max_bytes(),
    );
    let fsync_seconds = metrics.wal_fsync_seconds.clone();
    let on_fsync: crate::storage::wal::FsyncObserver = Box::new(move |took| crate::metrics::observe(&fsync_seconds, took));
    let writer = WalWriter::spawn_observed(wal, WalWriterOptions::default(), Some(on_fsync))?;

    let initial_members: Vec<InitialMember> = settings
        .initial_cluster
        .iter()
        .map(|m| InitialMember { id: m.id, name: m.name.clone(), peer_urls: m.peer_urls.clone() })
        .collect();
    let boot =
        Boot { node, writer, store, members, initial_members, peer_listener, cluster_id, member_id, applied, boot_millis, metrics };
    System::new().block_on(serve(settings, boot))
}

/// What `run` prepared for `serve`.
struct Boot {
    node: RaftNode,
    writer: WalWriter,
    store: MvccStore,
    members: Members,
    initial_members: Vec<InitialMember>,
    peer_listener: std::net::TcpListener,
    cluster_id: u64,
    member_id: u64,
    applied: u64,
    boot_millis: u64,
    metrics: Metrics,
}

fn wal_exists(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).any(|e| e.path().extension().is_some_and(|x| x == "wal")))
        .unwrap_or(false)
}

/// A member added with `member add` gets its id from the leader, and the cluster's
/// id is fixed at bootstrap: neither can be derived from this member's flags. Once
/// the add is applied, every member dials the new one, and each link opens with a
/// handshake naming the cluster and the member it calls: take both from the first
/// one. (etcd asks the peers over HTTP instead; stead's peer port speaks frames.)
fn learn_identity(listener: &std::net::TcpListener, wait: Duration) -> Result<(u64, u64), NodeError> {
    use crate::net::peer::codec::{decode_frame, Frame};
    use std::io::Read;
    tracing::info!("joining an existing cluster: waiting up to {wait:?} for a member to call");
    listener.set_nonblocking(true).map_err(NodeError::Server)?;
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        let (mut stream, from) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(NodeError::Server(e)),
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        // A handshake is a few dozen bytes; more than this is not one.
        while buf.len() < 4096 {
            let Ok(n) = stream.read(&mut chunk) else { break };
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            match decode_frame(&buf, 4096) {
                Ok((Frame::Handshake(h), _)) if h.cluster_id != 0 && h.to != 0 => {
                    tracing::info!(
                        "joining: member {:x} at {from} called this member {:x} of cluster {:x}",
                        h.from,
                        h.to,
                        h.cluster_id
                    );
                    return Ok((h.cluster_id, h.to));
                }
                Ok(_) => break,
                Err(crate::net::peer::PeerError::Truncated { .. }) => continue,
                Err(_) => break,
            }
        }
        tracing::warn!("joining: ignored a connection from {from} that did not open with a handshake");
    }
    Err(NodeError::Startup(format!(
        "no member of the cluster called within {wait:?}: add this member first (`member add`), then start it"
    )))
}

/// Opens an existing WAL: its metadata says which member of which cluster this
/// data dir is (a joined member's id was assigned by the cluster, so it is read,
/// not derived), and its replay is the Raft core's restart state.
fn open_wal(dir: &Path, settings: &Settings, applied: u64) -> Result<(Wal, Restored, u64, u64), NodeError> {
    let (wal, replayed) = Wal::open(dir)?;
    if settings.cluster_state == ClusterState::New
        && (replayed.member_id != settings.member_id() || replayed.cluster_id != settings.cluster_id())
    {
        return Err(NodeError::Mismatch(format!(
            "the data dir belongs to member {:x} of cluster {:x}, not member {:x} of cluster {:x}",
            replayed.member_id,
            replayed.cluster_id,
            settings.member_id(),
            settings.cluster_id()
        )));
    }
    if let Some(torn) = &replayed.torn_tail {
        tracing::warn!("WAL: truncated a torn last record in {} at offset {}: {}", torn.path.display(), torn.offset, torn.reason);
    }
    let last_index =
        replayed.entries.last().map(|e| e.index).or(replayed.snapshot.as_ref().map(|s| s.index)).unwrap_or(0);
    if applied > last_index {
        // A snapshot from the leader was installed into the backend, and the
        // process stopped before the WAL recorded it: the backend is the newer
        // one, and entries up to its consistent index are skipped on apply.
        tracing::warn!("the backend has applied index {applied}, beyond the WAL's last index {last_index} (snapshot install interrupted)");
    }
    tracing::info!(
        "WAL: replayed {} entries (last index {last_index}, commit {}), backend applied through {applied}",
        replayed.entries.len(),
        replayed.hard_state.commit
    );
    let (cluster_id, member_id) = (replayed.cluster_id, replayed.member_id);
    let restored = Restored { hard_state: replayed.hard_state, snapshot: replayed.snapshot, entries: replayed.entries, applied };
    Ok((wal, restored, cluster_id, member_id))
}

/// Starts the `--listen-metrics-urls` listeners: `GET /metrics` and `GET /health`
/// only, answered from the same member state as on the client port. They stop
/// when the client server stops (they do not handle signals themselves).
fn serve_metrics(
    service: ClientService,
    listeners: Vec<std::net::TcpListener>,
) -> Result<actix_web::dev::ServerHandle, NodeError> {
    use actix_web::{web, App, HttpServer};
    let mut server = HttpServer::new(move || {
        crate::threads::name_current_thread("stead-metrics");
        App::new()
            .app_data(web::Data::new(service.clone()))
            .route("/metrics", web::get().to(crate::net::gateway::metrics))
            .route("/health", web::get().to(crate::net::gateway::health))
    })
    .workers(1)
    .disable_signals();
    let mut bound = Vec::new();
    for listener in listeners {
        let addr = listener.local_addr().map_err(NodeError::Server)?;
        server = server.listen(listener).map_err(|source| NodeError::Listen { addr, source })?;
        bound.push(addr);
    }
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(e) = server.await {
            tracing::warn!("metrics listener stopped: {e}");
        }
    });
    for addr in bound {
        tracing::info!("serving metrics on http://{addr}");
    }
    Ok(handle)
}


async fn serve(settings: Settings, boot: Boot) -> Result<(), NodeError> {
    let Boot {
        node,
        writer,
        store,
        members,
        initial_members,
        peer_listener,
        cluster_id,
        member_id,
        applied,
        boot_millis,
        metrics,
    } = boot;
    // Bind first: a port in use is a start-up error, not a later surprise.
    let listeners = settings
        .listen_client
        .iter()
        .map(|addr| std::net::TcpListener::bind(addr).map_err(|source| NodeError::Listen { addr: *addr, source }))
        .collect::<Result<Vec<_>, _>>()?;
    let metrics_listeners = settings
        .listen_metrics
        .iter()
        .map(|addr| std::net::TcpListener::bind(addr).map_err(|source| NodeError::Listen { addr: *addr, source }))
        .collect::<Result<Vec<_>, _>>()?;
    // Links go to the members the applied log knows; a new member starts from the
    // initial cluster.
    let boot_members: Vec<pb::Member> = if members.list().is_empty() {
        initial_members
            .iter()
            .map(|m| pb::Member { id: m.id, name: m.name.clone(), peer_ur_ls: m.peer_urls.clone(), ..Default::default() })
            .collect()
    } else {
        members.list()
    };

    let raft_arbiter = named_arbiter("stead-raft");
    let store_arbiter = named_arbiter("stead-store").handle();
    // The WAL actor never waits on its loop, and shares the Raft actor's: a
    // write's hand-off to it and back is then no thread switch. The peer links
    // and the peer listener run there too (the Raft actor starts them).
    let wal_arbiter = raft_arbiter.handle();
    // The watch hub starts first: the store is created with its address. It
    // shares the store's thread, as etcd notifies its synced watchers on its
    // apply path: an apply batch's `Committed` then reaches the hub with no
    // thread wake-up. On its own thread, at 100 puts a second (1 watcher, 6
    // alternating runs) the leader's p90 was 0.80 ms against 0.68, and under
    // 64-client puts, with no watcher, waking it cost about 3% of the CPU.
    let hub_config = HubConfig::new(settings.max_request_bytes);
    // Set by the hub while a watcher wants `prev_kv`: only then do puts read the
    // values they replace.
    let prev_kv_wanted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hub = {
        let metrics = metrics.clone();
        let flag = prev_kv_wanted.clone();
        WatchHub::start_in_arbiter(&store_arbiter, move |_| {
            WatchHub::new(hub_config).with_metrics(&metrics).with_prev_kv_flag(flag)
        })
    };
    let hub_recipient = hub.clone().recipient();
    let auth_enabled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let provider = TokenProvider::from_flag(&settings.auth_token, settings.auth_token_ttl)
        .map_err(|e| NodeError::Startup(format!("--auth-token: {e}")))?;
    let auth = {
        let enabled = auth_enabled.clone();
        let cost = settings.bcrypt_cost;
        let metrics = metrics.clone();
        AuthActor::start_in_arbiter(&named_arbiter("stead-auth").handle(), move |_| {
            AuthActor::new(provider, cost, enabled).with_metrics(&metrics)
        })
    };
    let auth_recipient = auth.clone().recipient();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (store_tx, store_rx) = tokio::sync::oneshot::channel();
    let (lease_tx, lease_rx) = tokio::sync::oneshot::channel();
    let lease_arbiter = named_arbiter("stead-lease").handle();
    let tick = Duration::from_millis(settings.heartbeat_interval_ms);
    let (max_request_bytes, snapshot_count) = (settings.max_request_bytes, settings.snapshot_count);
    let cluster_token = settings.cluster_token.clone();
    let actor_metrics = metrics.clone();
    // The Raft actor is created first, on its own arbiter, so the WAL and store
    // actors can be given its address; they in turn are given to it.
    let raft_addr = RaftActor::start_in_arbiter(&raft_arbiter.handle(), move |ctx| {
        let raft_addr = ctx.address();
        let lease_addr = {
            let raft = raft_addr.clone();
            let lease_metrics = actor_metrics.clone();
            crate::actors::lease::LeaseActor::start_in_arbiter(&lease_arbiter, move |_| {
                crate::actors::lease::LeaseActor::new(raft).with_metrics(&lease_metrics)
            })
        };
        let _ = lease_tx.send(lease_addr.clone());
        let wal_recipient = raft_addr.clone().recipient();
        let wal_addr = WalActor::start_in_arbiter(&wal_arbiter, {
            let metrics = actor_metrics.clone();
            move |_| WalActor::new(writer, wal_recipient).with_metrics(&metrics)
        });
        let peers = StorePeers {
            applied: raft_addr.clone().recipient(),
            durable: raft_addr.clone().recipient(),
            members: raft_addr.recipient(),
            watch: Some(hub_recipient),
            leases: Some(lease_addr.clone().recipient()),
            auth: Some(auth_recipient),
        };
        let ids = HeaderIds { cluster_id, member_id };
        let store_metrics = actor_metrics.clone();
        let store_addr =
            StoreActor::start_in_arbiter(&store_arbiter, move |_| {
                StoreActor::new(store, members, initial_members, ids, snapshot_count, peers)
                    .with_metrics(store_metrics)
                    .with_prev_kv_flag(prev_kv_wanted)
            });
        let _ = store_tx.send(store_addr.clone());
        let wiring = RaftWiring {
            cluster_id,
            member_id,
            wal: wal_addr,
            store: store_addr,
            cluster_token,
            peer_listener,
            members: boot_members,
            tick_interval: tick,
            max_request_bytes,
            log_catch_up_entries: snapshot_count.min(crate::actors::raft::LOG_CATCH_UP_ENTRIES),
            boot_millis,
            applied_index: applied,
            ready_notice: ready_tx,
            metrics: actor_metrics,
            leadership: Some(lease_addr.clone().recipient()),
            keep_alive: Some(lease_addr.recipient()),
        };
        RaftActor::new(node, wiring)
    });
    let store_addr = store_rx
        .await
        .map_err(|_| NodeError::Startup("the Raft actor did not start".into()))?;
    let lease_addr = lease_rx.await.map_err(|_| NodeError::Startup("the Raft actor did not start".into()))?;

    // The hub reads history from the store from here on; the revision is asked
    // before `Attach` is sent, so every change after it reaches the hub as events.
    let store_status = store_addr
        .send(GetStatus)
        .await
        .map_err(|_| NodeError::Startup("the store actor did not start".into()))?;
    hub.send(Attach {
        history: store_addr.clone().recipient(),
        read: store_addr.clone().recipient(),
        status: store_addr.clone().recipient(),
        raft: raft_addr.clone().recipient(),
        ids: HeaderIds { cluster_id, member_id },
        revision: store_status.revision,
    })
    .await
    .map_err(|_| NodeError::Startup("the watch hub did not start".into()))?;

    let election_timeout = Duration::from_millis(settings.election_timeout_ms);
    let limits = Limits {
        max_txn_ops: settings.max_txn_ops,
        max_concurrent_streams: settings.max_concurrent_streams,
        max_request_bytes: settings.max_request_bytes,
        request_timeout: Duration::from_secs(5) + 2 * election_timeout,
        min_lease_ttl: crate::kv::leases::min_lease_ttl(settings.heartbeat_interval_ms, settings.election_timeout_ms),
        quota: crate::quota::Quota::from_flag(settings.quota_backend_bytes),
    };
    let service = ClientService::new(raft_addr, store_addr, limits)
        .with_watch(hub)
        .with_leases(lease_addr)
        .with_auth(auth, auth_enabled)
        .with_metrics(metrics);
    // As etcd: the metrics listeners serve from here on, before the member is
    // ready (`/health` answers false until then).
    let metrics_server = if metrics_listeners.is_empty() {
        None
    } else {
        Some(serve_metrics(service.clone(), metrics_listeners)?)
    };
    // As etcd: serve clients once this member is part of a cluster with a leader
    // and has caught up with its log.
    if ready_rx.await.is_err() {
        return Err(NodeError::Startup("the Raft actor stopped before the member was ready".into()));
    }
    let client_urls = settings.advertise_client_urls.join(" ");
    let attributes = crate::proto::steadpb::MemberAttributes {
        id: member_id,
        name: settings.name.clone(),
        client_urls: settings.advertise_client_urls.clone(),
    };
    if let Err(e) = service.as_member().publish(attributes).await {
        return Err(NodeError::Startup(format!("could not publish this member's attributes to the cluster: {e}")));
    }
    tracing::info!(
        "etcdserver: published local member to cluster through raft: {{Name:{} ClientURLs:[{}]}} cluster-id {:x}",
        settings.name,
        client_urls,
        cluster_id
    );
    tracing::info!("etcdserver/membership: set the initial cluster version to 3.4");
    tracing::info!("etcdserver/api: enabled capabilities for version 3.4");

    if settings.auto_compaction != AutoCompaction::Off {
        tracing::info!("compactor: automatic compaction {:?}", settings.auto_compaction);
        actix_rt::spawn(compactor::run(service.as_member(), settings.auto_compaction));
    }
    let mut server = ClientServer::new(service);
    let mut bound = Vec::new();
    for listener in listeners {
        let addr = listener.local_addr().map_err(NodeError::Server)?;
        server = server.listen(listener).map_err(|source| NodeError::Listen { addr, source })?;
        bound.push(addr);
    }
    tracing::info!("embed: ready to serve client requests");
    for addr in &bound {
        tracing::info!("embed: serving insecure client requests on {addr}, this is strongly discouraged!");
    }
    let served = server.run().await.map_err(NodeError::Server);
    if let Some(handle) = metrics_server {
        handle.stop(true).await;
    }
    served?;
    tracing::info!("stopped serving; shutting down");
    System::current().stop();
    Ok(())
}
