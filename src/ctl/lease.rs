//! `steadctl lease grant|revoke|timetolive|list|keep-alive`: etcdctl 3.4.23's
//! `lease_command.go` over the gateway's `/v3/lease/*` paths.
//!
//! Output follows etcdctl's printers over clientv3's lease types: IDs in hex
//! (`%016x`) in the simple format; json/fields print clientv3's structs, whose
//! embedded `*pb.ResponseHeader` is flattened (json) and whose protobuf form is
//! the header alone (the embedded header's `Marshal` is what etcdctl calls);
//! `revoke` prints etcd's own `LeaseRevokeResponse`. The table format fails
//! after the request, as in etcdctl.
//!
//! `keep-alive` (without `--once`) sends one keep-alive per gateway request
//! every TTL/3, as clientv3 paces its stream, until the lease is gone.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use prost::Message as _;
use serde::Deserialize;

use super::args::{GlobalArgs, LeaseKeepAliveArgs, LeaseTimeToLiveArgs, NoArgs};
use super::commands::{client_and_printer, emit, print_out};
use super::gateway::{gateway_error, Gateway, Idempotence, LogTarget, RpcError};
use super::printer::{fields_hdr, Format, Printer};
use super::{gofmt, CtlError, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_BAD_FEATURE, EXIT_ERROR};
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    ResponseHeader,
};

/// clientv3's `ErrLeaseNotFound` text.
const ERR_LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

/// etcdctl's `leaseFromArgs`.
fn lease_id(arg: &str) -> Result<i64, CtlError> {
    gofmt::parse_int(arg, 16)
        .map_err(|e| CtlError::new(EXIT_BAD_ARGS, format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

fn table_unsupported() -> CtlError {
    CtlError::new(EXIT_BAD_FEATURE, "table not supported as output format")
}

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
}

/// The embedded `*pb.ResponseHeader`'s fields as Go's encoding/json flattens
/// them (all `omitempty`), or nothing when there is no header.
fn flat_hdr(h: Option<&ResponseHeader>) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(h) = h {
        if h.cluster_id != 0 {
            v.push(format!("\"cluster_id\":{}", h.cluster_id));
        }
        if h.member_id != 0 {
            v.push(format!("\"member_id\":{}", h.member_id));
        }
        if h.revision != 0 {
            v.push(format!("\"revision\":{}", h.revision));
        }
        if h.raft_term != 0 {
            v.push(format!("\"raft_term\":{}", h.raft_term));
        }
    }
    v
}

fn obj(fields: Vec<String>) -> String {
    format!("{{{}}}", fields.join(","))
}

/// What the protobuf printer writes for a clientv3 lease response: its header.
fn pb_hdr(out: &mut Vec<u8>, h: Option<&ResponseHeader>) {
    out.extend_from_slice(&h.copied().unwrap_or_default().encode_to_vec());
}

/// `lease grant TTL`
pub fn grant(g: &GlobalArgs, a: NoArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "lease grant command needs TTL argument"));
    }
    let ttl = gofmt::parse_int(&a.args[0], 10).map_err(|e| CtlError::new(EXIT_BAD_ARGS, format!("bad TTL ({e})")))?;
    let (gw, printer) = client_and_printer(g)?;
    let resp: LeaseGrantResponse = gw
        .call(
            "/v3/lease/grant",
            &LeaseGrantRequest { ttl, id: 0 },
            Some(g.command_timeout),
            Idempotence::NonRepeatable,
            LogTarget::Balancer,
        )
        .map_err(|e| CtlError::new(EXIT_ERROR, format!("failed to grant lease ({})", e.etcdctl_text())))?;
    emit(|out| {
        match printer.format {
            Format::Simple => line(out, &format!("lease {:016x} granted with TTL({}s)", resp.id, resp.ttl)),
            Format::Json => {
                let mut f = flat_hdr(resp.header.as_ref());
                f.push(format!("\"ID\":{}", resp.id));
                f.push(format!("\"TTL\":{}", resp.ttl));
                let mut e = String::new();
                gofmt::json_string(&resp.error, &mut e);
                f.push(format!("\"Error\":{e}"));
                line(out, &obj(f));
            }
            Format::Fields => {
                fields_hdr(out, resp.header.as_ref());
                line(out, &format!("\"ID\" : {}", resp.id));
                line(out, &format!("\"TTL\" : {}", resp.ttl));
            }
            Format::Protobuf => pb_hdr(out, resp.header.as_ref()),
            Format::Table => return Err(table_unsupported()),
        }
        Ok(())
    })
}

