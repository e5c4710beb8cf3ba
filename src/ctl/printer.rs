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
    response_op, DeleteRangeResponse, Member, MemberAddResponse, MemberListResponse, MemberPromoteResponse,
    MemberRemoveResponse, MemberUpdateResponse, MoveLeaderResponse, PutResponse, RangeResponse, ResponseHeader,
    StatusResponse, TxnResponse,
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

    /// `member list`: `makeMemberListTable`'s rows (simple, table), the fields
    /// printer's per-member block, or the response itself (json, protobuf).
    pub fn member_list(&self, out: &mut Vec<u8>, r: &MemberListResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                for row in member_rows(&r.members) {
                    line(out, &row.join(", "));
                }
            }
            Format::Table => {
                let hdr = ["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"];
                out.extend_from_slice(crate::ctl::table::render(&hdr, &member_rows(&r.members)).as_bytes());
            }
            Format::Fields => {
                fields_hdr(out, r.header.as_ref());
                for m in &r.members {
                    line(out, &format!("\"ID\" : {}", m.id));
                    line(out, &format!("\"Name\" : {}", gofmt::quote(m.name.as_bytes())));
                    for u in &m.peer_ur_ls {
                        line(out, &format!("\"PeerURL\" : {}", gofmt::quote(u.as_bytes())));
                    }
                    for u in &m.client_ur_ls {
                        line(out, &format!("\"ClientURL\" : {}", gofmt::quote(u.as_bytes())));
                    }
                    line(out, &format!("\"IsLearner\" : {}", m.is_learner));
                    out.push(b'\n');
                }
            }
            Format::Json => {
                let mut o = GoObj::new();
                json_hdr(&mut o, r.header.as_ref());
                o.list("members", r.members.iter().map(json_member).collect());
                line(out, &o.done());
            }
            Format::Protobuf => out.extend_from_slice(&r.encode_to_vec()),
        }
        Ok(())
    }

    /// `member add`. The simple format also prints the environment block etcdctl
    /// prints for starting the new member: `name` is the name given on the command
    /// line (the new member has none yet), `peer_urls` the `--peer-urls` value as given.
    pub fn member_add(&self, out: &mut Vec<u8>, r: &MemberAddResponse, name: &str, peer_urls: &str) -> Result<(), CtlError> {
        let new_id = r.member.as_ref().map(|m| m.id).unwrap_or(0);
        match self.format {
            Format::Simple => {
                line(out, &format!("Member {new_id:16x} added to cluster {:16x}", cluster_id(r.header.as_ref())));
                let conf: Vec<String> = r
                    .members
                    .iter()
                    .flat_map(|m| {
                        let n = if m.id == new_id { name } else { m.name.as_str() };
                        m.peer_ur_ls.iter().map(move |u| format!("{n}={u}"))
                    })
                    .collect();
                out.push(b'\n');
                line(out, &format!("ETCD_NAME={}", gofmt::quote(name.as_bytes())));
                line(out, &format!("ETCD_INITIAL_CLUSTER={}", gofmt::quote(conf.join(",").as_bytes())));
                line(out, &format!("ETCD_INITIAL_ADVERTISE_PEER_URLS={}", gofmt::quote(peer_urls.as_bytes())));
                line(out, "ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
            }
            Format::Json => {
                let mut o = GoObj::new();
                json_hdr(&mut o, r.header.as_ref());
                if let Some(m) = &r.member {
                    o.raw("member", &json_member(m));
                }
                o.list("members", r.members.iter().map(json_member).collect());
                line(out, &o.done());
            }
            Format::Protobuf => out.extend_from_slice(&r.encode_to_vec()),
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn member_remove(&self, out: &mut Vec<u8>, id: u64, r: &MemberRemoveResponse) -> Result<(), CtlError> {
        self.member_changed(out, id, "removed from", r.header.as_ref(), &r.members, || r.encode_to_vec())
    }

    pub fn member_update(&self, out: &mut Vec<u8>, id: u64, r: &MemberUpdateResponse) -> Result<(), CtlError> {
        self.member_changed(out, id, "updated in", r.header.as_ref(), &r.members, || r.encode_to_vec())
    }

    pub fn member_promote(&self, out: &mut Vec<u8>, id: u64, r: &MemberPromoteResponse) -> Result<(), CtlError> {
        self.member_changed(out, id, "promoted in", r.header.as_ref(), &r.members, || r.encode_to_vec())
    }

    /// Remove, update and promote answer alike: `{header, members}`.
    fn member_changed(
        &self,
        out: &mut Vec<u8>,
        id: u64,
        verb: &str,
        header: Option<&ResponseHeader>,
        members: &[Member],
        encode: impl FnOnce() -> Vec<u8>,
    ) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => line(out, &format!("Member {id:16x} {verb} cluster {:16x}", cluster_id(header))),
            Format::Json => {
                let mut o = GoObj::new();
                json_hdr(&mut o, header);
                o.list("members", members.iter().map(json_member).collect());
                line(out, &o.done());
            }
            Format::Protobuf => out.extend_from_slice(&encode()),
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `move-leader`: IDs as etcd's `types.ID` prints them (hex, unpadded).
    pub fn move_leader(&self, out: &mut Vec<u8>, leader: u64, target: u64, r: &MoveLeaderResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => line(out, &format!("Leadership transferred from {leader:x} to {target:x}")),
            Format::Json => {
                let mut o = GoObj::new();
                json_hdr(&mut o, r.header.as_ref());
                line(out, &o.done());
            }
            Format::Protobuf => out.extend_from_slice(&r.encode_to_vec()),
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// etcdctl's `printKV`: key line (unless value-only), then value line, raw bytes.
    pub(super) fn print_kv(&self, out: &mut Vec<u8>, kv: &KeyValue) {
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

fn cluster_id(h: Option<&ResponseHeader>) -> u64 {
    h.map(|h| h.cluster_id).unwrap_or(0)
}

/// etcdctl's `makeMemberListTable`: a member without a name has not started yet.
fn member_rows(members: &[Member]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() { "unstarted" } else { "started" }.to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
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

pub(super) fn fields_hdr(out: &mut Vec<u8>, h: Option<&ResponseHeader>) {
    let d = ResponseHeader::default();
    let h = h.unwrap_or(&d);
    line(out, &format!("\"ClusterID\" : {}", h.cluster_id));
    line(out, &format!("\"MemberID\" : {}", h.member_id));
    line(out, &format!("\"Revision\" : {}", h.revision));
    line(out, &format!("\"RaftTerm\" : {}", h.raft_term));
}

pub(super) fn fields_kv(out: &mut Vec<u8>, pfx: &str, kv: &KeyValue) {
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

pub(super) fn json_kv(kv: &KeyValue) -> String {
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

/// etcdserverpb.Member's gogo json tags: `ID`, `name`, `peerURLs`, `clientURLs`,
/// `isLearner`, all omitempty.
fn json_member(m: &Member) -> String {
    let strings = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|u| {
                let mut s = String::new();
                gofmt::json_string(u, &mut s);
                s
            })
            .collect()
    };
    let mut o = GoObj::new();
    o.num("ID", m.id);
    o.text("name", &m.name);
    o.list("peerURLs", strings(&m.peer_ur_ls));
    o.list("clientURLs", strings(&m.client_ur_ls));
    o.flag("isLearner", m.is_learner);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, peers: &[&str], clients: &[&str], learner: bool) -> Member {
        Member {
            id,
            name: name.into(),
            peer_ur_ls: peers.iter().map(|s| s.to_string()).collect(),
            client_ur_ls: clients.iter().map(|s| s.to_string()).collect(),
            is_learner: learner,
        }
    }

    fn hdr() -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: 10068518760544636583,
            member_id: 12336124476428571212,
            revision: 0,
            raft_term: 2,
        })
    }

    /// A started voter, an unstarted learner with two peer URLs, as etcd 3.4.23 listed them.
    fn members() -> Vec<Member> {
        vec![
            member(0x257a8fcf9c29b85e, "m2", &["http://127.0.0.1:57539"], &["http://127.0.0.1:36601"], false),
            member(0x3ef504ecd3df3e79, "", &["http://127.0.0.1:1111", "http://127.0.0.1:1113"], &[], true),
        ]
    }

    fn render(format: Format, f: impl FnOnce(&Printer, &mut Vec<u8>) -> Result<(), CtlError>) -> Result<String, CtlError> {
        let p = Printer::new(format, false);
        let mut out = Vec::new();
        f(&p, &mut out).map(|()| String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn member_list_matches_etcdctl() {
        // Outputs captured from etcdctl 3.4.23 against a 3-member etcd with a learner added.
        let r = MemberListResponse { header: hdr(), members: members() };
        let cases: &[(Format, &str)] = &[
            (
                Format::Simple,
                "257a8fcf9c29b85e, started, m2, http://127.0.0.1:57539, http://127.0.0.1:36601, false\n\
                 3ef504ecd3df3e79, unstarted, , http://127.0.0.1:1111,http://127.0.0.1:1113, , true\n",
            ),
            (
                Format::Table,
                "\
+------------------+-----------+------+---------------------------------------------+------------------------+------------+
|        ID        |  STATUS   | NAME |                 PEER ADDRS                  |      CLIENT ADDRS      | IS LEARNER |
+------------------+-----------+------+---------------------------------------------+------------------------+------------+
| 257a8fcf9c29b85e |   started |   m2 |                      http://127.0.0.1:57539 | http://127.0.0.1:36601 |      false |
| 3ef504ecd3df3e79 | unstarted |      | http://127.0.0.1:1111,http://127.0.0.1:1113 |                        |       true |
+------------------+-----------+------+---------------------------------------------+------------------------+------------+
",
            ),
            (
                Format::Json,
                "{\"header\":{\"cluster_id\":10068518760544636583,\"member_id\":12336124476428571212,\"raft_term\":2},\
                 \"members\":[{\"ID\":2700629048403015774,\"name\":\"m2\",\"peerURLs\":[\"http://127.0.0.1:57539\"],\
                 \"clientURLs\":[\"http://127.0.0.1:36601\"]},{\"ID\":4536537614859058809,\
                 \"peerURLs\":[\"http://127.0.0.1:1111\",\"http://127.0.0.1:1113\"],\"isLearner\":true}]}\n",
            ),
            (
                Format::Fields,
                "\"ClusterID\" : 10068518760544636583\n\"MemberID\" : 12336124476428571212\n\"Revision\" : 0\n\
                 \"RaftTerm\" : 2\n\"ID\" : 2700629048403015774\n\"Name\" : \"m2\"\n\
                 \"PeerURL\" : \"http://127.0.0.1:57539\"\n\"ClientURL\" : \"http://127.0.0.1:36601\"\n\
                 \"IsLearner\" : false\n\n\"ID\" : 4536537614859058809\n\"Name\" : \"\"\n\
                 \"PeerURL\" : \"http://127.0.0.1:1111\"\n\"PeerURL\" : \"http://127.0.0.1:1113\"\n\
                 \"IsLearner\" : true\n\n",
            ),
        ];
        for (format, want) in cases {
            assert_eq!(render(*format, |p, o| p.member_list(o, &r)).unwrap(), *want, "{format:?}");
        }
        let mut pb = Vec::new();
        Printer::new(Format::Protobuf, false).member_list(&mut pb, &r).unwrap();
        assert_eq!(MemberListResponse::decode(pb.as_slice()).unwrap(), r);
    }

    #[test]
    fn member_add_matches_etcdctl() {
        let mut all = members();
        all.push(member(0xab32b7da0a86d24c, "m1", &["http://127.0.0.1:33075"], &["http://127.0.0.1:51385"], false));
        let r = MemberAddResponse { header: hdr(), member: Some(all[1].clone()), members: all };
        let peers = "http://127.0.0.1:1111,http://127.0.0.1:1113";
        let simple = render(Format::Simple, |p, o| p.member_add(o, &r, "newm", peers)).unwrap();
        assert_eq!(
            simple,
            "Member 3ef504ecd3df3e79 added to cluster 8bba9077a89e8ea7\n\
             \n\
             ETCD_NAME=\"newm\"\n\
             ETCD_INITIAL_CLUSTER=\"m2=http://127.0.0.1:57539,newm=http://127.0.0.1:1111,newm=http://127.0.0.1:1113,m1=http://127.0.0.1:33075\"\n\
             ETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://127.0.0.1:1111,http://127.0.0.1:1113\"\n\
             ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n"
        );
        let json = render(Format::Json, |p, o| p.member_add(o, &r, "newm", peers)).unwrap();
        assert!(
            json.starts_with(
                "{\"header\":{\"cluster_id\":10068518760544636583,\"member_id\":12336124476428571212,\"raft_term\":2},\
                 \"member\":{\"ID\":4536537614859058809,\"peerURLs\":[\"http://127.0.0.1:1111\",\"http://127.0.0.1:1113\"],\
                 \"isLearner\":true},\"members\":[{\"ID\":2700629048403015774,"
            ),
            "{json}"
        );
        for format in [Format::Fields, Format::Table] {
            let e = render(format, |p, o| p.member_add(o, &r, "newm", peers)).unwrap_err();
            assert_eq!((e.code, e.msg), (4, format!("{} not supported as output format", format.name())));
        }
    }

    #[test]
    fn member_changes_match_etcdctl() {
        // `%16x` pads short IDs with spaces, as Go does.
        let id = 0x3ef504ecd3df3e79;
        let small = MemberRemoveResponse { header: Some(ResponseHeader { cluster_id: 0xabc, ..Default::default() }), members: vec![] };
        let rm = MemberRemoveResponse { header: hdr(), members: members() };
        let up = MemberUpdateResponse { header: hdr(), members: members() };
        let pr = MemberPromoteResponse { header: hdr(), members: members() };
        let cases: Vec<(Result<String, CtlError>, &str)> = vec![
            (render(Format::Simple, |p, o| p.member_remove(o, id, &rm)), "Member 3ef504ecd3df3e79 removed from cluster 8bba9077a89e8ea7\n"),
            (render(Format::Simple, |p, o| p.member_update(o, id, &up)), "Member 3ef504ecd3df3e79 updated in cluster 8bba9077a89e8ea7\n"),
            (render(Format::Simple, |p, o| p.member_promote(o, id, &pr)), "Member 3ef504ecd3df3e79 promoted in cluster 8bba9077a89e8ea7\n"),
            (render(Format::Simple, |p, o| p.member_remove(o, 0x12, &small)), "Member               12 removed from cluster              abc\n"),
            (render(Format::Json, |p, o| p.member_remove(o, 0x12, &small)), "{\"header\":{\"cluster_id\":2748}}\n"),
        ];
        for (got, want) in cases {
            assert_eq!(got.unwrap(), want);
        }
        let json = render(Format::Json, |p, o| p.member_update(o, id, &up)).unwrap();
        assert!(json.contains("\"members\":[{\"ID\":2700629048403015774,\"name\":\"m2\""), "{json}");
        let e = render(Format::Fields, |p, o| p.member_update(o, id, &up)).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (4, "fields not supported as output format"));
    }

    #[test]
    fn move_leader_matches_etcdctl() {
        // etcd 3.4 answers MoveLeader with no header: `-w json` prints `{}`.
        let r = MoveLeaderResponse { header: None };
        let cases: &[(Format, Result<&str, &str>)] = &[
            (Format::Simple, Ok("Leadership transferred from fac927a0ea90fe19 to 257a8fcf9c29b85e\n")),
            (Format::Json, Ok("{}\n")),
            (Format::Protobuf, Ok("")),
            (Format::Fields, Err("fields not supported as output format")),
            (Format::Table, Err("table not supported as output format")),
        ];
        for (format, want) in cases {
            let got = render(*format, |p, o| p.move_leader(o, 0xfac927a0ea90fe19, 0x257a8fcf9c29b85e, &r));
            assert_eq!(got.map_err(|e| e.msg), want.map(str::to_string).map_err(str::to_string), "{format:?}");
        }
        let short = render(Format::Simple, |p, o| p.move_leader(o, 0x1, 0xab, &r)).unwrap();
        assert_eq!(short, "Leadership transferred from 1 to ab\n");
    }
}
