//! `steadctl watch`: etcdctl 3.4.23's `watch` over the JSON gateway's
//! `POST /v3/watch` stream.
//!
//! The flow is etcdctl's `watchCommandFunc`: argument checks (environment
//! `ETCDCTL_WATCH_KEY` / `ETCDCTL_WATCH_RANGE_END`, `--` separator, argument
//! count), client and printer, `getWatchChan` (key, range end or prefix, start
//! revision, previous values), then one printed response per server response
//! until the server cancels the watch, which exits 5 (`ExitInterrupted`) with
//! "watch is canceled by the server".
//!
//! What clientv3 does between the stream and etcdctl is reproduced here: the
//! `created` answer is not shown; a watch refused at creation is shown as an
//! empty canceled response; a cancel without compaction closes the watch
//! silently; a broken stream is reopened from the next revision (clientv3
//! resumes a watch after a reconnect the same way). `--progress-notify` is
//! etcdctl 3.5's flag: it asks for progress notifications and prints
//! "progress notify: REV" for each.
//!
//! The exec form `watch KEY -- CMD ARGS` runs the command once per event, as
//! etcdctl's `printWatchCh`, with `ETCD_WATCH_REVISION`, `ETCD_WATCH_EVENT_TYPE`,
//! `ETCD_WATCH_KEY` and `ETCD_WATCH_VALUE` (Go-quoted, as etcdctl's `%q`); a
//! failing command ends steadctl with exit 1. `--interactive` lives in
//! `watch_interactive`.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use prost::Message as _;
use serde::Deserialize;

use super::args::{GlobalArgs, WatchArgs};
use super::commands::client_and_printer;
use super::gateway::{gateway_error, Endpoint, RpcError, CODE_UNAVAILABLE};
use super::printer::{fields_hdr, fields_kv, json_kv, Format, Printer};
use super::{ops, CtlError, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR};
use crate::proto::etcdserverpb::{watch_request::RequestUnion, WatchCreateRequest, WatchRequest, WatchResponse};
use crate::proto::mvccpb::{event::EventType, Event};

/// etcdctl's `ExitInterrupted`: the watch was canceled by the server.
pub const EXIT_INTERRUPTED: i32 = 5;

const ERR_BAD_ARGS_NUM: &str = "bad number of arguments";
const ERR_BAD_ARGS_NUM_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const ERR_BAD_ARGS_NUM_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";
/// clientv3's `ErrCompacted` text.
const ERR_COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// clientv3's `ErrFutureRev` text (a cancel with neither reason nor compaction).
const ERR_FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
/// How long to wait before reopening a broken stream (grpc-go's reconnect
/// backoff starts at one second).
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// `steadctl watch …`; `argv` is the whole command line (etcdctl looks for `--`
/// in `os.Args`).
pub fn watch(g: &GlobalArgs, a: WatchArgs, argv: &[OsString]) -> Result<(), CtlError> {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            format!("ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}", super::gofmt::quote(env_range.as_bytes())),
        ));
    }
    if a.interactive {
        return super::watch_interactive::run(g, &env_key, &env_range);
    }
    let (key_args, exec) = watch_args(&a.args, argv, &env_key, &env_range)?;
    let (gw, printer) = client_and_printer(g)?;
    // etcdctl's table printer has no watch form: it fails at the first
    // response (a watch that never gets one waits for ever, as etcdctl's does).
    let create = create_request(&a, &key_args)?;
    let mut view = View { printer, progress_notify: a.progress_notify, out: std::io::stdout(), exec };
    stream(gw.endpoints(), g.dial_timeout, create, &mut view)
}

