//! The client API as one implementation behind every encoding: the JSON gateway
//! (and later gRPC) decode a request, call a method here, and encode its answer.
//! Owns the request path: validation, proposing writes through Raft, linearizable
//! reads through ReadIndex, and the bounded wait for each.
//!
//! It must never touch the store or the log directly: everything goes to the
//! actors as messages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::sync::oneshot;

use crate::actors::raft::{
    ChangeMembership, GetRaftStatus, MembershipChange, Propose, RaftActor, RaftStatus, ReadIndex, RelayKeepAlive,
    TransferLeader,
};
use crate::actors::auth::{AuthActor, Authorize, Need};
use crate::actors::lease::{self, LeaseActor};
use crate::kv::auth::AuthInfo;
use crate::actors::store::{Defragment, DumpSnapshot, HashBackend, GetLease, GetMembers, GetStatus, HashKv, Read, ReadRequest, StoreActor};
use crate::actors::watch::WatchHub;
use crate::error::RequestError;
use crate::kv::apply::Response;
use crate::kv::validate;
use crate::metrics::Metrics;
use crate::net::peer::KeepAliveOutcome;
use crate::proto::etcdserverpb as pb;
use crate::proto::steadpb::internal_request::Request as Internal;

mod auth;

/// Limits a request must respect (etcd's flags of the same names).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_txn_ops: usize,
    /// HTTP/2 streams a gRPC connection may have open (`--max-concurrent-streams`).
    pub max_concurrent_streams: u32,
    pub max_request_bytes: usize,
    /// How long a request may wait for Raft and apply (etcd: 5 s + 2 × election
    /// timeout).
    pub request_timeout: Duration,
    /// The smallest lease TTL granted, seconds (etcd: 1.5 election timeouts).
    pub min_lease_ttl: i64,
    /// The backend space quota (`--quota-backend-bytes`).
    pub quota: crate::quota::Quota,
}

/// What the gateway reports as the server version: the etcd API level stead serves.
pub const ETCD_API_VERSION: &str = "3.4.23";
pub const ETCD_CLUSTER_VERSION: &str = "3.4.0";

/// The client API, as one request sees it: the member's actors and settings
/// (shared), and who is asking. A request clones it (`for_token`): one
/// reference count, not a clone of every actor address (each of which
/// allocates in actix).
#[derive(Clone)]
pub struct ClientService {
    shared: Arc<Shared>,
    /// The token the request being served carried (see `for_token`).
    token: Option<Arc<str>>,
    /// Acting for the member itself (see `as_member`).
    member: bool,
}

#[derive(Clone)]
struct Shared {
    raft: Addr<RaftActor>,
    store: Addr<StoreActor>,
    limits: Limits,
    watch: Option<Addr<WatchHub>>,
    leases: Option<Addr<LeaseActor>>,
    auth: Option<Addr<AuthActor>>,
    /// Published by the auth actor: with auth off, a request without a token
    /// need not ask it anything.
    auth_enabled: Arc<AtomicBool>,
    metrics: Metrics,
}

impl ClientService {
    pub fn new(raft: Addr<RaftActor>, store: Addr<StoreActor>, limits: Limits) -> Self {
        let shared = Shared {
            raft,
            store,
            limits,
            watch: None,
            leases: None,
            auth: None,
            auth_enabled: Arc::new(AtomicBool::new(false)),
            metrics: Metrics::new(),
        };
        ClientService { shared: Arc::new(shared), token: None, member: false }
    }

    /// The member's metrics: proposals are counted there, and `/metrics` serves it.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        Arc::make_mut(&mut self.shared).metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The member's metrics in Prometheus' text format, with the figures that are
    /// read at scrape time (backend size, watch gauges) fresh.
    pub async fn metrics_text(&self) -> String {
        if let Ok(store) = self.shared.store.send(GetStatus).await {
            self.shared.metrics.set_db_total_size(store.db_size_bytes);
        }
        if let Some(hub) = &self.shared.watch {
            if let Ok(stats) = hub.send(crate::actors::watch::GetHubStats).await {
                self.shared.metrics.set_watch_hub(&stats);
            }
        }
        // Both read `/proc`: off the client thread.
        let metrics = self.shared.metrics.clone();
        tokio::task::spawn_blocking(move || {
            metrics.refresh_threads();
            metrics.encode()
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("reading the metrics failed: {e}");
            String::new()
        })
    }

    /// The member's watch hub, which serves watch streams (they are long-lived and
    /// owned by the hub, so encodings talk to it directly).
    pub fn with_watch(mut self, hub: Addr<WatchHub>) -> Self {
        Arc::make_mut(&mut self.shared).watch = Some(hub);
        self
    }

