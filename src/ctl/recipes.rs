//! `steadctl lock` and `steadctl elect`: etcdctl 3.4.23's commands of the same
//! names, run on the server's lock and election services (`/v3/lock/*`,
//! `/v3/election/*`, which etcd's gateway serves too) instead of clientv3's
//! client-side recipes. The observable flow is etcdctl's:
//!
//! - a session: a lease (`lock --ttl`, default 10 s; `elect` 60 s) kept alive by
//!   a thread every TTL/3 for as long as the command runs; it is not revoked at
//!   the end (etcdctl leaves it to expire);
//! - `lock NAME` prints the lock key (as `get` prints it) once held and waits for
//!   SIGINT/SIGTERM, then unlocks; `lock NAME CMD ARGS…` runs the command with
//!   `ETCD_LOCK_KEY` and `ETCD_LOCK_REV` set, then unlocks;
//! - `elect NAME PROPOSAL` campaigns, prints the leader key once elected and
//!   waits for a signal, then resigns; `elect -l NAME` prints the leader each
//!   time it changes until a signal;
//! - a signal while waiting to acquire ends with etcdctl's `context canceled`
//!   (exit 1): the process exits, its connection closes, and the server deletes
//!   the waiting key; a session that expires while held ends with etcdctl's
//!   `session expired` (`elect: session expired`).
//!
//! One difference: `elect -l` opens no session (etcdctl grants one it never
//! uses).

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

use super::args::{ElectArgs, GlobalArgs, LockArgs};
use super::commands::{client_and_printer, emit, rpc_failed};
use super::gateway::{gateway_error, Endpoint, Gateway, Idempotence, LogTarget, RpcError};
use super::printer::Printer;
use super::{lease, CtlError, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::proto::etcdserverpb::{LeaseGrantRequest, LeaseGrantResponse, RangeRequest, RangeResponse};
use crate::proto::v3electionpb as epb;
use crate::proto::v3lockpb;

/// etcd's `concurrency.defaultSessionTTL`, seconds (`elect`'s session).
const ELECT_SESSION_TTL: i64 = 60;
/// How long a failed keep-alive waits before it is tried again.
const KEEP_ALIVE_RETRY: Duration = Duration::from_millis(500);
/// Go's `context.Canceled` text: what etcdctl prints when a signal ends a wait.
const ERR_CONTEXT_CANCELED: &str = "context canceled";

/// What the main thread waits for.
enum Event<T> {
    /// SIGINT or SIGTERM.
    Signal,
    /// The session's lease is gone (expired or revoked).
    SessionExpired,
    /// The blocking call made on another thread answered.
    Answered(Result<T, RpcError>),
}

/// `steadctl lock NAME [--ttl N] [CMD ARGS…]`.
pub fn lock(g: &GlobalArgs, a: LockArgs) -> Result<(), CtlError> {
    let Some((name, command)) = a.args.split_first() else {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "lock takes a lock name argument and an optional command to execute",
        ));
    };
    let (gw, printer) = client_and_printer(g)?;
    let (events, rx) = mpsc::channel::<Event<v3lockpb::LockResponse>>();
    watch_signals(events.clone());
    let session = Session::open(&gw, g, a.ttl, events.clone())?;
    let request = v3lockpb::LockRequest { name: name.as_bytes().to_vec(), lease: session.id };
    call_in_background(&gw, "/v3/lock/lock", request, events);
    let held = loop {
        match rx.recv() {
            Ok(Event::Answered(result)) => break result.map_err(rpc_failed)?,
            Ok(Event::Signal) | Err(_) => return Err(CtlError::new(EXIT_ERROR, ERR_CONTEXT_CANCELED)),
            // Still waiting: the server fails the wait once the key is gone.
            Ok(Event::SessionExpired) => {}
        }
    };
    let unlock = || -> Result<(), CtlError> {
        let request = v3lockpb::UnlockRequest { key: held.key.clone() };
        let _: v3lockpb::UnlockResponse = gw
            .call("/v3/lock/unlock", &request, Some(g.command_timeout), Idempotence::NonRepeatable, LogTarget::Balancer)
            .map_err(rpc_failed)?;
        Ok(())
    };
    if !command.is_empty() {
        let revision = held.header.map(|h| h.revision).unwrap_or_default();
        let ran = run_command(command, &[
            ("ETCD_LOCK_KEY", String::from_utf8_lossy(&held.key).into_owned()),
            ("ETCD_LOCK_REV", revision.to_string()),
        ]);
        let unlocked = unlock();
        ran?;
        return unlocked;
    }
    let current = get_key(&gw, g, &held.key)?;
    if current.kvs.is_empty() {
        return Err(CtlError::new(EXIT_ERROR, "lock lost on init"));
    }
    emit(|out| printer.get(out, &current))?;
    loop {
        match rx.recv() {
            Ok(Event::Signal) | Err(_) => return unlock(),
            Ok(Event::SessionExpired) => return Err(CtlError::new(EXIT_ERROR, "session expired")),
            Ok(Event::Answered(_)) => {}
        }
    }
}

