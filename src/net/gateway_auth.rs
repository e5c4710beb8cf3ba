//! etcd's Auth API on the JSON gateway, at etcd's paths (`/v3/auth/enable`,
//! `/v3/auth/user/add`, `/v3/auth/role/grant`, …): decode, call the client
//! service acting for the `Authorization` header, encode. No state of its own.

use actix_web::{web, HttpResponse};

use crate::net::gateway::{rpc, unary, Acting};

const AUTH: &str = "etcdserverpb.Auth";

/// One handler per route: `path => client service method, gRPC method name`.
macro_rules! auth_routes {
    ($($path:literal => $method:ident, $name:literal;)*) => {
        $(
            async fn $method(s: Acting, body: web::Payload) -> HttpResponse {
                unary(s, rpc(AUTH, $name), body, |s, r| async move { s.$method(r).await }).await
            }
        )*

        /// The Auth routes.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::post().to($method));)*
            cfg.route("/v3/auth/status", web::post().to(auth_status));
        }
    };
}

auth_routes! {
    "/v3/auth/enable" => auth_enable, "AuthEnable";
    "/v3/auth/disable" => auth_disable, "AuthDisable";
    "/v3/auth/authenticate" => authenticate, "Authenticate";
    "/v3/auth/user/add" => user_add, "UserAdd";
    "/v3/auth/user/get" => user_get, "UserGet";
    "/v3/auth/user/list" => user_list, "UserList";
    "/v3/auth/user/delete" => user_delete, "UserDelete";
    "/v3/auth/user/changepw" => user_change_password, "UserChangePassword";
    "/v3/auth/user/grant" => user_grant_role, "UserGrantRole";
    "/v3/auth/user/revoke" => user_revoke_role, "UserRevokeRole";
    "/v3/auth/role/add" => role_add, "RoleAdd";
    "/v3/auth/role/get" => role_get, "RoleGet";
    "/v3/auth/role/list" => role_list, "RoleList";
    "/v3/auth/role/delete" => role_delete, "RoleDelete";
    "/v3/auth/role/grant" => role_grant_permission, "RoleGrantPermission";
    "/v3/auth/role/revoke" => role_revoke_permission, "RoleRevokePermission";
}

/// etcd 3.5's `POST /v3/auth/status` (its request is empty).
async fn auth_status(s: Acting, body: web::Payload) -> HttpResponse {
    unary(s, rpc(AUTH, "AuthStatus"), body, |s, _: crate::proto::etcdserverpb::AuthStatusRequest| async move {
        s.auth_status().await
    })
    .await
}
