//! The pieces both recipes share: waiter keys, the txn operations they are built
//! from, a watcher on the member's hub, waiting for older keys to go (etcd's
//! `waitDeletes`), and the cleanup of a waiter's key when its wait ends badly.

use std::collections::HashSet;
use std::pin::Pin;

use futures::{Stream, StreamExt};

use crate::kv::prefix_range_end;
use crate::error::RequestError;
use crate::net::watch_session::WatchSession;
use crate::proto::etcdserverpb::{self as pb, compare, range_request, request_op, response_op};
use crate::proto::mvccpb::event::EventType;
use crate::service::ClientService;

use super::SESSION_TTL_SECONDS;

/// `NAME/`: the prefix every waiter's key of one lock or election lives under.
pub fn waiters_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// `NAME/<lease id in hex>`, as Go's `%x` writes a signed lease id (a minus sign
/// and the magnitude for a negative one).
pub fn waiter_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 { format!("-{:x}", lease.unsigned_abs()) } else { format!("{lease:x}") };
    let mut key = prefix.to_vec();
    key.extend_from_slice(hex.as_bytes());
    key
}

/// The caller's lease, or (for lease 0) a fresh lease of etcd's session TTL, as
/// etcd's servers open a session for a request without one. The fresh lease is
/// not kept alive: it expires unless the caller keeps it alive.
pub async fn session_lease(service: &ClientService, lease: i64) -> Result<i64, RequestError> {
    if lease != 0 {
        return Ok(lease);
    }
    let granted = service.lease_grant(pb::LeaseGrantRequest { ttl: SESSION_TTL_SECONDS, id: 0 }).await?;
    Ok(granted.id)
}

/// `create_revision(key) == rev` (0: the key does not exist).
pub fn created_at(key: &[u8], rev: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
    }
}

pub fn op_put(key: &[u8], value: &[u8], lease: i64) -> pb::RequestOp {
    let put = pb::PutRequest { key: key.to_vec(), value: value.to_vec(), lease, ..Default::default() };
    pb::RequestOp { request: Some(request_op::Request::RequestPut(put)) }
}

pub fn op_get(key: &[u8]) -> pb::RequestOp {
    let get = pb::RangeRequest { key: key.to_vec(), ..Default::default() };
    pb::RequestOp { request: Some(request_op::Request::RequestRange(get)) }
}

pub fn op_delete(key: &[u8]) -> pb::RequestOp {
    let delete = pb::DeleteRangeRequest { key: key.to_vec(), ..Default::default() };
    pb::RequestOp { request: Some(request_op::Request::RequestDeleteRange(delete)) }
}

/// The oldest key under `prefix` (clientv3's `WithFirstCreate`): the holder.
pub fn first_created(prefix: &[u8]) -> pb::RangeRequest {
    pb::RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_range_end(prefix),
        limit: 1,
        sort_order: range_request::SortOrder::Ascend as i32,
        sort_target: range_request::SortTarget::Create as i32,
        ..Default::default()
    }
}

pub fn op_first_created(prefix: &[u8]) -> pb::RequestOp {
    pb::RequestOp { request: Some(request_op::Request::RequestRange(first_created(prefix))) }
}

/// The range answer at `index` of a txn's responses.
pub fn range_answer(resp: &pb::TxnResponse, index: usize) -> Result<&pb::RangeResponse, RequestError> {
    match resp.responses.get(index).and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(range)) => Ok(range),
        _ => Err(RequestError::Internal(format!("recipe txn: no range answer at {index}"))),
    }
}

pub fn header_of(header: Option<pb::ResponseHeader>) -> pb::ResponseHeader {
    header.unwrap_or_default()
}

/// One watcher on the member's watch hub, yielding the responses that carry
/// events. It ends with an error when the hub cancels it (compaction) or goes.
pub struct Watcher {
    responses: Pin<Box<dyn Stream<Item = pb::WatchResponse> + Send>>,
}

impl Watcher {
    /// Watches `[key, range_end)` from `start_revision`.
    pub async fn open(
        service: &ClientService,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> Result<Watcher, RequestError> {
        let hub = service.watch().cloned().ok_or(RequestError::NotImplemented("watch"))?;
        let session = WatchSession::open(hub, service.clone()).await?;
        let create = pb::WatchCreateRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            start_revision,
            ..Default::default()
        };
        session
            .send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
            .await?;
        Ok(Watcher { responses: Box::pin(session.into_responses()) })
    }

