//! The cluster commands: `member add|remove|update|list|promote`, `move-leader`,
//! and the member list behind `endpoint health|status --cluster`, each in
//! etcdctl 3.4.23's order of checks (`member_command.go`,
//! `move_leader_command.go`, `ep_command.go`).
//!
//! One deliberate difference in *how* (never in what is printed): etcd accepts
//! MemberAdd/Remove/Promote on any member (a follower forwards the proposal to
//! its leader), so etcdctl sends them through its balancer to whichever endpoint
//! it picks. stead's followers refuse membership changes with `etcdserver: not
//! leader`, so steadctl finds the leader first (see [`via_leader`]) and sends the
//! request there.

use std::time::{Duration, Instant};

use super::args::{GlobalArgs, MemberAddArgs, MemberUpdateArgs, NoArgs};
use super::commands::{client_and_printer, emit, gateway_from, rpc_failed};
use super::gateway::{Endpoint, Gateway, Idempotence, LogTarget, RpcError};
use super::{gofmt, CtlError, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    MoveLeaderRequest, MoveLeaderResponse, StatusRequest, StatusResponse,
};

/// How often a membership change is re-sent after `etcdserver: not leader`
/// (the leader moved between discovery and request), within the command deadline.
const NOT_LEADER_RETRIES: u32 = 3;
const NOT_LEADER_PAUSE: Duration = Duration::from_millis(100);

/// The text stead's followers answer membership changes with.
const NOT_LEADER: &str = "etcdserver: not leader";

/// The command context's remaining time (etcdctl shares one `commandCtx`
/// between the calls of a command).
fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// `member add NAME --peer-urls=URL[,URL…] [--learner]`
pub fn member_add(g: &GlobalArgs, a: MemberAddArgs) -> Result<(), CtlError> {
    let name = match a.args.as_slice() {
        [] => return Err(CtlError::new(EXIT_BAD_ARGS, "member name not provided")),
        [one] => one.clone(),
        many => {
            let mut ev = String::from("too many arguments");
            for s in many {
                if s.to_lowercase().starts_with("http") {
                    ev.push_str(&format!(", did you mean --peer-urls={s}"));
                }
            }
            return Err(CtlError::new(EXIT_BAD_ARGS, ev));
        }
    };
    if a.peer_urls.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, "member peer urls not provided"));
    }
    let urls: Vec<String> = a.peer_urls.split(',').map(str::to_string).collect();
    let deadline = Instant::now() + g.command_timeout;
    let (gw, printer) = client_and_printer(g)?;
    // clientv3 checks the URLs before sending ("fail-fast before panic in rafthttp").
    check_urls(&urls).map_err(|e| CtlError::new(EXIT_ERROR, e))?;
    let req = MemberAddRequest { peer_ur_ls: urls, is_learner: a.learner };
    let resp: MemberAddResponse = on_leader(&gw, deadline, "/v3/cluster/member/add", &req)?;
    emit(|out| printer.member_add(out, &resp, &name, &a.peer_urls))
}

/// `member remove ID`
pub fn member_remove(g: &GlobalArgs, a: NoArgs) -> Result<(), CtlError> {
    let id = member_id_arg(&a.args)?;
    let deadline = Instant::now() + g.command_timeout;
    let (gw, printer) = client_and_printer(g)?;
    let resp: MemberRemoveResponse =
        on_leader(&gw, deadline, "/v3/cluster/member/remove", &MemberRemoveRequest { id })?;
    emit(|out| printer.member_remove(out, id, &resp))
}

/// `member update ID --peer-urls=URL[,URL…]`: any member takes it (it is an
/// ordinary proposal, forwarded by followers), as in etcd.
pub fn member_update(g: &GlobalArgs, a: MemberUpdateArgs) -> Result<(), CtlError> {
    let id = member_id_arg(&a.args)?;
    if a.peer_urls.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, "member peer urls not provided"));
    }
    let urls: Vec<String> = a.peer_urls.split(',').map(str::to_string).collect();
    let (gw, printer) = client_and_printer(g)?;
    check_urls(&urls).map_err(|e| CtlError::new(EXIT_ERROR, e))?;
    let req = MemberUpdateRequest { id, peer_ur_ls: urls };
    let resp: MemberUpdateResponse = gw
        .call(
            "/v3/cluster/member/update",
            &req,
            Some(g.command_timeout),
            Idempotence::NonRepeatable,
            LogTarget::Balancer,
        )
        .map_err(rpc_failed)?;
    emit(|out| printer.member_update(out, id, &resp))
}

