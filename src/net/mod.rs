//! Everything that knows a wire format: the JSON gateway, and etcd's error codes
//! and texts.
pub mod gateway;
pub mod gateway_auth;
pub mod gateway_recipes;
pub mod gateway_watch;
pub mod grpc;
pub mod grpc_codec;
pub mod grpc_limits;
pub mod grpc_recipes;
pub mod h2_authority;
pub mod listener;
pub mod peer;
pub mod status;
pub mod watch_session;
