//! Each steadctl command's flow, in etcdctl's order of checks: argument
//! validation, then client and output-format setup, then the request, then
//! format-specific checks and printing. The order matters because etcdctl's
//! errors (and their exit codes) depend on which check fires first — e.g.
//! `get -w table` performs the read and only then fails.

use std::ffi::OsString;
use std::io::{BufReader, Write};
use std::sync::mpsc;
use std::time::Instant;

use clap::{CommandFactory, Parser};

use super::args::{
    self, AuthCommand, Cli, Command, EndpointCommand, GlobalArgs, LeaseCommand, MemberCommand, ParseFailure, RoleCommand,
    UserCommand,
};
use super::gateway::{Endpoint, Gateway, Idempotence, LogTarget, RpcError, CODE_PERMISSION_DENIED};
use super::printer::{EpHealth, EpStatus, Format, Printer};
use super::{auth, cluster, gofmt, lease, ops, recipes, txn, watch, CtlError, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR};
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeResponse, PutResponse, RangeRequest, RangeResponse,
    StatusRequest, StatusResponse, TxnResponse,
};

/// etcdctl 3.4.23's commands in its registration order (cobra suggests in this order).
const ETCDCTL_COMMANDS: &[&str] = &[
    "get", "put", "del", "txn", "compaction", "alarm", "defrag", "endpoint", "move-leader", "watch",
    "version", "lease", "member", "snapshot", "make-mirror", "migrate", "lock", "elect", "auth", "user",
    "role", "check", "help",
];
const STEADCTL_COMMANDS: &[&str] = &[
    "get", "put", "del", "txn", "compaction", "alarm", "defrag", "endpoint", "move-leader", "watch", "lease", "member",
    "snapshot", "lock", "elect", "version", "auth", "user", "role",
];
/// etcdctl's command groups and their subcommands, each in etcdctl's
/// registration order (cobra prefix-matches subcommands too).
const SUBCOMMANDS: &[(&str, &[&str])] = &[
    ("member", &["add", "remove", "update", "list", "promote"]),
    ("lease", &["grant", "revoke", "timetolive", "list", "keep-alive"]),
    ("user", &["add", "delete", "get", "list", "passwd", "grant-role", "revoke-role"]),
    ("role", &["add", "delete", "get", "list", "grant-permission", "revoke-permission"]),
    ("auth", &["enable", "disable", "status"]),
    ("alarm", &["disarm", "list"]),
    ("snapshot", &["save", "restore", "status"]),
];
/// Global flags that take a separate value (`--endpoints X`), for finding the command word.
const VALUE_FLAGS: &[&str] = &[
    "--endpoints", "-w", "--write-out", "--dial-timeout", "--command-timeout", "--keepalive-time",
    "--keepalive-timeout", "--cert", "--key", "--cacert", "--user", "--password", "-d", "--discovery-srv",
    "--discovery-srv-name",
];