/// etcdctl's `parseWatchArgs` for the non-interactive form: the key arguments
/// and the command to run on each event (after `--`), or the error etcdctl gives.
fn watch_args(
    args: &[String],
    argv: &[OsString],
    env_key: &str,
    env_range: &str,
) -> Result<(Vec<String>, Vec<String>), CtlError> {
    let raw: Vec<&str> = argv.iter().filter_map(|a| a.to_str()).collect();
    let after_watch = raw.iter().position(|w| *w == "watch").map(|i| &raw[i + 1..]).unwrap_or(&[]);
    let Some(sep) = after_watch.iter().position(|w| *w == "--") else {
        return key_args(args, env_key, env_range).map(|keys| (keys, Vec::new()));
    };
    if sep == after_watch.len() - 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, ERR_BAD_ARGS_NUM_SEPARATOR));
    }
    let exec: Vec<String> = after_watch[sep + 1..].iter().map(|w| w.to_string()).collect();
    // The parsed arguments end with the command: the keys are what precedes it.
    let keys = &args[..args.len().saturating_sub(exec.len())];
    if !env_key.is_empty() && !keys.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, ERR_BAD_ARGS_NUM_CONFLICT_ENV));
    }
    let keys = if env_key.is_empty() {
        keys.to_vec()
    } else {
        [env_key.to_string()].into_iter().chain((!env_range.is_empty()).then(|| env_range.to_string())).collect()
    };
    if keys.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, ERR_BAD_ARGS_NUM));
    }
    Ok((keys, exec))
}

/// The key arguments without a command: from the environment, or the
/// arguments (never both).
pub(super) fn key_args(args: &[String], env_key: &str, env_range: &str) -> Result<Vec<String>, CtlError> {
    if !env_key.is_empty() {
        if !args.is_empty() {
            return Err(CtlError::new(EXIT_BAD_ARGS, ERR_BAD_ARGS_NUM_CONFLICT_ENV));
        }
        let mut from_env = vec![env_key.to_string()];
        if !env_range.is_empty() {
            from_env.push(env_range.to_string());
        }
        return Ok(from_env);
    }
    if args.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, ERR_BAD_ARGS_NUM));
    }
    Ok(args.to_vec())
}

/// etcdctl's `getWatchChan` + clientv3's `OpOption`s → the create request. As
/// etcdctl, a third argument is ignored and a range end only counts when it is
/// the second of exactly two.
pub(super) fn create_request(a: &WatchArgs, args: &[String]) -> Result<WatchCreateRequest, CtlError> {
    let mut key = args[0].as_bytes().to_vec();
    let mut range_end = Vec::new();
    if args.len() == 2 {
        if a.prefix {
            return Err(CtlError::new(EXIT_BAD_ARGS, "`range_end` and `--prefix` are mutually exclusive"));
        }
        range_end = args[1].as_bytes().to_vec();
    }
    if a.prefix {
        if key.is_empty() {
            key = vec![0];
            range_end = vec![0];
        } else {
            range_end = ops::prefix_range_end(&key);
        }
    }
    Ok(WatchCreateRequest {
        key,
        range_end,
        start_revision: a.rev,
        progress_notify: a.progress_notify,
        prev_kv: a.prev_kv,
        ..Default::default()
    })
}

/// What becomes of one server response, in clientv3's terms.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Not shown (the creation answer).
    Skip,
    /// Shown; the watch goes on.
    Show,
    /// Shown, then the watch is over (canceled by the server).
    ShowThenEnd,
    /// The watch is over without showing anything.
    End,
}

fn step(resp: &WatchResponse) -> Step {
    match (resp.created, resp.canceled) {
        (true, true) => Step::ShowThenEnd,
        (true, false) => Step::Skip,
        (false, true) if resp.compact_revision == 0 => Step::End,
        (false, true) => Step::ShowThenEnd,
        (false, false) => Step::Show,
    }
}

/// clientv3's `WatchResponse.Err()` text for a canceled response.
fn cancel_text(resp: &WatchResponse) -> String {
    if resp.compact_revision != 0 {
        ERR_COMPACTED.to_string()
    } else if !resp.cancel_reason.is_empty() {
        resp.cancel_reason.clone()
    } else {
        ERR_FUTURE_REV.to_string()
    }
}

/// Prints responses as etcdctl's `printWatchCh` + `display.Watch`, and runs the
/// exec form's command for each event.
pub(super) struct View<W: Write> {
    pub(super) printer: Printer,
    pub(super) progress_notify: bool,
    pub(super) out: W,
    /// `watch … -- CMD ARGS`: run once per event; empty: none.
    pub(super) exec: Vec<String>,
}

