//! etcd's KV semantics over the MVCC store: applies committed requests (put, delete,
//! txn, compaction) and serves reads (range, read-only txn), following etcd 3.4's
//! `applierV3backend` rule for rule.
//!
//! Pure over the store it is given: no actor, no clock, no I/O of its own beyond the
//! store's batch. Response headers carry only `revision` here; the store actor adds
//! cluster id, member id and term at the edge.

use crate::error::RequestError;
use crate::kv::leases::{GrantError, Leases};
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb;
use crate::proto::steadpb::{internal_request, InternalRequest};
use crate::storage::mvcc::{self, ApplyBatch, KeyValue, MvccError, MvccStore, WriteTxn};

use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::{request_op, response_op};

/// What applying one committed entry produced.
pub struct Applied {
    /// The answer for the client that proposed it (if it still waits).
    pub response: Result<Response, RequestError>,
    /// The changes it made, in (main, sub) revision order, for watchers.
    pub events: Vec<mvcc::Event>,
}

/// A successful answer, by request kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Put(pb::PutResponse),
    DeleteRange(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
    Compaction(pb::CompactionResponse),
    Range(pb::RangeResponse),
    /// After a membership change: every member.
    Members(Vec<pb::Member>),
    LeaseGrant(pb::LeaseGrantResponse),
    LeaseRevoke(pb::LeaseRevokeResponse),
    LeaseCheckpoint(pb::LeaseCheckpointResponse),
    /// A keep-alive renewed through the log (TTL: the granted TTL).
    LeaseRenew(pb::LeaseKeepAliveResponse),
    /// An auth request's answer (the service builds etcd's response from it).
    Auth(crate::kv::auth::AuthAnswer),
    /// An alarm request, applied by the store actor (`kv::alarms`).
    Alarm(pb::AlarmResponse),
}

/// A fault of the store itself (not of the request): the node must stop rather
/// than go on with state it cannot trust.
#[derive(Debug, thiserror::Error)]
#[error("storage fault while applying index {index}: {source}")]
pub struct ApplyFault {
    pub index: u64,
    #[source]
    pub source: MvccError,
}

fn header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader { revision, ..Default::default() })
}

/// Maps what the MVCC layer says about a request to the request error; anything
/// else is a fault of the store.
fn request_error(e: &MvccError) -> Option<RequestError> {
    match e {
        MvccError::Compacted { .. } => Some(RequestError::Compacted),
        MvccError::FutureRev { .. } => Some(RequestError::FutureRevision),
        _ => None,
    }
}

