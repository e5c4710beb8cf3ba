//! etcd's JSON gateway over HTTP/1.1 (actix-web), at etcd's paths: the proto3 JSON
//! mapping of the API messages in, the same out (bytes base64, int64 as strings,
//! snake_case names; both spellings accepted on input, unknown fields ignored).
//!
//! Owns decoding, encoding and error bodies only; every request goes to the
//! `ClientService`. It must never hold state of its own.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::RequestError;
use crate::metrics::{grpc_code_name, Rpc};
use crate::proto::etcdserverpb as pb;
use crate::net::grpc_codec;
use crate::net::status::etcd_status;
use crate::service::{ClientService, ETCD_API_VERSION, ETCD_CLUSTER_VERSION};

/// The client service acting for a gateway request's credentials: etcd's
/// gateway hands the `Authorization` header on as the call's token.
pub struct Acting(pub ClientService);

impl actix_web::FromRequest for Acting {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let token = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        std::future::ready(match req.app_data::<web::Data<ClientService>>() {
            Some(service) => Ok(Acting(service.for_token(token))),
            None => Err(actix_web::error::ErrorInternalServerError("no client service on this route")),
        })
    }
}

/// The JSON body of an error, as etcd's gateway writes it.
fn error_response(err: &RequestError) -> HttpResponse {
    /// Field order as etcd's gateway writes it.
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: &'a str,
        message: &'a str,
        code: i32,
    }
    let (code, text) = etcd_status(err);
    let body = serde_json::to_string(&ErrorBody { error: &text, message: &text, code: code as i32 }).unwrap_or_default();
    HttpResponse::build(StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(body)
}

fn json_response<T: Serialize>(value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => HttpResponse::Ok().content_type("application/json").body(body),
        Err(e) => error_response(&RequestError::Internal(format!("encoding the response: {e}"))),
    }
}

/// Decodes a request body; an empty body is the empty request, as in etcd.
fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))
}

/// Base64 and JSON grow a request by about 4/3; past this it cannot fit the limit
/// once decoded, so reading stops there instead of buffering an unbounded body.
fn body_limit(max_request_bytes: usize) -> usize {
    max_request_bytes.saturating_mul(2).saturating_add(64 * 1024)
}

async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, RequestError> {
    use futures::StreamExt;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| RequestError::Malformed(format!("reading the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(RequestError::RequestTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A streaming endpoint's one request, or the error answer to give instead.
pub(crate) async fn decode_request<Req: DeserializeOwned + Default>(
    service: &ClientService,
    payload: web::Payload,
) -> Result<Req, HttpResponse> {
    let body = read_body(payload, body_limit(service.limits().max_request_bytes)).await.map_err(|e| error_response(&e))?;
    decode::<Req>(&body).map_err(|e| error_response(&e))
}

/// Decode, call, encode: the shape of every unary gateway endpoint. Counted as
/// the gRPC call it stands for (etcd's gateway calls its gRPC server, so etcd's
/// `grpc_server_*` metrics and its client gRPC bytes count gateway requests too).
pub(crate) async fn unary<Req, Resp, F, Fut>(
    Acting(service): Acting,
    rpc: Rpc,
    payload: web::Payload,
    call: F,
) -> HttpResponse
where
    Req: DeserializeOwned + Default + prost::Message,
    Resp: Serialize + prost::Message,
    F: FnOnce(ClientService, Req) -> Fut,
    Fut: Future<Output = Result<Resp, RequestError>>,
{
    let metrics = service.metrics().clone();
    metrics.rpc_started(rpc);
    let started = std::time::Instant::now();
    let (response, code) = unary_call(service, payload, call).await;
    metrics.rpc_handled(rpc, code, started);
    response
}

/// A unary call's answer and its gRPC code name (`OK`, `InvalidArgument`, …).
async fn unary_call<Req, Resp, F, Fut>(service: ClientService, payload: web::Payload, call: F) -> (HttpResponse, &'static str)
where
    Req: DeserializeOwned + Default + prost::Message,
    Resp: Serialize + prost::Message,
    F: FnOnce(ClientService, Req) -> Fut,
    Fut: Future<Output = Result<Resp, RequestError>>,
{
    let failed = |e: RequestError| (error_response(&e), grpc_code_name(etcd_status(&e).0 as i32));
    let body = match read_body(payload, body_limit(service.limits().max_request_bytes)).await {
        Ok(b) => b,
        Err(e) => return failed(e),
    };
    let request = match decode::<Req>(&body) {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    grpc_codec::count_received(request.encoded_len());
    match call(service, request).await {
        Ok(resp) => {
            grpc_codec::count_sent(resp.encoded_len());
            (json_response(&resp), "OK")
        }
        Err(e) => failed(e),
    }
}

async fn range(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(KV, "Range"), body, |s, r| async move { s.range(r).await }).await
}

async fn put(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(KV, "Put"), body, |s, r| async move { s.put(r).await }).await
}

async fn delete_range(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(KV, "DeleteRange"), body, |s, r| async move { s.delete_range(r).await }).await
}

async fn txn(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(KV, "Txn"), body, |s, r| async move { s.txn(r).await }).await
}

async fn compaction(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(KV, "Compact"), body, |s, r| async move { s.compact(r).await }).await
}