impl<W: Write> View<W> {
    fn show(&mut self, resp: &WatchResponse) -> Result<(), CtlError> {
        if resp.canceled {
            let _ = self.out.flush();
            let _ = writeln!(std::io::stderr(), "watch was canceled ({})", cancel_text(resp));
        }
        let mut buf = Vec::new();
        let is_progress = resp.events.is_empty()
            && !resp.canceled
            && !resp.created
            && resp.compact_revision == 0
            && resp.header.as_ref().is_some_and(|h| h.revision != 0);
        if self.progress_notify && is_progress {
            buf.extend_from_slice(
                format!("progress notify: {}\n", resp.header.as_ref().map_or(0, |h| h.revision)).as_bytes(),
            );
        }
        let r = render(&self.printer, &mut buf, resp);
        let _ = self.out.write_all(&buf);
        let _ = self.out.flush();
        r?;
        if !self.exec.is_empty() {
            for ev in &resp.events {
                run_for_event(&self.exec, resp, ev);
            }
        }
        Ok(())
    }
}

/// etcdctl's exec form: the command with the event in its environment, its
/// output shared; a command that fails ends steadctl (exit 1), as etcdctl.
fn run_for_event(exec: &[String], resp: &WatchResponse, ev: &Event) {
    let quote = super::gofmt::quote;
    let kv = ev.kv.clone().unwrap_or_default();
    let status = std::process::Command::new(&exec[0])
        .args(&exec[1..])
        .env("ETCD_WATCH_REVISION", resp.header.as_ref().map_or(0, |h| h.revision).to_string())
        .env("ETCD_WATCH_EVENT_TYPE", quote(type_name(ev).as_bytes()))
        .env("ETCD_WATCH_KEY", quote(&kv.key))
        .env("ETCD_WATCH_VALUE", quote(&kv.value))
        .status();
    let failure = match status {
        Ok(s) if s.success() => return,
        Ok(s) => go_exit_text(s),
        Err(e) => go_start_error(&exec[0], &e),
    };
    let words: Vec<String> = exec.iter().map(|w| quote(w.as_bytes())).collect();
    let _ = std::io::stdout().flush();
    let _ = writeln!(std::io::stderr(), "command [{}] error ({failure})", words.join(" "));
    std::process::exit(EXIT_ERROR);
}

/// Go's `exec` error text for a command that could not be started.
pub(super) fn go_start_error(program: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("exec: {}: executable file not found in $PATH", super::gofmt::quote(program.as_bytes()))
    } else {
        format!("fork/exec {program}: {e}")
    }
}

/// Go's `*exec.ExitError` text for a command that did not succeed.
pub(super) fn go_exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("signal: {}", go_signal_name(sig)),
        _ => "exit status 1".to_string(),
    }
}

/// Go's names for the signals a command most often dies of.
fn go_signal_name(sig: i32) -> String {
    match sig {
        1 => "hangup".into(),
        2 => "interrupt".into(),
        3 => "quit".into(),
        6 => "aborted".into(),
        9 => "killed".into(),
        11 => "segmentation fault".into(),
        13 => "broken pipe".into(),
        15 => "terminated".into(),
        n => format!("signal {n}"),
    }
}

/// etcdctl's `Watch` printers over clientv3's `WatchResponse` (which drops the
/// watch id and fragment flag, and always has a header and an event list).
fn render(printer: &Printer, out: &mut Vec<u8>, resp: &WatchResponse) -> Result<(), CtlError> {
    match printer.format {
        Format::Simple => {
            for ev in &resp.events {
                out.extend_from_slice(type_name(ev).as_bytes());
                out.push(b'\n');
                if let Some(prev) = &ev.prev_kv {
                    printer.print_kv(out, prev);
                }
                printer.print_kv(out, ev.kv.as_ref().unwrap_or(&Default::default()));
            }
        }
        Format::Json => {
            out.extend_from_slice(json_watch(resp).as_bytes());
            out.push(b'\n');
        }
        Format::Fields => {
            fields_hdr(out, resp.header.as_ref());
            for ev in &resp.events {
                out.extend_from_slice(format!("\"Type\" : {}\n", type_name(ev)).as_bytes());
                if let Some(prev) = &ev.prev_kv {
                    fields_kv(out, "Prev", prev);
                }
                fields_kv(out, "", ev.kv.as_ref().unwrap_or(&Default::default()));
            }
        }
        Format::Protobuf => {
            let clientv3 = WatchResponse {
                header: Some(resp.header.unwrap_or_default()),
                events: resp.events.clone(),
                compact_revision: resp.compact_revision,
                canceled: resp.canceled,
                ..Default::default()
            };
            out.extend_from_slice(&clientv3.encode_to_vec());
        }
        Format::Table => {
            return Err(CtlError::new(EXIT_BAD_FEATURE, "table not supported as output format"));
        }
    }
    Ok(())
}