/// Applies one committed entry at Raft index `index` into `batch` (the whole apply
/// batch becomes one backend write). The entry's changes and the consistent index
/// land together, also when the request fails: it still used up its log entry and
/// must never be applied again.
///
/// `leases` is the lease table: puts check and attach their lease, lease entries
/// change it (staged into the same batch).
pub fn apply_entry(
    batch: &mut ApplyBatch<'_>,
    index: u64,
    req: &InternalRequest,
    leases: &mut Leases,
) -> Result<Applied, ApplyFault> {
    let fault = |source| ApplyFault { index, source };
    match &req.request {
        Some(internal_request::Request::LeaseGrant(g)) => {
            let response = match leases.grant(batch, g.id, g.ttl) {
                Ok(()) => Ok(Response::LeaseGrant(pb::LeaseGrantResponse {
                    header: header(batch.store().current_revision()),
                    id: g.id,
                    ttl: g.ttl,
                    error: String::new(),
                })),
                Err(GrantError::Exists) => Err(RequestError::LeaseExists),
                Err(GrantError::TtlTooLarge) => Err(RequestError::LeaseTtlTooLarge),
                Err(GrantError::NoId) => Err(RequestError::LeaseNotFound),
            };
            batch.set_consistent_index(index).map_err(fault)?;
            return Ok(Applied { response, events: Vec::new() });
        }
        Some(internal_request::Request::LeaseRevoke(r)) => {
            let Some(lease) = leases.get(r.id) else {
                batch.set_consistent_index(index).map_err(fault)?;
                return Ok(Applied { response: Err(RequestError::LeaseNotFound), events: Vec::new() });
            };
            // etcd's lessor Revoke: every attached key deleted in one txn (one
            // revision), in key order.
            let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
            let mut txn = batch.write();
            for key in &keys {
                txn.delete_range(key, &[]).map_err(fault)?;
            }
            let committed = txn.commit(index).map_err(fault)?;
            leases.track(&committed.changes);
            leases.remove(batch, r.id);
            let response = Response::LeaseRevoke(pb::LeaseRevokeResponse { header: header(committed.revision) });
            return Ok(Applied { response: Ok(response), events: committed.changes });
        }
        Some(internal_request::Request::LeaseCheckpoint(c)) => {
            for cp in &c.checkpoints {
                leases.checkpoint(batch, cp.id, cp.remaining_ttl);
            }
            batch.set_consistent_index(index).map_err(fault)?;
            let response = Response::LeaseCheckpoint(pb::LeaseCheckpointResponse {
                header: header(batch.store().current_revision()),
            });
            return Ok(Applied { response: Ok(response), events: Vec::new() });
        }
        Some(internal_request::Request::LeaseRenew(k)) => {
            let response = match leases.renew(batch, k.id) {
                Some(ttl) => Ok(Response::LeaseRenew(pb::LeaseKeepAliveResponse {
                    header: header(batch.store().current_revision()),
                    id: k.id,
                    ttl,
                })),
                None => Err(RequestError::LeaseNotFound),
            };
            batch.set_consistent_index(index).map_err(fault)?;
            return Ok(Applied { response, events: Vec::new() });
        }
        _ => {}
    }
    if let Some(internal_request::Request::Compaction(c)) = &req.request {
        let response = match batch.compact(c.revision) {
            Ok(done) => Ok(Response::Compaction(pb::CompactionResponse { header: header(done.revision) })),
            Err(e) => Err(request_error(&e).ok_or_else(|| fault(e))?),
        };
        batch.set_consistent_index(index).map_err(fault)?;
        return Ok(Applied { response, events: Vec::new() });
    }

    let mut txn = batch.write();
    let mut writer = Writer { txn: &mut txn, leases };
    let outcome = match &req.request {
        Some(internal_request::Request::Put(p)) => writer.put_op(p).map(Response::Put),
        Some(internal_request::Request::DeleteRange(d)) => writer.delete_op(d).map(Response::DeleteRange),
        Some(internal_request::Request::Txn(t)) => txn_in(&mut writer, t).map(Response::Txn),
        // Compaction and leases are handled above; membership records by the
        // store actor.
        Some(_) | None => Err(Failure::Request(RequestError::Malformed("not a KV request in log entry".into()))),
    };
    match outcome {
        Ok(response) => {
            let committed = txn.commit(index).map_err(fault)?;
            leases.track(&committed.changes);
            Ok(Applied { response: Ok(response), events: committed.changes })
        }
        Err(Failure::Request(e)) => {
            // A refused request changes nothing: dropping the txn rolls it back.
            drop(txn);
            batch.set_consistent_index(index).map_err(fault)?;
            Ok(Applied { response: Err(e), events: Vec::new() })
        }
        Err(Failure::Store(e)) => Err(fault(e)),
    }
}

/// Why an op failed: the request's fault (answer the client) or the store's (stop).
enum Failure {
    Request(RequestError),
    Store(MvccError),
}

impl From<MvccError> for Failure {
    fn from(e: MvccError) -> Self {
        match request_error(&e) {
            Some(re) => Failure::Request(re),
            None => Failure::Store(e),
        }
    }
}

/// On the read path a store fault fails the one read (a write path fault stops the
/// member instead, see `ApplyFault`).
impl From<Failure> for RequestError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Request(e) => e,
            Failure::Store(e) => RequestError::Internal(e.to_string()),
        }
    }
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Self {
        Failure::Request(e)
    }
}

