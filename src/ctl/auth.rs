//! steadctl's auth side: logging in with `--user` / `--password` (a token for
//! the whole run), and the `auth`, `user` and `role` commands with etcdctl's
//! flags, prompts, outputs and errors.
//!
//! Passwords are read the way etcdctl's prompts read them: the prompt on
//! stdout; on a terminal without echo, from piped stdin one line each; then a
//! newline on stdout.

use std::io::{BufRead, IsTerminal};
use std::sync::OnceLock;

use super::args::{AuthCommand, GlobalArgs, NoArgs, RoleCommand, RolePermArgs, UserAddArgs, UserCommand, UserGetArgs, UserPasswdArgs};
use super::commands::{gateway_from, print_out, rpc_failed};
use super::gateway::{self, Gateway, Idempotence, LogTarget, RpcError};
use super::printer::Format;
use super::{CtlError, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_BAD_FEATURE, EXIT_ERROR};
use crate::proto::authpb::{permission::Type as PermType, Permission, UserAddOptions};
use crate::proto::etcdserverpb as pb;

/// Logs in once per run when `--user` is given (etcdctl's client does it when
/// it connects): the token then goes with every call. A server with auth off
/// answers "authentication is not enabled", and the run goes on without one.
pub(super) fn log_in(gw: &Gateway, g: &GlobalArgs) -> Result<(), CtlError> {
    static DONE: OnceLock<()> = OnceLock::new();
    let Some(user_flag) = g.user.as_deref().filter(|u| !u.is_empty()) else { return Ok(()) };
    if DONE.set(()).is_err() {
        return Ok(());
    }
    let (name, password) = match g.password.as_deref().filter(|p| !p.is_empty()) {
        Some(password) => (user_flag.to_string(), password.to_string()),
        None => match user_flag.split_once(':') {
            Some((name, password)) => (name.to_string(), password.to_string()),
            None => (user_flag.to_string(), ask("Password: ").map_err(|e| CtlError::new(EXIT_ERROR, e))?),
        },
    };
    let req = pb::AuthenticateRequest { name, password };
    let answer: Result<pb::AuthenticateResponse, RpcError> =
        gw.call("/v3/auth/authenticate", &req, None, Idempotence::NonRepeatable, LogTarget::Quiet);
    match answer {
        Ok(resp) => {
            gateway::set_token(resp.token);
            Ok(())
        }
        Err(e) if e.etcdctl_text() == "etcdserver: authentication is not enabled" => Ok(()),
        Err(e) => Err(CtlError::new(EXIT_BAD_CONNECTION, e.etcdctl_text())),
    }
}

/// One password, as etcdctl's prompt reads it.
fn ask(prompt: &str) -> Result<String, String> {
    print_out(prompt.as_bytes());
    let password = if std::io::stdin().is_terminal() {
        rpassword::read_password().map_err(|e| e.to_string())?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    print_out(b"\n");
    Ok(password)
}

/// etcdctl's `readPasswordInteractive`: twice, and the same both times.
fn ask_new_password(name: &str) -> Result<String, CtlError> {
    let failed = |e: String| CtlError::new(EXIT_BAD_ARGS, format!("failed to ask password: {e}"));
    let first = ask(&format!("Password of {name}: ")).map_err(failed)?;
    if first.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, "empty password"));
    }
    let second = ask(&format!("Type password of {name} again for confirmation: ")).map_err(failed)?;
    if first != second {
        return Err(CtlError::new(EXIT_BAD_ARGS, "given passwords are different"));
    }
    Ok(first)
}

/// etcdctl's `fmt.Scanf("%s")`: the first word of stdin.
fn scan_word() -> String {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    line.split_whitespace().next().unwrap_or_default().to_string()
}

/// A client for an auth command: only the simple output format is written out
/// for these commands so far.
fn client(g: &GlobalArgs) -> Result<Gateway, CtlError> {
    match Format::parse(&g.write_out) {
        None => return Err(CtlError::new(EXIT_BAD_FEATURE, "unsupported output format")),
        Some(Format::Simple) => {}
        Some(_) => {
            return Err(CtlError::new(
                EXIT_BAD_FEATURE,
                format!("steadctl does not support -w {} for auth, user and role commands yet", g.write_out),
            ))
        }
    }
    gateway_from(g)
}

fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    g: &GlobalArgs,
    gw: &Gateway,
    path: &str,
    req: &Req,
) -> Result<Resp, CtlError> {
    gw.call(path, req, Some(g.command_timeout), Idempotence::NonRepeatable, LogTarget::Balancer).map_err(rpc_failed)
}

fn exactly(args: &[String], n: usize, usage: &str) -> Result<(), CtlError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(CtlError::new(EXIT_BAD_ARGS, usage))
    }
}