pub fn run(mut argv: Vec<OsString>) -> Result<(), CtlError> {
    resolve_command_prefix(&mut argv);
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => return Err(parse_failure(e, &argv)),
    };
    let mut g = cli.global;
    // pflag appends every --endpoints occurrence; clap's global args keep the last.
    if let Some(eps) = endpoints_in_argv(&argv) {
        g.endpoints = eps;
    }
    match cli.command {
        None => {
            print_out(Cli::command().render_help().to_string().as_bytes());
            Ok(())
        }
        Some(Command::Get(a)) => get(&g, a),
        Some(Command::Put(a)) => put(&g, a),
        Some(Command::Del(a)) => del(&g, a),
        Some(Command::Txn(a)) => txn_cmd(&g, a),
        Some(Command::Compaction(a)) => compaction(&g, a),
        Some(Command::Endpoint(a)) => {
            match a.command {
                Some(EndpointCommand::Health(_)) => endpoint_health(&g, a.cluster),
                Some(EndpointCommand::Status(_)) => endpoint_status(&g, a.cluster),
                Some(EndpointCommand::Other(words)) if resolves_to(&words, "hashkv") => Err(CtlError::new(
                    EXIT_BAD_FEATURE,
                    "steadctl does not support \"endpoint hashkv\" yet",
                )),
                // etcdctl prints the endpoint usage (exit 0) for a missing or unknown subcommand.
                _ => print_usage("endpoint"),
            }
        }
        Some(Command::MoveLeader(a)) => cluster::move_leader(&g, a),
        Some(Command::Watch(a)) => watch::watch(&g, a, &argv),
        Some(Command::Lease(a)) => match a.command {
            Some(LeaseCommand::Grant(a)) => lease::grant(&g, a),
            Some(LeaseCommand::Revoke(a)) => lease::revoke(&g, a),
            Some(LeaseCommand::Timetolive(a)) => lease::time_to_live(&g, a),
            Some(LeaseCommand::List(_)) => lease::list(&g),
            Some(LeaseCommand::KeepAlive(a)) => lease::keep_alive(&g, a),
            // As for `member`: the lease usage (exit 0) for a missing or unknown subcommand.
            Some(LeaseCommand::Other(_)) | None => print_usage("lease")
        },
        Some(Command::Auth(a)) => match a.command {
            Some(AuthCommand::Other(_)) | None => print_usage("auth"),
            Some(c) => auth::auth(&g, c),
        },
        Some(Command::User(a)) => match a.command {
            Some(UserCommand::Other(_)) | None => print_usage("user"),
            Some(c) => auth::user(&g, c),
        },
        Some(Command::Role(a)) => match a.command {
            Some(RoleCommand::Other(_)) | None => print_usage("role"),
            Some(c) => auth::role(&g, c),
        },
        Some(Command::Member(a)) => match a.command {
            Some(MemberCommand::Add(a)) => cluster::member_add(&g, a),
            Some(MemberCommand::Remove(a)) => cluster::member_remove(&g, a),
            Some(MemberCommand::Update(a)) => cluster::member_update(&g, a),
            Some(MemberCommand::List(_)) => cluster::member_list(&g),
            Some(MemberCommand::Promote(a)) => cluster::member_promote(&g, a),
            // As for `endpoint`: the member usage (exit 0) for a missing or unknown subcommand.
            Some(MemberCommand::Other(_)) | None => print_usage("member")
        },
        Some(Command::Lock(a)) => recipes::lock(&g, a),
        Some(Command::Elect(a)) => recipes::elect(&g, a),
        Some(Command::Version(_)) => {
            print_out(format!("steadctl version: {}\nAPI version: 3.4\n", env!("CARGO_PKG_VERSION")).as_bytes());
            Ok(())
        }
        Some(Command::Alarm(a)) => super::maintenance::alarm(&g, a),
        Some(Command::Defrag(a)) => super::maintenance::defrag(&g, a),
        Some(Command::Snapshot(a)) => {
            // etcdctl's `snapshot save` has no deadline unless the flag was given.
            let timeout_given = argv.iter().filter_map(|a| a.to_str()).any(|a| a.starts_with("--command-timeout"));
            super::snapshot::snapshot(&g, a, timeout_given)
        }
        Some(Command::Other(words)) => Err(unknown_command(words.first().map(String::as_str).unwrap_or(""))),
    }
}

/// All `--endpoints` values in command-line order (comma-separated lists
/// concatenated, as pflag's string slice does), or `None` when the flag is absent.
fn endpoints_in_argv(argv: &[OsString]) -> Option<Vec<String>> {
    let mut found: Option<Vec<String>> = None;
    let mut words = argv.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(w) = words.next() {
        if w == "--" {
            break;
        }
        let value = if w == "--endpoints" {
            words.next()
        } else {
            w.strip_prefix("--endpoints=")
        };
        if let Some(v) = value {
            found.get_or_insert_with(Vec::new).extend(v.split(',').map(str::to_string));
        }
    }
    found
}

fn resolves_to(words: &[String], full: &str) -> bool {
    words.first().is_some_and(|w| !w.is_empty() && full.starts_with(w.as_str()))
}