async fn status(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(MAINTENANCE, "Status"), body, |s, _: crate::proto::etcdserverpb::StatusRequest| async move { s.status().await }).await
}

/// etcd's gateway maps both Hash and HashKV to `/v3/maintenance/hash`; its
/// grpc-gateway mux serves the pattern registered last, HashKV, so this does
/// too (an absent `revision` hashes at the current revision).
async fn hash_kv(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(MAINTENANCE, "HashKV"), body, |s, r: crate::proto::etcdserverpb::HashKvRequest| async move { s.hash_kv(r).await }).await
}

async fn alarm(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(MAINTENANCE, "Alarm"), body, |s, r| async move { s.alarm(r).await }).await
}

async fn defragment(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(MAINTENANCE, "Defragment"), body, |s, _: pb::DefragmentRequest| async move { s.defragment().await }).await
}

/// etcd's gateway Snapshot stream: one `{"result": SnapshotResponse}` line per
/// chunk (blob base64), as grpc-gateway writes a server stream.
async fn snapshot(Acting(s): Acting) -> HttpResponse {
    #[derive(Serialize)]
    struct Line<'a> {
        result: &'a pb::SnapshotResponse,
    }
    let chunks = match s.snapshot().await {
        Ok(chunks) => chunks,
        Err(e) => return error_response(&e),
    };
    let mut body = Vec::new();
    for chunk in &chunks {
        if let Err(e) = serde_json::to_writer(&mut body, &Line { result: chunk }) {
            return error_response(&RequestError::Internal(format!("encoding the snapshot: {e}")));
        }
        body.push(b'\n');
    }
    HttpResponse::Ok().content_type("application/json").body(body)
}

async fn member_list(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(CLUSTER, "MemberList"), body, |s, _: pb::MemberListRequest| async move { s.member_list().await }).await
}

async fn member_add(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(CLUSTER, "MemberAdd"), body, |s, r| async move { s.member_add(r).await }).await
}

async fn member_remove(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(CLUSTER, "MemberRemove"), body, |s, r| async move { s.member_remove(r).await }).await
}

async fn member_update(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(CLUSTER, "MemberUpdate"), body, |s, r| async move { s.member_update(r).await }).await
}

async fn member_promote(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(CLUSTER, "MemberPromote"), body, |s, r| async move { s.member_promote(r).await }).await
}

async fn move_leader(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(MAINTENANCE, "MoveLeader"), body, |s, r| async move { s.move_leader(r).await }).await
}

async fn lease_grant(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(LEASE, "LeaseGrant"), body, |s, r| async move { s.lease_grant(r).await }).await
}

async fn lease_revoke(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(LEASE, "LeaseRevoke"), body, |s, r| async move { s.lease_revoke(r).await }).await
}

async fn lease_time_to_live(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(LEASE, "LeaseTimeToLive"), body, |s, r| async move { s.lease_time_to_live(r).await }).await
}

async fn lease_leases(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(LEASE, "LeaseLeases"), body, |s, _: pb::LeaseLeasesRequest| async move { s.lease_leases().await }).await
}

/// etcd's gateway keep-alive stream: the body is a stream of JSON
/// `LeaseKeepAliveRequest` objects, read as they arrive; each is answered by a
/// `{"result": LeaseKeepAliveResponse}` line. The stream ends when the body does
/// (etcd's server returns on the client's EOF), or with an `{"error": …}` line
/// when a keep-alive fails.
async fn lease_keep_alive(s: Acting, body: web::Payload) -> HttpResponse {
    use futures::StreamExt;
    let limit = body_limit(s.0.limits().max_request_bytes);
    struct State {
        service: ClientService,
        payload: web::Payload,
        buf: Vec<u8>,
        done: bool,
        limit: usize,
    }
    fn line<T: Serialize>(v: &T) -> web::Bytes {
        let mut l = serde_json::to_vec(v).unwrap_or_default();
        l.push(b'\n');
        web::Bytes::from(l)
    }
    fn error_line(e: &RequestError) -> web::Bytes {
        let (code, text) = etcd_status(e);
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        line(&serde_json::json!({"error": {
            "grpc_code": code as i32,
            "http_code": status.as_u16(),
            "message": text,
            "http_status": status.canonical_reason().unwrap_or(""),
        }}))
    }
    let state = State { service: s.0, payload: body, buf: Vec::new(), done: false, limit };
    let stream = futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            // A complete request buffered?
            let mut values = serde_json::Deserializer::from_slice(&st.buf).into_iter::<pb::LeaseKeepAliveRequest>();
            match values.next() {
                Some(Ok(req)) => {
                    let used = values.byte_offset();
                    st.buf.drain(..used);
                    grpc_codec::count_received(prost::Message::encoded_len(&req));
                    let out = match st.service.lease_keep_alive(req.id).await {
                        Ok(resp) => {
                            grpc_codec::count_sent(prost::Message::encoded_len(&resp));
                            #[derive(Serialize)]
                            struct Frame<'a> {
                                result: &'a pb::LeaseKeepAliveResponse,
                            }
                            line(&Frame { result: &resp })
                        }
                        Err(e) => {
                            st.done = true;
                            error_line(&e)
                        }
                    };
                    return Some((Ok::<_, actix_web::Error>(out), st));
                }
                Some(Err(e)) if !e.is_eof() => {
                    st.done = true;
                    return Some((Ok(error_line(&RequestError::Malformed(e.to_string()))), st));
                }
                _ => {}
            }
            match st.payload.next().await {
                Some(Ok(chunk)) => {
                    if st.buf.len() + chunk.len() > st.limit {
                        st.done = true;
                        return Some((Ok(error_line(&RequestError::RequestTooLarge)), st));
                    }
                    st.buf.extend_from_slice(&chunk);
                }
                _ => return None,
            }
        }
    });
    HttpResponse::Ok().content_type("application/json").streaming(stream)
}

