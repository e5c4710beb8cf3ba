//! etcdctl's txn input language (`txn_command.go`): compares, a blank line,
//! success requests, a blank line, failure requests, a blank line. Each section
//! line is read like Go's `bufio.Reader.ReadString('\n')` (a last line without
//! its newline is `EOF`, exit 3); compares are scanned like Go's
//! `fmt.Sscanf("%q) %s %q")`, requests are parsed with the same flags as the
//! `put` / `get` / `del` commands.
//!
//! Pure apart from the reader it is given: no network.

use std::io::{BufRead, Write};

use clap::Parser as _;

use super::args::{argify, unquote_go, TxnOp, TxnOpLine};
use super::{gofmt, ops, CtlError, EXIT_INVALID_INPUT};
use crate::proto::etcdserverpb::{compare, request_op, Compare, RequestOp, TxnRequest};

/// Read a whole txn from `input`. `prompt` gets the interactive prompts (`-i`).
/// Each line is parsed as soon as it is read, so a bad line fails before EOF
/// is noticed, as in etcdctl.
pub fn read_txn(input: &mut dyn BufRead, prompt: Option<&mut dyn Write>) -> Result<TxnRequest, CtlError> {
    let mut prompt = prompt;
    let mut say = |s: &str| {
        if let Some(w) = prompt.as_mut() {
            let _ = writeln!(w, "{s}");
            let _ = w.flush();
        }
    };
    let mut req = TxnRequest::default();
    say("compares:");
    while let Some(line) = read_line(input)? {
        req.compare.push(parse_compare(&line)?);
    }
    say("success requests (get, put, del):");
    while let Some(line) = read_line(input)? {
        req.success.push(parse_request(&line)?);
    }
    say("failure requests (get, put, del):");
    while let Some(line) = read_line(input)? {
        req.failure.push(parse_request(&line)?);
    }
    Ok(req)
}

/// The next line, trimmed as Go's `strings.TrimSpace`; `None` for the blank line
/// that ends a section. Like `bufio.Reader.ReadString('\n')`, a line without its
/// newline is an `EOF` error.
fn read_line(input: &mut dyn BufRead) -> Result<Option<String>, CtlError> {
    let mut buf = Vec::new();
    let n = input
        .read_until(b'\n', &mut buf)
        .map_err(|e| CtlError::new(EXIT_INVALID_INPUT, e.to_string()))?;
    if n == 0 || buf.last() != Some(&b'\n') {
        return Err(CtlError::new(EXIT_INVALID_INPUT, "EOF"));
    }
    let line = String::from_utf8_lossy(&buf).trim().to_string();
    Ok(if line.is_empty() { None } else { Some(line) })
}

/// A minimal `fmt.Sscanf` over `%q) %s %q`, counting conversions as Go does.
struct Scan<'a> {
    rest: &'a str,
}

impl<'a> Scan<'a> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', '\r']);
    }
    /// Go: a space in the format needs one or more spaces in the input, or its end.
    fn space(&mut self) -> Result<(), ()> {
        let before = self.rest.len();
        self.skip_space();
        if self.rest.len() == before && !self.rest.is_empty() {
            return Err(());
        }
        Ok(())
    }
    fn literal(&mut self, c: char) -> Result<(), ()> {
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                Ok(())
            }
            None => Err(()),
        }
    }
    fn word(&mut self) -> Result<String, ()> {
        self.skip_space();
        let end = self.rest.find([' ', '\t', '\r', '\n']).unwrap_or(self.rest.len());
        if end == 0 {
            return Err(());
        }
        let w = self.rest[..end].to_string();
        self.rest = &self.rest[end..];
        Ok(w)
    }
    fn quoted(&mut self) -> Result<String, ()> {
        self.skip_space();
        let mut chars = self.rest.char_indices();
        match chars.next() {
            Some((_, '`')) => {
                let body = &self.rest[1..];
                let end = body.find('`').ok_or(())?;
                let s = body[..end].to_string();
                self.rest = &body[end + 1..];
                Ok(s)
            }
            Some((_, '"')) => {
                let mut escaped = false;
                for (i, c) in chars {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        let lit = &self.rest[..=i];
                        let s = unquote_go(lit).map_err(|_| ())?;
                        self.rest = &self.rest[i + 1..];
                        return Ok(s);
                    }
                }
                Err(())
            }
            _ => Err(()),
        }
    }
}

