//! `steadctl alarm list|disarm` and `steadctl defrag [--cluster]`: etcdctl
//! 3.4.23's `alarm_command.go` and `defrag_command.go` over the gateway's
//! `/v3/maintenance/alarm` and `/v3/maintenance/defragment`.
//!
//! Alarms print as etcdctl does: `%+v` of each `AlarmMember` (Go's protobuf
//! text form, `memberID:… alarm:NOSPACE `), `-w json` as Go's encoding/json of
//! the response (etcd answers Alarm without a header), `-w protobuf` the
//! response's bytes; `-w table` fails after the request as in etcdctl (whose
//! `-w fields` crashes on the missing header; steadctl refuses it instead).

use prost::Message as _;

use super::args::{AlarmArgs, AlarmCommand, DefragArgs, GlobalArgs};
use super::commands::{client_and_printer, emit, parse_endpoints, print_err, print_out, rpc_failed};
use super::gateway::{Gateway, Idempotence, LogTarget};
use super::printer::{Format, Printer};
use super::{cluster, CtlError, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR};
use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest,
    DefragmentResponse,
};

/// `alarm list|disarm`; the alarm usage (exit 0) for a missing or unknown subcommand.
pub fn alarm(g: &GlobalArgs, a: AlarmArgs) -> Result<(), CtlError> {
    let (disarm, args) = match a.command {
        Some(AlarmCommand::List(a)) => (false, a.args),
        Some(AlarmCommand::Disarm(a)) => (true, a.args),
        Some(AlarmCommand::Other(_)) | None => return super::commands::print_usage("alarm"),
    };
    let verb = if disarm { "disarm" } else { "list" };
    if !args.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, format!("alarm {verb} command accepts no arguments")));
    }
    let (gw, printer) = client_and_printer(g)?;
    let list = alarm_call(&gw, g, AlarmRequest::default())?;
    let resp = if disarm {
        // clientv3's AlarmDisarm with no member and no type: every listed alarm,
        // one DEACTIVATE each, their answers gathered.
        let mut all = AlarmResponse::default();
        for a in list.alarms {
            let req = AlarmRequest { action: AlarmAction::Deactivate as i32, member_id: a.member_id, alarm: a.alarm };
            all.alarms.extend(alarm_call(&gw, g, req)?.alarms);
        }
        all
    } else {
        list
    };
    emit(|out| print_alarms(&printer, out, &resp))
}

fn alarm_call(gw: &Gateway, g: &GlobalArgs, req: AlarmRequest) -> Result<AlarmResponse, CtlError> {
    gw.call("/v3/maintenance/alarm", &req, Some(g.command_timeout), Idempotence::Repeatable, LogTarget::Balancer)
        .map_err(rpc_failed)
}

fn print_alarms(printer: &Printer, out: &mut Vec<u8>, r: &AlarmResponse) -> Result<(), CtlError> {
    match printer.format {
        Format::Simple => {
            for a in &r.alarms {
                out.extend_from_slice(crate::net::status::alarm_text(a).as_bytes());
                out.push(b'\n');
            }
        }
        Format::Json => {
            let mut text = String::from("{");
            if !r.alarms.is_empty() {
                let alarms: Vec<String> = r.alarms.iter().map(json_alarm).collect();
                text.push_str(&format!("\"alarms\":[{}]", alarms.join(",")));
            }
            text.push('}');
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
        Format::Protobuf => out.extend_from_slice(&r.encode_to_vec()),
        Format::Table => return Err(CtlError::new(EXIT_BAD_FEATURE, "table not supported as output format")),
        Format::Fields => {
            return Err(CtlError::new(
                EXIT_BAD_FEATURE,
                "fields not supported as output format for alarms (etcdctl 3.4.23 crashes on it)",
            ))
        }
    }
    Ok(())
}

/// Go's encoding/json of an `AlarmMember` (omitempty; the type as its number).
fn json_alarm(a: &AlarmMember) -> String {
    let mut fields = Vec::new();
    if a.member_id != 0 {
        fields.push(format!("\"memberID\":{}", a.member_id));
    }
    if a.alarm != AlarmType::None as i32 {
        fields.push(format!("\"alarm\":{}", a.alarm));
    }
    format!("{{{}}}", fields.join(","))
}

/// `defrag [--cluster]`: one Defragment per endpoint, each reported on its own
/// line; any failure makes the exit status 1 after all were tried.
pub fn defrag(g: &GlobalArgs, a: DefragArgs) -> Result<(), CtlError> {
    if !a.data_dir.is_empty() {
        return Err(CtlError::new(
            EXIT_BAD_FEATURE,
            "steadctl does not support --data-dir (offline defragmentation) yet: defragment a running member",
        ));
    }
    let (mut gw, _printer) = client_and_printer(g)?;
    if a.cluster {
        let eps = cluster::cluster_endpoints(g)?;
        gw = Gateway::new(parse_endpoints(&eps)?, g.dial_timeout);
    }
    let mut failures = 0;
    for ep in gw.endpoints() {
        let one = gw.for_endpoint(ep);
        let res: Result<DefragmentResponse, _> = one.call(
            "/v3/maintenance/defragment",
            &DefragmentRequest {},
            Some(g.command_timeout),
            Idempotence::Repeatable,
            LogTarget::Passthrough,
        );
        match res {
            Ok(_) => print_out(format!("Finished defragmenting etcd member[{}]\n", ep.given).as_bytes()),
            Err(e) => {
                failures += 1;
                print_err(format!("Failed to defragment etcd member[{}] ({})\n", ep.given, e.etcdctl_text()).as_bytes());
            }
        }
    }
    if failures != 0 {
        return Err(CtlError::silent(EXIT_ERROR));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_print_like_etcdctl() {
        let r = AlarmResponse {
            header: None,
            alarms: vec![AlarmMember { member_id: 13988464155605699416, alarm: 1 }, AlarmMember { member_id: 5, alarm: 2 }],
        };
        let mut out = Vec::new();
        print_alarms(&Printer::new(Format::Simple, false), &mut out, &r).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "memberID:13988464155605699416 alarm:NOSPACE \nmemberID:5 alarm:CORRUPT \n");
        let mut out = Vec::new();
        print_alarms(&Printer::new(Format::Json, false), &mut out, &r).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"alarms\":[{\"memberID\":13988464155605699416,\"alarm\":1},{\"memberID\":5,\"alarm\":2}]}\n"
        );
        let mut out = Vec::new();
        print_alarms(&Printer::new(Format::Json, false), &mut out, &AlarmResponse::default()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{}\n");
    }
}