fn type_name(ev: &Event) -> &'static str {
    match EventType::try_from(ev.r#type) {
        Ok(EventType::Delete) => "DELETE",
        _ => "PUT",
    }
}

/// Go's `encoding/json` of clientv3's `WatchResponse`: `Header` (a struct, so
/// always there), `Events` (`null` only for a watch refused at creation, which
/// clientv3 reports without a server response), then the three plain fields.
fn json_watch(resp: &WatchResponse) -> String {
    let h = resp.header.unwrap_or_default();
    let mut header = Vec::new();
    for (name, v) in [("cluster_id", h.cluster_id), ("member_id", h.member_id)] {
        if v != 0 {
            header.push(format!("\"{name}\":{v}"));
        }
    }
    for (name, v) in [("revision", h.revision), ("raft_term", h.raft_term as i64)] {
        if v != 0 {
            header.push(format!("\"{name}\":{v}"));
        }
    }
    let events = if resp.created && resp.canceled {
        "null".to_string()
    } else {
        format!("[{}]", resp.events.iter().map(json_event).collect::<Vec<_>>().join(","))
    };
    format!(
        "{{\"Header\":{{{}}},\"Events\":{events},\"CompactRevision\":{},\"Canceled\":{},\"Created\":false}}",
        header.join(","),
        resp.compact_revision,
        resp.canceled,
    )
}

fn json_event(ev: &Event) -> String {
    let mut fields = Vec::new();
    if ev.r#type != 0 {
        fields.push(format!("\"type\":{}", ev.r#type));
    }
    if let Some(kv) = &ev.kv {
        fields.push(format!("\"kv\":{}", json_kv(kv)));
    }
    if let Some(kv) = &ev.prev_kv {
        fields.push(format!("\"prev_kv\":{}", json_kv(kv)));
    }
    format!("{{{}}}", fields.join(","))
}

/// A line of the gateway's answer: a response, or a stream error.
#[derive(Deserialize)]
struct Frame {
    result: Option<WatchResponse>,
    error: Option<serde_json::Value>,
}

/// How one stream ended.
enum Ended {
    /// The server canceled the watch: etcdctl's exit 5.
    Canceled,
    /// The connection broke (or never opened): reopen it.
    Broken,
}

/// Opens the watch on the first endpoint that answers, prints what comes, and
/// reopens a broken stream from the next revision, until the server cancels.
pub(super) fn stream<W: Write>(
    endpoints: &[Endpoint],
    dial_timeout: Duration,
    mut create: WatchCreateRequest,
    view: &mut View<W>,
) -> Result<(), CtlError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("steadctl")
        .timeout_connect(Some(dial_timeout))
        .build()
        .into();
    loop {
        for ep in endpoints {
            if let Ended::Canceled = stream_once(&agent, ep, &mut create, view)? {
                return Err(CtlError::new(EXIT_INTERRUPTED, "watch is canceled by the server"));
            }
        }
        std::thread::sleep(RECONNECT_PAUSE);
    }
}