    /// The member's lease actor (expiry and keep-alives on the leader).
    pub fn with_leases(mut self, leases: Addr<LeaseActor>) -> Self {
        Arc::make_mut(&mut self.shared).leases = Some(leases);
        self
    }

    /// The member's auth actor (tokens, permission checks) and its "auth is on"
    /// flag.
    pub fn with_auth(mut self, auth: Addr<AuthActor>, enabled: Arc<AtomicBool>) -> Self {
        let shared = Arc::make_mut(&mut self.shared);
        shared.auth = Some(auth);
        shared.auth_enabled = enabled;
        self
    }

    /// This service acting for a request that carried `token` (gRPC metadata
    /// `token`, the gateway's `Authorization` header): every call checks it.
    pub fn for_token(&self, token: Option<String>) -> ClientService {
        let mut acting = self.clone();
        acting.token = token.filter(|t| !t.is_empty()).map(Into::into);
        acting.member = false;
        acting
    }

    /// This service acting for the member itself (automatic compaction,
    /// publishing its attributes): root, as etcd's internal requests.
    pub fn as_member(&self) -> ClientService {
        let mut acting = self.clone();
        acting.token = None;
        acting.member = true;
        acting
    }

    /// Who the request's token names, once `need` is checked (writes are checked
    /// again when they apply). Without auth, or with auth off and no token,
    /// nobody needs to be asked.
    async fn authorize(&self, need: impl FnOnce() -> Need) -> Result<AuthInfo, RequestError> {
        if self.member {
            return Ok(AuthInfo::member());
        }
        let Some(auth) = &self.shared.auth else { return Ok(AuthInfo::default()) };
        if self.token.is_none() && !self.shared.auth_enabled.load(Ordering::Acquire) {
            return Ok(AuthInfo::default());
        }
        let token = self.token.as_deref().map(str::to_string);
        auth.send(Authorize { token, need: need() }).await.map_err(|_| RequestError::Stopped)?
    }

    /// A watch on `key`..`range_end` needs read permission on it (checked when
    /// the watch is created, as etcd).
    pub async fn authorize_watch(&self, key: &[u8], range_end: &[u8]) -> Result<(), RequestError> {
        self.authorize(|| Need::Read { key: key.to_vec(), range_end: range_end.to_vec() }).await.map(|_| ())
    }

    /// The root role, for membership changes.
    async fn authorize_admin(&self) -> Result<(), RequestError> {
        self.authorize(|| Need::Admin).await.map(|_| ())
    }

    /// The root role, for maintenance calls: etcd's maintenance service passes
    /// the auth package's error through unmapped.
    async fn authorize_maintenance(&self) -> Result<(), RequestError> {
        self.authorize_admin().await.map_err(|e| match e {
            RequestError::Stopped | RequestError::Timeout => e,
            other => RequestError::Unmapped(Box::new(other)),
        })
    }

    fn lease_actor(&self) -> Result<&Addr<LeaseActor>, RequestError> {
        self.shared.leases.as_ref().ok_or(RequestError::NotImplemented("leases"))
    }

