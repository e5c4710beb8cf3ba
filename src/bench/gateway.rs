//! The JSON-gateway back-end: etcd's `/v3/...` HTTP/1.1 endpoints with proto3 JSON
//! bodies (bytes base64, int64 as strings). ureq is blocking, so every request
//! runs on the runtime's blocking pool; one `GatewayConn` is one keep-alive
//! connection, used by one client. A watch needs its own HTTP stream (and here its
//! own thread) per watcher. This module only encodes requests and reads answers.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{BenchError, Op, WatchMsg};

/// Stack of a gateway watch thread: it only reads lines and parses JSON.
const WATCH_THREAD_STACK: usize = 256 * 1024;
/// A unary request that takes longer than this is an error, not a sample.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()
}

/// An int64 in gateway JSON: a string, or a number from lenient servers.
fn int64(v: &Value) -> Option<i64> {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_i64())
}

#[derive(Clone)]
pub struct GatewayConn {
    base_url: String,
    agent: ureq::Agent,
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(timeout).build().into()
}

/// POSTs `body` and returns the JSON answer of a 200, or the error it carried.
fn post_blocking(agent: &ureq::Agent, url: &str, body: &Value) -> Result<Value, BenchError> {
    let transport = |e: ureq::Error| BenchError::Transport(e.to_string());
    let mut resp = agent.post(url).content_type("application/json").send(body.to_string()).map_err(transport)?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().map_err(transport)?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status != 200 {
        let message = answer.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or(text);
        return Err(BenchError::Http { status, message });
    }
    Ok(answer)
}

impl GatewayConn {
    pub fn new(base_url: &str) -> GatewayConn {
        GatewayConn { base_url: base_url.to_string(), agent: agent(Some(REQUEST_TIMEOUT)) }
    }

    /// Checks the endpoint answers (`GET /version`), so an unreachable one stops
    /// the run before it starts, as with gRPC.
    pub async fn probe(&self) -> Result<(), BenchError> {
        let (agent, url) = (self.agent.clone(), format!("{}/version", self.base_url));
        let connect_err = |reason: String| BenchError::Connect { endpoint: self.base_url.clone(), reason };
        let status = tokio::task::spawn_blocking(move || agent.get(&url).call().map(|r| r.status().as_u16()))
            .await
            .map_err(|e| connect_err(format!("probe thread failed: {e}")))?
            .map_err(|e| connect_err(e.to_string()))?;
        if status != 200 {
            return Err(connect_err(format!("GET /version answered HTTP {status}")));
        }
        Ok(())
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, BenchError> {
        let (agent, url) = (self.agent.clone(), format!("{}{path}", self.base_url));
        tokio::task::spawn_blocking(move || post_blocking(&agent, &url, &body))
            .await
            .map_err(|e| BenchError::Transport(format!("request thread failed: {e}")))?
    }

    /// This endpoint's member id and the leader it knows (0: none).
    pub async fn member_and_leader(&self) -> Result<(u64, u64), BenchError> {
        let answer = self.post("/v3/maintenance/status", json!({})).await?;
        // uint64 fields: strings in proto3 JSON.
        let uint64 = |v: Option<&Value>| v.and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_u64()));
        let member = uint64(answer.pointer("/header/member_id"));
        let leader = uint64(answer.get("leader")).unwrap_or_default();
        member.map(|m| (m, leader)).ok_or_else(|| BenchError::Answer(format!("status answer has no member id: {answer}")))
    }

    pub async fn exec(&self, op: &Op) -> Result<(), BenchError> {
        match op {
            Op::Put { key, value } => {
                self.post("/v3/kv/put", json!({"key": b64(key), "value": b64(value)})).await?;
            }
            Op::Range { key, range_end, serializable } => {
                let mut body = json!({"key": b64(key), "serializable": serializable});
                if !range_end.is_empty() {
                    body["range_end"] = json!(b64(range_end));
                }
                self.post("/v3/kv/range", body).await?;
            }
            Op::TxnPut(puts) => {
                let success: Vec<Value> =
                    puts.iter().map(|(k, v)| json!({"request_put": {"key": b64(k), "value": b64(v)}})).collect();
                let answer = self.post("/v3/kv/txn", json!({"success": success})).await?;
                if answer.get("succeeded") != Some(&Value::Bool(true)) {
                    return Err(BenchError::Answer("txn with no compares did not succeed".into()));
                }
            }
        }
        Ok(())
    }

    pub async fn lease_grant(&self, ttl_secs: i64) -> Result<i64, BenchError> {
        let answer = self.post("/v3/lease/grant", json!({"TTL": ttl_secs.to_string()})).await?;
        if let Some(e) = answer.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
            return Err(BenchError::Answer(format!("lease grant: {e}")));
        }
        answer.get("ID").and_then(int64).ok_or_else(|| BenchError::Answer(format!("lease grant answer has no ID: {answer}")))
    }

    pub async fn keepalive(&self, lease_id: i64) -> Result<(), BenchError> {
        let answer = self.post("/v3/lease/keepalive", json!({"ID": lease_id.to_string()})).await?;
        // etcd's gateway wraps stream answers in {"result": ...}.
        let result = answer.get("result").unwrap_or(&answer);
        match result.get("TTL").and_then(int64) {
            Some(ttl) if ttl > 0 => Ok(()),
            _ => Err(BenchError::Answer(format!("lease {lease_id:x} not found (keep-alive TTL 0)"))),
        }
    }

    /// Opens one HTTP watch stream per key, each read by its own thread; their
    /// messages arrive merged.
    pub fn watch_streams(&self, keys: Vec<Vec<u8>>) -> GatewayWatch {
        let (tx, rx) = mpsc::unbounded_channel();
        for key in keys {
            let (reader_tx, url) = (tx.clone(), format!("{}/v3/watch", self.base_url));
            let spawned = std::thread::Builder::new().name("gateway-watch".into()).stack_size(WATCH_THREAD_STACK).spawn(
                move || {
                    // A watch stream lives as long as the run: no overall timeout.
                    if let Err(e) = read_watch_stream(&agent(None), &url, &key, &reader_tx) {
                        let _ = reader_tx.send(Err(e));
                    }
                },
            );
            if let Err(e) = spawned {
                let _ = tx.send(Err(BenchError::Setup(format!("cannot start a watch stream thread: {e}"))));
            }
        }
        GatewayWatch { rx }
    }
}