/// `lease revoke ID`
pub fn revoke(g: &GlobalArgs, a: NoArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "lease revoke command needs 1 argument"));
    }
    let id = lease_id(&a.args[0])?;
    let (gw, printer) = client_and_printer(g)?;
    let resp: LeaseRevokeResponse = gw
        .call(
            "/v3/lease/revoke",
            &LeaseRevokeRequest { id },
            Some(g.command_timeout),
            Idempotence::Repeatable,
            LogTarget::Balancer,
        )
        .map_err(|e| CtlError::new(EXIT_ERROR, format!("failed to revoke lease ({})", e.etcdctl_text())))?;
    emit(|out| {
        match printer.format {
            Format::Simple => line(out, &format!("lease {id:016x} revoked")),
            Format::Json => {
                let h = flat_hdr(resp.header.as_ref());
                let f = if resp.header.is_some() { vec![format!("\"header\":{}", obj(h))] } else { vec![] };
                line(out, &obj(f));
            }
            Format::Fields => fields_hdr(out, resp.header.as_ref()),
            Format::Protobuf => out.extend_from_slice(&resp.encode_to_vec()),
            Format::Table => return Err(table_unsupported()),
        }
        Ok(())
    })
}

/// `lease timetolive ID [--keys]` (etcdctl sends it without a deadline).
pub fn time_to_live(g: &GlobalArgs, a: LeaseTimeToLiveArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "lease timetolive command needs lease ID as argument"));
    }
    let id = lease_id(&a.args[0])?;
    let (gw, printer) = client_and_printer(g)?;
    let resp: LeaseTimeToLiveResponse = gw
        .call(
            "/v3/lease/timetolive",
            &LeaseTimeToLiveRequest { id, keys: a.keys },
            None,
            Idempotence::Repeatable,
            LogTarget::Balancer,
        )
        .map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e.etcdctl_text()))?;
    emit(|out| render_ttl(&printer, out, &resp))
}

fn render_ttl(printer: &Printer, out: &mut Vec<u8>, r: &LeaseTimeToLiveResponse) -> Result<(), CtlError> {
    match printer.format {
        Format::Simple => {
            if r.granted_ttl == 0 && r.ttl == -1 {
                line(out, &format!("lease {:016x} already expired", r.id));
            } else {
                let mut s = format!("lease {:016x} granted with TTL({}s), remaining({}s)", r.id, r.granted_ttl, r.ttl);
                if !r.keys.is_empty() {
                    let ks: Vec<String> = r.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
                    s.push_str(&format!(", attached keys([{}])", ks.join(" ")));
                }
                line(out, &s);
            }
        }
        Format::Json => {
            use base64::Engine as _;
            let mut f = flat_hdr(r.header.as_ref());
            f.push(format!("\"id\":{}", r.id));
            f.push(format!("\"ttl\":{}", r.ttl));
            f.push(format!("\"granted-ttl\":{}", r.granted_ttl));
            let keys = if r.keys.is_empty() {
                "null".to_string()
            } else {
                let ks: Vec<String> = r
                    .keys
                    .iter()
                    .map(|k| format!("\"{}\"", base64::engine::general_purpose::STANDARD.encode(k)))
                    .collect();
                format!("[{}]", ks.join(","))
            };
            f.push(format!("\"keys\":{keys}"));
            line(out, &obj(f));
        }
        Format::Fields => {
            fields_hdr(out, r.header.as_ref());
            line(out, &format!("\"ID\" : {}", r.id));
            line(out, &format!("\"TTL\" : {}", r.ttl));
            line(out, &format!("\"GrantedTTL\" : {}", r.granted_ttl));
            for k in &r.keys {
                line(out, &format!("\"Key\" : {}", gofmt::quote(k)));
            }
        }
        Format::Protobuf => pb_hdr(out, r.header.as_ref()),
        Format::Table => return Err(table_unsupported()),
    }
    Ok(())
}

/// `lease list` (etcdctl sends it without a deadline).
pub fn list(g: &GlobalArgs) -> Result<(), CtlError> {
    let (gw, printer) = client_and_printer(g)?;
    let resp: LeaseLeasesResponse = gw
        .call("/v3/lease/leases", &LeaseLeasesRequest {}, None, Idempotence::Repeatable, LogTarget::Balancer)
        .map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e.etcdctl_text()))?;
    emit(|out| {
        match printer.format {
            Format::Simple => {
                line(out, &format!("found {} leases", resp.leases.len()));
                for l in &resp.leases {
                    line(out, &format!("{:016x}", l.id));
                }
            }
            Format::Json => {
                let mut f = flat_hdr(resp.header.as_ref());
                let ls: Vec<String> = resp.leases.iter().map(|l| format!("{{\"id\":{}}}", l.id)).collect();
                f.push(format!("\"leases\":[{}]", ls.join(",")));
                line(out, &obj(f));
            }
            Format::Fields => {
                fields_hdr(out, resp.header.as_ref());
                for l in &resp.leases {
                    line(out, &format!("\"ID\" : {}", l.id));
                }
            }
            Format::Protobuf => pb_hdr(out, resp.header.as_ref()),
            Format::Table => return Err(table_unsupported()),
        }
        Ok(())
    })
}