    /// etcd's LeaseGrant: the TTL raised to the minimum, the ID (when 0) chosen by
    /// the Raft actor inside the proposal.
    pub async fn lease_grant(&self, mut r: pb::LeaseGrantRequest) -> Result<pb::LeaseGrantResponse, RequestError> {
        if r.ttl > crate::kv::leases::MAX_LEASE_TTL {
            return Err(RequestError::LeaseTtlTooLarge);
        }
        r.ttl = r.ttl.max(self.shared.limits.min_lease_ttl);
        self.check_quota(crate::quota::LEASE_OVERHEAD_BYTES).await?;
        match self.propose(Internal::LeaseGrant(r)).await? {
            Response::LeaseGrant(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    /// etcd's LeaseRevoke: the lease and every key attached to it, in one revision.
    pub async fn lease_revoke(&self, r: pb::LeaseRevokeRequest) -> Result<pb::LeaseRevokeResponse, RequestError> {
        match self.propose(Internal::LeaseRevoke(r)).await? {
            Response::LeaseRevoke(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    /// One keep-alive: it moves the lease's deadline in the leader's memory,
    /// directly on the leader and relayed over the peer port from a follower (as
    /// etcd's followers forward keep-alives to the leader). An unknown or expired
    /// lease answers TTL 0, as etcd's keep-alive stream does.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<pb::LeaseKeepAliveResponse, RequestError> {
        // As etcd: the header is taken before the renewal.
        let header = self.kv_header().await?;
        let ttl = self.renew_lease(id).await?;
        Ok(pb::LeaseKeepAliveResponse { header: Some(header), id, ttl })
    }

    /// Renews `id` where its deadline lives; the TTL, or 0 for a lease that is
    /// gone. A relay lost with a dying leader, or answered by a member that has
    /// just stopped leading, is tried again (from the top: this member may lead
    /// now) until the request timeout, as etcd's follower retries a renewal
    /// against the new leader.
    ///
    /// "No such lease" is believed only once this member has applied everything
    /// committed when it was heard (a barrier): a grant a client had answered
    /// through another member may not have reached a lease actor yet. On the
    /// leader, its lease actor is then current; on a follower, its own applied
    /// table says whether the lease exists, and if it does, the leader's lease
    /// actor is behind and is asked again.
    async fn renew_lease(&self, id: i64) -> Result<i64, RequestError> {
        /// A relay is answered in milliseconds; past this, the leader it went to
        /// is taken for dead.
        const RELAY_TRY: Duration = Duration::from_secs(1);
        /// Between tries that failed at once (no leader to relay to, or one
        /// that has not heard of the lease yet).
        const RETRY_PAUSE: Duration = Duration::from_millis(10);
        let deadline = tokio::time::Instant::now() + self.shared.limits.request_timeout;
        let mut caught_up = false;
        loop {
            let local = self.lease_actor()?.send(lease::KeepAlive(id)).await.map_err(|_| RequestError::Stopped)?;
            let relayed = match local {
                Ok(ttl) => return Ok(ttl),
                Err(RequestError::LeaseNotFound) if caught_up => return Ok(0),
                Err(RequestError::LeaseNotFound) => {
                    self.barrier().await?;
                    caught_up = true;
                    continue;
                }
                Err(RequestError::NotLeader) => {
                    let wait = RELAY_TRY.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                    self.relay_keep_alive(id, wait).await
                }
                Err(e) => return Err(e),
            };
            let failed = match relayed {
                Ok(KeepAliveOutcome::Renewed { ttl }) => return Ok(ttl),
                Ok(KeepAliveOutcome::NotFound) => {
                    if !caught_up {
                        self.barrier().await?;
                        caught_up = true;
                    }
                    let held = self.lease_actor()?.send(lease::HoldsLease(id)).await.map_err(|_| RequestError::Stopped)?;
                    if !held {
                        return Ok(0);
                    }
                    RequestError::LeaseNotFound
                }
                Ok(KeepAliveOutcome::NotLeader) => RequestError::NoLeader,
                Err(e @ (RequestError::NoLeader | RequestError::Timeout)) => e,
                Err(e) => return Err(e),
            };
            if tokio::time::Instant::now() + RETRY_PAUSE >= deadline {
                return match failed {
                    RequestError::LeaseNotFound => Ok(0),
                    other => Err(other),
                };
            }
            if !matches!(failed, RequestError::Timeout) {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }

    /// One relay of a keep-alive to the leader, waiting at most `wait` for its
    /// answer (`Timeout` past it).
    async fn relay_keep_alive(&self, id: i64, wait: Duration) -> Result<KeepAliveOutcome, RequestError> {
        let (responder, answer) = oneshot::channel();
        self.shared.raft.send(RelayKeepAlive { lease: id, responder }).await.map_err(|_| RequestError::Stopped)?;
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(RequestError::Stopped),
            Err(_) => Err(RequestError::Timeout),
        }
    }

    /// etcd's LeaseTimeToLive, answered by the leader (a follower asks the
    /// leader's client URL, as etcd forwards it); an unknown lease is TTL -1.
    pub async fn lease_time_to_live(&self, r: pb::LeaseTimeToLiveRequest) -> Result<pb::LeaseTimeToLiveResponse, RequestError> {
        let asked = self.lease_actor()?.send(lease::TimeToLive(r.id)).await.map_err(|_| RequestError::Stopped)?;
        let (granted_ttl, ttl) = match asked {
            Ok(found) => found,
            Err(RequestError::LeaseNotFound) => {
                return Ok(pb::LeaseTimeToLiveResponse { header: Some(self.kv_header().await?), id: r.id, ttl: -1, ..Default::default() })
            }
            Err(RequestError::NotLeader) => return self.forward_time_to_live(r).await,
            Err(e) => return Err(e),
        };
        let keys = if r.keys {
            self.shared.store.send(GetLease(r.id)).await.map_err(|_| RequestError::Stopped)?.map(|(_, k)| k).unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(pb::LeaseTimeToLiveResponse { header: Some(self.kv_header().await?), id: r.id, ttl, granted_ttl, keys })
    }

    /// etcd's LeaseLeases: every lease (soonest expiry first on the leader).
    pub async fn lease_leases(&self) -> Result<pb::LeaseLeasesResponse, RequestError> {
        let ids = self.lease_actor()?.send(lease::ListLeases).await.map_err(|_| RequestError::Stopped)?;
        Ok(pb::LeaseLeasesResponse {
            header: Some(self.kv_header().await?),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        })
    }

    /// A follower's TimeToLive: the leader's answer, through its JSON gateway.
    async fn forward_time_to_live(&self, r: pb::LeaseTimeToLiveRequest) -> Result<pb::LeaseTimeToLiveResponse, RequestError> {
        let raft: RaftStatus = self.shared.raft.send(GetRaftStatus).await.map_err(|_| RequestError::Stopped)?;
        if raft.leader == 0 || raft.leader == raft.member_id {
            return Err(RequestError::NoLeader);
        }
        let members = self.members().await?;
        let Some(base) = members.iter().find(|m| m.id == raft.leader).and_then(|m| m.client_ur_ls.first().cloned()) else {
            return Err(RequestError::NoLeader);
        };
        let url = format!("{}/v3/lease/timetolive", base.trim_end_matches('/'));
        let body = serde_json::to_string(&r).map_err(|e| RequestError::Internal(e.to_string()))?;
        let timeout = self.shared.limits.request_timeout;
        let call = tokio::task::spawn_blocking(move || -> Result<(u16, String), String> {
            let config = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build();
            let agent = ureq::Agent::new_with_config(config);
            let mut resp = agent
                .post(&url)
                .header("Content-Type", "application/json")
                .config()
                .timeout_global(Some(timeout))
                .build()
                .send(body)
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
            Ok((status, text))
        });
        let (status, text) = call
            .await
            .map_err(|e| RequestError::Internal(e.to_string()))?
            .map_err(|e| RequestError::Internal(format!("asking the leader for the lease's TTL: {e}")))?;
        if status != 200 {
            #[derive(serde::Deserialize)]
            struct ErrorBody {
                message: String,
            }
            let message = serde_json::from_str::<ErrorBody>(&text).map(|b| b.message).unwrap_or(text);
            return Err(if message.ends_with("not leader") || message.ends_with("no leader") {
                RequestError::NoLeader
            } else {
                RequestError::Internal(message)
            });
        }
        let mut resp: pb::LeaseTimeToLiveResponse =
            serde_json::from_str(&text).map_err(|e| RequestError::Internal(format!("the leader's TimeToLive answer: {e}")))?;
        resp.header = Some(self.kv_header().await?);
        Ok(resp)
    }

    /// A header as etcd's gRPC server fills it: cluster, member, current revision
    /// and term.
    async fn kv_header(&self) -> Result<pb::ResponseHeader, RequestError> {
        let raft: RaftStatus = self.shared.raft.send(GetRaftStatus).await.map_err(|_| RequestError::Stopped)?;
        let store = self.shared.store.send(GetStatus).await.map_err(|_| RequestError::Stopped)?;
        Ok(pb::ResponseHeader { cluster_id: raft.cluster_id, member_id: raft.member_id, revision: store.revision, raft_term: raft.term })
    }

    pub fn watch(&self) -> Option<&Addr<WatchHub>> {
        self.shared.watch.as_ref()
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    pub async fn range(&self, r: pb::RangeRequest) -> Result<pb::RangeResponse, RequestError> {
        validate::check_range(&r)?;
        self.authorize(|| Need::Read { key: r.key.clone(), range_end: r.range_end.clone() }).await?;
        self.range_unchecked(r).await
    }

    /// A range for the member itself (health probes): no credentials involved.
    async fn range_unchecked(&self, r: pb::RangeRequest) -> Result<pb::RangeResponse, RequestError> {
        let serializable = r.serializable;
        match self.read(ReadRequest::Range(r), serializable).await? {
            Response::Range(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    pub async fn put(&self, r: pb::PutRequest) -> Result<pb::PutResponse, RequestError> {
        validate::check_put(&r)?;
        self.check_quota(crate::quota::put_cost(&r)).await?;
        match self.propose(Internal::Put(r)).await? {
            Response::Put(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_range(&self, r: pb::DeleteRangeRequest) -> Result<pb::DeleteRangeResponse, RequestError> {
        validate::check_delete(&r)?;
        match self.propose(Internal::DeleteRange(r)).await? {
            Response::DeleteRange(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    pub async fn txn(&self, r: pb::TxnRequest) -> Result<pb::TxnResponse, RequestError> {
        validate::check_txn(&r, self.shared.limits.max_txn_ops)?;
        let response = if validate::txn_is_read_only(&r) {
            self.authorize(|| Need::ReadTxn(r.clone())).await?;
            self.read(ReadRequest::Txn(r), false).await?
        } else {
            self.check_quota(crate::quota::txn_cost(&r)).await?;
            self.propose(Internal::Txn(r)).await?
        };
        match response {
            Response::Txn(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    pub async fn compact(&self, r: pb::CompactionRequest) -> Result<pb::CompactionResponse, RequestError> {
        match self.propose(Internal::Compaction(r)).await? {
            Response::Compaction(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    pub async fn status(&self) -> Result<pb::StatusResponse, RequestError> {
        let raft: RaftStatus = self.shared.raft.send(GetRaftStatus).await.map_err(|_| RequestError::Stopped)?;
        let store = self.shared.store.send(GetStatus).await.map_err(|_| RequestError::Stopped)?;
        Ok(pb::StatusResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: raft.cluster_id,
                member_id: raft.member_id,
                revision: store.revision,
                raft_term: raft.term,
            }),
            version: ETCD_API_VERSION.to_string(),
            db_size: store.db_size_bytes as i64,
            leader: raft.leader,
            raft_index: raft.commit_index,
            raft_term: raft.term,
            raft_applied_index: store.applied_index,
            errors: status_errors(raft.leader, &store.alarms),
            db_size_in_use: store.db_size_bytes as i64,
            is_learner: false,
        })
    }

    /// etcd's HashKV: the member's own key space hashed up to `revision` (0: the
    /// current revision), read locally as etcd does (no ReadIndex). The header's
    /// revision is the current one, as etcd's.
    pub async fn hash_kv(&self, r: pb::HashKvRequest) -> Result<pb::HashKvResponse, RequestError> {
        self.authorize_maintenance().await?;
        let raft: RaftStatus = self.shared.raft.send(GetRaftStatus).await.map_err(|_| RequestError::Stopped)?;
        let h = self.shared.store.send(HashKv { revision: r.revision }).await.map_err(|_| RequestError::Stopped)??;
        Ok(pb::HashKvResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: raft.cluster_id,
                member_id: raft.member_id,
                revision: h.current_revision,
                raft_term: raft.term,
            }),
            hash: h.hash,
            compact_revision: h.compact_revision,
        })
    }

    /// etcd's Snapshot: the whole backend as one CRC-checked dump (see
    /// `storage::snapshot`) in the file form `storage::snapshot_file` gives it
    /// (page-aligned, then etcd's SHA-256 trailer, which etcdctl checks for),
    /// cut into `SNAPSHOT_CHUNK_BYTES` answers whose `remaining_bytes` counts
    /// what follows each.
    pub async fn snapshot(&self) -> Result<Vec<pb::SnapshotResponse>, RequestError> {
        self.authorize_maintenance().await?;
        let (data, _applied) = self.shared.store.send(DumpSnapshot).await.map_err(|_| RequestError::Stopped)??;
        let header = self.kv_header().await?;
        let file = tokio::task::spawn_blocking(move || crate::storage::snapshot_file::encode(&data))
            .await
            .map_err(|e| RequestError::Internal(format!("snapshot encoding: {e}")))?;
        Ok(snapshot_chunks(header, &file))
    }

    /// etcd's Hash: a CRC-32C of this member's whole backend but its member-local
    /// records (`storage::hash`), read locally; the header's revision is the one
    /// hashed at.
    pub async fn hash(&self) -> Result<pb::HashResponse, RequestError> {
        self.authorize_maintenance().await?;
        let (hash, revision) = self.shared.store.send(HashBackend).await.map_err(|_| RequestError::Stopped)??;
        let mut header = self.kv_header().await?;
        header.revision = revision;
        Ok(pb::HashResponse { header: Some(header), hash })
    }

    /// etcd's Defragment: this member's backend rewritten compactly (not through
    /// Raft; each member is defragmented on its own, as in etcd).
    pub async fn defragment(&self) -> Result<pb::DefragmentResponse, RequestError> {
        self.authorize_maintenance().await?;
        self.shared.store.send(Defragment).await.map_err(|_| RequestError::Stopped)??;
        Ok(pb::DefragmentResponse { header: Some(self.kv_header().await?) })
    }

    /// The header of a Cluster answer: as etcd's, it names cluster, member and
    /// term, but no revision (membership is not part of the key space).
    async fn header(&self) -> Result<pb::ResponseHeader, RequestError> {
        let raft: RaftStatus = self.shared.raft.send(GetRaftStatus).await.map_err(|_| RequestError::Stopped)?;
        Ok(pb::ResponseHeader { cluster_id: raft.cluster_id, member_id: raft.member_id, revision: 0, raft_term: raft.term })
    }

    async fn members(&self) -> Result<Vec<pb::Member>, RequestError> {
        self.shared.store.send(GetMembers).await.map_err(|_| RequestError::Stopped)
    }

    pub async fn member_list(&self) -> Result<pb::MemberListResponse, RequestError> {
        Ok(pb::MemberListResponse { header: Some(self.header().await?), members: self.members().await? })
    }

    pub async fn member_add(&self, r: pb::MemberAddRequest) -> Result<pb::MemberAddResponse, RequestError> {
        self.authorize_admin().await?;
        check_peer_urls(&r.peer_ur_ls)?;
        if self.members().await?.iter().any(|m| m.peer_ur_ls.iter().any(|u| r.peer_ur_ls.contains(u))) {
            return Err(RequestError::PeerUrlExists);
        }
        let change = MembershipChange::Add { peer_urls: r.peer_ur_ls, learner: r.is_learner };
        let (id, members) = self.change_membership(change).await?;
        let member = members.iter().find(|m| m.id == id).cloned();
        Ok(pb::MemberAddResponse { header: Some(self.header().await?), member, members })
    }

    pub async fn member_remove(&self, r: pb::MemberRemoveRequest) -> Result<pb::MemberRemoveResponse, RequestError> {
        self.authorize_admin().await?;
        if !self.members().await?.iter().any(|m| m.id == r.id) {
            return Err(RequestError::MemberNotFound);
        }
        let (_, members) = self.change_membership(MembershipChange::Remove(r.id)).await?;
        Ok(pb::MemberRemoveResponse { header: Some(self.header().await?), members })
    }

    pub async fn member_promote(&self, r: pb::MemberPromoteRequest) -> Result<pb::MemberPromoteResponse, RequestError> {
        self.authorize_admin().await?;
        match self.members().await?.iter().find(|m| m.id == r.id) {
            None => return Err(RequestError::MemberNotFound),
            Some(m) if !m.is_learner => return Err(RequestError::MemberNotLearner),
            Some(_) => {}
        }
        let (_, members) = self.change_membership(MembershipChange::Promote(r.id)).await?;
        Ok(pb::MemberPromoteResponse { header: Some(self.header().await?), members })
    }

    pub async fn member_update(&self, r: pb::MemberUpdateRequest) -> Result<pb::MemberUpdateResponse, RequestError> {
        self.authorize_admin().await?;
        check_peer_urls(&r.peer_ur_ls)?;
        let members = self.members().await?;
        if !members.iter().any(|m| m.id == r.id) {
            return Err(RequestError::MemberNotFound);
        }
        if members.iter().any(|m| m.id != r.id && m.peer_ur_ls.iter().any(|u| r.peer_ur_ls.contains(u))) {
            return Err(RequestError::PeerUrlExists);
        }
        let update = crate::proto::steadpb::MemberPeerUrls { id: r.id, peer_urls: r.peer_ur_ls };
        match self.propose(Internal::MemberPeerUrls(update)).await? {
            Response::Members(members) => Ok(pb::MemberUpdateResponse { header: Some(self.header().await?), members }),
            other => Err(unexpected(other)),
        }
    }

    /// Announces this member's name and client URLs to the cluster (etcd's
    /// "publish"), through the log like any write.
    pub async fn publish(&self, attrs: crate::proto::steadpb::MemberAttributes) -> Result<(), RequestError> {
        self.propose(Internal::MemberAttributes(attrs)).await.map(|_| ())
    }

    pub async fn move_leader(&self, r: pb::MoveLeaderRequest) -> Result<pb::MoveLeaderResponse, RequestError> {
        self.authorize_maintenance().await?;
        let deadline = tokio::time::Instant::now() + self.shared.limits.request_timeout;
        let (responder, moved) = oneshot::channel();
        self.shared.raft
            .send(TransferLeader { target: r.target_id, responder })
            .await
            .map_err(|_| RequestError::Stopped)?;
        answer(deadline, moved).await?;
        // etcd answers MoveLeader with an empty message.
        Ok(pb::MoveLeaderResponse { header: None })
    }

    /// Proposes a membership change and waits until it is applied; returns the
    /// member concerned and every member after the change.
    async fn change_membership(&self, change: MembershipChange) -> Result<(u64, Vec<pb::Member>), RequestError> {
        let deadline = tokio::time::Instant::now() + self.shared.limits.request_timeout;
        let (responder, applied) = crate::reply::channel();
        let id = self
            .shared
            .raft
            .send(ChangeMembership { change, responder })
            .await
            .map_err(|_| RequestError::Stopped)??;
        match answer(deadline, applied).await? {
            Response::Members(members) => Ok((id, members)),
            other => Err(unexpected(other)),
        }
    }

    /// etcd's Alarm: every action goes through Raft and is applied on every
    /// member, as etcd does (so GET answers the applied table).
    pub async fn alarm(&self, r: pb::AlarmRequest) -> Result<pb::AlarmResponse, RequestError> {
        match self.propose(Internal::Alarm(r)).await? {
            Response::Alarm(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    /// The alarms active on the cluster, as this member has applied them.
    pub async fn active_alarms(&self) -> Result<Vec<pb::AlarmMember>, RequestError> {
        Ok(self.shared.store.send(GetStatus).await.map_err(|_| RequestError::Stopped)?.alarms)
    }

    /// etcd's quota check before proposing a write of `cost` bytes: when the
    /// backend has no room for it, this member raises a NOSPACE alarm for itself
    /// (through Raft, whatever comes of it) and the write fails.
    async fn check_quota(&self, cost: usize) -> Result<(), RequestError> {
        let db_size = self.shared.metrics.db_total_size();
        if self.shared.limits.quota.available(db_size, cost) {
            return Ok(());
        }
        let raft: RaftStatus = self.shared.raft.send(GetRaftStatus).await.map_err(|_| RequestError::Stopped)?;
        let raise = pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Activate as i32,
            member_id: raft.member_id,
            alarm: pb::AlarmType::Nospace as i32,
        };
        if let Err(e) = self.alarm(raise).await {
            tracing::warn!("raising the NOSPACE alarm: {e}");
        }
        Err(RequestError::NoSpace)
    }

    /// True when a linearizable read completes in time: the member has a leader
    /// and a quorum, and its state machine is keeping up.
    pub async fn healthy(&self) -> bool {
        let probe = pb::RangeRequest { key: b"health".to_vec(), ..Default::default() };
        self.range_unchecked(probe).await.is_ok()
    }

    /// Proposes a write and waits for it to be applied (durable on a quorum).
    /// Without a leader it retries until the request timeout, then fails with
    /// etcd's "no leader".
    async fn propose(&self, request: Internal) -> Result<Response, RequestError> {
        // Who asks travels with the entry: the apply path checks it against the
        // auth state at the entry's index.
        let who = self.authorize(|| Need::Nothing).await?;
        self.propose_as(request, who).await
    }

    /// `propose`, for a request whose asker is already known.
    async fn propose_as(&self, request: Internal, who: AuthInfo) -> Result<Response, RequestError> {
        let started = std::time::Instant::now();
        let kind = request_kind(&request);
        let result = self.propose_until(request, who, tokio::time::Instant::now() + self.shared.limits.request_timeout).await;
        log_if_slow(kind, started);
        if result.as_ref().is_err_and(counts_as_failed_proposal) {
            self.shared.metrics.proposals_failed.inc();
        }
        result
    }

    /// Proposes a write as `who` and waits for it to be applied until `deadline`.
    async fn propose_until(
        &self,
        request: Internal,
        who: AuthInfo,
        deadline: tokio::time::Instant,
    ) -> Result<Response, RequestError> {
        let _pending = self.shared.metrics.pending_proposal();
        loop {
            let (responder, applied) = crate::reply::channel();
            self.shared.raft.do_send(Propose { request: request.clone(), auth: who.clone(), responder });
            match answer(deadline, applied).await {
                // Refused before it reached the log: safe to ask again.
                Err(RequestError::NoLeader) => wait_for_leader(deadline).await?,
                other => return other,
            }
        }
    }

    /// Waits until this member has applied everything committed before now (a
    /// linearizable read of nothing).
    async fn barrier(&self) -> Result<(), RequestError> {
        let nothing = pb::RangeRequest { key: vec![0], limit: 1, count_only: true, ..Default::default() };
        self.read(ReadRequest::Range(nothing), false).await.map(|_| ())
    }

    /// A read: linearizable through ReadIndex, or serializable from local state.
    async fn read(&self, request: ReadRequest, serializable: bool) -> Result<Response, RequestError> {
        let started = std::time::Instant::now();
        let result = self.read_unlogged(request, serializable).await;
        log_if_slow(if serializable { "serializable_read" } else { "read" }, started);
        result
    }

    async fn read_unlogged(&self, request: ReadRequest, serializable: bool) -> Result<Response, RequestError> {
        let deadline = tokio::time::Instant::now() + self.shared.limits.request_timeout;
        let read_index = if serializable { 0 } else { self.read_index(deadline).await? };
        let wait = async {
            let (responder, answer) = crate::reply::channel();
            self.shared.store.do_send(Read { read_index, request, responder });
            answer.await.map_err(|_| RequestError::Stopped)?
        };
        tokio::time::timeout_at(deadline, wait).await.map_err(|_| RequestError::Timeout)?
    }

    /// The index a linearizable read must wait for; retried while there is no
    /// leader (or the leader changed under the read) until `deadline`. Counted
    /// as etcd counts them: slow when a round took over `SLOW_READ_INDEX` or had
    /// to wait for a leader, failed when none succeeded.
    async fn read_index(&self, deadline: tokio::time::Instant) -> Result<u64, RequestError> {
        let metrics = &self.shared.metrics;
        let rounds = async {
            loop {
                let asked = std::time::Instant::now();
                let (tx, rx) = crate::reply::channel();
                self.shared.raft.do_send(ReadIndex { responder: tx });
                let answer = rx.await.map_err(|_| RequestError::Stopped)?;
                if asked.elapsed() > SLOW_READ_INDEX || matches!(answer, Err(RequestError::NoLeader)) {
                    metrics.slow_read_indexes.inc();
                }
                match answer {
                    Err(RequestError::NoLeader) => wait_for_leader(deadline).await?,
                    other => return other,
                }
            }
        };
        let result = tokio::time::timeout_at(deadline, rounds).await.unwrap_or(Err(RequestError::Timeout));
        if result.is_err() {
            metrics.read_indexes_failed.inc();
        }
        result
    }
}

/// A ReadIndex round slower than this counts as slow (etcd's
/// `readIndexRetryTime`, after which it asks again).
const SLOW_READ_INDEX: std::time::Duration = std::time::Duration::from_millis(500);

/// Status `errors` as etcd fills them: "no leader" without a leader, then each
/// active alarm in its protobuf text form (`memberID:1 alarm:NOSPACE `).
fn status_errors(leader: u64, alarms: &[pb::AlarmMember]) -> Vec<String> {
    let mut errors = Vec::new();
    if leader == 0 {
        errors.push(crate::net::status::etcd_status(&RequestError::NoLeader).1);
    }
    errors.extend(alarms.iter().map(crate::net::status::alarm_text));
    errors
}

/// The size of one Snapshot answer's blob (etcd sends 32 KiB; fewer, larger
/// messages cost less here and stay far below gRPC's limits).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// `data` as Snapshot answers: each chunk with the header and how many bytes
/// follow it (0 on the last). An empty dump still gives one (empty) answer.
fn snapshot_chunks(header: pb::ResponseHeader, data: &[u8]) -> Vec<pb::SnapshotResponse> {
    if data.is_empty() {
        return vec![pb::SnapshotResponse { header: Some(header), remaining_bytes: 0, blob: Vec::new() }];
    }
    let mut sent = 0;
    data.chunks(SNAPSHOT_CHUNK_BYTES)
        .map(|chunk| {
            sent += chunk.len();
            pb::SnapshotResponse {
                header: Some(header),
                remaining_bytes: (data.len() - sent) as u64,
                blob: chunk.to_vec(),
            }
        })
        .collect()
}

/// etcd's proposals_failed_total: refused by Raft, no leader, or not applied in
/// time (a request the state machine refused was applied).
fn counts_as_failed_proposal(e: &RequestError) -> bool {
    matches!(e, RequestError::Timeout | RequestError::Stopped | RequestError::NoLeader | RequestError::TooManyRequests)
}

/// An actor's answer on `rx`, waited for until `deadline`.
async fn answer<T>(
    deadline: tokio::time::Instant,
    rx: oneshot::Receiver<Result<T, RequestError>>,
) -> Result<T, RequestError> {
    match tokio::time::timeout_at(deadline, rx).await {
        Err(_) => Err(RequestError::Timeout),
        Ok(Err(_)) => Err(RequestError::Stopped),
        Ok(Ok(result)) => result,
    }
}

/// A pause before asking again for a leader; past the deadline, "no leader".
async fn wait_for_leader(deadline: tokio::time::Instant) -> Result<(), RequestError> {
    const RETRY: Duration = Duration::from_millis(50);
    if tokio::time::Instant::now() + RETRY >= deadline {
        return Err(RequestError::NoLeader);
    }
    tokio::time::sleep(RETRY).await;
    Ok(())
}

/// Peer URLs must be `http://host:port`, as etcd requires of a new member.
fn check_peer_urls(urls: &[String]) -> Result<(), RequestError> {
    let valid = |u: &String| {
        u.strip_prefix("http://")
            .and_then(|hp| hp.trim_end_matches('/').rsplit_once(':'))
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    };
    if urls.is_empty() || !urls.iter().all(valid) {
        return Err(RequestError::MemberBadUrls);
    }
    Ok(())
}

/// A request's kind, for logs.
fn request_kind(request: &Internal) -> &'static str {
    match request {
        Internal::Put(_) => "put",
        Internal::DeleteRange(_) => "delete_range",
        Internal::Txn(_) => "txn",
        Internal::Compaction(_) => "compaction",
        Internal::LeaseGrant(_) => "lease_grant",
        Internal::LeaseRevoke(_) => "lease_revoke",
        _ => "other",
    }
}

/// etcd's "request took too long" warning, with the duration.
fn log_if_slow(kind: &'static str, started: std::time::Instant) {
    let took = started.elapsed();
    if took > crate::metrics::SLOW_APPLY {
        tracing::warn!(request = kind, took_ms = took.as_millis() as u64, "request took too long");
    }
}

fn unexpected(r: Response) -> RequestError {
    RequestError::Internal(format!("unexpected response kind: {r:?}"))
}
