//! stead: an etcd-compatible, Raft-replicated key-value store built as an actix
//! actor system. See ARCHITECTURE.md for the map.
pub mod actors;
pub mod bench;
pub mod compactor;
pub mod config;
pub mod ctl;
pub mod error;
pub mod kv;
pub mod metrics;
pub mod net;
pub mod node;
pub mod proto;
pub mod quota;
pub mod raft;
pub mod recipes;
pub mod reply;
pub mod service;
pub mod storage;
pub mod threads;