pub(super) fn auth(g: &GlobalArgs, command: AuthCommand) -> Result<(), CtlError> {
    match command {
        AuthCommand::Enable(a) => {
            exactly(&a.args, 0, "auth enable command does not accept any arguments")?;
            let gw = client(g)?;
            // The server grants root the root role itself if it lacks it, so
            // one request does what etcdctl 3.4 needs three for.
            let _: pb::AuthEnableResponse = call(g, &gw, "/v3/auth/enable", &pb::AuthEnableRequest {})?;
            print_out(b"Authentication Enabled\n");
        }
        AuthCommand::Disable(a) => {
            exactly(&a.args, 0, "auth disable command does not accept any arguments")?;
            let gw = client(g)?;
            let _: pb::AuthDisableResponse = call(g, &gw, "/v3/auth/disable", &pb::AuthDisableRequest {})?;
            print_out(b"Authentication Disabled\n");
        }
        AuthCommand::Status(a) => {
            exactly(&a.args, 0, "auth status command does not accept any arguments")?;
            let gw = client(g)?;
            let resp: pb::AuthStatusResponse = call(g, &gw, "/v3/auth/status", &pb::AuthStatusRequest {})?;
            print_out(format!("Authentication Status: {}\nAuthRevision: {}\n", resp.enabled, resp.auth_revision).as_bytes());
        }
        AuthCommand::Other(_) => unreachable!("handled by the caller"),
    }
    Ok(())
}

pub(super) fn user(g: &GlobalArgs, command: UserCommand) -> Result<(), CtlError> {
    match command {
        UserCommand::Add(a) => user_add(g, a),
        UserCommand::Delete(a) => {
            exactly(&a.args, 1, "user delete command requires user name as its argument")?;
            let gw = client(g)?;
            let name = a.args[0].clone();
            let _: pb::AuthUserDeleteResponse = call(g, &gw, "/v3/auth/user/delete", &pb::AuthUserDeleteRequest { name: name.clone() })?;
            print_out(format!("User {name} deleted\n").as_bytes());
            Ok(())
        }
        UserCommand::Get(a) => user_get(g, a),
        UserCommand::List(a) => {
            exactly(&a.args, 0, "user list command requires no arguments")?;
            let gw = client(g)?;
            let resp: pb::AuthUserListResponse = call(g, &gw, "/v3/auth/user/list", &pb::AuthUserListRequest {})?;
            print_out(resp.users.iter().map(|u| format!("{u}\n")).collect::<String>().as_bytes());
            Ok(())
        }
        UserCommand::Passwd(a) => user_passwd(g, a),
        UserCommand::GrantRole(a) => {
            exactly(&a.args, 2, "user grant command requires user name and role name as its argument")?;
            let gw = client(g)?;
            let (user, role) = (a.args[0].clone(), a.args[1].clone());
            let req = pb::AuthUserGrantRoleRequest { user: user.clone(), role: role.clone() };
            let _: pb::AuthUserGrantRoleResponse = call(g, &gw, "/v3/auth/user/grant", &req)?;
            print_out(format!("Role {role} is granted to user {user}\n").as_bytes());
            Ok(())
        }
        UserCommand::RevokeRole(a) => {
            exactly(&a.args, 2, "user revoke-role requires user name and role name as its argument")?;
            let gw = client(g)?;
            let (name, role) = (a.args[0].clone(), a.args[1].clone());
            let req = pb::AuthUserRevokeRoleRequest { name: name.clone(), role: role.clone() };
            let _: pb::AuthUserRevokeRoleResponse = call(g, &gw, "/v3/auth/user/revoke", &req)?;
            print_out(format!("Role {role} is revoked from user {name}\n").as_bytes());
            Ok(())
        }
        UserCommand::Other(_) => unreachable!("handled by the caller"),
    }
}

/// etcdctl's `user add`: the new user's password (flag, `user:password`,
/// prompts or stdin) is read before the client logs in.
fn user_add(g: &GlobalArgs, a: UserAddArgs) -> Result<(), CtlError> {
    exactly(&a.args, 1, "user add command requires user name as its argument")?;
    let given = &a.args[0];
    let (name, password) = if a.no_password {
        (given.clone(), String::new())
    } else if !a.new_user_password.is_empty() {
        (given.clone(), a.new_user_password.clone())
    } else {
        match given.split_once(':') {
            Some(("", _)) => return Err(CtlError::new(EXIT_BAD_ARGS, "empty user name is not allowed")),
            Some((name, password)) => (name.to_string(), password.to_string()),
            None if !a.interactive => (given.clone(), scan_word()),
            None => (given.clone(), ask_new_password(given)?),
        }
    };
    let gw = client(g)?;
    let req = pb::AuthUserAddRequest {
        name: name.clone(),
        password,
        options: Some(UserAddOptions { no_password: a.no_password }),
        ..Default::default()
    };
    let _: pb::AuthUserAddResponse = call(g, &gw, "/v3/auth/user/add", &req)?;
    print_out(format!("User {name} created\n").as_bytes());
    Ok(())
}