/// `steadctl elect NAME PROPOSAL` and `steadctl elect -l NAME`.
pub fn elect(g: &GlobalArgs, a: ElectArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 && a.args.len() != 2 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "elect takes one election name argument and an optional proposal argument",
        ));
    }
    if a.args.len() == 1 && !a.listen {
        return Err(CtlError::new(EXIT_BAD_ARGS, "no proposal argument but -l not set"));
    }
    if a.args.len() == 2 && a.listen {
        return Err(CtlError::new(EXIT_BAD_ARGS, "proposal given but -l is set"));
    }
    let (gw, printer) = client_and_printer(g)?;
    if a.listen {
        observe(&gw, printer, &a.args[0])
    } else {
        campaign(&gw, g, printer, &a.args[0], &a.args[1])
    }
}

fn campaign(gw: &Gateway, g: &GlobalArgs, printer: Printer, name: &str, proposal: &str) -> Result<(), CtlError> {
    let (events, rx) = mpsc::channel::<Event<epb::CampaignResponse>>();
    watch_signals(events.clone());
    let session = Session::open(gw, g, ELECT_SESSION_TTL, events.clone())?;
    let request = epb::CampaignRequest {
        name: name.as_bytes().to_vec(),
        lease: session.id,
        value: proposal.as_bytes().to_vec(),
    };
    call_in_background(gw, "/v3/election/campaign", request, events);
    let elected = loop {
        match rx.recv() {
            Ok(Event::Answered(result)) => break result.map_err(rpc_failed)?,
            Ok(Event::Signal) | Err(_) => return Err(CtlError::new(EXIT_ERROR, ERR_CONTEXT_CANCELED)),
            Ok(Event::SessionExpired) => {}
        }
    };
    let leader = elected.leader.unwrap_or_default();
    let current = get_key(gw, g, &leader.key)?;
    emit(|out| printer.get(out, &current))?;
    loop {
        match rx.recv() {
            Ok(Event::Signal) | Err(_) => break,
            Ok(Event::SessionExpired) => return Err(CtlError::new(EXIT_ERROR, "elect: session expired")),
            Ok(Event::Answered(_)) => {}
        }
    }
    let _: epb::ResignResponse = gw
        .call(
            "/v3/election/resign",
            &epb::ResignRequest { leader: Some(leader) },
            Some(g.command_timeout),
            Idempotence::NonRepeatable,
            LogTarget::Balancer,
        )
        .map_err(rpc_failed)?;
    Ok(())
}

/// `elect -l`: each leader answer printed as `get` prints it, until a signal
/// (exit 0) or the stream ends (etcdctl's `elect: observer lost`).
fn observe(gw: &Gateway, printer: Printer, name: &str) -> Result<(), CtlError> {
    let (events, rx) = mpsc::channel::<Event<Option<epb::LeaderResponse>>>();
    watch_signals(events.clone());
    let request = epb::LeaderRequest { name: name.as_bytes().to_vec() };
    let endpoints = gw.endpoints().to_vec();
    std::thread::spawn(move || stream_observe(&endpoints, &request, &events));
    loop {
        match rx.recv() {
            Ok(Event::Signal) => return Ok(()),
            Ok(Event::Answered(Ok(Some(leader)))) => {
                let resp = RangeResponse { header: leader.header, kvs: leader.kv.into_iter().collect(), ..Default::default() };
                emit(|out| printer.get(out, &resp))?;
            }
            Ok(Event::Answered(_)) | Ok(Event::SessionExpired) | Err(_) => {
                return Err(CtlError::new(EXIT_ERROR, "elect: observer lost"))
            }
        }
    }
}

/// Reads the observe stream of the first endpoint that answers; every answer
/// goes to `events`, and `Answered(Ok(None))` when the stream ends.
fn stream_observe(endpoints: &[Endpoint], request: &epb::LeaderRequest, events: &mpsc::Sender<Event<Option<epb::LeaderResponse>>>) {
    #[derive(Deserialize)]
    struct Frame {
        result: Option<epb::LeaderResponse>,
    }
    let body = serde_json::to_string(request).unwrap_or_default();
    for ep in endpoints {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).user_agent("steadctl").build().into();
        let url = format!("{}/v3/election/observe", ep.base_url);
        let Ok(resp) = agent.post(&url).header("Content-Type", "application/json").send(&body) else { continue };
        let status = resp.status().as_u16();
        if status != 200 {
            let text = resp.into_body().read_to_string().unwrap_or_default();
            let _ = events.send(Event::Answered(Err(gateway_error(status, &text, "/v3/election/observe"))));
            return;
        }
        let mut reader = BufReader::new(resp.into_body().into_reader());
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Frame>(&line) {
                Ok(Frame { result: Some(leader) }) => {
                    if events.send(Event::Answered(Ok(Some(leader)))).is_err() {
                        return;
                    }
                }
                _ => break,
            }
        }
        break;
    }
    let _ = events.send(Event::Answered(Ok(None)));
}