/// `member list`
pub fn member_list(g: &GlobalArgs) -> Result<(), CtlError> {
    let (gw, printer) = client_and_printer(g)?;
    let resp = list_members(&gw, g.command_timeout, LogTarget::Balancer).map_err(rpc_failed)?;
    emit(|out| printer.member_list(out, &resp))
}

/// `member promote ID`
pub fn member_promote(g: &GlobalArgs, a: NoArgs) -> Result<(), CtlError> {
    let id = member_id_arg(&a.args)?;
    let deadline = Instant::now() + g.command_timeout;
    let (gw, printer) = client_and_printer(g)?;
    let resp: MemberPromoteResponse =
        on_leader(&gw, deadline, "/v3/cluster/member/promote", &MemberPromoteRequest { id })?;
    emit(|out| printer.member_promote(out, id, &resp))
}

/// `move-leader TARGET`: etcdctl asks each endpoint in turn for its Status (one
/// client per endpoint, one shared deadline) and stops at the first that is the
/// leader; a failing Status ends the command. MoveLeader then goes to that leader.
pub fn move_leader(g: &GlobalArgs, a: NoArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "move-leader command needs 1 argument"));
    }
    let target = gofmt::parse_uint(&a.args[0], 16).map_err(|e| CtlError::new(EXIT_BAD_ARGS, e))?;
    let (gw, printer) = client_and_printer(g)?;
    let deadline = Instant::now() + g.command_timeout;
    let mut leader = None;
    for ep in gw.endpoints() {
        let one = gw.for_endpoint(ep);
        let st: StatusResponse = one
            .call(
                "/v3/maintenance/status",
                &StatusRequest {},
                Some(remaining(deadline)),
                Idempotence::Repeatable,
                LogTarget::Passthrough,
            )
            .map_err(rpc_failed)?;
        let member_id = st.header.as_ref().map(|h| h.member_id).unwrap_or(0);
        if member_id == st.leader {
            leader = Some((one, st.leader));
            break;
        }
    }
    let Some((leader_gw, leader_id)) = leader else {
        let eps: Vec<&str> = gw.endpoints().iter().map(|e| e.given.as_str()).collect();
        return Err(CtlError::new(EXIT_BAD_ARGS, format!("no leader endpoint given at [{}]", eps.join(" "))));
    };
    let resp: MoveLeaderResponse = leader_gw
        .call(
            "/v3/maintenance/transfer-leadership",
            &MoveLeaderRequest { target_id: target },
            Some(remaining(deadline)),
            Idempotence::Repeatable,
            LogTarget::Balancer,
        )
        .map_err(rpc_failed)?;
    emit(|out| printer.move_leader(out, leader_id, target, &resp))
}

/// etcdctl's `endpointsFromCluster` with `--cluster`: every member's client URLs,
/// from a MemberList through the `--endpoints` client (no auth needed).
pub fn cluster_endpoints(g: &GlobalArgs) -> Result<Vec<String>, CtlError> {
    let gw = gateway_from(g)?;
    let members = list_members(&gw, g.command_timeout, LogTarget::Balancer).map_err(|e| {
        CtlError::new(
            EXIT_ERROR,
            format!("failed to fetch endpoints from etcd cluster member list: {}", e.etcdctl_text()),
        )
    })?;
    Ok(members.members.into_iter().flat_map(|m| m.client_ur_ls).collect())
}

fn list_members(gw: &Gateway, timeout: Duration, log: LogTarget) -> Result<MemberListResponse, RpcError> {
    gw.call("/v3/cluster/member/list", &MemberListRequest {}, Some(timeout), Idempotence::Repeatable, log)
}