/// `parseCompare`: `<target>("<key>") <op> "<value>"`.
pub fn parse_compare(line: &str) -> Result<Compare, CtlError> {
    let invalid = |msg: String| CtlError::new(EXIT_INVALID_INPUT, msg);
    let Some((target, rest)) = line.split_once('(') else {
        return Err(invalid(format!("malformed comparison: {line}")));
    };
    let (mut key, mut op, mut val) = (String::new(), String::new(), String::new());
    let mut n = 0;
    let mut s = Scan { rest };
    let scanned: Result<(), ()> = (|| {
        key = s.quoted()?;
        n += 1;
        s.literal(')')?;
        s.space()?;
        op = s.word()?;
        n += 1;
        s.space()?;
        val = s.quoted()?;
        n += 1;
        Ok(())
    })();
    if n != 3 || scanned.is_err() {
        return Err(invalid(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            gofmt::quote(key.as_bytes()),
            gofmt::quote(val.as_bytes())
        )));
    }
    // clientv3.Compare panics on an unknown operator before looking at the target.
    let result = match op.as_str() {
        "=" => compare::CompareResult::Equal,
        "!=" => compare::CompareResult::NotEqual,
        ">" => compare::CompareResult::Greater,
        "<" => compare::CompareResult::Less,
        _ => return Err(CtlError::panic("Unknown result op")),
    };
    let int = |v: &str| {
        gofmt::parse_int(v, 10).map_err(|_| invalid(format!("invalid txn compare request: {line}")))
    };
    let (target, union) = match target {
        "ver" | "version" => (compare::CompareTarget::Version, compare::TargetUnion::Version(int(&val)?)),
        "c" | "create" => (compare::CompareTarget::Create, compare::TargetUnion::CreateRevision(int(&val)?)),
        "m" | "mod" => (compare::CompareTarget::Mod, compare::TargetUnion::ModRevision(int(&val)?)),
        "val" | "value" => (compare::CompareTarget::Value, compare::TargetUnion::Value(val.into_bytes())),
        // etcdctl 3.4 hands the string to clientv3's mustInt64orLeaseID: a panic.
        "lease" => return Err(CtlError::panic("bad value")),
        other => return Err(invalid(format!("malformed comparison: {line} (unknown target {other})"))),
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

/// `parseRequestUnion`: one `put` / `get` / `del` line.
pub fn parse_request(line: &str) -> Result<RequestOp, CtlError> {
    let args = argify(line).map_err(CtlError::panic)?;
    if args.len() < 2 {
        return Err(CtlError::new(EXIT_INVALID_INPUT, format!("invalid txn compare request: {line}")));
    }
    let parsed = TxnOpLine::try_parse_from(&args).map_err(|e| {
        let usage = match e.kind() {
            clap::error::ErrorKind::InvalidSubcommand => "",
            _ => cobra_usage(&args[0]),
        };
        CtlError::new(EXIT_INVALID_INPUT, format!("invalid txn request: {line}")).with_preamble(usage)
    })?;
    let request = match parsed.op {
        TxnOp::Get(g) => request_op::Request::RequestRange(ops::range_request(&g)?),
        // In a txn, stdin is already consumed by the txn reader itself.
        TxnOp::Put(p) => request_op::Request::RequestPut(ops::put_request(&p, &mut std::io::empty())?),
        TxnOp::Del(d) => request_op::Request::RequestDeleteRange(ops::delete_request(&d)?),
    };
    Ok(RequestOp { request: Some(request) })
}

/// cobra's short usage, which etcdctl prints (to stderr, before `Error:`) when a
/// txn request line has bad flags. Text captured from etcdctl 3.4.23.
fn cobra_usage(cmd: &str) -> &'static str {
    let c = cmd.to_ascii_lowercase();
    if "put".starts_with(&c) {
        PUT_USAGE
    } else if "get".starts_with(&c) {
        GET_USAGE
    } else if "del".starts_with(&c) {
        DEL_USAGE
    } else {
        ""
    }
}

const PUT_USAGE: &str = "Usage:
   put [options] <key> <value> (<value> can also be given from stdin) [flags]

