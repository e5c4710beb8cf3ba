//! etcd's recipe services on the JSON gateway, at etcd's paths:
//! `/v3/lock/{lock,unlock}` and `/v3/election/{campaign,proclaim,leader,
//! observe,resign}`. Observe streams `{"result": LeaderResponse}` lines, as
//! etcd's gateway streams a server stream. Decoding and encoding only: the
//! recipes live in `crate::recipes`; this module must never hold state of its own.

use actix_web::{web, HttpResponse};
use futures::StreamExt;
use serde::Serialize;

use crate::net::gateway::{decode_request, rpc, unary, Acting};
use crate::proto::v3electionpb as epb;
use crate::recipes::{election, lock};

const LOCK: &str = "v3lockpb.Lock";
const ELECTION: &str = "v3electionpb.Election";

async fn lock_lock(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(LOCK, "Lock"), body, |s, r| async move { lock::lock(&s, r).await }).await
}

async fn lock_unlock(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(LOCK, "Unlock"), body, |s, r| async move { lock::unlock(&s, r).await }).await
}

async fn campaign(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(ELECTION, "Campaign"), body, |s, r| async move { election::campaign(&s, r).await }).await
}

async fn proclaim(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(ELECTION, "Proclaim"), body, |s, r| async move { election::proclaim(&s, r).await }).await
}

async fn leader(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(ELECTION, "Leader"), body, |s, r| async move { election::leader(&s, r).await }).await
}

async fn resign(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(ELECTION, "Resign"), body, |s, r| async move { election::resign(&s, r).await }).await
}

/// `POST /v3/election/observe`: one request, then a line per leader change for
/// as long as the client stays.
async fn observe(Acting(s): Acting, body: web::Payload) -> HttpResponse {
    let request: epb::LeaderRequest = match decode_request(&s, body).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    #[derive(Serialize)]
    struct Frame<'a> {
        result: &'a epb::LeaderResponse,
    }
    let lines = election::observe(s.clone(), request).map(|resp| {
        let mut line = serde_json::to_vec(&Frame { result: &resp }).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, actix_web::Error>(web::Bytes::from(line))
    });
    HttpResponse::Ok().content_type("application/json").streaming(lines)
}

/// The recipe routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v3/lock/lock", web::post().to(lock_lock))
        .route("/v3/lock/unlock", web::post().to(lock_unlock))
        .route("/v3/election/campaign", web::post().to(campaign))
        .route("/v3/election/proclaim", web::post().to(proclaim))
        .route("/v3/election/leader", web::post().to(leader))
        .route("/v3/election/observe", web::post().to(observe))
        .route("/v3/election/resign", web::post().to(resign));
}