/// The read side both the store and a write txn offer.
trait ReadView {
    fn range_at(&self, key: &[u8], end: &[u8], rev: i64, limit: usize) -> Result<mvcc::RangeResult, MvccError>;
    fn view_revision(&self) -> i64;
    fn compacted_revision(&self) -> i64;
    /// Whether a lease exists (a put naming one that does not fails).
    fn lease_exists(&self, _id: i64) -> bool {
        false
    }
}

impl ReadView for WriteTxn<'_> {
    fn range_at(&self, key: &[u8], end: &[u8], rev: i64, limit: usize) -> Result<mvcc::RangeResult, MvccError> {
        self.range(key, end, rev, limit)
    }
    fn view_revision(&self) -> i64 {
        self.rev()
    }
    fn compacted_revision(&self) -> i64 {
        self.compact_revision()
    }
}

fn to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// Serves a range from the store's current state (serializable once the caller has
/// waited for the read index).
pub fn range(store: &MvccStore, r: &pb::RangeRequest) -> Result<pb::RangeResponse, RequestError> {
    Ok(range_in(&ReadOnly(store), r)?)
}

/// etcd's Range: filters and sorting fetch everything, then cut to `limit`; `more`
/// says the cut dropped something; `count` is every key in the range.
fn range_in(view: &dyn ReadView, r: &pb::RangeRequest) -> Result<pb::RangeResponse, Failure> {
    let sort_order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    let mut fetch_limit = if sort_order != SortOrder::None || filtered { 0 } else { r.limit.max(0) as usize };
    if fetch_limit > 0 {
        fetch_limit += 1; // one more, to know whether there is more
    }
    let rr = view.range_at(&r.key, &r.range_end, r.revision, fetch_limit)?;
    let count = rr.count as i64;
    let mut kvs = rr.kvs;
    if r.count_only {
        kvs.clear();
    }
    kvs.retain(|kv| {
        (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
    });
    // The store returns keys in ascending order; any other target sorts ascending
    // by default, as etcd does.
    let order = if sort_target != SortTarget::Key && sort_order == SortOrder::None { SortOrder::Ascend } else { sort_order };
    if order != SortOrder::None {
        kvs.sort_by(|a, b| {
            let ord = match sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            };
            if order == SortOrder::Descend { ord.reverse() } else { ord }
        });
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    let kvs = kvs
        .into_iter()
        .map(|mut kv| {
            if r.keys_only {
                kv.value.clear();
            }
            to_pb(kv)
        })
        .collect();
    Ok(pb::RangeResponse { header: header(rr.rev), kvs, more, count })
}

fn put(txn: &mut WriteTxn<'_>, p: &pb::PutRequest, leases: &Leases) -> Result<pb::PutResponse, Failure> {
    if p.lease != 0 && !leases.contains(p.lease) {
        return Err(RequestError::LeaseNotFound.into());
    }
    let need_prev = p.ignore_value || p.ignore_lease || p.prev_kv;
    let prev = if need_prev { txn.range(&p.key, &[], 0, 0)?.kvs.into_iter().next() } else { None };
    if (p.ignore_value || p.ignore_lease) && prev.is_none() {
        return Err(RequestError::KeyNotFound.into());
    }
    let value = match (&prev, p.ignore_value) {
        (Some(kv), true) => kv.value.clone(),
        _ => p.value.clone(),
    };
    let lease = match (&prev, p.ignore_lease) {
        (Some(kv), true) => kv.lease,
        _ => p.lease,
    };
    txn.put(&p.key, &value, lease)?;
    Ok(pb::PutResponse {
        header: header(txn.rev()),
        prev_kv: if p.prev_kv { prev.map(to_pb) } else { None },
    })
}

fn delete_range(txn: &mut WriteTxn<'_>, d: &pb::DeleteRangeRequest) -> Result<pb::DeleteRangeResponse, Failure> {
    let deleted = txn.delete_range(&d.key, &d.range_end)?;
    Ok(pb::DeleteRangeResponse {
        header: header(txn.rev()),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv { deleted.into_iter().map(to_pb).collect() } else { Vec::new() },
    })
}

/// etcd's compare: over every key in the range; a missing key compares as the zero
/// KeyValue, except that a VALUE compare on nothing is always false.
fn compare_holds(view: &dyn ReadView, c: &pb::Compare) -> bool {
    let Ok(rr) = view.range_at(&c.key, &c.range_end, 0, 0) else { return false };
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    if rr.kvs.is_empty() {
        if target == CompareTarget::Value {
            return false;
        }
        return compare_kv(c, target, &KeyValue::default());
    }
    rr.kvs.iter().all(|kv| compare_kv(c, target, kv))
}

fn compare_kv(c: &pb::Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match target {
        CompareTarget::Value => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        // The wanted number is the union's value when it names this target; a
        // compare without one compares against 0, as etcd's does.
        CompareTarget::Create | CompareTarget::Mod | CompareTarget::Version | CompareTarget::Lease => {
            let (have, want) = match (target, &c.target_union) {
                (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => (kv.create_revision, *v),
                (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => (kv.mod_revision, *v),
                (CompareTarget::Version, Some(TargetUnion::Version(v))) => (kv.version, *v),
                (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => (kv.lease, *v),
                (CompareTarget::Create, _) => (kv.create_revision, 0),
                (CompareTarget::Mod, _) => (kv.mod_revision, 0),
                (CompareTarget::Version, _) => (kv.version, 0),
                _ => (kv.lease, 0),
            };
            have.cmp(&want)
        }
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

/// Which branch each (nested) txn takes, decided up front on the state before the
/// txn, as etcd's `compareToPath` does: nested compares do not see the txn's own
/// writes.
fn txn_path(view: &dyn ReadView, t: &pb::TxnRequest, path: &mut Vec<bool>) {
    let succeeded = t.compare.iter().all(|c| compare_holds(view, c));
    path.push(succeeded);
    let ops = if succeeded { &t.success } else { &t.failure };
    for op in ops {
        if let Some(request_op::Request::RequestTxn(nested)) = &op.request {
            txn_path(view, nested, path);
        }
    }
}

/// The checks etcd makes before running a txn's ops, so a txn either runs whole or
/// fails whole: ranges at a compacted or future revision, puts that need a key or
/// lease that is not there.
fn check_txn_ops(view: &dyn ReadView, t: &pb::TxnRequest, path: &[bool], at: &mut usize) -> Result<(), Failure> {
    let succeeded = path[*at];
    *at += 1;
    let ops = if succeeded { &t.success } else { &t.failure };
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                if r.revision > 0 && r.revision > view.view_revision() {
                    return Err(RequestError::FutureRevision.into());
                }
                if r.revision > 0 && r.revision < view.compacted_revision() {
                    return Err(RequestError::Compacted.into());
                }
            }
            Some(request_op::Request::RequestPut(p)) => {
                if p.lease != 0 && !view.lease_exists(p.lease) {
                    return Err(RequestError::LeaseNotFound.into());
                }
                if p.ignore_value || p.ignore_lease {
                    let rr = view.range_at(&p.key, &[], 0, 0)?;
                    if rr.kvs.is_empty() {
                        return Err(RequestError::KeyNotFound.into());
                    }
                }
            }
            Some(request_op::Request::RequestTxn(nested)) => check_txn_ops(view, nested, path, at)?,
            _ => {}
        }
    }
    Ok(())
}

/// Where a txn's ops run: a write txn, or the store itself for a txn that only
/// reads (validation guarantees no write op reaches it).
trait TxnOps: ReadView {
    fn put_op(&mut self, p: &pb::PutRequest) -> Result<pb::PutResponse, Failure>;
    fn delete_op(&mut self, d: &pb::DeleteRangeRequest) -> Result<pb::DeleteRangeResponse, Failure>;
}

/// A write txn with the lease table it checks puts against.
struct Writer<'a, 'b> {
    txn: &'a mut WriteTxn<'b>,
    leases: &'a Leases,
}

impl ReadView for Writer<'_, '_> {
    fn range_at(&self, key: &[u8], end: &[u8], rev: i64, limit: usize) -> Result<mvcc::RangeResult, MvccError> {
        self.txn.range(key, end, rev, limit)
    }
    fn view_revision(&self) -> i64 {
        self.txn.rev()
    }
    fn compacted_revision(&self) -> i64 {
        self.txn.compact_revision()
    }
    fn lease_exists(&self, id: i64) -> bool {
        self.leases.contains(id)
    }
}

impl TxnOps for Writer<'_, '_> {
    fn put_op(&mut self, p: &pb::PutRequest) -> Result<pb::PutResponse, Failure> {
        put(self.txn, p, self.leases)
    }
    fn delete_op(&mut self, d: &pb::DeleteRangeRequest) -> Result<pb::DeleteRangeResponse, Failure> {
        delete_range(self.txn, d)
    }
}

/// The store, seen by a read-only txn.
struct ReadOnly<'a>(&'a MvccStore);

impl ReadView for ReadOnly<'_> {
    fn range_at(&self, key: &[u8], end: &[u8], rev: i64, limit: usize) -> Result<mvcc::RangeResult, MvccError> {
        self.0.range(key, end, rev, limit)
    }
    fn view_revision(&self) -> i64 {
        self.0.current_revision()
    }
    fn compacted_revision(&self) -> i64 {
        self.0.compact_revision()
    }
}

impl TxnOps for ReadOnly<'_> {
    fn put_op(&mut self, _: &pb::PutRequest) -> Result<pb::PutResponse, Failure> {
        Err(RequestError::Internal("write op in a read-only txn".into()).into())
    }
    fn delete_op(&mut self, _: &pb::DeleteRangeRequest) -> Result<pb::DeleteRangeResponse, Failure> {
        Err(RequestError::Internal("write op in a read-only txn".into()).into())
    }
}

