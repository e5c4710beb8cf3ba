//! `steadctl`: a drop-in for `etcdctl` v3 (3.4.23) that talks to stead — or to
//! etcd — over etcd's JSON gateway (HTTP/1.1) instead of gRPC.
//!
//! The goal is byte-identical stdout, stderr and exit codes to etcdctl for the
//! commands it implements (`get`, `put`, `del`, `txn`, `compaction`,
//! `endpoint health|status` (also `--cluster`), `member add|remove|update|list|promote`,
//! `move-leader`, `watch`, `lease`, `lock`, `elect`, `alarm list|disarm`,
//! `defrag`, `snapshot save|status|restore`, `auth`, `user`, `role`, `version`);
//! the one deliberate difference is the
//! `version` output. Everything etcdctl has and steadctl lacks fails with a clear
//! error instead of being ignored.
//!
//! Module map:
//! - [`args`]: the command line (clap, made to parse and fail like pflag/cobra);
//! - [`ops`]: flags → API requests (etcdctl's `get*Op` + clientv3 options);
//! - [`txn`]: etcdctl's txn stdin language;
//! - [`gateway`]: HTTP calls, endpoint fail-over, deadlines, error mapping;
//! - [`printer`], [`table`], [`gofmt`]: etcdctl's output formats, Go's text rules;
//! - [`commands`]: each command's flow, in etcdctl's order of checks;
//! - [`cluster`]: the membership commands, move-leader, `--cluster` endpoints;
//! - [`watch`]: `watch` over the gateway's watch stream (and its exec form);
//! - [`watch_interactive`]: `watch -i`, watch lines read from stdin;
//! - [`lease`]: `lease grant|revoke|timetolive|list|keep-alive`;
//! - [`recipes`]: `lock` and `elect`, on the server's lock and election services;
//! - [`maintenance`]: `alarm list|disarm`, `defrag`;
//! - [`snapshot`]: `snapshot save|status|restore`;
//! - [`auth`]: `--user` login, `auth`, `user` and `role`.

pub mod args;
pub mod auth;
pub mod cluster;
pub mod commands;
pub mod gateway;
pub mod gofmt;
pub mod lease;
pub mod maintenance;
pub mod ops;
pub mod printer;
pub mod snapshot;
pub mod recipes;
pub mod table;
pub mod txn;
pub mod watch;
pub mod watch_interactive;

use std::ffi::OsString;
use std::io::Write;

/// etcdctl's exit codes (`etcdctl/ctlv3/command/error.go`).
pub const EXIT_SUCCESS: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_INVALID_INPUT: i32 = 3;
pub const EXIT_BAD_FEATURE: i32 = 4;
pub const EXIT_BAD_ARGS: i32 = 128;
/// What a Go program exits with when it panics.
pub const EXIT_GO_PANIC: i32 = 2;

/// How a failure is reported on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `Error:  <msg>` (etcdctl's `ExitWithError`; two spaces, as the project's
    /// spec session shows it, where etcdctl 3.4 prints one).
    Error,
    /// `panic: <msg>`: etcdctl 3.4 panics on some inputs; we exit the same way
    /// without the goroutine dump.
    Panic,
    /// Nothing more to print (`endpoint status` exits 1 after its own messages).
    Silent,
}

/// A failed run: exit code plus what etcdctl would print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlError {
    pub code: i32,
    pub msg: String,
    pub style: Style,
    /// Printed verbatim to stderr before the message (cobra usage texts).
    pub preamble: String,
}

impl CtlError {
    pub fn new(code: i32, msg: impl Into<String>) -> CtlError {
        CtlError { code, msg: msg.into(), style: Style::Error, preamble: String::new() }
    }
    pub fn panic(msg: impl Into<String>) -> CtlError {
        CtlError { code: EXIT_GO_PANIC, msg: msg.into(), style: Style::Panic, preamble: String::new() }
    }
    pub fn silent(code: i32) -> CtlError {
        CtlError { code, msg: String::new(), style: Style::Silent, preamble: String::new() }
    }
    pub fn with_preamble(mut self, preamble: &str) -> CtlError {
        self.preamble = preamble.to_string();
        self
    }

    /// The bytes etcdctl writes to stderr for this failure.
    pub fn stderr_text(&self) -> String {
        let body = match self.style {
            Style::Error => format!("Error:  {}\n", self.msg),
            Style::Panic => format!("panic: {}\n", self.msg),
            Style::Silent => String::new(),
        };
        format!("{}{}", self.preamble, body)
    }
}

/// Run steadctl with `args` (including the program name) on the real stdio;
/// returns the process exit code.
pub fn run<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    match commands::run(args) {
        Ok(()) => EXIT_SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            let mut err = std::io::stderr();
            let _ = err.write_all(e.stderr_text().as_bytes());
            let _ = err.flush();
            e.code
        }
    }
}
