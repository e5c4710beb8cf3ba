//! etcd's v3 gRPC API (tonic), under etcd's service names (`etcdserverpb.KV`,
//! `etcdserverpb.Maintenance`, ...) so etcdctl and other etcd clients can use it.
//! `KV`, `Cluster`, `Watch`, `Lease` and `Maintenance.Status`/`MoveLeader`/`HashKV`/
//! `Snapshot` are served, and etcd's recipe services `v3lockpb.Lock` and
//! `v3electionpb.Election` (`net::grpc_recipes`);
//! every other RPC of etcd's services is registered and answers `Unimplemented`
//! with a "stead: ... is not implemented yet" text, never a fake success.
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
        .add_service(limited!(AuthServer::new(NotServed)))
        .add_service(limited!(crate::net::grpc_recipes::lock_server(service.clone())))
        .add_service(limited!(crate::net::grpc_recipes::election_server(service)))
}

/// A service's answer as gRPC: the response, or etcd's code and text.
fn reply<T>(result: Result<T, RequestError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(|e| grpc_status(&e))
}

/// Implements a tonic service trait: the RPCs written out in `served`, and every
/// RPC listed in `not_implemented` answering `Unimplemented` with
/// "stead: etcdserverpb.<Service>/<Rpc> is not implemented yet".
macro_rules! grpc_service {
    (
        impl $trait:ident for $ty:ty {
            served { $($served:tt)* }
            not_implemented($service:literal) {
                $($rpc:ident($req:ty) -> $resp:ty = $name:literal;)*
            }
        }
    ) => {
        #[tonic::async_trait]
        impl $trait for $ty {
            $($served)*
            $(
                async fn $rpc(&self, _request: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(grpc_status(&RequestError::NotImplemented(concat!(
                        "etcdserverpb.", $service, "/", $name
                    ))))
                }
            )*
        }
    };
}

/// `etcdserverpb.KV`: every RPC served.
struct KvApi {
    service: ClientService,
}

#[tonic::async_trait]
impl Kv for KvApi {
    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        reply(self.service.range(request.into_inner()).await)
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        reply(self.service.put(request.into_inner()).await)
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        reply(self.service.delete_range(request.into_inner()).await)
    }

    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        reply(self.service.txn(request.into_inner()).await)
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        reply(self.service.compact(request.into_inner()).await)
    }
}

/// `etcdserverpb.Maintenance`: `Status`, `MoveLeader`, `HashKV` and `Snapshot`
/// served, the rest not yet.
struct MaintenanceApi {
    service: ClientService,
}

grpc_service! {
    impl Maintenance for MaintenanceApi {
        served {
            type SnapshotStream = BoxStream<'static, Result<pb::SnapshotResponse, Status>>;

            async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
                reply(self.service.status().await)
            }

            async fn move_leader(&self, request: Request<pb::MoveLeaderRequest>) -> Result<Response<pb::MoveLeaderResponse>, Status> {
                reply(self.service.move_leader(request.into_inner()).await)
            }

            async fn hash_kv(&self, request: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
                reply(self.service.hash_kv(request.into_inner()).await)
            }

            async fn snapshot(&self, _request: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
                let chunks = self.service.snapshot().await.map_err(|e| grpc_status(&e))?;
                Ok(Response::new(futures::stream::iter(chunks.into_iter().map(Ok)).boxed()))
            }
        }
        not_implemented("Maintenance") {
            alarm(pb::AlarmRequest) -> pb::AlarmResponse = "Alarm";
            defragment(pb::DefragmentRequest) -> pb::DefragmentResponse = "Defragment";
            hash(pb::HashRequest) -> pb::HashResponse = "Hash";
        }
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
        let mut session = WatchSession::open(hub).await.map_err(|e| grpc_status(&e))?;
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

/// The services stead does not serve yet: registered, so a client gets a clear
/// `Unimplemented` naming the RPC rather than an anonymous "unknown service".
struct NotServed;

/// `etcdserverpb.Lease`: every RPC served. A keep-alive stream answers each
/// request in order and ends when the client closes its side (as etcd).
struct LeaseApi {
    service: ClientService,
}

#[tonic::async_trait]
impl Lease for LeaseApi {
    type LeaseKeepAliveStream = BoxStream<'static, Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_grant(&self, request: Request<pb::LeaseGrantRequest>) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        reply(self.service.lease_grant(request.into_inner()).await)
    }

    async fn lease_revoke(&self, request: Request<pb::LeaseRevokeRequest>) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        reply(self.service.lease_revoke(request.into_inner()).await)
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
        reply(self.service.lease_time_to_live(request.into_inner()).await)
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
        reply(self.service.member_add(request.into_inner()).await)
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        reply(self.service.member_remove(request.into_inner()).await)
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        reply(self.service.member_update(request.into_inner()).await)
    }

    async fn member_list(&self, _request: Request<pb::MemberListRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        reply(self.service.member_list().await)
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        reply(self.service.member_promote(request.into_inner()).await)
    }
}

grpc_service! {
    impl Auth for NotServed {
        served {}
        not_implemented("Auth") {
            auth_enable(pb::AuthEnableRequest) -> pb::AuthEnableResponse = "AuthEnable";
            auth_disable(pb::AuthDisableRequest) -> pb::AuthDisableResponse = "AuthDisable";
            authenticate(pb::AuthenticateRequest) -> pb::AuthenticateResponse = "Authenticate";
            user_add(pb::AuthUserAddRequest) -> pb::AuthUserAddResponse = "UserAdd";
            user_get(pb::AuthUserGetRequest) -> pb::AuthUserGetResponse = "UserGet";
            user_list(pb::AuthUserListRequest) -> pb::AuthUserListResponse = "UserList";
            user_delete(pb::AuthUserDeleteRequest) -> pb::AuthUserDeleteResponse = "UserDelete";
            user_change_password(pb::AuthUserChangePasswordRequest) -> pb::AuthUserChangePasswordResponse = "UserChangePassword";
            user_grant_role(pb::AuthUserGrantRoleRequest) -> pb::AuthUserGrantRoleResponse = "UserGrantRole";
            user_revoke_role(pb::AuthUserRevokeRoleRequest) -> pb::AuthUserRevokeRoleResponse = "UserRevokeRole";
            role_add(pb::AuthRoleAddRequest) -> pb::AuthRoleAddResponse = "RoleAdd";
            role_get(pb::AuthRoleGetRequest) -> pb::AuthRoleGetResponse = "RoleGet";
            role_list(pb::AuthRoleListRequest) -> pb::AuthRoleListResponse = "RoleList";
            role_delete(pb::AuthRoleDeleteRequest) -> pb::AuthRoleDeleteResponse = "RoleDelete";
            role_grant_permission(pb::AuthRoleGrantPermissionRequest) -> pb::AuthRoleGrantPermissionResponse = "RoleGrantPermission";
            role_revoke_permission(pb::AuthRoleRevokePermissionRequest) -> pb::AuthRoleRevokePermissionResponse = "RoleRevokePermission";
        }
    }
}
