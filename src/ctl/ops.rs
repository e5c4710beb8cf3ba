//! Turns parsed `get` / `put` / `del` flags into API requests exactly as etcdctl's
//! `getGetOp` / `getPutOp` / `getDelOp` and clientv3's `OpOption`s do — shared by
//! the top-level commands and by txn request lines. Validation errors carry
//! etcdctl's texts and exit codes.

use std::io::Read;

use super::args::{DelArgs, GetArgs, PutArgs};
use super::{gofmt, CtlError, EXIT_BAD_ARGS, EXIT_BAD_FEATURE};
use crate::proto::etcdserverpb::{range_request, DeleteRangeRequest, PutRequest, RangeRequest};

pub use crate::kv::prefix_range_end;

/// `etcdctl get` flags → RangeRequest (`getGetOp` + clientv3 `OpGet`).
pub fn range_request(a: &GetArgs) -> Result<RangeRequest, CtlError> {
    if a.args.is_empty() {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut req = RangeRequest::default();
    match a.consistency.as_str() {
        "s" => req.serializable = true,
        "l" => {}
        other => {
            return Err(CtlError::new(
                EXIT_BAD_FEATURE,
                format!("unknown consistency flag {}", gofmt::quote(other.as_bytes())),
            ))
        }
    }
    let mut key = a.args[0].as_bytes().to_vec();
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(CtlError::new(
                EXIT_BAD_ARGS,
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        req.range_end = a.args[1].as_bytes().to_vec();
    }
    req.limit = a.limit;
    if a.rev > 0 {
        req.revision = a.rev;
    }
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => range_request::SortOrder::Ascend,
        "DESCEND" => range_request::SortOrder::Descend,
        "" => range_request::SortOrder::None,
        _ => return Err(CtlError::new(EXIT_BAD_FEATURE, format!("bad sort order {}", a.order))),
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => range_request::SortTarget::Create,
        "KEY" | "" => range_request::SortTarget::Key,
        "MODIFY" => range_request::SortTarget::Mod,
        "VALUE" => range_request::SortTarget::Value,
        "VERSION" => range_request::SortTarget::Version,
        _ => return Err(CtlError::new(EXIT_BAD_FEATURE, format!("bad sort target {}", a.sort_by))),
    };
    // clientv3.WithSort: ascending by key is the server's natural order, so the
    // client sends NONE and the server may stop at the limit.
    let order = if target == range_request::SortTarget::Key && order == range_request::SortOrder::Ascend {
        range_request::SortOrder::None
    } else {
        order
    };
    req.sort_order = order as i32;
    req.sort_target = target as i32;
    if a.prefix {
        if key.is_empty() {
            key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_range_end(&key);
        }
    }
    if a.from_key {
        if key.is_empty() {
            key = vec![0];
        }
        req.range_end = vec![0];
    }
    req.key = key;
    req.keys_only = a.keys_only;
    // etcdctl 3.5 additions (3.4.23 has no such flags).
    req.count_only = a.count_only;
    req.min_mod_revision = a.min_mod_rev;
    req.max_mod_revision = a.max_mod_rev;
    req.min_create_revision = a.min_create_rev;
    req.max_create_revision = a.max_create_rev;
    Ok(req)
}

/// `etcdctl put` flags → PutRequest (`getPutOp`): the value comes from the
/// second argument, or all of `stdin` when it is missing.
pub fn put_request(a: &PutArgs, stdin: &mut dyn Read) -> Result<PutRequest, CtlError> {
    let needs = || CtlError::new(EXIT_BAD_ARGS, "put command needs 1 argument and input from stdin or 2 arguments");
    if a.args.is_empty() {
        return Err(needs());
    }
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "put command needs only 1 argument when 'ignore-value' is set"));
    }
    let mut value = Vec::new();
    if !a.ignore_value {
        if let Some(v) = a.args.get(1) {
            value = v.as_bytes().to_vec();
        } else {
            let read = stdin.read_to_end(&mut value);
            if read.is_err() || value.is_empty() {
                return Err(needs());
            }
        }
    }
    let lease = gofmt::parse_int(&a.lease, 16)
        .map_err(|e| CtlError::new(EXIT_BAD_ARGS, format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: a.args[0].as_bytes().to_vec(),
        value,
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

/// `etcdctl del` flags → DeleteRangeRequest (`getDelOp`).
pub fn delete_request(a: &DelArgs) -> Result<DeleteRangeRequest, CtlError> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut req = DeleteRangeRequest::default();
    let mut key = a.args[0].as_bytes().to_vec();
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(CtlError::new(
                EXIT_BAD_ARGS,
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        req.range_end = a.args[1].as_bytes().to_vec();
    }
    if a.prefix {
        if key.is_empty() {
            key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_range_end(&key);
        }
    }
    req.prev_kv = a.prev_kv;
    if a.from_key {
        if key.is_empty() {
            key = vec![0];
        }
        req.range_end = vec![0];
    }
    req.key = key;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_end_matches_clientv3() {
        assert_eq!(prefix_range_end(b"a"), b"b");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\x00");
    }

    #[test]
    fn get_flags_build_requests() {
        let a = GetArgs {
            consistency: "l".into(),
            args: vec!["".into()],
            prefix: true,
            sort_by: "key".into(),
            order: "ascend".into(),
            ..Default::default()
        };
        let r = range_request(&a).unwrap();
        assert_eq!((r.key.as_slice(), r.range_end.as_slice()), (&b"\x00"[..], &b"\x00"[..]));
        assert_eq!(r.sort_order, range_request::SortOrder::None as i32);

        let a = GetArgs { consistency: "x".into(), args: vec!["k".into()], ..Default::default() };
        let e = range_request(&a).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (EXIT_BAD_FEATURE, r#"unknown consistency flag "x""#));
    }

    #[test]
    fn put_reads_value_from_stdin() {
        let a = PutArgs { lease: "0".into(), args: vec!["k".into()], ..Default::default() };
        let r = put_request(&a, &mut &b"from stdin\n"[..]).unwrap();
        assert_eq!(r.value, b"from stdin\n");
        let e = put_request(&a, &mut &b""[..]).unwrap_err();
        assert_eq!(e.code, EXIT_BAD_ARGS);
        let a = PutArgs { lease: "zz".into(), args: vec!["k".into(), "v".into()], ..Default::default() };
        assert_eq!(
            put_request(&a, &mut &b""[..]).unwrap_err().msg,
            r#"bad lease ID (strconv.ParseInt: parsing "zz": invalid syntax), expecting ID in Hex"#
        );
    }
}