/// cobra's `EnablePrefixMatching`: a unique prefix of an etcdctl command names it.
/// Done before clap so that ambiguity is judged against all of etcdctl's commands.
fn resolve_command_prefix(argv: &mut [OsString]) {
    let mut i = 1;
    while i < argv.len() {
        let Some(word) = argv[i].to_str() else { return };
        if word == "--" {
            return;
        }
        if word.starts_with('-') {
            if VALUE_FLAGS.contains(&word) {
                i += 1;
            }
            i += 1;
            continue;
        }
        if !ETCDCTL_COMMANDS.contains(&word) {
            let matches: Vec<&&str> = ETCDCTL_COMMANDS.iter().filter(|c| c.starts_with(word)).collect();
            match matches.as_slice() {
                [only] if STEADCTL_COMMANDS.contains(only) => argv[i] = OsString::from(**only),
                _ => return,
            }
        }
        if let Some((_, subcommands)) = SUBCOMMANDS.iter().find(|(command, _)| argv[i] == *command) {
            resolve_subcommand_prefix(&mut argv[i + 1..], subcommands);
        }
        return;
    }
}

/// A command group's usage (exit 0), as cobra prints it for a missing or
/// unknown subcommand.
pub(super) fn print_usage(command: &str) -> Result<(), CtlError> {
    let mut cmd = Cli::command();
    cmd.build();
    let help = cmd.find_subcommand_mut(command).map(|c| c.render_help().to_string()).unwrap_or_default();
    print_out(help.as_bytes());
    Ok(())
}

/// cobra's prefix matching one level down: the first word that is not a flag.
fn resolve_subcommand_prefix(argv: &mut [OsString], subcommands: &[&str]) {
    let mut i = 0;
    while i < argv.len() {
        let Some(word) = argv[i].to_str() else { return };
        if word == "--" {
            return;
        }
        if word.starts_with('-') {
            if VALUE_FLAGS.contains(&word) {
                i += 1;
            }
            i += 1;
            continue;
        }
        let matches: Vec<&&str> = subcommands.iter().filter(|c| c.starts_with(word)).collect();
        if let [only] = matches.as_slice() {
            if !word.is_empty() {
                argv[i] = OsString::from(**only);
            }
        }
        return;
    }
}

