//! etcdctl 3.4.23's output printers (`printer_simple.go`, `printer_fields.go`,
//! `printer_json.go`, `printer_protobuf.go`, `printer_table.go`) over stead's
//! prost messages.
//!
//! `-w json` is Go's `encoding/json` of etcd's gogo structs — NOT the gateway's
//! proto3 JSON: int64/uint64 are bare numbers, bytes are base64, zero values are
//! omitted, names are the gogo `json` tags (`cluster_id`, `dbSize`) and txn
//! oneofs appear as `{"Response":{"ResponseRange":{…}}}`. Printers only write to
//! the buffers they are given; they never talk to the server.

use base64::Engine as _;
use prost::Message as _;

use super::gofmt;
use super::CtlError;
use crate::proto::etcdserverpb::{
    response_op, DeleteRangeResponse, PutResponse, RangeResponse, ResponseHeader, StatusResponse,
    TxnResponse,
};
use crate::proto::mvccpb::KeyValue;

/// The `-w/--write-out` formats etcdctl knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    /// etcdctl's `NewPrinter`: `None` for an unknown name.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "simple" => Some(Format::Simple),
            "json" => Some(Format::Json),
            "fields" => Some(Format::Fields),
            "table" => Some(Format::Table),
            "protobuf" => Some(Format::Protobuf),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }
}

/// One `endpoint health` result (etcdctl's `epHealth`).
#[derive(Clone, Debug, PartialEq)]
pub struct EpHealth {
    pub ep: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

/// One `endpoint status` result (etcdctl's `epStatus`).
#[derive(Clone, Debug, PartialEq)]
pub struct EpStatus {
    pub ep: String,
    pub resp: StatusResponse,
}

/// A printer bound to one output format.
#[derive(Clone, Debug)]
pub struct Printer {
    pub format: Format,
    pub hex: bool,
    /// `get --print-value-only` (simple format only).
    pub value_only: bool,
}

fn unsupported(format: Format) -> CtlError {
    CtlError::new(super::EXIT_BAD_FEATURE, format!("{} not supported as output format", format.name()))
}

impl Printer {
    pub fn new(format: Format, hex: bool) -> Printer {
        Printer { format, hex, value_only: false }
    }

