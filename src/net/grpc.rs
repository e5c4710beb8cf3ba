//! etcd's v3 gRPC API (tonic), under etcd's service names (`etcdserverpb.KV`,
//! `etcdserverpb.Maintenance`, ...) so etcdctl and other etcd clients can use it.
//! `KV`, `Cluster`, `Watch`, `Lease`, `Maintenance` and `Auth` are served in
//! full, and etcd's recipe services `v3lockpb.Lock` and `v3electionpb.Election`
//! (`net::grpc_recipes`); each call runs as the caller its metadata token names.
//!
//! Owns decoding and encoding only (tonic does both); every request goes to the
//! `ClientService`, and errors become etcd's code and text through
//! `net::status`. It must never hold state of its own.

use futures::stream::BoxStream;
use futures::StreamExt;
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use crate::error::RequestError;
use crate::net::status::grpc_status;
use crate::net::watch_session::WatchSession;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::auth_server::{Auth, AuthServer};
use crate::proto::etcdserverpb::cluster_server::{Cluster, ClusterServer};
use crate::proto::etcdserverpb::kv_server::{Kv, KvServer};
use crate::proto::etcdserverpb::lease_server::{Lease, LeaseServer};
use crate::proto::etcdserverpb::maintenance_server::{Maintenance, MaintenanceServer};
use crate::proto::etcdserverpb::watch_server::{Watch, WatchServer};
use crate::service::ClientService;

/// What etcd allows a gRPC request beyond `max-request-bytes` (its
/// `grpcOverheadBytes`): the request limit itself is checked on the decoded
/// request, with etcd's "request is too large".
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// etcd's largest gRPC response (`math.MaxInt32`).
const RESPONSE_BYTES_MAX: usize = i32::MAX as usize;

/// Every etcd v3 service, ready to be served on a connection.
pub fn routes(service: ClientService) -> Routes {
    let request_bytes_max = service.limits().max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES);
    // Each generated server has its own limits setters, hence the repetition.
    macro_rules! limited {
        ($server:expr) => {
            $server.max_decoding_message_size(request_bytes_max).max_encoding_message_size(RESPONSE_BYTES_MAX)
        };
    }
    Routes::new(limited!(KvServer::new(KvApi { service: service.clone() })))
        .add_service(limited!(MaintenanceServer::new(MaintenanceApi { service: service.clone() })))
        .add_service(limited!(WatchServer::new(WatchApi { service: service.clone() })))
        .add_service(limited!(ClusterServer::new(ClusterApi { service: service.clone() })))
        .add_service(limited!(LeaseServer::new(LeaseApi { service: service.clone() })))
        .add_service(limited!(AuthServer::new(AuthApi { service: service.clone() })))
        .add_service(limited!(crate::net::grpc_recipes::lock_server(service.clone())))
        .add_service(limited!(crate::net::grpc_recipes::election_server(service)))
}

/// The token a call carries: etcd's clients send it as metadata `token` (its
/// gateway as `authorization`).
fn token_of(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    ["token", "authorization"]
        .iter()
        .find_map(|k| metadata.get(*k))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The client service acting for a call's credentials, and the call's message.
pub(crate) fn acting<T>(service: &ClientService, request: Request<T>) -> (ClientService, T) {
    let acting = service.for_token(token_of(request.metadata()));
    (acting, request.into_inner())
}

/// A service's answer as gRPC: the response, or etcd's code and text.
fn reply<T>(result: Result<T, RequestError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(|e| grpc_status(&e))
}

/// `etcdserverpb.KV`: every RPC served.
struct KvApi {
    service: ClientService,
}

#[tonic::async_trait]
impl Kv for KvApi {
    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.range(request).await)
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.put(request).await)
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.delete_range(request).await)
    }

    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.txn(request).await)
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.compact(request).await)
    }
}

/// `etcdserverpb.Maintenance`: every RPC served.
struct MaintenanceApi {
    service: ClientService,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceApi {
    type SnapshotStream = BoxStream<'static, Result<pb::SnapshotResponse, Status>>;

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        reply(self.service.status().await)
    }

    async fn move_leader(&self, request: Request<pb::MoveLeaderRequest>) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.move_leader(request).await)
    }

    async fn alarm(&self, request: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.alarm(request).await)
    }

    async fn hash(&self, request: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        let (service, _) = acting(&self.service, request);
        reply(service.hash().await)
    }

    async fn defragment(&self, request: Request<pb::DefragmentRequest>) -> Result<Response<pb::DefragmentResponse>, Status> {
        let (service, _) = acting(&self.service, request);
        reply(service.defragment().await)
    }

    async fn hash_kv(&self, request: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.hash_kv(request).await)
    }

    async fn snapshot(&self, request: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let (service, _) = acting(&self.service, request);
        let chunks = service.snapshot().await.map_err(|e| grpc_status(&e))?;
        Ok(Response::new(futures::stream::iter(chunks.into_iter().map(Ok)).boxed()))
    }
}

/// `etcdserverpb.Watch`: one hub stream per call (`net::watch_session`, as the
/// JSON gateway drives it). Each inbound `WatchRequest` goes to the hub in order;
/// the hub's responses are the outbound stream. As etcd: the client closing its
/// sending side (EOF) does not end the call (the watchers keep sending); the call
/// ends when the client cancels it or goes away (tonic drops the outbound stream,
/// which closes the hub stream), or when the inbound side breaks off.
struct WatchApi {
    service: ClientService,
}

