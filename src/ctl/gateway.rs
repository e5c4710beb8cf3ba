//! The HTTP side of steadctl: one `ureq` agent per run, POSTing proto3-JSON
//! requests to etcd's JSON gateway (`/v3/kv/range` …) and mapping gateway errors
//! (`{"error","message","code"}` + HTTP status) to the error values clientv3
//! would have produced, so that callers print etcdctl's exact texts.
//!
//! Owns endpoint order and fail-over, the command deadline, and clientv3's
//! retry rules (immutable calls retry on `Unavailable`; mutable ones never retry
//! once a server answered). It also writes clientv3's zap warning line to stderr
//! for each failed attempt, since etcdctl users see it there.

use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::gofmt;

/// gRPC status codes, as the gateway reports them in `"code"`.
pub const CODE_DEADLINE_EXCEEDED: i32 = 4;
pub const CODE_PERMISSION_DENIED: i32 = 7;
pub const CODE_UNIMPLEMENTED: i32 = 12;
pub const CODE_UNAVAILABLE: i32 = 14;
pub const CODE_UNKNOWN: i32 = 2;

/// The largest response body we accept (etcdctl's gRPC receive limit is MaxInt32).
const MAX_RESPONSE_BYTES: u64 = i32::MAX as u64;
/// clientv3's defaults: 25 ms between retries of an immutable call, at most 100 tries.
const RETRY_BACKOFF: Duration = Duration::from_millis(25);
const RETRY_ATTEMPTS_MAX: u32 = 100;

/// The token this run authenticated with (`--user`): every call carries it in
/// the `Authorization` header, as etcd's gateway expects. One process, one
/// identity, hence one value for the whole run.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Whether clientv3's retry warnings are written (`--debug`): etcdctl 3.4
/// prints them for every failed call, the project's spec session shows none.
static CLIENT_LOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn enable_client_log() {
    CLIENT_LOG.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Records the run's token (the first one wins).
pub fn set_token(token: String) {
    let _ = TOKEN.set(token);
}

/// `Authorization` with the run's token, if it authenticated.
pub fn authorize<B>(request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
    match TOKEN.get() {
        Some(token) => request.header("Authorization", token),
        None => request,
    }
}

/// One `--endpoints` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// As the user wrote it (printed by `endpoint health/status`).
    pub given: String,
    /// `http://host:port`, the base of gateway URLs.
    pub base_url: String,
    /// `host:port`, as clientv3 shows it in its log target.
    pub host: String,
}

impl Endpoint {
    /// Accepts `host:port` and `http://host:port`; TLS is not built in.
    pub fn parse(given: &str) -> Result<Endpoint, String> {
        let trimmed = given.trim();
        let host = if let Some(rest) = trimmed.strip_prefix("http://") {
            rest
        } else if trimmed.starts_with("https://") || trimmed.starts_with("unixs://") {
            return Err(format!(
                "endpoint {trimmed}: TLS is not supported by steadctl yet (use http:// or host:port)"
            ));
        } else if trimmed.starts_with("unix://") {
            return Err(format!("endpoint {trimmed}: unix sockets are not supported by steadctl yet"));
        } else {
            trimmed
        };
        let host = host.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(format!("endpoint {trimmed}: expected host:port or http://host:port"));
        }
        Ok(Endpoint { given: trimmed.to_string(), base_url: format!("http://{host}"), host: host.to_string() })
    }
}

/// How a failed call ended, in clientv3's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpcError {
    /// The server answered with a gRPC status (through the gateway).
    Status { code: i32, desc: String },
    /// The command deadline passed (clientv3: `context deadline exceeded`).
    Deadline,
}

impl RpcError {
    /// The text etcdctl prints after `Error: `: etcd's own errors by their
    /// description (clientv3's `rpctypes.Error`), others as `rpc error: …`.
    pub fn etcdctl_text(&self) -> String {
        match self {
            RpcError::Deadline => "context deadline exceeded".to_string(),
            RpcError::Status { code, desc } => {
                if is_known_etcd_error(desc) {
                    desc.clone()
                } else {
                    format!("rpc error: code = {} desc = {}", code_name(*code), desc)
                }
            }
        }
    }

    /// The grpc-go form clientv3's retry interceptor logs.
    fn log_text(&self, deadline_desc: &str) -> String {
        match self {
            RpcError::Deadline => {
                format!("rpc error: code = DeadlineExceeded desc = {deadline_desc}")
            }
            RpcError::Status { code, desc } => {
                format!("rpc error: code = {} desc = {}", code_name(*code), desc)
            }
        }
    }
}

