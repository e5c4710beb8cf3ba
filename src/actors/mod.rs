//! The actors of one member, one file each with its messages beside it.
pub mod auth;
pub mod lease;
pub mod raft;
pub mod store;
pub mod wal;
pub mod watch;