/// cobra's unknown-command error, with its Levenshtein/prefix suggestions; or a
/// clear "not supported" for etcdctl commands steadctl lacks.
fn unknown_command(word: &str) -> CtlError {
    let matches: Vec<&&str> = ETCDCTL_COMMANDS.iter().filter(|c| c.starts_with(word)).collect();
    if let [only] = matches.as_slice() {
        if **only != "help" {
            return CtlError::new(
                EXIT_BAD_FEATURE,
                format!("steadctl does not support the {} command yet", gofmt::quote(only.as_bytes())),
            );
        }
    }
    let suggestions: Vec<&str> = ETCDCTL_COMMANDS
        .iter()
        .filter(|c| {
            levenshtein(&word.to_lowercase(), &c.to_lowercase()) <= 2
                || c.to_lowercase().starts_with(&word.to_lowercase())
        })
        .copied()
        .collect();
    let mut msg = format!("unknown command {} for \"steadctl\"", gofmt::quote(word.as_bytes()));
    if !suggestions.is_empty() {
        msg.push_str("\n\nDid you mean this?\n");
        for s in suggestions {
            msg.push_str(&format!("\t{s}\n"));
        }
    }
    CtlError::new(EXIT_ERROR, msg.clone())
        .with_preamble(&format!("Error: {msg}\nRun 'steadctl --help' for usage.\n"))
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn parse_failure(e: clap::Error, argv: &[OsString]) -> CtlError {
    // The usage cobra prints on stdout is that of the (sub)command being parsed.
    let usage = {
        let mut cmd = Cli::command();
        cmd.build();
        let sub = argv.iter().skip(1).filter_map(|a| a.to_str()).find(|a| STEADCTL_COMMANDS.contains(a));
        match sub.and_then(|s| cmd.find_subcommand_mut(s)) {
            Some(c) => c.render_help().to_string(),
            None => cmd.render_help().to_string(),
        }
    };
    match args::translate_error(&e, usage) {
        ParseFailure::Help(text) => {
            print_out(text.as_bytes());
            CtlError::silent(0)
        }
        ParseFailure::Flag { message, usage } => {
            print_out(usage.as_bytes());
            // cobra prints "Error: …" and a blank line, then etcdctl's ExitWithError.
            CtlError::new(EXIT_ERROR, message.clone()).with_preamble(&format!("Error: {message}\n\n"))
        }
        ParseFailure::Other(message) => CtlError::new(EXIT_ERROR, message),
    }
}

pub(super) fn print_out(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

pub(super) fn print_err(bytes: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(bytes);
    let _ = err.flush();
}

/// etcdctl's `mustClientFromCmd` + `initDisplayFromCmd`: flags steadctl cannot
/// honour fail here, as do bad endpoints and unknown output formats.
pub(super) fn client_and_printer(g: &GlobalArgs) -> Result<(Gateway, Printer), CtlError> {
    let printer = printer_from(g)?;
    Ok((gateway_from(g)?, printer))
}

fn printer_from(g: &GlobalArgs) -> Result<Printer, CtlError> {
    let format = Format::parse(&g.write_out)
        .ok_or_else(|| CtlError::new(EXIT_BAD_FEATURE, "unsupported output format"))?;
    Ok(Printer::new(format, g.hex))
}

pub(super) fn gateway_from(g: &GlobalArgs) -> Result<Gateway, CtlError> {
    let unsupported = |flag: &str| {
        Err(CtlError::new(EXIT_BAD_FEATURE, format!("steadctl does not support {flag} yet")))
    };
    for (set, flag) in [
        (g.cert.is_some(), "--cert (TLS)"),
        (g.key.is_some(), "--key (TLS)"),
        (g.cacert.is_some(), "--cacert (TLS)"),
        (g.insecure_skip_tls_verify, "--insecure-skip-tls-verify (TLS)"),
        (!g.insecure_transport, "--insecure-transport=false (TLS)"),
        (g.discovery_srv.is_some(), "--discovery-srv (DNS discovery)"),
        (g.discovery_srv_name.is_some(), "--discovery-srv-name (DNS discovery)"),
    ] {
        if set {
            return unsupported(flag);
        }
    }
    if g.debug {
        super::gateway::enable_client_log();
    }
    let endpoints = endpoints_from(g)?;
    let gateway = Gateway::new(endpoints, g.dial_timeout);
    auth::log_in(&gateway, g)?;
    Ok(gateway)
}

fn endpoints_from(g: &GlobalArgs) -> Result<Vec<Endpoint>, CtlError> {
    parse_endpoints(&g.endpoints)
}

pub(super) fn parse_endpoints(eps: &[String]) -> Result<Vec<Endpoint>, CtlError> {
    eps.iter().map(|e| Endpoint::parse(e).map_err(|m| CtlError::new(EXIT_BAD_ARGS, m))).collect()
}

pub(super) fn rpc_failed(e: RpcError) -> CtlError {
    CtlError::new(EXIT_ERROR, e.etcdctl_text())
}

fn get(g: &GlobalArgs, a: args::GetArgs) -> Result<(), CtlError> {
    if a.keys_only && a.count_only {
        return Err(CtlError::new(
            super::EXIT_INVALID_INPUT,
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        ));
    }
    let req = ops::range_request(&a)?;
    let (gw, mut printer) = client_and_printer(g)?;
    let resp: RangeResponse = gw
        .call("/v3/kv/range", &req, Some(g.command_timeout), Idempotence::Repeatable, LogTarget::Balancer)
        .map_err(rpc_failed)?;
    if a.count_only && printer.format != Format::Fields {
        return Err(CtlError::new(EXIT_BAD_ARGS, "--count-only is only for `--write-out=fields`"));
    }
    if a.print_value_only {
        if printer.format != Format::Simple {
            return Err(CtlError::new(EXIT_BAD_ARGS, "print-value-only is only for `--write-out=simple`"));
        }
        printer.value_only = true;
    }
    emit(|out| printer.get(out, &resp))
}

fn put(g: &GlobalArgs, a: args::PutArgs) -> Result<(), CtlError> {
    let req = ops::put_request(&a, &mut std::io::stdin().lock())?;
    let (gw, printer) = client_and_printer(g)?;
    let resp: PutResponse = gw
        .call("/v3/kv/put", &req, Some(g.command_timeout), Idempotence::NonRepeatable, LogTarget::Balancer)
        .map_err(rpc_failed)?;
    emit(|out| printer.put(out, &resp))
}

fn del(g: &GlobalArgs, a: args::DelArgs) -> Result<(), CtlError> {
    let req = ops::delete_request(&a)?;
    let (gw, printer) = client_and_printer(g)?;
    let resp: DeleteRangeResponse = gw
        .call("/v3/kv/deleterange", &req, Some(g.command_timeout), Idempotence::NonRepeatable, LogTarget::Balancer)
        .map_err(rpc_failed)?;
    emit(|out| printer.del(out, &resp))
}

fn txn_cmd(g: &GlobalArgs, a: args::TxnArgs) -> Result<(), CtlError> {
    if !a.args.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, "txn command does not accept argument"));
    }
    let (gw, printer) = client_and_printer(g)?;
    let mut input = BufReader::new(std::io::stdin().lock());
    let req = if a.interactive {
        let mut stdout = std::io::stdout();
        txn::read_txn(&mut input, Some(&mut stdout))?
    } else {
        txn::read_txn(&mut input, None)?
    };
    // etcdctl commits the txn with context.Background(): no command timeout.
    let resp: TxnResponse = gw
        .call("/v3/kv/txn", &req, None, Idempotence::NonRepeatable, LogTarget::Balancer)
        .map_err(rpc_failed)?;
    emit(|out| printer.txn(out, &resp))
}

