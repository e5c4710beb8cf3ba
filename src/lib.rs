pub mod raft;
pub mod proto;
pub mod config;