/// A lease kept alive by a background thread until the process ends; when it
/// is gone, `SessionExpired` is sent.
struct Session {
    id: i64,
}

impl Session {
    fn open<T: Send + 'static>(gw: &Gateway, g: &GlobalArgs, ttl: i64, events: mpsc::Sender<Event<T>>) -> Result<Session, CtlError> {
        // concurrency.WithTTL: a TTL <= 0 keeps the default.
        let ttl = if ttl > 0 { ttl } else { ELECT_SESSION_TTL };
        let granted: LeaseGrantResponse = gw
            .call("/v3/lease/grant", &LeaseGrantRequest { ttl, id: 0 }, Some(g.command_timeout), Idempotence::NonRepeatable, LogTarget::Balancer)
            .map_err(rpc_failed)?;
        let id = granted.id;
        let keeper = gw.redirected(gw.endpoints().to_vec());
        std::thread::spawn(move || {
            // clientv3's KeepAlive: renew every TTL/3; a lease the server no
            // longer knows ends the session.
            let mut pause = Duration::from_secs(granted.ttl.max(1) as u64) / 3;
            loop {
                std::thread::sleep(pause);
                match lease::keep_alive_once(&keeper, id, Some(Duration::from_secs(5))) {
                    Ok(resp) if resp.ttl <= 0 => break,
                    Ok(resp) => pause = Duration::from_secs(resp.ttl as u64) / 3,
                    Err(RpcError::Status { ref desc, .. }) if desc.ends_with("requested lease not found") => break,
                    Err(_) => pause = KEEP_ALIVE_RETRY,
                }
            }
            let _ = events.send(Event::SessionExpired);
        });
        Ok(Session { id })
    }
}

/// Sends `Signal` on the first SIGINT or SIGTERM (and keeps the process from
/// dying of it, so the command can release what it holds).
fn watch_signals<T: Send + 'static>(events: mpsc::Sender<Event<T>>) {
    let (installed_tx, installed) = mpsc::channel::<bool>();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_io().build() else {
            let _ = installed_tx.send(false);
            return;
        };
        runtime.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                let _ = installed_tx.send(false);
                return;
            };
            let _ = installed_tx.send(true);
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if events.send(Event::Signal).is_err() {
                    return;
                }
            }
        });
    });
    // The handlers are in place before anything is acquired.
    if !installed.recv().unwrap_or(false) {
        eprintln!("steadctl: could not install SIGINT/SIGTERM handlers; a signal will not release what it holds");
    }
}

/// Runs a blocking gateway call with no deadline on its own thread.
fn call_in_background<Req, Resp>(gw: &Gateway, path: &'static str, request: Req, events: mpsc::Sender<Event<Resp>>)
where
    Req: serde::Serialize + Send + 'static,
    Resp: serde::de::DeserializeOwned + Send + 'static,
{
    let gw = gw.redirected(gw.endpoints().to_vec());
    std::thread::spawn(move || {
        let result = gw.call(path, &request, None, Idempotence::NonRepeatable, LogTarget::Balancer);
        let _ = events.send(Event::Answered(result));
    });
}

fn get_key(gw: &Gateway, g: &GlobalArgs, key: &[u8]) -> Result<RangeResponse, CtlError> {
    gw.call(
        "/v3/kv/range",
        &RangeRequest { key: key.to_vec(), ..Default::default() },
        Some(g.command_timeout),
        Idempotence::Repeatable,
        LogTarget::Balancer,
    )
    .map_err(rpc_failed)
}

/// Runs `argv` with `env` added, stdout and stderr shared; Go's `exec` error
/// texts for a command that fails (`exit status N`, `signal: killed`).
fn run_command(argv: &[String], env: &[(&str, String)]) -> Result<(), CtlError> {
    let mut command = std::process::Command::new(&argv[0]);
    command.args(&argv[1..]);
    for (k, v) in env {
        command.env(k, v);
    }
    let status = command.status().map_err(|e| CtlError::new(EXIT_ERROR, super::watch::go_start_error(&argv[0], &e)))?;
    if status.success() {
        return Ok(());
    }
    Err(CtlError::new(EXIT_ERROR, super::watch::go_exit_text(status)))
}