    /// The next response with events.
    pub async fn next(&mut self) -> Result<pb::WatchResponse, RequestError> {
        loop {
            let Some(resp) = self.responses.next().await else { return Err(RequestError::Stopped) };
            if resp.canceled {
                return Err(if resp.compact_revision != 0 {
                    RequestError::Compacted
                } else {
                    RequestError::Internal(format!("recipe watch canceled: {}", resp.cancel_reason))
                });
            }
            if !resp.events.is_empty() {
                return Ok(resp);
            }
        }
    }
}

/// etcd's `waitDeletes`: returns once every key under `prefix` created before
/// `my_rev` is deleted, with the header of the revision that saw the last one
/// go. Unlike etcd 3.4, the waiter's own key (`my_key`, created at `my_rev`) is
/// watched too: if it goes first (its lease expired), waiting longer could only
/// end in a lock held by a key that no longer exists, so the wait fails.
pub async fn wait_deletes(
    service: &ClientService,
    prefix: &[u8],
    my_key: &[u8],
    my_rev: i64,
) -> Result<pb::ResponseHeader, RequestError> {
    let range_end = prefix_range_end(prefix);
    let current = service
        .range(pb::RangeRequest {
            key: prefix.to_vec(),
            range_end: range_end.clone(),
            max_create_revision: my_rev,
            keys_only: true,
            ..Default::default()
        })
        .await?;
    let header = header_of(current.header);
    if !current.kvs.iter().any(|kv| kv.key == my_key && kv.create_revision == my_rev) {
        return Err(RequestError::WaiterKeyDeleted(String::from_utf8_lossy(my_key).into_owned()));
    }
    let mut older: HashSet<Vec<u8>> =
        current.kvs.into_iter().filter(|kv| kv.create_revision < my_rev).map(|kv| kv.key).collect();
    if older.is_empty() {
        return Ok(header);
    }
    // From the revision after the read: every deletion after it is seen.
    let mut watcher = Watcher::open(service, prefix, &range_end, header.revision + 1).await?;
    loop {
        let resp = watcher.next().await?;
        for ev in &resp.events {
            if ev.r#type != EventType::Delete as i32 {
                continue;
            }
            let Some(kv) = &ev.kv else { continue };
            if kv.key == my_key {
                return Err(RequestError::WaiterKeyDeleted(String::from_utf8_lossy(my_key).into_owned()));
            }
            older.remove(&kv.key);
        }
        if older.is_empty() {
            return Ok(header_of(resp.header));
        }
    }
}

/// Deletes a waiter's key (only while it is still the key created at `rev`)
/// when dropped armed: a wait that failed or whose caller went away (the request
/// future dropped) must not leave a waiter behind to block everyone after it.
pub struct KeyCleanup {
    service: ClientService,
    key: Vec<u8>,
    rev: i64,
    armed: bool,
}

impl KeyCleanup {
    pub fn new(service: &ClientService, key: &[u8], rev: i64) -> KeyCleanup {
        KeyCleanup { service: service.clone(), key: key.to_vec(), rev, armed: true }
    }

    /// The wait succeeded: the key stays (it holds the lock, or leads).
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for KeyCleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("recipe: no runtime to delete waiter key {}", String::from_utf8_lossy(&self.key));
            return;
        };
        let service = self.service.clone();
        let key = std::mem::take(&mut self.key);
        let rev = self.rev;
        runtime.spawn(async move {
            let txn = pb::TxnRequest { compare: vec![created_at(&key, rev)], success: vec![op_delete(&key)], failure: vec![] };
            if let Err(e) = service.txn(txn).await {
                tracing::warn!("recipe: deleting waiter key {}: {e}", String::from_utf8_lossy(&key));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Go's `fmt.Sprintf("%s%x", pfx, leaseID)`.
    #[test]
    fn waiter_keys_are_hex_lease_ids() {
        assert_eq!(waiter_key(b"my/", 100), b"my/64");
        assert_eq!(waiter_key(b"my/", 0x390da20b19cd3505), b"my/390da20b19cd3505");
        assert_eq!(waiter_key(b"/", -100), b"/-64");
        assert_eq!(waiters_prefix(b"el"), b"el/");
    }

    #[test]
    fn holder_range_is_first_created_under_prefix() {
        let r = first_created(b"my/");
        assert_eq!((r.key.as_slice(), r.range_end.as_slice(), r.limit), (&b"my/"[..], &b"my0"[..], 1));
        assert_eq!(r.sort_target, range_request::SortTarget::Create as i32);
        assert_eq!(r.sort_order, range_request::SortOrder::Ascend as i32);
    }
}