fn user_get(g: &GlobalArgs, a: UserGetArgs) -> Result<(), CtlError> {
    exactly(&a.args, 1, "user get command requires user name as its argument")?;
    let gw = client(g)?;
    let name = a.args[0].clone();
    let resp: pb::AuthUserGetResponse = call(g, &gw, "/v3/auth/user/get", &pb::AuthUserGetRequest { name: name.clone() })?;
    if a.detail {
        print_out(format!("User: {name}\n").as_bytes());
        for role in &resp.roles {
            print_out(b"\n");
            let r: pb::AuthRoleGetResponse = call(g, &gw, "/v3/auth/role/get", &pb::AuthRoleGetRequest { role: role.clone() })?;
            print_out(role_text(role, &r.perm).as_bytes());
        }
    } else {
        let roles: String = resp.roles.iter().map(|r| format!(" {r}")).collect();
        print_out(format!("User: {name}\nRoles:{roles}\n").as_bytes());
    }
    Ok(())
}

fn user_passwd(g: &GlobalArgs, a: UserPasswdArgs) -> Result<(), CtlError> {
    exactly(&a.args, 1, "user passwd command requires user name as its argument")?;
    let password = if a.interactive { ask_new_password(&a.args[0])? } else { scan_word() };
    let gw = client(g)?;
    let req = pb::AuthUserChangePasswordRequest { name: a.args[0].clone(), password, ..Default::default() };
    let _: pb::AuthUserChangePasswordResponse = call(g, &gw, "/v3/auth/user/changepw", &req)?;
    print_out(b"Password updated\n");
    Ok(())
}

pub(super) fn role(g: &GlobalArgs, command: RoleCommand) -> Result<(), CtlError> {
    let one = |a: &NoArgs, usage: &str| exactly(&a.args, 1, usage).map(|()| a.args[0].clone());
    match command {
        RoleCommand::Add(a) => {
            let name = one(&a, "role add command requires role name as its argument")?;
            let gw = client(g)?;
            let _: pb::AuthRoleAddResponse = call(g, &gw, "/v3/auth/role/add", &pb::AuthRoleAddRequest { name: name.clone() })?;
            print_out(format!("Role {name} created\n").as_bytes());
        }
        RoleCommand::Delete(a) => {
            let role = one(&a, "role delete command requires role name as its argument")?;
            let gw = client(g)?;
            let _: pb::AuthRoleDeleteResponse = call(g, &gw, "/v3/auth/role/delete", &pb::AuthRoleDeleteRequest { role: role.clone() })?;
            print_out(format!("Role {role} deleted\n").as_bytes());
        }
        RoleCommand::Get(a) => {
            let role = one(&a, "role get command requires role name as its argument")?;
            let gw = client(g)?;
            let resp: pb::AuthRoleGetResponse = call(g, &gw, "/v3/auth/role/get", &pb::AuthRoleGetRequest { role: role.clone() })?;
            print_out(role_text(&role, &resp.perm).as_bytes());
        }
        RoleCommand::List(a) => {
            exactly(&a.args, 0, "role list command requires no arguments")?;
            let gw = client(g)?;
            let resp: pb::AuthRoleListResponse = call(g, &gw, "/v3/auth/role/list", &pb::AuthRoleListRequest {})?;
            print_out(resp.roles.iter().map(|r| format!("{r}\n")).collect::<String>().as_bytes());
        }
        RoleCommand::GrantPermission(a) => {
            if a.args.len() < 3 {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "role grant command requires role name, permission type, and key [endkey] as its argument",
                ));
            }
            let perm_type = PermType::from_str_name(&a.args[1].to_uppercase())
                .ok_or_else(|| CtlError::new(EXIT_BAD_ARGS, format!("invalid permission type: {}", a.args[1])))?;
            let (key, range_end) = perm_range(&a, &a.args[2..])?;
            let gw = client(g)?;
            let req = pb::AuthRoleGrantPermissionRequest {
                name: a.args[0].clone(),
                perm: Some(Permission { perm_type: perm_type as i32, key, range_end }),
            };
            let _: pb::AuthRoleGrantPermissionResponse = call(g, &gw, "/v3/auth/role/grant", &req)?;
            print_out(format!("Role {} updated\n", a.args[0]).as_bytes());
        }
        RoleCommand::RevokePermission(a) => {
            if a.args.len() < 2 {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "role revoke-permission command requires role name and key [endkey] as its argument",
                ));
            }
            let (key, range_end) = perm_range(&a, &a.args[1..])?;
            let gw = client(g)?;
            let role = a.args[0].clone();
            let req = pb::AuthRoleRevokePermissionRequest { role: role.clone(), key, range_end: range_end.clone() };
            let _: pb::AuthRoleRevokePermissionResponse = call(g, &gw, "/v3/auth/role/revoke", &req)?;
            let key = &a.args[1];
            let end = String::from_utf8_lossy(&range_end);
            let text = match end.as_ref() {
                "" => format!("Permission of key {key} is revoked from role {role}\n"),
                "\0" => format!("Permission of range [{key}, <open ended> is revoked from role {role}\n"),
                end => format!("Permission of range [{key}, {end}) is revoked from role {role}\n"),
            };
            print_out(text.as_bytes());
        }
        RoleCommand::Other(_) => unreachable!("handled by the caller"),
    }
    Ok(())
}