/// One POST /v3/watch; `create.start_revision` moves on with what was seen, so
/// a reopened stream resumes where this one stopped.
fn stream_once<W: Write>(
    agent: &ureq::Agent,
    ep: &Endpoint,
    create: &mut WatchCreateRequest,
    view: &mut View<W>,
) -> Result<Ended, CtlError> {
    let request = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create.clone())) };
    let body = serde_json::to_string(&request)
        .map_err(|e| CtlError::new(EXIT_ERROR, format!("steadctl: cannot encode the watch request: {e}")))?;
    let url = format!("{}/v3/watch", ep.base_url);
    let resp = match super::gateway::authorize(agent.post(&url)).header("Content-Type", "application/json").send(&body) {
        Ok(r) => r,
        Err(_) => return Ok(Ended::Broken),
    };
    let status = resp.status().as_u16();
    if status != 200 {
        let text = resp.into_body().read_to_string().unwrap_or_default();
        let e = gateway_error(status, &text, "/v3/watch");
        return match e {
            RpcError::Status { code, .. } if code == CODE_UNAVAILABLE => Ok(Ended::Broken),
            e => Err(CtlError::new(EXIT_ERROR, e.etcdctl_text())),
        };
    }
    let mut lines = BufReader::new(resp.into_body().into_reader());
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return Ok(Ended::Broken),
            Ok(_) => {}
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let frame: Frame = match serde_json::from_slice(&line) {
            Ok(f) => f,
            Err(_) => return Ok(Ended::Broken),
        };
        let Some(resp) = frame.result else {
            let _ = frame.error;
            return Ok(Ended::Broken);
        };
        // clientv3's resume point: past the last event seen; past the header's
        // revision of the creation answer (a watch from "now") or of a progress
        // notification (everything up to it was sent).
        let header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if let Some(last) = resp.events.last().and_then(|e| e.kv.as_ref()) {
            create.start_revision = last.mod_revision + 1;
        } else if !resp.canceled && header_rev != 0 && (!resp.created || create.start_revision == 0) {
            create.start_revision = create.start_revision.max(header_rev + 1);
        }
        match step(&resp) {
            Step::Skip => {}
            Step::Show => view.show(&resp)?,
            Step::ShowThenEnd if resp.created => {
                // Refused at creation: clientv3 closes the watch with a response
                // of its own (no header, no event list) carrying the reason.
                let refused = WatchResponse {
                    created: true,
                    canceled: true,
                    cancel_reason: resp.cancel_reason.clone(),
                    ..Default::default()
                };
                view.show(&refused)?;
                return Ok(Ended::Canceled);
            }
            Step::ShowThenEnd => {
                view.show(&resp)?;
                return Ok(Ended::Canceled);
            }
            Step::End => return Ok(Ended::Canceled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;
    use crate::proto::mvccpb::KeyValue;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_fail_as_etcdctl() {
        let argv = os(&["steadctl", "watch"]);
        assert_eq!(watch_args(&[], &argv, "", "").unwrap_err().msg, ERR_BAD_ARGS_NUM);
        let argv = os(&["steadctl", "watch", "a", "--"]);
        let e = watch_args(&strings(&["a"]), &argv, "", "").unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (EXIT_BAD_ARGS, ERR_BAD_ARGS_NUM_SEPARATOR));
        let argv = os(&["steadctl", "watch", "a", "--", "echo", "x"]);
        assert_eq!(watch_args(&strings(&["a", "echo", "x"]), &argv, "", "").unwrap(), (strings(&["a"]), strings(&["echo", "x"])));
        let argv = os(&["steadctl", "watch", "a", "--", "echo", "x"]);
        assert_eq!(watch_args(&strings(&["a", "echo", "x"]), &argv, "k", "").unwrap_err().msg, ERR_BAD_ARGS_NUM_CONFLICT_ENV);
        let argv = os(&["steadctl", "watch", "--", "echo"]);
        assert_eq!(watch_args(&strings(&["echo"]), &argv, "k", "").unwrap(), (strings(&["k"]), strings(&["echo"])));
        let argv = os(&["steadctl", "watch", "a"]);
        let e = watch_args(&strings(&["a"]), &argv, "foo", "").unwrap_err();
        assert_eq!(e.msg, ERR_BAD_ARGS_NUM_CONFLICT_ENV);
        assert_eq!(watch_args(&[], &os(&["steadctl", "watch"]), "k", "z").unwrap(), (strings(&["k", "z"]), Vec::new()));
    }

    #[test]
    fn create_requests_follow_clientv3() {
        let a = WatchArgs { prefix: true, rev: 7, prev_kv: true, ..Default::default() };
        let c = create_request(&a, &strings(&["fo"])).unwrap();
        assert_eq!((c.key, c.range_end, c.start_revision, c.prev_kv), (b"fo".to_vec(), b"fp".to_vec(), 7, true));
        let c = create_request(&a, &strings(&[""])).unwrap();
        assert_eq!((c.key, c.range_end), (vec![0], vec![0]));
        let e = create_request(&a, &strings(&["a", "b"])).unwrap_err();
        assert_eq!(e.msg, "`range_end` and `--prefix` are mutually exclusive");
        let plain = WatchArgs::default();
        let c = create_request(&plain, &strings(&["a", "b", "c"])).unwrap();
        assert_eq!((c.key, c.range_end), (b"a".to_vec(), Vec::new()));
    }

    fn hdr(revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader { cluster_id: 15118495548433857066, member_id: 13668033151171901709, revision, raft_term: 2 })
    }

    /// Lines recorded from etcdctl 3.4.23 against etcd 3.4.23.
    #[test]
    fn printers_match_etcdctl() {
        let kv = |v: &str, c, m, ver| KeyValue {
            key: b"foo".to_vec(),
            value: v.as_bytes().to_vec(),
            create_revision: c,
            mod_revision: m,
            version: ver,
            lease: 0,
        };
        let put = WatchResponse {
            header: hdr(4),
            events: vec![Event { r#type: 0, kv: Some(kv("qux", 2, 4, 3)), prev_kv: Some(kv("baz", 2, 3, 2)) }],
            ..Default::default()
        };
        let del = WatchResponse {
            header: hdr(5),
            events: vec![Event {
                r#type: 1,
                kv: Some(KeyValue { key: b"foo".to_vec(), mod_revision: 5, ..Default::default() }),
                prev_kv: Some(kv("qux", 2, 4, 3)),
            }],
            ..Default::default()
        };
        let show = |format, resp: &WatchResponse| {
            let mut out = Vec::new();
            render(&Printer::new(format, false), &mut out, resp).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(show(Format::Simple, &put), "PUT\nfoo\nbaz\nfoo\nqux\n");
        assert_eq!(show(Format::Simple, &del), "DELETE\nfoo\nqux\nfoo\n\n");
        assert_eq!(
            show(Format::Json, &put),
            "{\"Header\":{\"cluster_id\":15118495548433857066,\"member_id\":13668033151171901709,\"revision\":4,\"raft_term\":2},\"Events\":[{\"kv\":{\"key\":\"Zm9v\",\"create_revision\":2,\"mod_revision\":4,\"version\":3,\"value\":\"cXV4\"},\"prev_kv\":{\"key\":\"Zm9v\",\"create_revision\":2,\"mod_revision\":3,\"version\":2,\"value\":\"YmF6\"}}],\"CompactRevision\":0,\"Canceled\":false,\"Created\":false}\n"
        );
        assert_eq!(
            show(Format::Json, &del),
            "{\"Header\":{\"cluster_id\":15118495548433857066,\"member_id\":13668033151171901709,\"revision\":5,\"raft_term\":2},\"Events\":[{\"type\":1,\"kv\":{\"key\":\"Zm9v\",\"mod_revision\":5},\"prev_kv\":{\"key\":\"Zm9v\",\"create_revision\":2,\"mod_revision\":4,\"version\":3,\"value\":\"cXV4\"}}],\"CompactRevision\":0,\"Canceled\":false,\"Created\":false}\n"
        );
        let compacted = WatchResponse {
            header: Some(ResponseHeader { revision: 0, ..hdr(0).unwrap() }),
            canceled: true,
            compact_revision: 4,
            ..Default::default()
        };
        assert_eq!(
            show(Format::Json, &compacted),
            "{\"Header\":{\"cluster_id\":15118495548433857066,\"member_id\":13668033151171901709,\"raft_term\":2},\"Events\":[],\"CompactRevision\":4,\"Canceled\":true,\"Created\":false}\n"
        );
        assert_eq!(step(&compacted), Step::ShowThenEnd);
        assert_eq!(cancel_text(&compacted), ERR_COMPACTED);
        let refused = WatchResponse {
            header: None,
            created: true,
            canceled: true,
            cancel_reason: "mvcc: watcher range is empty".into(),
            ..Default::default()
        };
        assert_eq!(step(&refused), Step::ShowThenEnd);
        assert_eq!(cancel_text(&refused), "mvcc: watcher range is empty");
        assert_eq!(show(Format::Json, &refused), "{\"Header\":{},\"Events\":null,\"CompactRevision\":0,\"Canceled\":true,\"Created\":false}\n");
    }
}
