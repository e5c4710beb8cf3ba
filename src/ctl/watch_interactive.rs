//! `steadctl watch -i`: etcdctl 3.4.23's interactive watch. Lines are read from
//! stdin; each `watch [flags] KEY [RANGE_END] [-- CMD ARGS…]` line (flags as
//! the `watch` command's, parsed afresh for each line, not inherited from the
//! command line) starts one more watch, printed as `watch` prints it, on its own
//! stream. Errors are etcdctl's: a flag or argument-count error ends the run
//! (exit 128), other bad lines are reported on stderr and skipped, and the end
//! of stdin ends the run with `Error reading watch request line: EOF` (exit 3).
//!
//! Not supported yet: the `progress` line (etcdctl asks every open watch for a
//! progress notification); it is answered on stderr with a clear message and
//! skipped, the watches go on.

use std::io::BufRead;

use clap::Parser;

use super::args::{self, argify, Cli, Command, GlobalArgs, ParseFailure};
use super::commands::client_and_printer;
use super::watch::{create_request, key_args, stream, View};
use super::{CtlError, EXIT_BAD_ARGS, EXIT_INVALID_INPUT};

const ERR_BAD_ARGS_NUM_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";
const ERR_BAD_ARGS_NUM_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";

/// What one stdin line asks for.
#[derive(Debug)]
enum Line {
    /// Start a watch: its flags and keys, and the command for each event.
    Watch { args: super::args::WatchArgs, keys: Vec<String>, exec: Vec<String> },
    /// A line to report on stderr and skip.
    Skip(String),
}

pub fn run(g: &GlobalArgs, env_key: &str, env_range: &str) -> Result<(), CtlError> {
    let (gw, printer) = client_and_printer(g)?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        let mut raw = String::new();
        match input.read_line(&mut raw) {
            Ok(0) => return Err(CtlError::new(EXIT_INVALID_INPUT, "Error reading watch request line: EOF")),
            Err(e) => return Err(CtlError::new(EXIT_INVALID_INPUT, format!("Error reading watch request line: {e}"))),
            Ok(_) => {}
        }
        let line = raw.strip_suffix('\n').unwrap_or(&raw);
        match parse_line(line, env_key, env_range)? {
            Line::Skip(message) => eprintln!("{message}"),
            Line::Watch { args, keys, exec } => {
                let create = match create_request(&args, &keys) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("Invalid command {line} ({})", e.msg);
                        continue;
                    }
                };
                let endpoints = gw.endpoints().to_vec();
                let dial_timeout = g.dial_timeout;
                let mut view = View { printer: printer.clone(), progress_notify: false, out: std::io::stdout(), exec };
                // A watch the server cancels just ends (etcdctl's goroutine returns).
                std::thread::spawn(move || stream(&endpoints, dial_timeout, create, &mut view));
            }
        }
    }
}

/// etcdctl's handling of one interactive line (`watchInteractiveFunc` +
/// `parseWatchArgs`): a watch to start, a line to skip with a message, or an
/// error that ends the run.
fn parse_line(line: &str, env_key: &str, env_range: &str) -> Result<Line, CtlError> {
    let words = argify(line).unwrap_or_default();
    let Some(first) = words.first() else {
        return Ok(Line::Skip(format!("Invalid command: {line} (watch and progress supported)")));
    };
    match first.as_str() {
        "watch" => {}
        "progress" => {
            return Ok(Line::Skip(format!("Invalid command {line} (steadctl does not support progress requests yet)")))
        }
        _ => return Ok(Line::Skip(format!("Invalid command {line} (only support watch)"))),
    }
    if words.len() < 2 && env_key.is_empty() {
        return Ok(Line::Skip(format!("Invalid command {line} (command type or key is not provided)")));
    }
    let rest = &words[1..];
    let sep = rest.iter().position(|w| w == "--");
    if sep.is_some_and(|s| s + 1 == rest.len()) {
        return Err(CtlError::new(EXIT_BAD_ARGS, ERR_BAD_ARGS_NUM_SEPARATOR));
    }
    // The line's flags, parsed as the watch command's own (pflag's texts).
    let argv = ["steadctl", "watch"].into_iter().map(String::from).chain(rest.iter().cloned());
    let parsed = match Cli::try_parse_from(argv) {
        Ok(Cli { command: Some(Command::Watch(a)), .. }) => a,
        Ok(_) => return Err(CtlError::new(EXIT_BAD_ARGS, "args[0] must be 'watch' for interactive calls")),
        Err(e) => {
            let message = match args::translate_error(&e, String::new()) {
                ParseFailure::Flag { message, .. } | ParseFailure::Other(message) => message,
                ParseFailure::Help(text) => text,
            };
            return Err(CtlError::new(EXIT_BAD_ARGS, message));
        }
    };
    let exec: Vec<String> = sep.map(|s| rest[s + 1..].to_vec()).unwrap_or_default();
    let positional = &parsed.args[..parsed.args.len().saturating_sub(exec.len())];
    let keys = if exec.is_empty() {
        key_args(positional, env_key, env_range)?
    } else if !env_key.is_empty() && !positional.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, ERR_BAD_ARGS_NUM_CONFLICT_ENV));
    } else {
        key_args(positional, env_key, env_range)?
    };
    Ok(Line::Watch { args: parsed, keys, exec })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(line: &str) -> (bool, i64, Vec<String>, Vec<String>) {
        match parse_line(line, "", "").expect("a watch") {
            Line::Watch { args, keys, exec } => (args.prefix, args.rev, keys, exec),
            other => panic!("{other:?}"),
        }
    }

    fn skip(line: &str) -> String {
        match parse_line(line, "", "").expect("skipped") {
            Line::Skip(m) => m,
            other => panic!("{other:?}"),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Texts and exit codes recorded from etcdctl 3.4.23 `watch -i`.
    #[test]
    fn lines_are_handled_as_etcdctl() {
        assert_eq!(watch("watch wy"), (false, 0, strings(&["wy"]), vec![]));
        assert_eq!(watch("watch --prefix --rev=3 wz -- echo hi"), (true, 3, strings(&["wz"]), strings(&["echo", "hi"])));
        assert_eq!(watch("watch -i wy"), (false, 0, strings(&["wy"]), vec![]));
        assert_eq!(skip("bogus x"), "Invalid command bogus x (only support watch)");
        assert_eq!(skip(""), "Invalid command:  (watch and progress supported)");
        assert_eq!(skip("watch"), "Invalid command watch (command type or key is not provided)");
        let e = parse_line("watch --badflag wy", "", "").unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (EXIT_BAD_ARGS, "unknown flag: --badflag"));
        let e = parse_line("watch --rev=abc wy", "", "").unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (EXIT_BAD_ARGS, "invalid argument \"abc\" for \"--rev\" flag: strconv.ParseInt: parsing \"abc\": invalid syntax")
        );
        let e = parse_line("watch wy --", "", "").unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (EXIT_BAD_ARGS, ERR_BAD_ARGS_NUM_SEPARATOR));
        // The environment's key: a line with a key conflicts with it.
        assert!(matches!(parse_line("watch", "ek", ""), Ok(Line::Watch { ref keys, .. }) if keys == &strings(&["ek"])));
        assert_eq!(parse_line("watch wy", "ek", "").unwrap_err().msg, ERR_BAD_ARGS_NUM_CONFLICT_ENV);
    }
}