/// etcd's gRPC service names, for the metrics' `grpc_service` label.
const KV: &str = "etcdserverpb.KV";
const CLUSTER: &str = "etcdserverpb.Cluster";
const MAINTENANCE: &str = "etcdserverpb.Maintenance";
const LEASE: &str = "etcdserverpb.Lease";

pub(crate) const fn rpc(service: &'static str, method: &'static str) -> Rpc {
    Rpc { service, method }
}

/// Prometheus' text format: etcd's metrics and stead's per-actor ones. Also
/// served on `--listen-metrics-urls`.
pub(crate) async fn metrics(s: web::Data<ClientService>) -> HttpResponse {
    HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(s.metrics_text().await)
}

/// etcd's `/health`: false while an alarm is active (but those named by
/// `?exclude=NOSPACE`…), else true once a linearizable read completes in time.
/// Body and content type as etcd's (a failure is written by Go's `http.Error`,
/// hence the newline). Also served on `--listen-metrics-urls`.
pub(crate) async fn health(s: web::Data<ClientService>, req: actix_web::HttpRequest) -> HttpResponse {
    let excluded: Vec<String> = req
        .query_string()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("exclude="))
        .map(str::to_string)
        .collect();
    let alarmed = match s.active_alarms().await {
        Ok(alarms) => alarms.iter().any(|a| !excluded.contains(&crate::kv::alarms::alarm_name(a.alarm))),
        Err(_) => true,
    };
    let healthy = !alarmed && s.healthy().await;
    s.metrics().count_health_check(healthy);
    let (status, body) = if healthy {
        (StatusCode::OK, "{\"health\":\"true\"}")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "{\"health\":\"false\"}\n")
    };
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(body)
}

async fn version() -> HttpResponse {
    let body = serde_json::json!({
        "etcdserver": ETCD_API_VERSION,
        "etcdcluster": ETCD_CLUSTER_VERSION,
        "stead": env!("CARGO_PKG_VERSION"),
    });
    HttpResponse::Ok().content_type("application/json").body(body.to_string())
}

/// The gateway's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v3/kv/range", web::post().to(range))
        .route("/v3/kv/put", web::post().to(put))
        .route("/v3/kv/deleterange", web::post().to(delete_range))
        .route("/v3/kv/txn", web::post().to(txn))
        .route("/v3/kv/compaction", web::post().to(compaction))
        .route("/v3/watch", web::post().to(crate::net::gateway_watch::watch))
        .route("/v3/lease/grant", web::post().to(lease_grant))
        .route("/v3/lease/revoke", web::post().to(lease_revoke))
        .route("/v3/kv/lease/revoke", web::post().to(lease_revoke))
        .route("/v3/lease/keepalive", web::post().to(lease_keep_alive))
        .route("/v3/lease/timetolive", web::post().to(lease_time_to_live))
        .route("/v3/kv/lease/timetolive", web::post().to(lease_time_to_live))
        .route("/v3/lease/leases", web::post().to(lease_leases))
        .route("/v3/kv/lease/leases", web::post().to(lease_leases))
        .route("/v3/maintenance/status", web::post().to(status))
        .route("/v3/maintenance/alarm", web::post().to(alarm))
        .route("/v3/maintenance/defragment", web::post().to(defragment))
        .route("/v3/maintenance/snapshot", web::post().to(snapshot))
        .route("/v3/maintenance/hash", web::post().to(hash_kv))
        .route("/v3/maintenance/transfer-leadership", web::post().to(move_leader))
        .route("/v3/cluster/member/list", web::post().to(member_list))
        .route("/v3/cluster/member/add", web::post().to(member_add))
        .route("/v3/cluster/member/remove", web::post().to(member_remove))
        .route("/v3/cluster/member/update", web::post().to(member_update))
        .route("/v3/cluster/member/promote", web::post().to(member_promote))
        .configure(crate::net::gateway_auth::configure)
        .route("/metrics", web::get().to(metrics))
        .route("/health", web::get().to(health))
        .route("/version", web::get().to(version))
        .configure(crate::net::gateway_recipes::configure);
}