    pub fn get(&self, out: &mut Vec<u8>, r: &RangeResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                for kv in &r.kvs {
                    self.print_kv(out, kv);
                }
            }
            Format::Fields => fields_get(out, r),
            Format::Json => line(out, &json_range(r)),
            Format::Protobuf => out.extend_from_slice(&r.encode_to_vec()),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn put(&self, out: &mut Vec<u8>, r: &PutResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                out.extend_from_slice(b"OK\n");
                if let Some(kv) = &r.prev_kv {
                    self.print_kv(out, kv);
                }
            }
            Format::Fields => fields_put(out, r),
            Format::Json => line(out, &json_put(r)),
            Format::Protobuf => out.extend_from_slice(&r.encode_to_vec()),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn del(&self, out: &mut Vec<u8>, r: &DeleteRangeResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                line(out, &r.deleted.to_string());
                for kv in &r.prev_kvs {
                    self.print_kv(out, kv);
                }
            }
            Format::Fields => fields_del(out, r),
            Format::Json => line(out, &json_del(r)),
            Format::Protobuf => out.extend_from_slice(&r.encode_to_vec()),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn txn(&self, out: &mut Vec<u8>, r: &TxnResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                line(out, if r.succeeded { "SUCCESS" } else { "FAILURE" });
                for op in &r.responses {
                    out.push(b'\n');
                    match &op.response {
                        Some(response_op::Response::ResponseDeleteRange(d)) => self.del(out, d)?,
                        Some(response_op::Response::ResponsePut(p)) => self.put(out, p)?,
                        Some(response_op::Response::ResponseRange(g)) => self.get(out, g)?,
                        // etcdctl prints Go's %+v of the unknown response; a nested txn
                        // cannot come from etcdctl's own txn syntax.
                        _ => line(out, &format!("unexpected response {op:?}")),
                    }
                }
            }
            Format::Fields => {
                fields_hdr(out, r.header.as_ref());
                line(out, &format!("\"Succeeded\" : {}", r.succeeded));
                for op in &r.responses {
                    match &op.response {
                        Some(response_op::Response::ResponseDeleteRange(d)) => fields_del(out, d),
                        Some(response_op::Response::ResponsePut(p)) => fields_put(out, p),
                        Some(response_op::Response::ResponseRange(g)) => fields_get(out, g),
                        other => line(out, &format!("\"Unknown\" : {}", gofmt::quote(format!("{other:?}").as_bytes()))),
                    }
                }
            }
            Format::Json => line(out, &json_txn(r)),
            Format::Protobuf => out.extend_from_slice(&r.encode_to_vec()),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `endpoint health`: the simple format writes to stderr, as etcdctl does.
    pub fn endpoint_health(
        &self,
        out: &mut Vec<u8>,
        err: &mut Vec<u8>,
        hs: &[EpHealth],
    ) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                for h in hs {
                    if h.error.is_empty() {
                        line(err, &format!("{} is healthy: successfully committed proposal: took = {}", h.ep, h.took));
                    } else {
                        line(err, &format!("{} is unhealthy: failed to commit proposal: {}", h.ep, h.error));
                    }
                }
            }
            Format::Fields => {
                for h in hs {
                    line(out, &format!("\"Endpoint\" : {}", gofmt::quote(h.ep.as_bytes())));
                    line(out, &format!("\"Health\" : {}", h.health));
                    line(out, &format!("\"Took\" : {}", h.took));
                    line(out, &format!("\"Error\" : {}", h.error));
                    out.push(b'\n');
                }
            }
            Format::Json => {
                let items: Vec<String> = hs
                    .iter()
                    .map(|h| {
                        // epHealth's tags: endpoint, health, took (no omitempty), error,omitempty.
                        let mut o = String::from("{");
                        o.push_str("\"endpoint\":");
                        gofmt::json_string(&h.ep, &mut o);
                        o.push_str(&format!(",\"health\":{}", h.health));
                        o.push_str(",\"took\":");
                        gofmt::json_string(&h.took, &mut o);
                        if !h.error.is_empty() {
                            o.push_str(",\"error\":");
                            gofmt::json_string(&h.error, &mut o);
                        }
                        o.push('}');
                        o
                    })
                    .collect();
                line(out, &format!("[{}]", items.join(",")));
            }
            Format::Table => {
                let rows: Vec<Vec<String>> = hs
                    .iter()
                    .map(|h| vec![h.ep.clone(), h.health.to_string(), h.took.clone(), h.error.clone()])
                    .collect();
                out.extend_from_slice(crate::ctl::table::render(&["endpoint", "health", "took", "error"], &rows).as_bytes());
            }
            Format::Protobuf => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn endpoint_status(&self, out: &mut Vec<u8>, st: &[EpStatus]) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                for row in status_rows(st) {
                    line(out, &row.join(", "));
                }
            }
            Format::Fields => {
                for s in st {
                    let r = &s.resp;
                    fields_hdr(out, r.header.as_ref());
                    line(out, &format!("\"Version\" : {}", gofmt::quote(r.version.as_bytes())));
                    line(out, &format!("\"DBSize\" : {}", r.db_size));
                    line(out, &format!("\"Leader\" : {}", r.leader));
                    line(out, &format!("\"IsLearner\" : {}", r.is_learner));
                    line(out, &format!("\"RaftIndex\" : {}", r.raft_index));
                    line(out, &format!("\"RaftTerm\" : {}", r.raft_term));
                    line(out, &format!("\"RaftAppliedIndex\" : {}", r.raft_applied_index));
                    line(out, &format!("\"Errors\" : [{}]", r.errors.join(" ")));
                    line(out, &format!("\"Endpoint\" : {}", gofmt::quote(s.ep.as_bytes())));
                    out.push(b'\n');
                }
            }
            Format::Json => {
                let items: Vec<String> = st
                    .iter()
                    .map(|s| {
                        let mut o = String::from("{\"Endpoint\":");
                        gofmt::json_string(&s.ep, &mut o);
                        o.push_str(",\"Status\":");
                        o.push_str(&json_status(&s.resp));
                        o.push('}');
                        o
                    })
                    .collect();
                line(out, &format!("[{}]", items.join(",")));
            }
            Format::Table => {
                let hdr = [
                    "endpoint", "ID", "version", "db size", "is leader", "is learner", "raft term",
                    "raft index", "raft applied index", "errors",
                ];
                out.extend_from_slice(crate::ctl::table::render(&hdr, &status_rows(st)).as_bytes());
            }
            Format::Protobuf => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// etcdctl's `printKV`: key line (unless value-only), then value line, raw bytes.
    fn print_kv(&self, out: &mut Vec<u8>, kv: &KeyValue) {
        if self.hex {
            if !self.value_only {
                line(out, &gofmt::hex_escaped(&kv.key));
            }
            line(out, &gofmt::hex_escaped(&kv.value));
        } else {
            if !self.value_only {
                out.extend_from_slice(&kv.key);
                out.push(b'\n');
            }
            out.extend_from_slice(&kv.value);
            out.push(b'\n');
        }
    }
}

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
}

