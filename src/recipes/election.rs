//! etcd's `v3electionpb.Election` service: leader election over leased keys
//! (etcd's `concurrency.Election`, run by the server for the caller's lease).
//! The leader is the oldest key under `NAME/`; its value is the leader's
//! proposal.

use futures::Stream;
use tokio::sync::mpsc;

use crate::kv::prefix_range_end;
use crate::error::RequestError;
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::KeyValue;
use crate::proto::v3electionpb as epb;
use crate::service::ClientService;

use super::through_recipe;
use super::waiters::{
    created_at, first_created, header_of, op_delete, op_get, op_put, range_answer, session_lease, wait_deletes,
    waiter_key, waiters_prefix, KeyCleanup, Watcher,
};

/// Campaign: puts the proposal at `NAME/<lease hex>` (a campaign already under
/// way for the lease proclaims the new value instead), then waits until it is
/// the oldest key under `NAME/`. Answers the leader key and the header of the
/// campaign's first write, as etcd.
pub async fn campaign(service: &ClientService, r: epb::CampaignRequest) -> Result<epb::CampaignResponse, RequestError> {
    campaign_inner(service, r).await.map_err(through_recipe)
}

async fn campaign_inner(service: &ClientService, r: epb::CampaignRequest) -> Result<epb::CampaignResponse, RequestError> {
    let lease = session_lease(service, r.lease).await?;
    let prefix = waiters_prefix(&r.name);
    let key = waiter_key(&prefix, lease);
    let txn = pb::TxnRequest {
        compare: vec![created_at(&key, 0)],
        success: vec![op_put(&key, &r.value, lease)],
        failure: vec![op_get(&key)],
    };
    let resp = service.txn(txn).await?;
    let mut rev = header_of(resp.header).revision;
    if !resp.succeeded {
        let existing = range_answer(&resp, 0)?
            .kvs
            .first()
            .ok_or_else(|| RequestError::Internal("campaign: key vanished inside its txn".into()))?;
        rev = existing.create_revision;
        if existing.value != r.value {
            let leader = epb::LeaderKey { name: r.name.clone(), key: key.clone(), rev, lease };
            if let Err(e) = proclaim_inner(service, &leader, &r.value).await {
                let _ = resign_inner(service, &leader).await;
                return Err(e);
            }
        }
    }
    let cleanup = KeyCleanup::new(service, &key, rev);
    wait_deletes(service, &prefix, &key, rev).await?;
    cleanup.disarm();
    Ok(epb::CampaignResponse { header: resp.header, leader: Some(epb::LeaderKey { name: r.name, key, rev, lease }) })
}

/// Proclaim: the leader puts a new value, only while its key is the one created
/// at the leader key's revision (else etcd's `election: not leader`).
pub async fn proclaim(service: &ClientService, r: epb::ProclaimRequest) -> Result<epb::ProclaimResponse, RequestError> {
    let leader = r.leader.ok_or(RequestError::LeaderKeyMissing)?;
    let header = proclaim_inner(service, &leader, &r.value).await.map_err(through_recipe)?;
    Ok(epb::ProclaimResponse { header: Some(header) })
}

async fn proclaim_inner(service: &ClientService, leader: &epb::LeaderKey, value: &[u8]) -> Result<pb::ResponseHeader, RequestError> {
    let txn = pb::TxnRequest {
        compare: vec![created_at(&leader.key, leader.rev)],
        success: vec![op_put(&leader.key, value, leader.lease)],
        failure: vec![],
    };
    let resp = service.txn(txn).await?;
    if !resp.succeeded {
        return Err(RequestError::ElectionNotLeader);
    }
    Ok(header_of(resp.header))
}

/// Resign: deletes the leader key if it is still the one created at the leader
/// key's revision; answers the header either way, as etcd.
pub async fn resign(service: &ClientService, r: epb::ResignRequest) -> Result<epb::ResignResponse, RequestError> {
    let leader = r.leader.ok_or(RequestError::LeaderKeyMissing)?;
    let header = resign_inner(service, &leader).await.map_err(through_recipe)?;
    Ok(epb::ResignResponse { header: Some(header) })
}

async fn resign_inner(service: &ClientService, leader: &epb::LeaderKey) -> Result<pb::ResponseHeader, RequestError> {
    let txn = pb::TxnRequest {
        compare: vec![created_at(&leader.key, leader.rev)],
        success: vec![op_delete(&leader.key)],
        failure: vec![],
    };
    Ok(header_of(service.txn(txn).await?.header))
}

/// Leader: the oldest key under `NAME/` (else etcd's `election: no leader`).
pub async fn leader(service: &ClientService, r: epb::LeaderRequest) -> Result<epb::LeaderResponse, RequestError> {
    let found = service.range(first_created(&waiters_prefix(&r.name))).await.map_err(through_recipe)?;
    let kv = found.kvs.into_iter().next().ok_or(RequestError::ElectionNoLeader)?;
    Ok(epb::LeaderResponse { header: found.header, kv: Some(kv) })
}

/// How many leader answers an Observe stream holds for a slow reader.
const OBSERVE_BUFFER: usize = 16;

/// Observe: the current leader's key-value, then each change of it (etcd's
/// `Election.Observe`): every new value of the leader key, and when it is
/// deleted, the next leader. The stream ends when the caller drops it, or (as
/// etcd's) quietly when a read or watch fails.
pub fn observe(service: ClientService, r: epb::LeaderRequest) -> impl Stream<Item = epb::LeaderResponse> + Send + 'static {
    let (tx, rx) = mpsc::channel(OBSERVE_BUFFER);
    tokio::spawn(async move {
        let closed = tx.clone();
        let prefix = waiters_prefix(&r.name);
        tokio::select! {
            // The caller went away: stop watching at once.
            _ = closed.closed() => {}
            result = observe_into(&service, &prefix, &tx) => {
                if let Err(e) = result {
                    tracing::debug!("election observe on {}: {e}", String::from_utf8_lossy(&r.name));
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|resp| (resp, rx)) })
}

async fn observe_into(
    service: &ClientService,
    prefix: &[u8],
    tx: &mpsc::Sender<epb::LeaderResponse>,
) -> Result<(), RequestError> {
    let range_end = prefix_range_end(prefix);
    let send = |header: pb::ResponseHeader, kv: KeyValue| async move {
        tx.send(epb::LeaderResponse { header: Some(header), kv: Some(kv) }).await.map_err(|_| RequestError::Stopped)
    };
    loop {
        let found = service.range(first_created(prefix)).await?;
        let mut header = header_of(found.header);
        let leader = match found.kvs.into_iter().next() {
            Some(kv) => kv,
            None => {
                // No leader: the first key put under the prefix will be.
                let mut watcher = Watcher::open(service, prefix, &range_end, header.revision).await?;
                loop {
                    let resp = watcher.next().await?;
                    let put = resp.events.into_iter().find(|ev| ev.r#type == EventType::Put as i32).and_then(|ev| ev.kv);
                    if let Some(kv) = put {
                        header = header_of(resp.header);
                        header.revision = kv.mod_revision;
                        break kv;
                    }
                }
            }
        };
        let leader_key = leader.key.clone();
        send(header, leader).await?;
        // Every change of the leader key until it is deleted.
        let mut watcher = Watcher::open(service, &leader_key, &[], header.revision + 1).await?;
        'leading: loop {
            let resp = watcher.next().await?;
            for ev in resp.events {
                if ev.r#type == EventType::Delete as i32 {
                    break 'leading;
                }
                if let Some(kv) = ev.kv {
                    send(header_of(resp.header), kv).await?;
                }
            }
        }
    }
}