/// Runs the chosen branch of a txn. Nested responses carry a header with only the
/// revision, and a nested txn's own header is empty, as in etcd.
fn run_txn(target: &mut dyn TxnOps, t: &pb::TxnRequest, path: &[bool], at: &mut usize) -> Result<pb::TxnResponse, Failure> {
    let succeeded = path[*at];
    *at += 1;
    let ops = if succeeded { &t.success } else { &t.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(r)) => response_op::Response::ResponseRange(range_in(target, r)?),
            Some(request_op::Request::RequestPut(p)) => response_op::Response::ResponsePut(target.put_op(p)?),
            Some(request_op::Request::RequestDeleteRange(d)) => {
                response_op::Response::ResponseDeleteRange(target.delete_op(d)?)
            }
            Some(request_op::Request::RequestTxn(nested)) => {
                let mut r = run_txn(target, nested, path, at)?;
                r.header = Some(pb::ResponseHeader::default());
                response_op::Response::ResponseTxn(r)
            }
            None => return Err(RequestError::KeyNotFound.into()),
        };
        responses.push(pb::ResponseOp { response: Some(response) });
    }
    Ok(pb::TxnResponse { header: None, succeeded, responses })
}

/// Decides the path, checks it, runs it: etcd's Txn, for a write txn and a
/// read-only one alike.
fn txn_in(target: &mut dyn TxnOps, t: &pb::TxnRequest) -> Result<pb::TxnResponse, Failure> {
    let mut path = Vec::new();
    txn_path(target, t, &mut path);
    check_txn_ops(target, t, &path, &mut 0)?;
    let mut resp = run_txn(target, t, &path, &mut 0)?;
    resp.header = header(target.view_revision());
    Ok(resp)
}

