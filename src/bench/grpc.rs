//! The gRPC back-end: etcd's v3 services through tonic clients generated from the
//! crate's own protos (`stead::proto`), so it measures etcd and stead alike. One
//! `GrpcConn` is one HTTP/2 connection; clients share it by cloning the channel.
//! This module only turns operations into RPCs and answers into results.

use std::time::Duration;

use futures::channel::mpsc;
use futures::SinkExt;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use super::{BenchError, Op, WatchMsg};
use crate::proto::etcdserverpb as pb;
use pb::kv_client::KvClient;
use pb::lease_client::LeaseClient;
use pb::watch_client::WatchClient;

/// A request (or keep-alive answer) that takes longer is an error, not a sample.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests a stream client may queue before its sender waits.
const STREAM_QUEUE: usize = 64;

/// An error and its causes, `outer: inner: ...` (tonic's own text is only the outer).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[derive(Clone)]
pub struct GrpcConn {
    channel: Channel,
}

fn rpc(e: tonic::Status) -> BenchError {
    BenchError::Rpc { code: format!("{:?}", e.code()), message: e.message().to_string() }
}

impl GrpcConn {
    /// Opens one HTTP/2 connection to `url` (`http://host:port`).
    pub async fn connect(url: &str) -> Result<GrpcConn, BenchError> {
        let connect_err = |e: &dyn std::error::Error| BenchError::Connect { endpoint: url.to_string(), reason: error_chain(e) };
        let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| connect_err(&e))?;
        let channel = endpoint.tcp_nodelay(true).connect().await.map_err(|e| connect_err(&e))?;
        Ok(GrpcConn { channel })
    }

    /// This endpoint's member id and the leader it knows (0: none).
    pub async fn member_and_leader(&self) -> Result<(u64, u64), BenchError> {
        let status = pb::maintenance_client::MaintenanceClient::new(self.channel.clone())
            .status(pb::StatusRequest {})
            .await
            .map_err(rpc)?
            .into_inner();
        Ok((status.header.map(|h| h.member_id).unwrap_or_default(), status.leader))
    }

    pub async fn exec(&self, op: &Op) -> Result<(), BenchError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exec_untimed(op))
            .await
            .map_err(|_| BenchError::Transport(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }

    async fn exec_untimed(&self, op: &Op) -> Result<(), BenchError> {
        let mut kv = KvClient::new(self.channel.clone());
        match op {
            Op::Put { key, value } => {
                kv.put(pb::PutRequest { key: key.clone(), value: value.clone(), ..Default::default() }).await.map_err(rpc)?;
            }
            Op::Range { key, range_end, serializable } => {
                kv.range(pb::RangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    serializable: *serializable,
                    ..Default::default()
                })
                .await
                .map_err(rpc)?;
            }
            Op::TxnPut(puts) => {
                let success = puts
                    .iter()
                    .map(|(key, value)| pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                            key: key.clone(),
                            value: value.clone(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                let resp = kv.txn(pb::TxnRequest { compare: vec![], success, failure: vec![] }).await.map_err(rpc)?;
                if !resp.get_ref().succeeded {
                    return Err(BenchError::Answer("txn with no compares did not succeed".into()));
                }
            }
        }
        Ok(())
    }

    /// Grants a lease of `ttl_secs`; its ID.
    pub async fn lease_grant(&self, ttl_secs: i64) -> Result<i64, BenchError> {
        let resp = LeaseClient::new(self.channel.clone())
            .lease_grant(pb::LeaseGrantRequest { ttl: ttl_secs, id: 0 })
            .await
            .map_err(rpc)?;
        let r = resp.into_inner();
        if !r.error.is_empty() {
            return Err(BenchError::Answer(format!("lease grant: {}", r.error)));
        }
        Ok(r.id)
    }

    /// Opens a keep-alive stream for one lease, with one (unmeasured) keep-alive
    /// done on it.
    pub async fn keepalive_stream(&self, lease_id: i64) -> Result<GrpcKeepAlive, BenchError> {
        let (mut tx, rx) = mpsc::channel(STREAM_QUEUE);
        // Queued before the call: grpc-go (etcd) sends the response headers the
        // call waits for only with its first answer.
        tx.send(pb::LeaseKeepAliveRequest { id: lease_id })
            .await
            .map_err(|_| BenchError::Answer("keep-alive stream closed".into()))?;
        let responses = LeaseClient::new(self.channel.clone()).lease_keep_alive(rx).await.map_err(rpc)?.into_inner();
        let mut stream = GrpcKeepAlive { lease_id, tx, responses };
        stream.answer().await?;
        Ok(stream)
    }

    /// Opens one watch stream and asks it to watch each of `keys`.
    pub async fn watch_stream(&self, keys: Vec<Vec<u8>>) -> Result<GrpcWatch, BenchError> {
        let (mut tx, rx) = mpsc::channel(STREAM_QUEUE);
        // Queue the creates from a task: the stream only opens once the server
        // answers, and the server reads requests as they come.
        let creates = async move {
            for key in keys {
                let create = pb::WatchRequest {
                    request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
                        key,
                        ..Default::default()
                    })),
                };
                if tx.send(create).await.is_err() {
                    return;
                }
            }
            // Keep the request side open: closing it would end the watch stream.
            futures::future::pending::<()>().await;
        };
        tokio::spawn(creates);
        let responses = WatchClient::new(self.channel.clone()).watch(rx).await.map_err(rpc)?.into_inner();
        Ok(GrpcWatch { responses })
    }
}

pub struct GrpcKeepAlive {
    lease_id: i64,
    tx: mpsc::Sender<pb::LeaseKeepAliveRequest>,
    responses: Streaming<pb::LeaseKeepAliveResponse>,
}

impl GrpcKeepAlive {
    /// One keep-alive and its answer.
    pub async fn keepalive(&mut self) -> Result<(), BenchError> {
        self.tx
            .send(pb::LeaseKeepAliveRequest { id: self.lease_id })
            .await
            .map_err(|_| BenchError::Answer("keep-alive stream closed".into()))?;
        self.answer().await
    }

    async fn answer(&mut self) -> Result<(), BenchError> {
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, self.responses.message())
            .await
            .map_err(|_| BenchError::Transport(format!("no keep-alive answer within {REQUEST_TIMEOUT:?}")))?;
        match answer.map_err(rpc)? {
            Some(r) if r.ttl > 0 => Ok(()),
            Some(_) => Err(BenchError::Answer(format!("lease {:x} not found (keep-alive TTL 0)", self.lease_id))),
            None => Err(BenchError::Answer("keep-alive stream ended".into())),
        }
    }
}

pub struct GrpcWatch {
    responses: Streaming<pb::WatchResponse>,
}

impl GrpcWatch {
    /// The next message of the stream; `None` when it ends.
    pub async fn next(&mut self) -> Result<Option<WatchMsg>, BenchError> {
        let Some(r) = self.responses.message().await.map_err(rpc)? else {
            return Ok(None);
        };
        Ok(Some(if r.canceled {
            WatchMsg::Canceled(r.cancel_reason)
        } else if r.created {
            WatchMsg::Created
        } else {
            WatchMsg::Events(r.events.into_iter().filter_map(|e| e.kv).map(|kv| kv.value).collect())
        }))
    }
}