fn render_keep_alive(printer: &Printer, out: &mut Vec<u8>, r: &LeaseKeepAliveResponse) -> Result<(), CtlError> {
    match printer.format {
        Format::Simple => line(out, &format!("lease {:016x} keepalived with TTL({})", r.id, r.ttl)),
        Format::Json => {
            let mut f = flat_hdr(r.header.as_ref());
            f.push(format!("\"ID\":{}", r.id));
            f.push(format!("\"TTL\":{}", r.ttl));
            line(out, &obj(f));
        }
        Format::Fields => {
            fields_hdr(out, r.header.as_ref());
            line(out, &format!("\"ID\" : {}", r.id));
            line(out, &format!("\"TTL\" : {}", r.ttl));
        }
        Format::Protobuf => pb_hdr(out, r.header.as_ref()),
        Format::Table => return Err(table_unsupported()),
    }
    Ok(())
}

/// A line of the keep-alive stream.
#[derive(Deserialize)]
struct Frame {
    result: Option<LeaseKeepAliveResponse>,
    error: Option<serde_json::Value>,
}

/// One keep-alive through the gateway's stream: the first answer.
pub(super) fn keep_alive_once(gw: &Gateway, id: i64, timeout: Option<Duration>) -> Result<LeaseKeepAliveResponse, RpcError> {
    let body = serde_json::to_string(&LeaseKeepAliveRequest { id }).unwrap_or_default();
    let mut last = RpcError::Status { code: super::gateway::CODE_UNAVAILABLE, desc: "no endpoint reachable".into() };
    for ep in gw.endpoints() {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent("steadctl")
            .timeout_global(timeout)
            .build()
            .into();
        let url = format!("{}/v3/lease/keepalive", ep.base_url);
        let resp = match super::gateway::authorize(agent.post(&url)).header("Content-Type", "application/json").send(&body) {
            Ok(r) => r,
            Err(e) => {
                last = RpcError::Status { code: super::gateway::CODE_UNAVAILABLE, desc: e.to_string() };
                continue;
            }
        };
        let status = resp.status().as_u16();
        if status != 200 {
            let text = resp.into_body().read_to_string().unwrap_or_default();
            return Err(gateway_error(status, &text, "/v3/lease/keepalive"));
        }
        let mut reader = BufReader::new(resp.into_body().into_reader());
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Frame>(&buf) {
                Ok(Frame { result: Some(r), .. }) => return Ok(r),
                Ok(Frame { error: Some(e), .. }) => {
                    let text = e.to_string();
                    return Err(gateway_error(500, &text, "/v3/lease/keepalive"));
                }
                _ => break,
            }
        }
        last = RpcError::Status {
            code: super::gateway::CODE_UNAVAILABLE,
            desc: "steadctl: keep-alive stream ended without an answer".into(),
        };
    }
    Err(last)
}

/// `lease keep-alive [--once] ID`
pub fn keep_alive(g: &GlobalArgs, a: LeaseKeepAliveArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "lease keep-alive command needs lease ID as argument"));
    }
    let id = lease_id(&a.args[0])?;
    let (gw, printer) = client_and_printer(g)?;
    if a.once {
        // clientv3's KeepAliveOnce: a zero TTL means the lease is gone.
        let resp = keep_alive_once(&gw, id, None).map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e.etcdctl_text()))?;
        if resp.ttl <= 0 {
            return Err(CtlError::new(EXIT_BAD_CONNECTION, ERR_LEASE_NOT_FOUND));
        }
        return emit(|out| render_keep_alive(&printer, out, &resp));
    }
    // clientv3's KeepAlive: renew every TTL/3, retry on failures, stop when
    // the lease is gone (the channel closes).
    loop {
        match keep_alive_once(&gw, id, Some(Duration::from_secs(5))) {
            Ok(resp) if resp.ttl <= 0 => break,
            Ok(resp) => {
                emit(|out| render_keep_alive(&printer, out, &resp))?;
                std::thread::sleep(Duration::from_secs(resp.ttl as u64) / 3);
            }
            Err(RpcError::Status { ref desc, .. }) if desc == ERR_LEASE_NOT_FOUND => break,
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    if printer.format == Format::Simple {
        print_out(format!("lease {id:016x} expired or revoked.\n").as_bytes());
    }
    Ok(())
}