/// `strconv.ParseUint(arg, 16, 64)` with etcdctl's member-command wording.
fn member_id_arg(args: &[String]) -> Result<u64, CtlError> {
    if args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "member ID is not provided"));
    }
    gofmt::parse_uint(&args[0], 16)
        .map_err(|e| CtlError::new(EXIT_BAD_ARGS, format!("bad member ID arg ({e}), expecting ID in Hex")))
}

/// Send a membership change (add, remove, promote) to the leader.
///
/// etcdctl's gRPC client would not need this: etcd forwards these requests from
/// a follower to its leader. stead answers them on the leader only (a follower
/// says `etcdserver: not leader`, before proposing anything), so steadctl finds
/// the leader first with [`via_leader`]. When the leader moved in between, the
/// refusal is safe to act on: find it again and re-send, a few times, within
/// the command deadline. Against etcd this changes nothing visible: discovery
/// is silent and etcd answers on any member.
fn on_leader<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    gw: &Gateway,
    deadline: Instant,
    path: &str,
    req: &Req,
) -> Result<Resp, CtlError> {
    let mut tries = 0;
    loop {
        let target = via_leader(gw, deadline);
        let res = target.call(path, req, Some(remaining(deadline)), Idempotence::NonRepeatable, LogTarget::Balancer);
        match res {
            Err(RpcError::Status { ref desc, .. })
                if desc == NOT_LEADER && tries < NOT_LEADER_RETRIES && remaining(deadline) > NOT_LEADER_PAUSE =>
            {
                tries += 1;
                std::thread::sleep(NOT_LEADER_PAUSE);
            }
            other => return other.map_err(rpc_failed),
        }
    }
}

/// The client to send a membership change through: the leader's client URL when
/// it can be found, else the endpoints as given (etcdctl's behaviour).
///
/// Status (through the `--endpoints` client) names the leader's member ID;
/// MemberList gives that member's advertised client URLs; a Status on each URL
/// must then answer with that member ID and the same cluster ID before it is
/// used, so that a stale or wrong advertised URL never receives the request.
/// All of it is silent: etcdctl makes none of these calls, so none may log.
fn via_leader(gw: &Gateway, deadline: Instant) -> Gateway {
    let status = |g: &Gateway| -> Option<StatusResponse> {
        g.call("/v3/maintenance/status", &StatusRequest {}, Some(remaining(deadline)), Idempotence::Repeatable, LogTarget::Quiet)
            .ok()
    };
    let Some(st) = status(gw) else { return gw.redirected(gw.endpoints().to_vec()) };
    let (cluster, me) = st.header.as_ref().map(|h| (h.cluster_id, h.member_id)).unwrap_or((0, 0));
    let leader = st.leader;
    if leader == 0 {
        return gw.redirected(gw.endpoints().to_vec());
    }
    if me == leader && gw.endpoints().len() == 1 {
        return gw.redirected(gw.endpoints().to_vec());
    }
    let Ok(members) = list_members(gw, remaining(deadline), LogTarget::Quiet) else {
        return gw.redirected(gw.endpoints().to_vec());
    };
    let urls = members.members.into_iter().filter(|m| m.id == leader).flat_map(|m| m.client_ur_ls);
    for url in urls {
        let Ok(ep) = Endpoint::parse(&url) else { continue };
        let one = gw.redirected(vec![ep]);
        let Some(st) = status(&one) else { continue };
        if st.header.as_ref().map(|h| (h.cluster_id, h.member_id)) == Some((cluster, leader)) {
            return one;
        }
    }
    gw.redirected(gw.endpoints().to_vec())
}

