//! The auth state of the replicated state machine (etcd's auth store without its
//! token provider): whether auth is enabled, the auth revision, users (with their
//! bcrypt password hashes, never a password) and roles with their key-range
//! permissions; and the permission rules every request is checked by.
//!
//! Changed only by applied log entries, so every member holds the same state at
//! the same index; records are staged into the apply batch (buckets `Auth`,
//! `AuthUsers`, `AuthRoles`). Tokens are not state-machine state: the
//! `AuthActor` keeps them, told by the store what each applied entry assigned or
//! invalidated (`TokenChange`). Hashing and checking passwords (bcrypt, slow on
//! purpose) never happens here: the member that takes a request does it off its
//! event loops, and the log carries only the hash.

use std::collections::BTreeMap;

use prost::Message as _;

use crate::error::RequestError;
use crate::proto::authpb::{permission::Type as PermType, Permission, Role, User, UserAddOptions};
use crate::proto::etcdserverpb as pb;
use crate::proto::steadpb::internal_request::Request as Internal;
use crate::proto::steadpb::InternalRequest;
use crate::storage::backend::{BackendError, Bucket};
use crate::storage::mvcc::{ApplyBatch, MvccStore};

pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";

const ENABLED_KEY: &[u8] = b"authEnabled";
const REVISION_KEY: &[u8] = b"authRevision";

/// Who made a request, as the member that took it resolved their token: the
/// user and the auth revision the token was checked at. Empty: no credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

impl AuthInfo {
    /// The member itself (lease expiry, automatic compaction, publishing its
    /// attributes), as etcd's `WithRoot`: root, never stale. Only code inside
    /// the member makes it; a client's identity always comes from its token.
    pub fn member() -> AuthInfo {
        AuthInfo { username: ROOT_USER.to_string(), revision: u64::MAX }
    }
}

/// The kind of access an operation needs on a key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// What an applied auth entry answers; the service builds etcd's response for
/// the request it made from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthAnswer {
    /// Filled by the store (revision, ids, term).
    pub header: Option<pb::ResponseHeader>,
    pub token: String,
    pub users: Vec<String>,
    pub roles: Vec<String>,
    pub perms: Vec<Permission>,
}