fn read_watch_stream(
    agent: &ureq::Agent,
    url: &str,
    key: &[u8],
    tx: &mpsc::UnboundedSender<Result<WatchMsg, BenchError>>,
) -> Result<(), BenchError> {
    let transport = |e: &dyn std::fmt::Display| BenchError::Transport(e.to_string());
    let body = json!({"create_request": {"key": b64(key)}}).to_string();
    let mut resp = agent.post(url).content_type("application/json").send(body).map_err(|e| transport(&e))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let message = resp.body_mut().read_to_string().unwrap_or_default();
        return Err(BenchError::Http { status, message });
    }
    let reader = BufReader::new(resp.into_body().into_reader());
    for line in reader.lines() {
        let line = line.map_err(|e| transport(&e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| BenchError::Answer(format!("watch line {line:?}: {e}")))?;
        let Some(r) = v.get("result") else {
            let message = v.get("error").map(|e| e.to_string()).unwrap_or(line);
            return Err(BenchError::Answer(format!("watch stream: {message}")));
        };
        let msg = if r.get("canceled") == Some(&Value::Bool(true)) {
            WatchMsg::Canceled(r.get("cancel_reason").and_then(Value::as_str).unwrap_or("").to_string())
        } else if r.get("created") == Some(&Value::Bool(true)) {
            WatchMsg::Created
        } else {
            let events = r.get("events").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            WatchMsg::Events(
                events.iter().map(|e| unb64(e.pointer("/kv/value").and_then(Value::as_str).unwrap_or(""))).collect(),
            )
        };
        if tx.send(Ok(msg)).is_err() {
            return Ok(()); // the run is over
        }
    }
    Err(BenchError::Answer("watch stream ended".into()))
}

pub struct GatewayWatch {
    rx: mpsc::UnboundedReceiver<Result<WatchMsg, BenchError>>,
}

impl GatewayWatch {
    pub async fn next(&mut self) -> Result<Option<WatchMsg>, BenchError> {
        self.rx.recv().await.transpose()
    }
}