fn compaction(g: &GlobalArgs, a: args::CompactionArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "compaction command needs 1 argument"));
    }
    let revision = gofmt::parse_int(&a.args[0], 10).map_err(|e| CtlError::new(EXIT_ERROR, e))?;
    let gw = client_and_printer(g)?.0;
    let req = CompactionRequest { revision, physical: a.physical };
    let _: CompactionResponse = gw
        .call("/v3/kv/compaction", &req, Some(g.command_timeout), Idempotence::NonRepeatable, LogTarget::Balancer)
        .map_err(rpc_failed)?;
    // Printed the same way whatever -w says.
    print_out(format!("compacted revision {revision}\n").as_bytes());
    Ok(())
}

/// etcdctl: a linearizable get of "health" on each endpoint, in parallel;
/// "permission denied" still proves the request went through consensus. With
/// `--cluster` the endpoints are every member's client URLs (from MemberList).
fn endpoint_health(g: &GlobalArgs, all_members: bool) -> Result<(), CtlError> {
    let printer = printer_from(g)?;
    let mut gw = gateway_from(g)?;
    if all_members {
        let eps = cluster::cluster_endpoints(g)?;
        gw = Gateway::new(parse_endpoints(&eps)?, g.dial_timeout);
    }
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for ep in gw.endpoints() {
            let tx = tx.clone();
            let one = gw.for_endpoint(ep);
            let timeout = g.command_timeout;
            s.spawn(move || {
                let start = Instant::now();
                let req = RangeRequest { key: b"health".to_vec(), ..Default::default() };
                let res: Result<RangeResponse, RpcError> =
                    one.call("/v3/kv/range", &req, Some(timeout), Idempotence::Repeatable, LogTarget::Balancer);
                let took = gofmt::duration_string(start.elapsed());
                let (health, error) = match res {
                    Ok(_) => (true, String::new()),
                    Err(RpcError::Status { code, ref desc })
                        if code == CODE_PERMISSION_DENIED && desc == "etcdserver: permission denied" =>
                    {
                        (true, String::new())
                    }
                    Err(e) => (false, e.etcdctl_text()),
                };
                // Completion order, as etcdctl's goroutines report.
                let _ = tx.send(EpHealth { ep: ep.given.clone(), health, took, error });
            });
        }
    });
    drop(tx);
    let list: Vec<EpHealth> = rx.into_iter().collect();
    let unhealthy = list.iter().any(|h| !h.error.is_empty());
    let mut err = Vec::new();
    let printed = emit_with_err(&mut err, |out, err| printer.endpoint_health(out, err, &list));
    print_err(&err);
    printed?;
    if unhealthy {
        return Err(CtlError::new(EXIT_ERROR, "unhealthy cluster"));
    }
    Ok(())
}

