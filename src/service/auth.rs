//! The Auth API of the client service (etcd's `etcdserverpb.Auth`): every
//! request goes through the log, as etcd's do (user and role reads included), and
//! is checked when it applies; the answer comes back as `Response::Auth`.
//!
//! Passwords never enter the log: a new password is hashed here (bcrypt, on the
//! blocking pool) and only the hash is proposed; a login's password is checked
//! by the auth actor, and only the user name and a fresh token prefix are
//! proposed.

use super::{unexpected, ClientService};
use crate::actors::auth::{CheckPassword, GetAuthStatus, HashPassword, IssueToken};
use crate::error::RequestError;
use crate::kv::apply::Response;
use crate::kv::auth::{AuthAnswer, AuthInfo};
use crate::proto::etcdserverpb as pb;
use crate::proto::steadpb::internal_request::Request as Internal;
use crate::proto::steadpb::InternalAuthenticateRequest;

/// A login whose password check went stale before it applied is retried this
/// many times (etcd retries until its deadline).
const AUTHENTICATE_ATTEMPTS: usize = 5;

impl ClientService {
    async fn auth_request(&self, request: Internal) -> Result<AuthAnswer, RequestError> {
        match self.propose(request).await? {
            Response::Auth(answer) => Ok(answer),
            other => Err(unexpected(other)),
        }
    }

    /// An auth request answered with its header only.
    async fn auth_header(&self, request: Internal) -> Result<Option<pb::ResponseHeader>, RequestError> {
        Ok(self.auth_request(request).await?.header)
    }

    async fn hash_password(&self, password: String) -> Result<String, RequestError> {
        let auth = self.shared.auth.as_ref().ok_or(RequestError::NotImplemented("auth"))?;
        auth.send(HashPassword(password)).await.map_err(|_| RequestError::Stopped)?
    }

    pub async fn auth_enable(&self, r: pb::AuthEnableRequest) -> Result<pb::AuthEnableResponse, RequestError> {
        Ok(pb::AuthEnableResponse { header: self.auth_header(Internal::AuthEnable(r)).await? })
    }

    pub async fn auth_disable(&self, r: pb::AuthDisableRequest) -> Result<pb::AuthDisableResponse, RequestError> {
        Ok(pb::AuthDisableResponse { header: self.auth_header(Internal::AuthDisable(r)).await? })
    }

    /// etcd 3.5's AuthStatus, from this member's applied state.
    pub async fn auth_status(&self) -> Result<pb::AuthStatusResponse, RequestError> {
        let auth = self.shared.auth.as_ref().ok_or(RequestError::NotImplemented("auth"))?;
        let (enabled, auth_revision) = auth.send(GetAuthStatus).await.map_err(|_| RequestError::Stopped)?;
        Ok(pb::AuthStatusResponse { header: Some(self.kv_header().await?), enabled, auth_revision })
    }