fn status_rows(st: &[EpStatus]) -> Vec<Vec<String>> {
    st.iter()
        .map(|s| {
            let r = &s.resp;
            let member_id = r.header.as_ref().map(|h| h.member_id).unwrap_or(0);
            vec![
                s.ep.clone(),
                format!("{member_id:x}"),
                r.version.clone(),
                gofmt::humanize_bytes(r.db_size.max(0) as u64),
                (r.leader == member_id).to_string(),
                r.is_learner.to_string(),
                r.raft_term.to_string(),
                r.raft_index.to_string(),
                r.raft_applied_index.to_string(),
                r.errors.join(", "),
            ]
        })
        .collect()
}

// ---- fields printer (printer_fields.go) ----

fn fields_hdr(out: &mut Vec<u8>, h: Option<&ResponseHeader>) {
    let d = ResponseHeader::default();
    let h = h.unwrap_or(&d);
    line(out, &format!("\"ClusterID\" : {}", h.cluster_id));
    line(out, &format!("\"MemberID\" : {}", h.member_id));
    line(out, &format!("\"Revision\" : {}", h.revision));
    line(out, &format!("\"RaftTerm\" : {}", h.raft_term));
}

fn fields_kv(out: &mut Vec<u8>, pfx: &str, kv: &KeyValue) {
    line(out, &format!("\"{pfx}Key\" : {}", gofmt::quote(&kv.key)));
    line(out, &format!("\"{pfx}CreateRevision\" : {}", kv.create_revision));
    line(out, &format!("\"{pfx}ModRevision\" : {}", kv.mod_revision));
    line(out, &format!("\"{pfx}Version\" : {}", kv.version));
    line(out, &format!("\"{pfx}Value\" : {}", gofmt::quote(&kv.value)));
    line(out, &format!("\"{pfx}Lease\" : {}", kv.lease));
}

fn fields_get(out: &mut Vec<u8>, r: &RangeResponse) {
    fields_hdr(out, r.header.as_ref());
    for kv in &r.kvs {
        fields_kv(out, "", kv);
    }
    line(out, &format!("\"More\" : {}", r.more));
    line(out, &format!("\"Count\" : {}", r.count));
}

fn fields_put(out: &mut Vec<u8>, r: &PutResponse) {
    fields_hdr(out, r.header.as_ref());
    if let Some(kv) = &r.prev_kv {
        fields_kv(out, "Prev", kv);
    }
}

fn fields_del(out: &mut Vec<u8>, r: &DeleteRangeResponse) {
    fields_hdr(out, r.header.as_ref());
    line(out, &format!("\"Deleted\" : {}", r.deleted));
    for kv in &r.prev_kvs {
        fields_kv(out, "Prev", kv);
    }
}

// ---- Go encoding/json of the gogo structs ----

/// Builds one Go-`encoding/json` object: fields in struct order, `omitempty` zeros dropped.
struct GoObj(String);

