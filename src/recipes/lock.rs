//! etcd's `v3lockpb.Lock` service: a distributed mutex over leased keys (etcd's
//! `concurrency.Mutex`, run by the server for the caller's lease).

use crate::error::RequestError;
use crate::proto::etcdserverpb as pb;
use crate::proto::v3lockpb;
use crate::service::ClientService;

use super::through_recipe;
use super::waiters::{
    created_at, header_of, op_first_created, op_get, op_put, range_answer, session_lease, wait_deletes, waiter_key,
    waiters_prefix, KeyCleanup,
};

/// Lock: puts `NAME/<lease hex>` (or finds it, when this lease already waits or
/// holds), then waits until it is the oldest key under `NAME/`. Answers the key
/// and the header of the revision at which the lock was taken.
pub async fn lock(service: &ClientService, r: v3lockpb::LockRequest) -> Result<v3lockpb::LockResponse, RequestError> {
    lock_inner(service, r).await.map_err(through_recipe)
}

async fn lock_inner(service: &ClientService, r: v3lockpb::LockRequest) -> Result<v3lockpb::LockResponse, RequestError> {
    let lease = session_lease(service, r.lease).await?;
    let prefix = waiters_prefix(&r.name);
    let key = waiter_key(&prefix, lease);
    // One round trip for the uncontended case: create (or re-find) our key and
    // read the holder together.
    let txn = pb::TxnRequest {
        compare: vec![created_at(&key, 0)],
        success: vec![op_put(&key, b"", lease), op_first_created(&prefix)],
        failure: vec![op_get(&key), op_first_created(&prefix)],
    };
    let resp = service.txn(txn).await?;
    let header = header_of(resp.header);
    let my_rev = if resp.succeeded {
        header.revision
    } else {
        let mine = range_answer(&resp, 0)?;
        mine.kvs.first().map(|kv| kv.create_revision).ok_or_else(|| RequestError::Internal("lock: key vanished inside its txn".into()))?
    };
    let holder = range_answer(&resp, 1)?.kvs.first().map(|kv| kv.create_revision);
    if holder.is_none() || holder == Some(my_rev) {
        return Ok(v3lockpb::LockResponse { header: Some(header), key });
    }
    let cleanup = KeyCleanup::new(service, &key, my_rev);
    let header = wait_deletes(service, &prefix, &key, my_rev).await?;
    cleanup.disarm();
    Ok(v3lockpb::LockResponse { header: Some(header), key })
}

/// Unlock: deletes the key Lock answered with (whatever it holds, as etcd).
pub async fn unlock(service: &ClientService, r: v3lockpb::UnlockRequest) -> Result<v3lockpb::UnlockResponse, RequestError> {
    let deleted = service
        .delete_range(pb::DeleteRangeRequest { key: r.key, ..Default::default() })
        .await
        .map_err(through_recipe)?;
    Ok(v3lockpb::UnlockResponse { header: deleted.header })
}