Flags:
  -h, --help           help for put
      --ignore-lease   updates the key using its current lease
      --ignore-value   updates the key using its current value
      --lease string   lease ID (in hexadecimal) to attach to the key (default \"0\")
      --prev-kv        return the previous key-value pair before modification

";
const GET_USAGE: &str = "Usage:
   get [options] <key> [range_end] [flags]

Flags:
      --consistency string   Linearizable(l) or Serializable(s) (default \"l\")
      --from-key             Get keys that are greater than or equal to the given key using byte compare
  -h, --help                 help for get
      --keys-only            Get only the keys
      --limit int            Maximum number of results
      --order string         Order of results; ASCEND or DESCEND (ASCEND by default)
      --prefix               Get keys with matching prefix
      --print-value-only     Only write values when using the \"simple\" output format
      --rev int              Specify the kv revision
      --sort-by string       Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION

";
const DEL_USAGE: &str = "Usage:
   del [options] <key> [range_end] [flags]

Flags:
      --from-key   delete keys that are greater than or equal to the given key using byte compare
  -h, --help       help for del
      --prefix     delete keys with matching prefix
      --prev-kv    return deleted key-value pairs

";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::range_request;

    fn err_of(r: Result<impl std::fmt::Debug, CtlError>) -> (i32, String) {
        let e = r.expect_err("must fail");
        (e.code, e.msg)
    }

    #[test]
    fn compares_parse_like_etcdctl() {
        let c = parse_compare(r#"mod("b") > "0""#).unwrap();
        assert_eq!(c.target, compare::CompareTarget::Mod as i32);
        assert_eq!(c.result, compare::CompareResult::Greater as i32);
        assert_eq!(c.key, b"b");
        assert_eq!(c.target_union, Some(compare::TargetUnion::ModRevision(0)));
        let c = parse_compare(r#"value("a") != "x y""#).unwrap();
        assert_eq!(c.target_union, Some(compare::TargetUnion::Value(b"x y".to_vec())));
        assert_eq!(c.result, compare::CompareResult::NotEqual as i32);
    }

    #[test]
    fn compare_errors_match_etcdctl_texts() {
        // (input, exit code, message) captured from etcdctl 3.4.23.
        let cases = [
            ("foo", 3, "malformed comparison: foo"),
            (r#"value("a")= "1""#, 3, r#"malformed comparison: value("a")= "1"; got value("a")  """#),
            (r#"ver(a) = "x""#, 3, r#"malformed comparison: ver(a) = "x"; got ver("")  """#),
            (r#"version("a") = "x""#, 3, r#"invalid txn compare request: version("a") = "x""#),
            (r#"zz("a") = "x""#, 3, r#"malformed comparison: zz("a") = "x" (unknown target zz)"#),
            (r#"value("a") == "1""#, 2, "Unknown result op"),
            (r#"lease("a") = "1""#, 2, "bad value"),
        ];
        for (input, code, msg) in cases {
            assert_eq!(err_of(parse_compare(input)), (code, msg.to_string()), "{input}");
        }
    }

    #[test]
    fn requests_parse_with_command_flags() {
        let op = parse_request("get a --prefix --limit=2 --order=DESCEND").unwrap();
        match op.request {
            Some(request_op::Request::RequestRange(r)) => {
                assert_eq!((r.key.as_slice(), r.range_end.as_slice(), r.limit), (&b"a"[..], &b"b"[..], 2));
                assert_eq!(r.sort_order, range_request::SortOrder::Descend as i32);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err_of(parse_request("put")), (3, "invalid txn compare request: put".into()));
        assert_eq!(err_of(parse_request("bogus a")), (3, "invalid txn request: bogus a".into()));
        let (code, msg) = err_of(parse_request("del a --bad"));
        assert_eq!(code, 3);
        assert_eq!(msg, "invalid txn request: del a --bad");
        let e = parse_request("del a --bad").unwrap_err();
        assert!(e.preamble.starts_with("Usage:\n   del [options]"), "{}", e.preamble);
        assert_eq!(
            err_of(parse_request("get a b --prefix")),
            (128, "too many arguments, only accept one argument when `--prefix` or `--from-key` is set".into())
        );
    }

    #[test]
    fn sections_need_their_newlines() {
        let mut input = &b"value(\"a\") = \"1\"\n\nput a b\n\nget a\n\n"[..];
        let t = read_txn(&mut input, None).unwrap();
        assert_eq!((t.compare.len(), t.success.len(), t.failure.len()), (1, 1, 1));
        let mut input = &b"\n\n"[..];
        assert_eq!(err_of(read_txn(&mut input, None)), (3, "EOF".into()));
        let mut input = &b"\n\nget a"[..];
        assert_eq!(err_of(read_txn(&mut input, None)), (3, "EOF".into()));
    }

    #[test]
    fn interactive_prompts() {
        let mut out = Vec::new();
        let mut input = &b"\n\n\n"[..];
        read_txn(&mut input, Some(&mut out)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n"
        );
    }
}