    /// etcd's Authenticate: after a linearizable barrier (so a user just added
    /// on another member is known here), the auth actor checks the password; the
    /// log then assigns the token on every member. A password change between the
    /// check and the apply voids the attempt, which is made again.
    pub async fn authenticate(&self, r: pb::AuthenticateRequest) -> Result<pb::AuthenticateResponse, RequestError> {
        let auth = self.shared.auth.as_ref().ok_or(RequestError::NotImplemented("auth"))?;
        let mut attempts = 0;
        loop {
            self.barrier().await?;
            let checked_at = auth
                .send(CheckPassword { name: r.name.clone(), password: r.password.clone() })
                .await
                .map_err(|_| RequestError::Stopped)??;
            // JWTs are signed here; simple tokens are assigned through the log.
            let issued = auth
                .send(IssueToken { username: r.name.clone(), revision: checked_at })
                .await
                .map_err(|_| RequestError::Stopped)??;
            if let Some(token) = issued {
                return Ok(pb::AuthenticateResponse { header: Some(self.kv_header().await?), token });
            }
            let request = Internal::Authenticate(InternalAuthenticateRequest {
                name: r.name.clone(),
                simple_token: simple_token_prefix()?,
            });
            let who = AuthInfo { username: r.name.clone(), revision: checked_at };
            match self.propose_as(request, who).await {
                Ok(Response::Auth(answer)) => {
                    return Ok(pb::AuthenticateResponse { header: answer.header, token: answer.token })
                }
                Ok(other) => return Err(unexpected(other)),
                Err(RequestError::AuthOldRevision) if attempts + 1 < AUTHENTICATE_ATTEMPTS => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn user_add(&self, mut r: pb::AuthUserAddRequest) -> Result<pb::AuthUserAddResponse, RequestError> {
        if r.name.is_empty() {
            return Err(RequestError::UserEmpty);
        }
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        r.hashed_password = if no_password { String::new() } else { self.hash_password(std::mem::take(&mut r.password)).await? };
        r.password.clear();
        Ok(pb::AuthUserAddResponse { header: self.auth_header(Internal::UserAdd(r)).await? })
    }

    pub async fn user_get(&self, r: pb::AuthUserGetRequest) -> Result<pb::AuthUserGetResponse, RequestError> {
        let answer = self.auth_request(Internal::UserGet(r)).await?;
        Ok(pb::AuthUserGetResponse { header: answer.header, roles: answer.roles })
    }

    pub async fn user_list(&self, r: pb::AuthUserListRequest) -> Result<pb::AuthUserListResponse, RequestError> {
        let answer = self.auth_request(Internal::UserList(r)).await?;
        Ok(pb::AuthUserListResponse { header: answer.header, users: answer.users })
    }

    pub async fn user_delete(&self, r: pb::AuthUserDeleteRequest) -> Result<pb::AuthUserDeleteResponse, RequestError> {
        Ok(pb::AuthUserDeleteResponse { header: self.auth_header(Internal::UserDelete(r)).await? })
    }

    pub async fn user_change_password(
        &self,
        mut r: pb::AuthUserChangePasswordRequest,
    ) -> Result<pb::AuthUserChangePasswordResponse, RequestError> {
        r.hashed_password = self.hash_password(std::mem::take(&mut r.password)).await?;
        Ok(pb::AuthUserChangePasswordResponse { header: self.auth_header(Internal::UserChangePassword(r)).await? })
    }

    pub async fn user_grant_role(&self, r: pb::AuthUserGrantRoleRequest) -> Result<pb::AuthUserGrantRoleResponse, RequestError> {
        Ok(pb::AuthUserGrantRoleResponse { header: self.auth_header(Internal::UserGrantRole(r)).await? })
    }

    pub async fn user_revoke_role(
        &self,
        r: pb::AuthUserRevokeRoleRequest,
    ) -> Result<pb::AuthUserRevokeRoleResponse, RequestError> {
        Ok(pb::AuthUserRevokeRoleResponse { header: self.auth_header(Internal::UserRevokeRole(r)).await? })
    }

    pub async fn role_add(&self, r: pb::AuthRoleAddRequest) -> Result<pb::AuthRoleAddResponse, RequestError> {
        if r.name.is_empty() {
            return Err(RequestError::RoleEmpty);
        }
        Ok(pb::AuthRoleAddResponse { header: self.auth_header(Internal::RoleAdd(r)).await? })
    }

    pub async fn role_get(&self, r: pb::AuthRoleGetRequest) -> Result<pb::AuthRoleGetResponse, RequestError> {
        let answer = self.auth_request(Internal::RoleGet(r)).await?;
        Ok(pb::AuthRoleGetResponse { header: answer.header, perm: answer.perms })
    }

    pub async fn role_list(&self, r: pb::AuthRoleListRequest) -> Result<pb::AuthRoleListResponse, RequestError> {
        let answer = self.auth_request(Internal::RoleList(r)).await?;
        Ok(pb::AuthRoleListResponse { header: answer.header, roles: answer.roles })
    }

    pub async fn role_delete(&self, r: pb::AuthRoleDeleteRequest) -> Result<pb::AuthRoleDeleteResponse, RequestError> {
        Ok(pb::AuthRoleDeleteResponse { header: self.auth_header(Internal::RoleDelete(r)).await? })
    }

    pub async fn role_grant_permission(
        &self,
        r: pb::AuthRoleGrantPermissionRequest,
    ) -> Result<pb::AuthRoleGrantPermissionResponse, RequestError> {
        Ok(pb::AuthRoleGrantPermissionResponse { header: self.auth_header(Internal::RoleGrantPermission(r)).await? })
    }

    pub async fn role_revoke_permission(
        &self,
        r: pb::AuthRoleRevokePermissionRequest,
    ) -> Result<pb::AuthRoleRevokePermissionResponse, RequestError> {
        Ok(pb::AuthRoleRevokePermissionResponse { header: self.auth_header(Internal::RoleRevokePermission(r)).await? })
    }
}

/// etcd's simple token prefix: 16 random letters (the apply adds `.<index>`).
fn simple_token_prefix() -> Result<String, RequestError> {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| RequestError::Internal(format!("no randomness for a token: {e}")))?;
    // 256 is not a multiple of 52: drawing by modulo favours the first letters
    // slightly, which costs well under a bit of the token's ~91 bits.
    Ok(bytes.iter().map(|b| LETTERS[*b as usize % LETTERS.len()] as char).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_prefix_is_sixteen_letters_and_varies() {
        let a = simple_token_prefix().unwrap();
        let b = simple_token_prefix().unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_alphabetic()));
        assert_ne!(a, b);
    }
}
