//! etcd's recipe services over gRPC (tonic), under etcd's names:
//! `v3lockpb.Lock` and `v3electionpb.Election`. Decoding and encoding only: the
//! recipes live in `crate::recipes`; this module must never hold state of its
//! own. Errors carry etcd's code (Unknown) and text through `net::status`.

use futures::stream::BoxStream;
use futures::StreamExt;
use tonic::{Request, Response, Status};

use crate::error::RequestError;
use crate::net::grpc::acting;
use crate::net::status::grpc_status;
use crate::proto::v3electionpb as epb;
use crate::proto::v3electionpb::election_server::{Election, ElectionServer};
use crate::proto::v3lockpb;
use crate::proto::v3lockpb::lock_server::{Lock, LockServer};
use crate::recipes::{election, lock};
use crate::service::ClientService;

fn reply<T>(result: Result<T, RequestError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(|e| grpc_status(&e))
}

pub fn lock_server(service: ClientService) -> LockServer<LockApi> {
    LockServer::new(LockApi { service })
}

pub fn election_server(service: ClientService) -> ElectionServer<ElectionApi> {
    ElectionServer::new(ElectionApi { service })
}

/// `v3lockpb.Lock`. A Lock call whose client goes away (tonic drops the
/// handler) deletes its waiting key.
pub struct LockApi {
    service: ClientService,
}

#[tonic::async_trait]
impl Lock for LockApi {
    async fn lock(&self, request: Request<v3lockpb::LockRequest>) -> Result<Response<v3lockpb::LockResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(lock::lock(&service, request).await)
    }

    async fn unlock(&self, request: Request<v3lockpb::UnlockRequest>) -> Result<Response<v3lockpb::UnlockResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(lock::unlock(&service, request).await)
    }
}

/// `v3electionpb.Election`.
pub struct ElectionApi {
    service: ClientService,
}

#[tonic::async_trait]
impl Election for ElectionApi {
    type ObserveStream = BoxStream<'static, Result<epb::LeaderResponse, Status>>;

    async fn campaign(&self, request: Request<epb::CampaignRequest>) -> Result<Response<epb::CampaignResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(election::campaign(&service, request).await)
    }

    async fn proclaim(&self, request: Request<epb::ProclaimRequest>) -> Result<Response<epb::ProclaimResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(election::proclaim(&service, request).await)
    }

    async fn leader(&self, request: Request<epb::LeaderRequest>) -> Result<Response<epb::LeaderResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(election::leader(&service, request).await)
    }

    async fn observe(&self, request: Request<epb::LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let (service, request) = acting(&self.service, request);
        let stream = election::observe(service, request);
        Ok(Response::new(stream.map(Ok).boxed()))
    }

    async fn resign(&self, request: Request<epb::ResignRequest>) -> Result<Response<epb::ResignResponse>, Status> {
        let (service, request) = acting(&self.service, request);
        reply(election::resign(&service, request).await)
    }
}
