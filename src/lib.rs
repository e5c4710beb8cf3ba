pub mod raft;
pub mod proto;