#[tonic::async_trait]
impl Watch for WatchApi {
    type WatchStream = BoxStream<'static, Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let hub = self
            .service
            .watch()
            .cloned()
            .ok_or_else(|| grpc_status(&RequestError::NotImplemented("etcdserverpb.Watch/Watch")))?;
        let caller = self.service.for_token(token_of(request.metadata()));
        let mut session = WatchSession::open(hub, caller).await.map_err(|e| grpc_status(&e))?;
        let sink = session.sink();
        let mut inbound = request.into_inner();
        let reader = tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(request)) => {
                        if !sink.send(request).await {
                            return;
                        }
                    }
                    // Half-closed: etcd's recvLoop returns quietly and the
                    // stream goes on until the client cancels.
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!("watch stream {}: inbound broke off ({status}); closing it", sink.stream());
                        sink.close();
                        return;
                    }
                }
            }
        });
        session.set_reader(reader.abort_handle());
        Ok(Response::new(Box::pin(session.into_responses().map(Ok))))
    }
}

/// `etcdserverpb.Lease`: every RPC served. A keep-alive stream answers each
/// request in order and ends when the client closes its side (as etcd).
struct LeaseApi {
    service: ClientService,
}

#[tonic::async_trait]
impl Lease for LeaseApi {
    type LeaseKeepAliveStream = BoxStream<'static, Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_grant(&self, request: Request<pb::LeaseGrantRequest>) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.lease_grant(request).await)
    }

    async fn lease_revoke(&self, request: Request<pb::LeaseRevokeRequest>) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.lease_revoke(request).await)
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let service = self.service.clone();
        let inbound = request.into_inner();
        let stream = futures::stream::unfold((service, inbound, false), |(service, mut inbound, done)| async move {
            if done {
                return None;
            }
            match inbound.message().await {
                Ok(Some(req)) => match service.lease_keep_alive(req.id).await {
                    Ok(resp) => Some((Ok(resp), (service, inbound, false))),
                    Err(e) => Some((Err(grpc_status(&e)), (service, inbound, true))),
                },
                Ok(None) => None,
                Err(status) => Some((Err(status), (service, inbound, true))),
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.lease_time_to_live(request).await)
    }

    async fn lease_leases(&self, _request: Request<pb::LeaseLeasesRequest>) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        reply(self.service.lease_leases().await)
    }
}

/// `etcdserverpb.Cluster`: every RPC served.
struct ClusterApi {
    service: ClientService,
}

#[tonic::async_trait]
impl Cluster for ClusterApi {
    async fn member_add(&self, request: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.member_add(request).await)
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.member_remove(request).await)
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.member_update(request).await)
    }

    async fn member_list(&self, _request: Request<pb::MemberListRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        reply(self.service.member_list().await)
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(service.member_promote(request).await)
    }
}

/// `etcdserverpb.Auth`: every RPC served; each asks with the call's token.
struct AuthApi {
    service: ClientService,
}

/// Implements a tonic service trait whose unary RPCs each hand the call's
/// message, with the caller's token, to the client service method of the same
/// name; `served` holds the RPCs written out.
macro_rules! acting_service {
    (
        impl $trait:ident for $ty:ty {
            served { $($served:tt)* }
            acting { $($rpc:ident($req:ty) -> $resp:ty;)* }
        }
    ) => {
        #[tonic::async_trait]
        impl $trait for $ty {
            $($served)*
            $(
                async fn $rpc(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    let (service, request) = acting(&self.service, request);
                    reply(service.$rpc(request).await)
                }
            )*
        }
    };
}

acting_service! {
    impl Auth for AuthApi {
        served {
            async fn auth_status(&self, request: Request<pb::AuthStatusRequest>) -> Result<Response<pb::AuthStatusResponse>, Status> {
                let (service, _) = acting(&self.service, request);
                reply(service.auth_status().await)
            }
        }
        acting {
        auth_enable(pb::AuthEnableRequest) -> pb::AuthEnableResponse;
        auth_disable(pb::AuthDisableRequest) -> pb::AuthDisableResponse;
        authenticate(pb::AuthenticateRequest) -> pb::AuthenticateResponse;
        user_add(pb::AuthUserAddRequest) -> pb::AuthUserAddResponse;
        user_get(pb::AuthUserGetRequest) -> pb::AuthUserGetResponse;
        user_list(pb::AuthUserListRequest) -> pb::AuthUserListResponse;
        user_delete(pb::AuthUserDeleteRequest) -> pb::AuthUserDeleteResponse;
        user_change_password(pb::AuthUserChangePasswordRequest) -> pb::AuthUserChangePasswordResponse;
        user_grant_role(pb::AuthUserGrantRoleRequest) -> pb::AuthUserGrantRoleResponse;
        user_revoke_role(pb::AuthUserRevokeRoleRequest) -> pb::AuthUserRevokeRoleResponse;
        role_add(pb::AuthRoleAddRequest) -> pb::AuthRoleAddResponse;
        role_get(pb::AuthRoleGetRequest) -> pb::AuthRoleGetResponse;
        role_list(pb::AuthRoleListRequest) -> pb::AuthRoleListResponse;
        role_delete(pb::AuthRoleDeleteRequest) -> pb::AuthRoleDeleteResponse;
        role_grant_permission(pb::AuthRoleGrantPermissionRequest) -> pb::AuthRoleGrantPermissionResponse;
        role_revoke_permission(pb::AuthRoleRevokePermissionRequest) -> pb::AuthRoleRevokePermissionResponse;
        }
    }
}