/// Whether a call may be retried on `Unavailable` (clientv3's repeatable policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotence {
    /// Range, Status: retried while the server says Unavailable.
    Repeatable,
    /// Put, DeleteRange, Txn, Compact: never retried once a server answered.
    NonRepeatable,
}

/// How clientv3 would name the connection in its log lines.
#[derive(Clone, Debug)]
pub enum LogTarget {
    /// A balanced client: `endpoint://client-<uuid>/<first host>`.
    Balancer,
    /// A direct per-endpoint dial (Maintenance.Status): `passthrough:///<host>`.
    Passthrough,
    /// A call etcdctl does not make (steadctl's leader discovery): logs nothing.
    Quiet,
}

/// The HTTP client for one steadctl run.
pub struct Gateway {
    agent: ureq::Agent,
    endpoints: Vec<Endpoint>,
    dial_timeout: Duration,
    client_id: String,
    /// The host clientv3 would name in its log target: the first endpoint the
    /// client was made with (kept when a request is redirected to the leader).
    log_host: String,
}

enum Attempt {
    /// Never reached a server: try the next endpoint.
    Unreachable(String),
    Answer(Result<String, RpcError>),
}

impl Gateway {
    pub fn new(endpoints: Vec<Endpoint>, dial_timeout: Duration) -> Gateway {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent("steadctl")
            .build();
        let log_host = endpoints.first().map(|e| e.host.clone()).unwrap_or_default();
        Gateway { agent: ureq::Agent::new_with_config(config), endpoints, dial_timeout, client_id: uuid_v4(), log_host }
    }

    /// A gateway bound to a single endpoint (for per-endpoint commands), sharing the agent.
    pub fn for_endpoint(&self, ep: &Endpoint) -> Gateway {
        Gateway {
            agent: self.agent.clone(),
            endpoints: vec![ep.clone()],
            dial_timeout: self.dial_timeout,
            client_id: uuid_v4(),
            log_host: ep.host.clone(),
        }
    }

    /// The same client sending to other endpoints (the leader, for membership
    /// changes on stead) while it logs as the client etcdctl would have used.
    pub fn redirected(&self, endpoints: Vec<Endpoint>) -> Gateway {
        Gateway {
            agent: self.agent.clone(),
            endpoints,
            dial_timeout: self.dial_timeout,
            client_id: self.client_id.clone(),
            log_host: self.log_host.clone(),
        }
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// POST `req` as proto3 JSON to `path` and decode the answer.
    pub fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        timeout: Option<Duration>,
        idem: Idempotence,
        target: LogTarget,
    ) -> Result<Resp, RpcError> {
        let body = serde_json::to_string(req).map_err(|e| RpcError::Status {
            code: CODE_UNKNOWN,
            desc: format!("steadctl: cannot encode request: {e}"),
        })?;
        let text = self.call_raw(path, &body, timeout, idem, &target)?;
        serde_json::from_str(&text).map_err(|e| RpcError::Status {
            code: CODE_UNKNOWN,
            desc: format!("steadctl: cannot decode gateway response from {path}: {e}"),
        })
    }

    fn call_raw(
        &self,
        path: &str,
        body: &str,
        timeout: Option<Duration>,
        idem: Idempotence,
        target: &LogTarget,
    ) -> Result<String, RpcError> {
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let mut attempt: u32 = 0;
        let mut last_unreachable = String::new();
        loop {
            let mut answered = None;
            for ep in &self.endpoints {
                let remaining = match deadline {
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(r) if !r.is_zero() => Some(r),
                        _ => break,
                    },
                    None => None,
                };
                match self.post_once(ep, path, body, remaining) {
                    Attempt::Unreachable(why) => last_unreachable = why,
                    Attempt::Answer(r) => {
                        answered = Some(r);
                        break;
                    }
                }
            }
            match answered {
                Some(Ok(text)) => return Ok(text),
                Some(Err(e)) => {
                    self.warn(target, attempt, &e, &last_unreachable);
                    let retry = idem == Idempotence::Repeatable
                        && matches!(&e, RpcError::Status { code, .. } if *code == CODE_UNAVAILABLE)
                        && attempt + 1 < RETRY_ATTEMPTS_MAX;
                    if !retry || e == RpcError::Deadline {
                        return Err(e);
                    }
                    attempt += 1;
                }
                None => {
                    // No endpoint reachable: grpc-go keeps waiting for a connection
                    // until the command deadline, then reports DeadlineExceeded.
                    // With no deadline (txn, as in etcdctl) this waits for ever.
                    if let Some(d) = deadline {
                        if Instant::now() >= d {
                            self.warn(target, attempt, &RpcError::Deadline, &last_unreachable);
                            return Err(RpcError::Deadline);
                        }
                    }
                }
            }
            let pause = match deadline {
                Some(d) => RETRY_BACKOFF.min(d.saturating_duration_since(Instant::now())),
                None => RETRY_BACKOFF,
            };
            std::thread::sleep(pause);
        }
    }

    fn post_once(&self, ep: &Endpoint, path: &str, body: &str, remaining: Option<Duration>) -> Attempt {
        let url = format!("{}{}", ep.base_url, path);
        let connect = match remaining {
            Some(r) => r.min(self.dial_timeout),
            None => self.dial_timeout,
        };
        let result = authorize(self.agent.post(&url))
            .header("Content-Type", "application/json")
            .config()
            .timeout_global(remaining)
            .timeout_connect(Some(connect))
            .build()
            .send(body);
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => return classify_transport_error(ep, e),
        };
        let status = resp.status().as_u16();
        let text = match resp.body_mut().with_config().limit(MAX_RESPONSE_BYTES).read_to_string() {
            Ok(t) => t,
            Err(e) => {
                return match classify_transport_error(ep, e) {
                    Attempt::Unreachable(why) => Attempt::Answer(Err(RpcError::Status {
                        code: CODE_UNAVAILABLE,
                        desc: format!("error reading from server: {why}"),
                    })),
                    other => other,
                }
            }
        };
        if status == 200 {
            return Attempt::Answer(Ok(text));
        }
        Attempt::Answer(Err(gateway_error(status, &text, path)))
    }

    /// clientv3's `retrying of unary invoker failed` warning (zap JSON, stderr),