/// What an applied entry did to tokens (the `AuthActor` owns them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChange {
    Assigned { token: String, username: String },
    /// The user's password, roles or existence changed: its tokens are void.
    UserChanged(String),
    /// Auth was enabled or disabled: every token is void.
    DropAll,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthState {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

/// Is this log entry an auth request (applied by `AuthState::apply`)?
pub fn is_auth_request(req: &Internal) -> bool {
    matches!(
        req,
        Internal::AuthEnable(_)
            | Internal::AuthDisable(_)
            | Internal::Authenticate(_)
            | Internal::UserAdd(_)
            | Internal::UserDelete(_)
            | Internal::UserChangePassword(_)
            | Internal::UserGrantRole(_)
            | Internal::UserRevokeRole(_)
            | Internal::UserGet(_)
            | Internal::UserList(_)
            | Internal::RoleAdd(_)
            | Internal::RoleDelete(_)
            | Internal::RoleGrantPermission(_)
            | Internal::RoleRevokePermission(_)
            | Internal::RoleGet(_)
            | Internal::RoleList(_)
    )
}

impl AuthState {
    pub fn load(store: &MvccStore) -> Result<AuthState, BackendError> {
        let backend = &**store.backend();
        let enabled = backend.get(Bucket::Auth, ENABLED_KEY)?.is_some_and(|v| v == [1]);
        let revision = match backend.get(Bucket::Auth, REVISION_KEY)? {
            Some(v) => u64::from_be_bytes(
                v.as_slice().try_into().map_err(|_| BackendError::Engine("auth revision record is not 8 bytes".into()))?,
            ),
            None => 0,
        };
        let users: Vec<User> = super::load_records(backend, Bucket::AuthUsers, "auth user")?;
        let roles: Vec<Role> = super::load_records(backend, Bucket::AuthRoles, "auth role")?;
        Ok(AuthState {
            enabled,
            revision,
            users: users.into_iter().map(|u| (String::from_utf8_lossy(&u.name).into_owned(), u)).collect(),
            roles: roles.into_iter().map(|r| (String::from_utf8_lossy(&r.name).into_owned(), r)).collect(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    fn is_root(user: &User) -> bool {
        user.roles.iter().any(|r| r == ROOT_ROLE)
    }

    /// etcd's IsAdminPermitted: with auth on, the user must exist and hold the
    /// root role. No credentials look up the user "", which does not exist (the
    /// project's spec session answers `user name not found` there).
    pub fn check_admin(&self, who: &AuthInfo) -> Result<(), RequestError> {
        if !self.enabled {
            return Ok(());
        }
        let user = self.users.get(&who.username).ok_or(RequestError::UserNotFound)?;
        if Self::is_root(user) {
            Ok(())
        } else {
            Err(RequestError::PermissionDenied)
        }
    }

    /// etcd's isOpPermitted: `range_end` as in a request (empty: one key; "\0":
    /// every key from `key` on).
    pub fn check_access(&self, who: &AuthInfo, key: &[u8], range_end: &[u8], access: Access) -> Result<(), RequestError> {
        if !self.enabled {
            return Ok(());
        }
        if who.revision == 0 {
            return Err(RequestError::UserEmpty);
        }
        if who.revision < self.revision {
            return Err(RequestError::AuthOldRevision);
        }
        let user = self.users.get(&who.username).ok_or(RequestError::PermissionDenied)?;
        if Self::is_root(user) || self.granted(user, key, range_end, access) {
            Ok(())
        } else {
            Err(RequestError::PermissionDenied)
        }
    }

    /// Whether the union of the user's permissions of the right kind covers the
    /// whole requested range (etcd's range permission cache: intervals merged,
    /// then containment).
    fn granted(&self, user: &User, key: &[u8], range_end: &[u8], access: Access) -> bool {
        let wanted = |t: PermType| match access {
            Access::Read => matches!(t, PermType::Read | PermType::Readwrite),
            Access::Write => matches!(t, PermType::Write | PermType::Readwrite),
        };
        let mut granted: Vec<Interval> = user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.key_permission.iter())
            .filter(|p| PermType::try_from(p.perm_type).is_ok_and(wanted))
            .map(|p| Interval::of(&p.key, &p.range_end))
            .collect();
        granted.sort_by(|a, b| a.start.cmp(&b.start));
        let want = Interval::of(key, range_end);
        let mut merged: Option<Interval> = None;
        for next in granted {
            merged = match merged {
                Some(cur) if cur.reaches(&next.start) => Some(cur.extended_by(next)),
                Some(cur) => {
                    if cur.contains(&want) {
                        return true;
                    }
                    Some(next)
                }
                None => Some(next),
            };
        }
        merged.is_some_and(|m| m.contains(&want))
    }

    /// The checks etcd's auth applier makes before a write applies (the member
    /// that proposed it resolved who asked; the state may have changed since).
    /// `lease_keys` gives the keys attached to a lease.
    pub fn check_entry(
        &self,
        req: &InternalRequest,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<(), RequestError> {
        if !self.enabled {
            return Ok(());
        }
        let who = req
            .header
            .as_ref()
            .map(|h| AuthInfo { username: h.username.clone(), revision: h.auth_revision })
            .unwrap_or_default();
        let Some(request) = &req.request else { return Ok(()) };
        let lease_writable = |id: i64| -> Result<(), RequestError> {
            for key in lease_keys(id) {
                self.check_access(&who, &key, &[], Access::Write)?;
            }
            Ok(())
        };
        match request {
            Internal::Put(p) => {
                self.check_access(&who, &p.key, &[], Access::Write)?;
                // A lease holding a key the user cannot write must not get more
                // keys: the user could never revoke it.
                lease_writable(p.lease)?;
                if p.prev_kv {
                    self.check_access(&who, &p.key, &[], Access::Read)?;
                }
                Ok(())
            }
            Internal::DeleteRange(d) => {
                self.check_access(&who, &d.key, &d.range_end, Access::Write)?;
                if d.prev_kv {
                    self.check_access(&who, &d.key, &d.range_end, Access::Read)?;
                }
                Ok(())
            }
            Internal::Txn(t) => self.check_txn(&who, t),
            Internal::LeaseRevoke(r) => lease_writable(r.id),
            // Compaction drops everyone's history: root only (as the issue asks;
            // etcd 3.4 lets any user compact).
            Internal::Compaction(_) => self.check_admin(&who),
            Internal::UserGet(r) if r.name == who.username => Ok(()),
            Internal::RoleGet(r) if self.users.get(&who.username).is_some_and(|u| u.roles.contains(&r.role)) => Ok(()),
            Internal::Authenticate(_) => Ok(()),
            r if is_auth_request(r) => self.check_admin(&who),
            _ => Ok(()),
        }
    }

    /// Every key a txn touches: compares and range ops need read, puts and
    /// deletes write (and read for prev_kv), nested txns likewise.
    pub fn check_txn(&self, who: &AuthInfo, t: &pb::TxnRequest) -> Result<(), RequestError> {
        use pb::request_op::Request as Op;
        for c in &t.compare {
            self.check_access(who, &c.key, &c.range_end, Access::Read)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(Op::RequestRange(r)) => self.check_access(who, &r.key, &r.range_end, Access::Read)?,
                Some(Op::RequestPut(p)) => {
                    self.check_access(who, &p.key, &[], Access::Write)?;
                    if p.prev_kv {
                        self.check_access(who, &p.key, &[], Access::Read)?;
                    }
                }
                Some(Op::RequestDeleteRange(d)) => {
                    if d.prev_kv {
                        self.check_access(who, &d.key, &d.range_end, Access::Read)?;
                    }
                    self.check_access(who, &d.key, &d.range_end, Access::Write)?;
                }
                Some(Op::RequestTxn(nested)) => self.check_txn(who, nested)?,
                None => {}
            }
        }
        Ok(())
    }

    /// Applies one auth entry at log index `index`, staging what changed into
    /// `batch`. Permission checks (`check_entry`) come first, by the caller.
    pub fn apply(
        &mut self,
        batch: &mut ApplyBatch<'_>,
        index: u64,
        req: &InternalRequest,
        tokens: &mut Vec<TokenChange>,
    ) -> Result<AuthAnswer, RequestError> {
        let none = AuthAnswer::default();
        let Some(request) = &req.request else { return Err(RequestError::Malformed("empty auth entry".into())) };
        match request {
            Internal::AuthEnable(_) => {
                if self.enabled {
                    return Ok(none);
                }
                let root = self.users.get_mut(ROOT_USER).ok_or(RequestError::RootUserNotExist)?;
                // The spec session enables auth right after `user add root`:
                // the root user gets the root role here if it lacks it (etcd
                // 3.4's etcdctl grants it itself after a refusal).
                if !Self::is_root(root) {
                    insert_sorted(&mut root.roles, ROOT_ROLE.to_string());
                    let root = root.clone();
                    self.put_user(batch, root);
                }
                // As after etcdctl's `role add root`: the role exists too.
                if !self.roles.contains_key(ROOT_ROLE) {
                    self.put_role(batch, Role { name: ROOT_ROLE.into(), key_permission: Vec::new() });
                }
                self.enabled = true;
                batch.stage_put(Bucket::Auth, ENABLED_KEY.to_vec(), vec![1]);
                self.bump_revision(batch);
                tokens.push(TokenChange::DropAll);
                Ok(none)
            }
            Internal::AuthDisable(_) => {
                if self.enabled {
                    self.enabled = false;
                    batch.stage_put(Bucket::Auth, ENABLED_KEY.to_vec(), vec![0]);
                    self.bump_revision(batch);
                    tokens.push(TokenChange::DropAll);
                }
                Ok(none)
            }
            Internal::Authenticate(a) => {
                if !self.enabled {
                    return Err(RequestError::AuthNotEnabled);
                }
                // The proposer checked the password at this auth revision; a
                // change since (a new password, say) voids that check.
                let checked_at = req.header.as_ref().map(|h| h.auth_revision).unwrap_or_default();
                if checked_at < self.revision {
                    return Err(RequestError::AuthOldRevision);
                }
                let user = self.users.get(&a.name).ok_or(RequestError::AuthFailed)?;
                if user.options.as_ref().is_some_and(|o| o.no_password) {
                    return Err(RequestError::AuthFailed);
                }
                let token = format!("{}.{index}", a.simple_token);
                tokens.push(TokenChange::Assigned { token: token.clone(), username: a.name.clone() });
                Ok(AuthAnswer { token, ..none })
            }
            Internal::UserAdd(r) => {
                if r.name.is_empty() {
                    return Err(RequestError::UserEmpty);
                }
                if self.users.contains_key(&r.name) {
                    return Err(RequestError::UserAlreadyExist);
                }
                let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
                let user = User {
                    name: r.name.clone().into_bytes(),
                    password: if no_password { Vec::new() } else { r.hashed_password.clone().into_bytes() },
                    roles: Vec::new(),
                    options: Some(UserAddOptions { no_password }),
                };
                self.put_user(batch, user);
                self.bump_revision(batch);
                Ok(none)
            }
            Internal::UserDelete(r) => {
                if self.enabled && r.name == ROOT_USER {
                    return Err(RequestError::InvalidAuthMgmt);
                }
                if self.users.remove(&r.name).is_none() {
                    return Err(RequestError::UserNotFound);
                }
                batch.stage_delete(Bucket::AuthUsers, r.name.clone().into_bytes());
                self.bump_revision(batch);
                tokens.push(TokenChange::UserChanged(r.name.clone()));
                Ok(none)
            }
            Internal::UserChangePassword(r) => {
                let mut user = self.users.get(&r.name).cloned().ok_or(RequestError::UserNotFound)?;
                user.password = r.hashed_password.clone().into_bytes();
                self.put_user(batch, user);
                self.bump_revision(batch);
                tokens.push(TokenChange::UserChanged(r.name.clone()));
                Ok(none)
            }
            Internal::UserGrantRole(r) => {
                let mut user = self.users.get(&r.user).cloned().ok_or(RequestError::UserNotFound)?;
                if r.role != ROOT_ROLE && !self.roles.contains_key(&r.role) {
                    return Err(RequestError::RoleNotFound);
                }
                if user.roles.contains(&r.role) {
                    return Ok(none);
                }
                insert_sorted(&mut user.roles, r.role.clone());
                self.put_user(batch, user);
                self.bump_revision(batch);
                tokens.push(TokenChange::UserChanged(r.user.clone()));
                Ok(none)
            }
            Internal::UserRevokeRole(r) => {
                if self.enabled && r.name == ROOT_USER && r.role == ROOT_ROLE {
                    return Err(RequestError::InvalidAuthMgmt);
                }
                let mut user = self.users.get(&r.name).cloned().ok_or(RequestError::UserNotFound)?;
                let before = user.roles.len();
                user.roles.retain(|role| role != &r.role);
                if user.roles.len() == before {
                    return Err(RequestError::RoleNotGranted);
                }
                self.put_user(batch, user);
                self.bump_revision(batch);
                tokens.push(TokenChange::UserChanged(r.name.clone()));
                Ok(none)
            }
            Internal::UserGet(r) => {
                let user = self.users.get(&r.name).ok_or(RequestError::UserNotFound)?;
                Ok(AuthAnswer { roles: user.roles.clone(), ..none })
            }
            Internal::UserList(_) => Ok(AuthAnswer { users: self.users.keys().cloned().collect(), ..none }),
            Internal::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(RequestError::RoleEmpty);
                }
                if self.roles.contains_key(&r.name) {
                    return Err(RequestError::RoleAlreadyExist);
                }
                self.put_role(batch, Role { name: r.name.clone().into_bytes(), key_permission: Vec::new() });
                self.bump_revision(batch);
                Ok(none)
            }
            Internal::RoleDelete(r) => {
                if self.enabled && r.role == ROOT_ROLE {
                    return Err(RequestError::InvalidAuthMgmt);
                }
                if self.roles.remove(&r.role).is_none() {
                    return Err(RequestError::RoleNotFound);
                }
                batch.stage_delete(Bucket::AuthRoles, r.role.clone().into_bytes());
                let holders: Vec<User> = self.users.values().filter(|u| u.roles.contains(&r.role)).cloned().collect();
                for mut user in holders {
                    user.roles.retain(|role| role != &r.role);
                    tokens.push(TokenChange::UserChanged(String::from_utf8_lossy(&user.name).into_owned()));
                    self.put_user(batch, user);
                }
                self.bump_revision(batch);
                Ok(none)
            }
            Internal::RoleGrantPermission(r) => {
                let mut role = self.roles.get(&r.name).cloned().ok_or(RequestError::RoleNotFound)?;
                let perm = r.perm.clone().unwrap_or_default();
                match role.key_permission.iter_mut().find(|p| p.key == perm.key && p.range_end == perm.range_end) {
                    Some(existing) => existing.perm_type = perm.perm_type,
                    None => {
                        let at = role.key_permission.partition_point(|p| p.key <= perm.key);
                        role.key_permission.insert(at, perm);
                    }
                }
                self.put_role(batch, role);
                self.bump_revision(batch);
                Ok(none)
            }
            Internal::RoleRevokePermission(r) => {
                let mut role = self.roles.get(&r.role).cloned().ok_or(RequestError::RoleNotFound)?;
                let before = role.key_permission.len();
                role.key_permission.retain(|p| p.key != r.key || p.range_end != r.range_end);
                if role.key_permission.len() == before {
                    return Err(RequestError::PermissionNotGranted);
                }
                self.put_role(batch, role);
                self.bump_revision(batch);
                Ok(none)
            }
            Internal::RoleGet(r) => {
                let role = self.roles.get(&r.role).ok_or(RequestError::RoleNotFound)?;
                Ok(AuthAnswer { perms: role.key_permission.clone(), ..none })
            }
            Internal::RoleList(_) => Ok(AuthAnswer { roles: self.roles.keys().cloned().collect(), ..none }),
            _ => Err(RequestError::Malformed("not an auth request in log entry".into())),
        }
    }

    fn put_user(&mut self, batch: &mut ApplyBatch<'_>, user: User) {
        batch.stage_put(Bucket::AuthUsers, user.name.clone(), user.encode_to_vec());
        self.users.insert(String::from_utf8_lossy(&user.name).into_owned(), user);
    }

    fn put_role(&mut self, batch: &mut ApplyBatch<'_>, role: Role) {
        batch.stage_put(Bucket::AuthRoles, role.name.clone(), role.encode_to_vec());
        self.roles.insert(String::from_utf8_lossy(&role.name).into_owned(), role);
    }

    fn bump_revision(&mut self, batch: &mut ApplyBatch<'_>) {
        self.revision += 1;
        batch.stage_put(Bucket::Auth, REVISION_KEY.to_vec(), self.revision.to_be_bytes().to_vec());
    }
}

fn insert_sorted(list: &mut Vec<String>, item: String) {
    let at = list.partition_point(|x| *x < item);
    list.insert(at, item);
}

/// A half-open key interval; `end: None` is unbounded (etcd's "\0" range end).
#[derive(Debug, Clone)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    /// A request's or permission's range: an empty end is the one key (up to
    /// its immediate successor, `key + "\0"`), "\0" is every key from `key` on.
    fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let end = match range_end {
            [] => {
                let mut next = key.to_vec();
                next.push(0);
                Some(next)
            }
            [0] => None,
            end => Some(end.to_vec()),
        };
        Interval { start: key.to_vec(), end }
    }

    /// Does this interval reach `point` (overlap or touch)?
    fn reaches(&self, point: &[u8]) -> bool {
        self.end.as_deref().is_none_or(|end| point <= end)
    }

    fn extended_by(self, other: Interval) -> Interval {
        let end = match (self.end, other.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        Interval { start: self.start, end }
    }

    fn contains(&self, other: &Interval) -> bool {
        if other.start < self.start {
            return false;
        }
        match (&self.end, &other.end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs <= mine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::steadpb::{InternalAuthenticateRequest, RequestHeader};
    use crate::storage::backend::MemBackend;

    fn store() -> MvccStore {
        MvccStore::open(MemBackend::new()).unwrap()
    }

    fn apply(state: &mut AuthState, store: &mut MvccStore, who: &AuthInfo, request: Internal) -> Result<AuthAnswer, RequestError> {
        let req = InternalRequest {
            header: Some(RequestHeader { username: who.username.clone(), auth_revision: who.revision, ..Default::default() }),
            request: Some(request),
        };
        state.check_entry(&req, &|_| Vec::new())?;
        let mut batch = store.apply_batch();
        let mut tokens = Vec::new();
        let out = state.apply(&mut batch, 1, &req, &mut tokens);
        batch.finish().unwrap();
        out
    }

    fn perm(t: PermType, key: &str, end: &str) -> Permission {
        Permission { perm_type: t as i32, key: key.into(), range_end: end.into() }
    }

    /// root, plus `alice` holding role `r` with the given permissions; auth on.
    fn with_alice(perms: Vec<Permission>) -> (AuthState, MvccStore, AuthInfo) {
        let mut store = store();
        let mut s = AuthState::default();
        let anyone = AuthInfo::default();
        apply(&mut s, &mut store, &anyone, Internal::UserAdd(pb::AuthUserAddRequest { name: "root".into(), hashed_password: "h".into(), ..Default::default() })).unwrap();
        apply(&mut s, &mut store, &anyone, Internal::UserAdd(pb::AuthUserAddRequest { name: "alice".into(), hashed_password: "h".into(), ..Default::default() })).unwrap();
        apply(&mut s, &mut store, &anyone, Internal::RoleAdd(pb::AuthRoleAddRequest { name: "r".into() })).unwrap();
        for p in perms {
            apply(&mut s, &mut store, &anyone, Internal::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest { name: "r".into(), perm: Some(p) })).unwrap();
        }
        apply(&mut s, &mut store, &anyone, Internal::UserGrantRole(pb::AuthUserGrantRoleRequest { user: "alice".into(), role: "r".into() })).unwrap();
        apply(&mut s, &mut store, &anyone, Internal::AuthEnable(pb::AuthEnableRequest {})).unwrap();
        let alice = AuthInfo { username: "alice".into(), revision: s.revision() };
        (s, store, alice)
    }

    #[test]
    fn enable_needs_root_and_grants_it_the_root_role() {
        let mut store = store();
        let mut s = AuthState::default();
        let anyone = AuthInfo::default();
        assert_eq!(apply(&mut s, &mut store, &anyone, Internal::AuthEnable(pb::AuthEnableRequest {})), Err(RequestError::RootUserNotExist));
        apply(&mut s, &mut store, &anyone, Internal::UserAdd(pb::AuthUserAddRequest { name: "root".into(), hashed_password: "h".into(), ..Default::default() })).unwrap();
        apply(&mut s, &mut store, &anyone, Internal::AuthEnable(pb::AuthEnableRequest {})).unwrap();
        assert!(s.enabled());
        assert_eq!(s.user("root").unwrap().roles, vec!["root".to_string()]);
        assert!(s.roles.contains_key("root"));
        // Now admin calls need root: no credentials look up user "".
        assert_eq!(apply(&mut s, &mut store, &anyone, Internal::UserList(pb::AuthUserListRequest {})), Err(RequestError::UserNotFound));
        let root = AuthInfo { username: "root".into(), revision: s.revision() };
        assert_eq!(apply(&mut s, &mut store, &root, Internal::UserList(pb::AuthUserListRequest {})).unwrap().users, vec!["root".to_string()]);
        // The root user keeps its role while auth is on.
        assert_eq!(
            apply(&mut s, &mut store, &root, Internal::UserRevokeRole(pb::AuthUserRevokeRoleRequest { name: "root".into(), role: "root".into() })),
            Err(RequestError::InvalidAuthMgmt)
        );
    }

    #[test]
    fn state_survives_reload() {
        let (s, store, _) = with_alice(vec![perm(PermType::Read, "a", "")]);
        let loaded = AuthState::load(&store).unwrap();
        assert_eq!(loaded, s);
    }

    #[test]
    fn prefix_permission_covers_keys_and_subranges_only() {
        let (s, _, alice) = with_alice(vec![perm(PermType::Readwrite, "key", "kez")]);
        assert_eq!(s.check_access(&alice, b"key1", b"", Access::Write), Ok(()));
        assert_eq!(s.check_access(&alice, b"key", b"kez", Access::Read), Ok(()));
        assert_eq!(s.check_access(&alice, b"keya", b"keyb", Access::Read), Ok(()));
        assert_eq!(s.check_access(&alice, b"k1", b"", Access::Write), Err(RequestError::PermissionDenied));
        assert_eq!(s.check_access(&alice, b"key", b"\0", Access::Read), Err(RequestError::PermissionDenied));
        assert_eq!(s.check_access(&alice, b"ke", b"kez", Access::Read), Err(RequestError::PermissionDenied));
    }

    #[test]
    fn read_and_write_are_separate_and_adjacent_grants_merge() {
        let (s, _, alice) =
            with_alice(vec![perm(PermType::Read, "a", "c"), perm(PermType::Read, "c", "e"), perm(PermType::Write, "x", "")]);
        assert_eq!(s.check_access(&alice, b"b", b"d", Access::Read), Ok(()));
        assert_eq!(s.check_access(&alice, b"b", b"f", Access::Read), Err(RequestError::PermissionDenied));
        assert_eq!(s.check_access(&alice, b"b", b"", Access::Write), Err(RequestError::PermissionDenied));
        assert_eq!(s.check_access(&alice, b"x", b"", Access::Write), Ok(()));
        assert_eq!(s.check_access(&alice, b"x", b"", Access::Read), Err(RequestError::PermissionDenied));
        assert_eq!(s.check_access(&alice, b"x\0", b"", Access::Write), Err(RequestError::PermissionDenied));
    }

    #[test]
    fn from_key_permission_is_unbounded() {
        let (s, _, alice) = with_alice(vec![perm(PermType::Read, "m", "\0")]);
        assert_eq!(s.check_access(&alice, b"m", b"\0", Access::Read), Ok(()));
        assert_eq!(s.check_access(&alice, b"zzz", b"", Access::Read), Ok(()));
        assert_eq!(s.check_access(&alice, b"a", b"\0", Access::Read), Err(RequestError::PermissionDenied));
    }

    #[test]
    fn no_credentials_and_stale_revisions_are_refused() {
        let (s, _, alice) = with_alice(vec![perm(PermType::Read, "a", "")]);
        assert_eq!(s.check_access(&AuthInfo::default(), b"a", b"", Access::Read), Err(RequestError::UserEmpty));
        let stale = AuthInfo { revision: alice.revision - 1, ..alice.clone() };
        assert_eq!(s.check_access(&stale, b"a", b"", Access::Read), Err(RequestError::AuthOldRevision));
        let ghost = AuthInfo { username: "ghost".into(), revision: alice.revision };
        assert_eq!(s.check_access(&ghost, b"a", b"", Access::Read), Err(RequestError::PermissionDenied));
    }

    #[test]
    fn txn_needs_every_key_it_touches() {
        use pb::request_op::Request as Op;
        let (s, _, alice) = with_alice(vec![perm(PermType::Readwrite, "a", "b")]);
        let put = |k: &str| pb::RequestOp { request: Some(Op::RequestPut(pb::PutRequest { key: k.into(), ..Default::default() })) };
        let ok = pb::TxnRequest { success: vec![put("a1")], failure: vec![put("a2")], ..Default::default() };
        assert_eq!(s.check_txn(&alice, &ok), Ok(()));
        let bad_branch = pb::TxnRequest { success: vec![put("a1")], failure: vec![put("z")], ..Default::default() };
        assert_eq!(s.check_txn(&alice, &bad_branch), Err(RequestError::PermissionDenied));
        let bad_compare = pb::TxnRequest {
            compare: vec![pb::Compare { key: "z".into(), ..Default::default() }],
            success: vec![put("a1")],
            ..Default::default()
        };
        assert_eq!(s.check_txn(&alice, &bad_compare), Err(RequestError::PermissionDenied));
        let nested = pb::TxnRequest { success: vec![pb::RequestOp { request: Some(Op::RequestTxn(bad_branch)) }], ..Default::default() };
        assert_eq!(s.check_txn(&alice, &nested), Err(RequestError::PermissionDenied));
    }

    #[test]
    fn authenticate_assigns_index_token_and_password_change_voids_it() {
        let (mut s, mut store, alice) = with_alice(Vec::new());
        let req = InternalRequest {
            header: Some(RequestHeader { auth_revision: s.revision(), ..Default::default() }),
            request: Some(Internal::Authenticate(InternalAuthenticateRequest { name: "alice".into(), simple_token: "abc".into() })),
        };
        let mut tokens = Vec::new();
        let mut batch = store.apply_batch();
        let answer = s.apply(&mut batch, 42, &req, &mut tokens).unwrap();
        batch.finish().unwrap();
        assert_eq!(answer.token, "abc.42");
        assert_eq!(tokens, vec![TokenChange::Assigned { token: "abc.42".into(), username: "alice".into() }]);
        let root = AuthInfo { username: "root".into(), revision: s.revision() };
        apply(&mut s, &mut store, &root, Internal::UserChangePassword(pb::AuthUserChangePasswordRequest { name: "alice".into(), hashed_password: "h2".into(), ..Default::default() })).unwrap();
        // A password checked before the change cannot log in after it.
        let mut batch = store.apply_batch();
        assert_eq!(s.apply(&mut batch, 43, &req, &mut Vec::new()), Err(RequestError::AuthOldRevision));
        drop(batch);
        assert!(alice.revision < s.revision());
    }

    #[test]
    fn role_delete_strips_it_from_users_and_non_root_cannot_admin() {
        let (mut s, mut store, alice) = with_alice(vec![perm(PermType::Read, "a", "")]);
        assert_eq!(apply(&mut s, &mut store, &alice, Internal::RoleList(pb::AuthRoleListRequest {})), Err(RequestError::PermissionDenied));
        // Own user and own roles may be read.
        assert_eq!(apply(&mut s, &mut store, &alice, Internal::UserGet(pb::AuthUserGetRequest { name: "alice".into() })).unwrap().roles, vec!["r".to_string()]);
        assert_eq!(apply(&mut s, &mut store, &alice, Internal::RoleGet(pb::AuthRoleGetRequest { role: "r".into() })).unwrap().perms.len(), 1);
        let root = AuthInfo { username: "root".into(), revision: s.revision() };
        apply(&mut s, &mut store, &root, Internal::RoleDelete(pb::AuthRoleDeleteRequest { role: "r".into() })).unwrap();
        assert!(s.user("alice").unwrap().roles.is_empty());
        assert_eq!(
            apply(&mut s, &mut store, &root, Internal::RoleRevokePermission(pb::AuthRoleRevokePermissionRequest { role: "r".into(), ..Default::default() })),
            Err(RequestError::RoleNotFound)
        );
    }
}