/// etcdctl's `permRange`: the key and range end a permission covers.
fn perm_range(a: &RolePermArgs, args: &[String]) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    let exclusive = || CtlError::new(EXIT_BAD_ARGS, "--from-key and --prefix flags are mutually exclusive");
    let key = args[0].as_bytes().to_vec();
    if key.is_empty() {
        if a.prefix && a.from_key {
            return Err(exclusive());
        }
        // The empty key is "\0", and with --prefix or --from-key everything.
        let end = if a.prefix || a.from_key { vec![0] } else { Vec::new() };
        return Ok((vec![0], end));
    }
    let end = match (args.len(), a.prefix, a.from_key) {
        (1, true, true) => return Err(exclusive()),
        (1, true, false) => super::ops::prefix_range_end(&key),
        (1, false, true) => vec![0],
        (1, false, false) => Vec::new(),
        (_, true, _) => return Err(CtlError::new(EXIT_BAD_ARGS, "unexpected endkey argument with --prefix flag")),
        (_, _, true) => return Err(CtlError::new(EXIT_BAD_ARGS, "unexpected endkey argument with --from-key flag")),
        _ => args[1].as_bytes().to_vec(),
    };
    Ok((key, end))
}

/// etcdctl's simple `RoleGet` output.
fn role_text(role: &str, perms: &[Permission]) -> String {
    let line = |p: &Permission| {
        let key = String::from_utf8_lossy(&p.key);
        if p.range_end.is_empty() {
            return format!("\t{key}\n");
        }
        let end = String::from_utf8_lossy(&p.range_end);
        let mut text = if p.range_end == [0] { format!("\t[{key}, <open ended>") } else { format!("\t[{key}, {end})") };
        if super::ops::prefix_range_end(&p.key) == p.range_end {
            text.push_str(&format!(" (prefix {key})"));
        }
        text.push('\n');
        text
    };
    let of = |wanted: &[PermType]| -> String {
        perms.iter().filter(|p| PermType::try_from(p.perm_type).is_ok_and(|t| wanted.contains(&t))).map(line).collect()
    };
    format!(
        "Role {role}\nKV Read:\n{}KV Write:\n{}",
        of(&[PermType::Read, PermType::Readwrite]),
        of(&[PermType::Write, PermType::Readwrite])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm_args(prefix: bool, from_key: bool) -> RolePermArgs {
        RolePermArgs { prefix, from_key, args: Vec::new() }
    }

    #[test]
    fn permission_ranges_as_etcdctl_builds_them() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(perm_range(&perm_args(true, false), &s(&["key"])).unwrap(), (b"key".to_vec(), b"kez".to_vec()));
        assert_eq!(perm_range(&perm_args(false, true), &s(&["a"])).unwrap(), (b"a".to_vec(), vec![0]));
        assert_eq!(perm_range(&perm_args(false, false), &s(&["a", "c"])).unwrap(), (b"a".to_vec(), b"c".to_vec()));
        assert_eq!(perm_range(&perm_args(true, false), &s(&[""])).unwrap(), (vec![0], vec![0]));
        assert!(perm_range(&perm_args(true, true), &s(&["a"])).is_err());
        assert!(perm_range(&perm_args(true, false), &s(&["a", "b"])).is_err());
    }

    #[test]
    fn role_get_output_matches_etcdctl() {
        let perms = vec![
            Permission { perm_type: PermType::Readwrite as i32, key: b"key".to_vec(), range_end: b"kez".to_vec() },
            Permission { perm_type: PermType::Read as i32, key: b"one".to_vec(), range_end: Vec::new() },
            Permission { perm_type: PermType::Write as i32, key: b"z".to_vec(), range_end: vec![0] },
        ];
        assert_eq!(
            role_text("r", &perms),
            "Role r\nKV Read:\n\t[key, kez) (prefix key)\n\tone\nKV Write:\n\t[key, kez) (prefix key)\n\t[z, <open ended>\n"
        );
    }
}