/// with `--debug` only.
    fn warn(&self, target: &LogTarget, attempt: u32, err: &RpcError, unreachable: &str) {
        if !CLIENT_LOG.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let first = self.log_host.as_str();
        let (target, deadline_desc) = match target {
            LogTarget::Quiet => return,
            LogTarget::Balancer => (
                format!("endpoint://client-{}/{}", self.client_id, first),
                "latest balancer error: all SubConns are in TransientFailure".to_string(),
            ),
            LogTarget::Passthrough => (
                format!("passthrough:///{first}"),
                format!(
                    "latest balancer error: connection error: desc = \"transport: Error while dialing {unreachable}\""
                ),
            ),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let line = format!(
            "{{\"level\":\"warn\",\"ts\":\"{}\",\"caller\":\"clientv3/retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker failed\",\"target\":{},\"attempt\":{},\"error\":{}}}\n",
            gofmt::zap_timestamp(now),
            zap_string(&target),
            attempt,
            zap_string(&err.log_text(&deadline_desc)),
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

fn classify_transport_error(ep: &Endpoint, e: ureq::Error) -> Attempt {
    use std::io::ErrorKind;
    let dial = |why: &str| Attempt::Unreachable(format!("dial tcp {}: {}", ep.host, why));
    match e {
        ureq::Error::Timeout(ureq::Timeout::Connect) | ureq::Error::Timeout(ureq::Timeout::Resolve) => {
            dial("i/o timeout")
        }
        ureq::Error::Timeout(_) => Attempt::Answer(Err(RpcError::Deadline)),
        ureq::Error::HostNotFound => dial("no such host"),
        ureq::Error::ConnectionFailed => dial("connect: connection refused"),
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => dial("connect: connection refused"),
            ErrorKind::AddrNotAvailable | ErrorKind::NotFound => dial(&io.to_string()),
            ErrorKind::TimedOut => Attempt::Answer(Err(RpcError::Deadline)),
            _ => Attempt::Answer(Err(RpcError::Status {
                code: CODE_UNAVAILABLE,
                desc: format!("error reading from server: {io}"),
            })),
        },
        other => Attempt::Answer(Err(RpcError::Status {
            code: CODE_UNAVAILABLE,
            desc: format!("steadctl: HTTP error talking to {}: {other}", ep.base_url),
        })),
    }
}

/// The gateway's error body `{"error","message","code"}` as a gRPC status.
pub fn gateway_error(http_status: u16, body: &str, path: &str) -> RpcError {
    #[derive(serde::Deserialize)]
    struct GwError {
        #[serde(default)]
        error: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        code: i32,
    }
    match serde_json::from_str::<GwError>(body) {
        Ok(e) if e.code != 0 || !e.message.is_empty() || !e.error.is_empty() => {
            let desc = if e.message.is_empty() { e.error } else { e.message };
            RpcError::Status { code: if e.code == 0 { CODE_UNKNOWN } else { e.code }, desc }
        }
        _ => {
            let code = match http_status {
                404 | 405 => CODE_UNIMPLEMENTED,
                401 => 16,
                403 => CODE_PERMISSION_DENIED,
                503 => CODE_UNAVAILABLE,
                504 => CODE_DEADLINE_EXCEEDED,
                _ => CODE_UNKNOWN,
            };
            let snippet: String = body.chars().take(200).collect();
            RpcError::Status {
                code,
                desc: format!("gateway {path} answered HTTP {http_status}: {}", snippet.trim()),
            }
        }
    }
}

/// grpc-go's `codes.Code.String()`.
pub fn code_name(code: i32) -> String {
    let name = match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        other => return format!("Code({other})"),
    };
    name.to_string()
}

/// The descriptions clientv3 turns back into typed etcd errors
/// (`etcdserver/api/v3rpc/rpctypes/error.go`, `errStringToError`).
const KNOWN_ETCD_ERRORS: &[&str] = &[
    "etcdserver: key is not provided",
    "etcdserver: key not found",
    "etcdserver: value is provided",
    "etcdserver: lease is provided",
    "etcdserver: too many operations in txn request",
    "etcdserver: duplicate key given in txn request",
    "etcdserver: mvcc: required revision has been compacted",
    "etcdserver: mvcc: required revision is a future revision",
    "etcdserver: mvcc: database space exceeded",
    "etcdserver: requested lease not found",
    "etcdserver: lease already exists",
    "etcdserver: too large lease TTL",
    "etcdserver: member ID already exist",
    "etcdserver: Peer URLs already exists",
    "etcdserver: re-configuration failed due to not enough started members",
    "etcdserver: given member URLs are invalid",
    "etcdserver: member not found",
    "etcdserver: can only promote a learner member",
    "etcdserver: can only promote a learner member which is in sync with leader",
    "etcdserver: too many learner members in cluster",
    "etcdserver: request is too large",
    "etcdserver: too many requests",
    "etcdserver: root user does not exist",
    "etcdserver: root user does not have root role",
    "etcdserver: user name already exists",
    "etcdserver: user name is empty",
    "etcdserver: user name not found",
    "etcdserver: role name already exists",
    "etcdserver: role name not found",
    "etcdserver: role name is empty",
    "etcdserver: authentication failed, invalid user ID or password",
    "etcdserver: permission denied",
    "etcdserver: role is not granted to the user",
    "etcdserver: permission is not granted to the role",
    "etcdserver: authentication is not enabled",
    "etcdserver: invalid auth token",
    "etcdserver: invalid auth management",
    "etcdserver: revision of auth store is old",
    "etcdserver: no leader",
    "etcdserver: not leader",
    "etcdserver: leader changed",
    "etcdserver: not capable",
    "etcdserver: server stopped",
    "etcdserver: request timed out",
    "etcdserver: request timed out, possibly due to previous leader failure",
    "etcdserver: request timed out, possibly due to connection lost",
    "etcdserver: request timed out, waiting for the applied index took too long",
    "etcdserver: unhealthy cluster",
    "etcdserver: corrupt cluster",
    "etcdserver: rpc not supported for learner",
    "etcdserver: bad leader transferee",
];

pub fn is_known_etcd_error(desc: &str) -> bool {
    KNOWN_ETCD_ERRORS.contains(&desc)
}

/// zap's JSON string encoding (no HTML escaping, unlike encoding/json).
fn zap_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A random RFC 4122 v4 UUID (clientv3 names each client with one). std's
/// `RandomState` is seeded from the OS, which is random enough for a log label.
fn uuid_v4() -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
        h.finish()
    };
    let (a, b) = (word(), word());
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_host_port_and_http() {
        let e = Endpoint::parse("127.0.0.1:2379").unwrap();
        assert_eq!(e.base_url, "http://127.0.0.1:2379");
        assert_eq!(e.host, "127.0.0.1:2379");
        let e = Endpoint::parse("http://127.0.0.1:2379/").unwrap();
        assert_eq!((e.given.as_str(), e.host.as_str()), ("http://127.0.0.1:2379/", "127.0.0.1:2379"));
        assert!(Endpoint::parse("https://127.0.0.1:2379").is_err());
    }

    #[test]
    fn gateway_errors_map_to_etcdctl_text() {
        // Bodies captured from etcd 3.4.23's gateway.
        let cases = [
            (
                400,
                r#"{"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11}"#,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                400,
                r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#,
                "etcdserver: key is not provided",
            ),
            (500, r#"{"error":"boom","message":"boom","code":13}"#, "rpc error: code = Internal desc = boom"),
            (404, "404 page not found", "rpc error: code = Unimplemented desc = gateway /v3/x answered HTTP 404: 404 page not found"),
        ];
        for (status, body, want) in cases {
            assert_eq!(gateway_error(status, body, "/v3/x").etcdctl_text(), want);
        }
        assert_eq!(RpcError::Deadline.etcdctl_text(), "context deadline exceeded");
    }

    #[test]
    fn uuid_has_v4_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