impl GoObj {
    fn new() -> GoObj {
        GoObj(String::from("{"))
    }
    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(k);
        self.0.push_str("\":");
    }
    fn num<T: PartialEq + Default + std::fmt::Display>(&mut self, k: &str, v: T) {
        if v != T::default() {
            self.key(k);
            self.0.push_str(&v.to_string());
        }
    }
    fn flag(&mut self, k: &str, v: bool) {
        if v {
            self.key(k);
            self.0.push_str("true");
        }
    }
    fn bytes(&mut self, k: &str, v: &[u8]) {
        if !v.is_empty() {
            self.key(k);
            self.0.push('"');
            self.0.push_str(&base64::engine::general_purpose::STANDARD.encode(v));
            self.0.push('"');
        }
    }
    fn text(&mut self, k: &str, v: &str) {
        if !v.is_empty() {
            self.key(k);
            gofmt::json_string(v, &mut self.0);
        }
    }
    fn raw(&mut self, k: &str, json: &str) {
        self.key(k);
        self.0.push_str(json);
    }
    fn list(&mut self, k: &str, items: Vec<String>) {
        if !items.is_empty() {
            self.raw(k, &format!("[{}]", items.join(",")));
        }
    }
    fn done(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

fn json_hdr(o: &mut GoObj, h: Option<&ResponseHeader>) {
    if let Some(h) = h {
        let mut x = GoObj::new();
        x.num("cluster_id", h.cluster_id);
        x.num("member_id", h.member_id);
        x.num("revision", h.revision);
        x.num("raft_term", h.raft_term);
        o.raw("header", &x.done());
    }
}

fn json_kv(kv: &KeyValue) -> String {
    let mut o = GoObj::new();
    o.bytes("key", &kv.key);
    o.num("create_revision", kv.create_revision);
    o.num("mod_revision", kv.mod_revision);
    o.num("version", kv.version);
    o.bytes("value", &kv.value);
    o.num("lease", kv.lease);
    o.done()
}

pub(crate) fn json_range(r: &RangeResponse) -> String {
    let mut o = GoObj::new();
    json_hdr(&mut o, r.header.as_ref());
    o.list("kvs", r.kvs.iter().map(json_kv).collect());
    o.flag("more", r.more);
    o.num("count", r.count);
    o.done()
}

fn json_put(r: &PutResponse) -> String {
    let mut o = GoObj::new();
    json_hdr(&mut o, r.header.as_ref());
    if let Some(kv) = &r.prev_kv {
        o.raw("prev_kv", &json_kv(kv));
    }
    o.done()
}

fn json_del(r: &DeleteRangeResponse) -> String {
    let mut o = GoObj::new();
    json_hdr(&mut o, r.header.as_ref());
    o.num("deleted", r.deleted);
    o.list("prev_kvs", r.prev_kvs.iter().map(json_kv).collect());
    o.done()
}

fn json_txn(r: &TxnResponse) -> String {
    let mut o = GoObj::new();
    json_hdr(&mut o, r.header.as_ref());
    o.flag("succeeded", r.succeeded);
    let ops = r
        .responses
        .iter()
        .map(|op| {
            // ResponseOp{Response isResponseOp_Response} has no json tag: Go names it
            // "Response" and the oneof wrapper's field by its Go name.
            let inner = match &op.response {
                Some(response_op::Response::ResponseRange(g)) => format!("{{\"ResponseRange\":{}}}", json_range(g)),
                Some(response_op::Response::ResponsePut(p)) => format!("{{\"ResponsePut\":{}}}", json_put(p)),
                Some(response_op::Response::ResponseDeleteRange(d)) => {
                    format!("{{\"ResponseDeleteRange\":{}}}", json_del(d))
                }
                Some(response_op::Response::ResponseTxn(t)) => format!("{{\"ResponseTxn\":{}}}", json_txn(t)),
                None => "null".to_string(),
            };
            format!("{{\"Response\":{inner}}}")
        })
        .collect();
    o.list("responses", ops);
    o.done()
}

fn json_status(r: &StatusResponse) -> String {
    let mut o = GoObj::new();
    json_hdr(&mut o, r.header.as_ref());
    o.text("version", &r.version);
    o.num("dbSize", r.db_size);
    o.num("leader", r.leader);
    o.num("raftIndex", r.raft_index);
    o.num("raftTerm", r.raft_term);
    o.num("raftAppliedIndex", r.raft_applied_index);
    if !r.errors.is_empty() {
        let items: Vec<String> = r
            .errors
            .iter()
            .map(|e| {
                let mut s = String::new();
                gofmt::json_string(e, &mut s);
                s
            })
            .collect();
        o.list("errors", items);
    }
    o.num("dbSizeInUse", r.db_size_in_use);
    o.flag("isLearner", r.is_learner);
    o.done()
}