/// etcdctl: Maintenance.Status on each endpoint in turn; failures are reported
/// and skipped, and make the exit code 1. With `--cluster` the endpoints are
/// every member's client URLs (from MemberList).
fn endpoint_status(g: &GlobalArgs, all_members: bool) -> Result<(), CtlError> {
    let (mut gw, printer) = client_and_printer(g)?;
    if all_members {
        let eps = cluster::cluster_endpoints(g)?;
        gw = Gateway::new(parse_endpoints(&eps)?, g.dial_timeout);
    }
    let mut list = Vec::new();
    let mut failed = false;
    for ep in gw.endpoints() {
        let one = gw.for_endpoint(ep);
        let res: Result<StatusResponse, RpcError> = one.call(
            "/v3/maintenance/status",
            &StatusRequest {},
            Some(g.command_timeout),
            Idempotence::Repeatable,
            LogTarget::Passthrough,
        );
        match res {
            Ok(resp) => list.push(EpStatus { ep: ep.given.clone(), resp }),
            Err(e) => {
                failed = true;
                print_err(format!("Failed to get the status of endpoint {} ({})\n", ep.given, e.etcdctl_text()).as_bytes());
            }
        }
    }
    emit(|out| printer.endpoint_status(out, &list))?;
    if failed {
        return Err(CtlError::silent(EXIT_ERROR));
    }
    Ok(())
}

/// Run a printer into a buffer and write it to stdout (also on a printer error,
/// whatever it printed first).
pub(super) fn emit(f: impl FnOnce(&mut Vec<u8>) -> Result<(), CtlError>) -> Result<(), CtlError> {
    let mut out = Vec::new();
    let r = f(&mut out);
    print_out(&out);
    r
}

fn emit_with_err(
    err: &mut Vec<u8>,
    f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> Result<(), CtlError>,
) -> Result<(), CtlError> {
    let mut out = Vec::new();
    let r = f(&mut out, err);
    print_out(&out);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn repeated_endpoints_accumulate_like_pflag() {
        let a = os(&["steadctl", "--endpoints=a:1", "get", "k", "--endpoints", "b:2,c:3"]);
        assert_eq!(endpoints_in_argv(&a), Some(vec!["a:1".into(), "b:2".into(), "c:3".into()]));
        assert_eq!(endpoints_in_argv(&os(&["steadctl", "get", "--", "--endpoints=x"])), None);
    }

    #[test]
    fn prefixes_resolve_like_cobra() {
        let mut a = os(&["steadctl", "--endpoints", "x:1", "ge", "k"]);
        resolve_command_prefix(&mut a);
        assert_eq!(a[3], "get");
        // Subcommands too: etcdctl 3.4.23 runs `mem li` as `member list`.
        let mut a = os(&["steadctl", "mem", "-w", "table", "li"]);
        resolve_command_prefix(&mut a);
        assert_eq!(a, os(&["steadctl", "member", "-w", "table", "list"]));
        let mut a = os(&["steadctl", "mo", "12"]);
        resolve_command_prefix(&mut a);
        assert_eq!(a[1], "move-leader");
        // "e" is ambiguous among etcdctl's commands (elect, endpoint).
        let mut a = os(&["steadctl", "e", "health"]);
        resolve_command_prefix(&mut a);
        assert_eq!(a[1], "e");
    }

    #[test]
    fn unknown_commands_suggest_like_cobra() {
        let e = unknown_command("gett");
        assert_eq!(e.code, 1);
        assert_eq!(
            e.stderr_text(),
            "Error: unknown command \"gett\" for \"steadctl\"\n\nDid you mean this?\n\tget\n\nRun 'steadctl --help' for usage.\nError:  unknown command \"gett\" for \"steadctl\"\n\nDid you mean this?\n\tget\n\n"
        );
        let e = unknown_command("bogus");
        assert_eq!(
            e.stderr_text(),
            "Error: unknown command \"bogus\" for \"steadctl\"\nRun 'steadctl --help' for usage.\nError:  unknown command \"bogus\" for \"steadctl\"\n"
        );
        let e = unknown_command("snaps");
        assert_eq!((e.code, e.msg.as_str()), (4, "steadctl does not support the \"snapshot\" command yet"));
    }
}