/// A txn that only reads, served without a log entry.
pub fn read_txn(store: &MvccStore, t: &pb::TxnRequest) -> Result<pb::TxnResponse, RequestError> {
    Ok(txn_in(&mut ReadOnly(store), t)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::steadpb::RequestHeader;
    use crate::storage::backend::MemBackend;

    fn store() -> MvccStore {
        MvccStore::open(MemBackend::new()).expect("open")
    }

    fn apply(store: &mut MvccStore, index: u64, request: internal_request::Request) -> Result<Response, RequestError> {
        let req = InternalRequest { header: Some(RequestHeader { id: index, proposer: 1, ..Default::default() }), request: Some(request) };
        let mut batch = store.apply_batch();
        let mut leases = Leases::default();
        let applied = apply_entry(&mut batch, index, &req, &mut leases).expect("no storage fault");
        batch.finish().expect("write");
        applied.response
    }

    fn put_req(k: &str, v: &str) -> pb::PutRequest {
        pb::PutRequest { key: k.into(), value: v.into(), ..Default::default() }
    }

    fn op_put(k: &str, v: &str) -> pb::RequestOp {
        pb::RequestOp { request: Some(request_op::Request::RequestPut(put_req(k, v))) }
    }

    fn version_is(k: &str, v: i64) -> pb::Compare {
        pb::Compare {
            key: k.into(),
            target: CompareTarget::Version as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::Version(v)),
            range_end: vec![],
        }
    }

    /// etcd's `compareToPath`: a nested txn's compares are decided on the state
    /// before the outer txn, not after its earlier ops.
    #[test]
    fn nested_compares_see_the_state_before_the_txn() {
        let mut s = store();
        let nested = pb::TxnRequest { compare: vec![version_is("a", 0)], success: vec![op_put("b", "then")], failure: vec![op_put("b", "else")] };
        let outer = pb::TxnRequest {
            compare: vec![],
            success: vec![op_put("a", "1"), pb::RequestOp { request: Some(request_op::Request::RequestTxn(nested)) }],
            failure: vec![],
        };
        apply(&mut s, 1, internal_request::Request::Txn(outer)).expect("txn");
        let b = s.range(b"b", b"", 0, 0).unwrap();
        assert_eq!(b.kvs[0].value, b"then".to_vec());
        // Both puts share one revision (one txn), with sub-revisions 0 and 1.
        let a = s.range(b"a", b"", 0, 0).unwrap();
        assert_eq!(a.kvs[0].mod_revision, b.kvs[0].mod_revision);
    }

    /// A refused request changes nothing, yet its index is consumed so a replay
    /// never applies it again.
    #[test]
    fn a_refused_request_changes_nothing_but_consumes_its_index() {
        let mut s = store();
        apply(&mut s, 1, internal_request::Request::Put(put_req("k", "v"))).expect("put");
        let rev = s.current_revision();
        let bad = pb::TxnRequest {
            compare: vec![],
            success: vec![
                op_put("x", "1"),
                pb::RequestOp {
                    request: Some(request_op::Request::RequestPut(pb::PutRequest {
                        key: b"missing".to_vec(),
                        ignore_value: true,
                        ..Default::default()
                    })),
                },
            ],
            failure: vec![],
        };
        assert_eq!(apply(&mut s, 2, internal_request::Request::Txn(bad)), Err(RequestError::KeyNotFound));
        assert_eq!(s.current_revision(), rev);
        assert!(s.range(b"x", b"", 0, 0).unwrap().kvs.is_empty(), "no op of a refused txn ran");
        assert_eq!(s.consistent_index(), 2);
        let compact = pb::CompactionRequest { revision: rev + 5, physical: false };
        assert_eq!(apply(&mut s, 3, internal_request::Request::Compaction(compact)), Err(RequestError::FutureRevision));
        assert_eq!(s.consistent_index(), 3);
    }

    /// etcd's Range: with a sort, everything is fetched, sorted, then cut to the
    /// limit; `count` is all keys in the range.
    #[test]
    fn sort_happens_before_limit() {
        let mut s = store();
        for (i, (k, v)) in [("a", "2"), ("b", "3"), ("c", "1")].into_iter().enumerate() {
            apply(&mut s, i as u64 + 1, internal_request::Request::Put(put_req(k, v))).expect("put");
        }
        let r = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: vec![0],
            limit: 1,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Value as i32,
            ..Default::default()
        };
        let resp = range(&s, &r).unwrap();
        assert_eq!(resp.kvs.len(), 1);
        assert_eq!(resp.kvs[0].key, b"b".to_vec());
        assert!(resp.more);
        assert_eq!(resp.count, 3);
    }
}