/// clientv3's client-side check of peer URLs (`types.NewURLs`): each, trimmed,
/// must parse as a URL with scheme http, https, unix or unixs, a `host:port`
/// address and no path. Only the parse errors a URL list can plausibly hit are
/// reproduced (`missing protocol scheme`, control characters); anything else
/// Go's `url.Parse` would reject is left to the server.
pub fn check_urls(urls: &[String]) -> Result<(), String> {
    if urls.is_empty() {
        return Err("no valid URLs given".into());
    }
    for raw in urls {
        let s = raw.trim();
        let quoted = gofmt::quote(s.as_bytes());
        if s.chars().any(|c| (c as u32) < 0x20 || c as u32 == 0x7f) {
            return Err(format!("parse {quoted}: net/url: invalid control character in URL"));
        }
        // url.Parse: a scheme is [A-Za-z][A-Za-z0-9+.-]* before the first ':';
        // a ':' first means "missing protocol scheme"; anything else is a path.
        let (scheme, rest) = match s.find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c))) {
            Some(0) if s.starts_with(':') => return Err(format!("parse {quoted}: missing protocol scheme")),
            Some(i) if s[i..].starts_with(':') => {
                if !s.as_bytes()[0].is_ascii_alphabetic() {
                    return Err(format!("parse {quoted}: first path segment in URL cannot contain colon"));
                }
                (s[..i].to_ascii_lowercase(), &s[i + 1..])
            }
            _ => (String::new(), s),
        };
        if !matches!(scheme.as_str(), "http" | "https" | "unix" | "unixs") {
            return Err(format!("URL scheme must be http, https, unix, or unixs: {s}"));
        }
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let (host, path) = match rest.strip_prefix("//") {
            Some(auth) => match auth.find('/') {
                Some(i) => (&auth[..i], &auth[i..]),
                None => (auth, ""),
            },
            None => ("", rest),
        };
        let host = host.rsplit('@').next().unwrap_or(host);
        if !has_host_port(host) {
            return Err(format!("URL address does not have the form \"host:port\": {s}"));
        }
        if !path.is_empty() {
            return Err(format!("URL must not contain a path: {s}"));
        }
    }
    Ok(())
}

/// Whether Go's `net.SplitHostPort` accepts `hostport`.
fn has_host_port(hostport: &str) -> bool {
    if let Some(rest) = hostport.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => rest[end + 1..].starts_with(':') && !rest[end + 2..].contains([':', '[', ']']),
            None => false,
        };
    }
    match hostport.rfind(':') {
        Some(i) => !hostport[..i].contains(':') && !hostport.contains(['[', ']']),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_like_clientv3() {
        // Texts captured from etcdctl 3.4.23 `member add x --peer-urls=…`.
        let cases: &[(&str, Result<(), &str>)] = &[
            ("http://127.0.0.1:1111", Ok(())),
            ("https://[::1]:2380", Ok(())),
            (" http://127.0.0.1:1111 ", Ok(())),
            ("bad", Err("URL scheme must be http, https, unix, or unixs: bad")),
            ("", Err("URL scheme must be http, https, unix, or unixs: ")),
            (":x", Err(r#"parse ":x": missing protocol scheme"#)),
            ("ftp://127.0.0.1:1", Err("URL scheme must be http, https, unix, or unixs: ftp://127.0.0.1:1")),
            ("http://127.0.0.1", Err(r#"URL address does not have the form "host:port": http://127.0.0.1"#)),
            ("http://127.0.0.1:1111/p", Err("URL must not contain a path: http://127.0.0.1:1111/p")),
        ];
        for (url, want) in cases {
            let got = check_urls(&[url.to_string()]);
            assert_eq!(got, want.map_err(str::to_string), "{url:?}");
        }
        assert!(check_urls(&["http://a:1".into(), "bad".into()]).is_err());
    }

    #[test]
    fn member_ids_are_hex_like_etcdctl() {
        assert_eq!(member_id_arg(&["ab32b7da0a86d24c".into()]), Ok(0xab32b7da0a86d24c));
        let e = member_id_arg(&["zz".into()]).unwrap_err();
        assert_eq!(e.code, EXIT_BAD_ARGS);
        assert_eq!(
            e.stderr_text(),
            "Error:  bad member ID arg (strconv.ParseUint: parsing \"zz\": invalid syntax), expecting ID in Hex\n"
        );
        let e = member_id_arg(&[]).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (EXIT_BAD_ARGS, "member ID is not provided"));
    }
}
