//! The pure Raft core. Owns the consensus state machine (elections, replication,
//! commitment, membership, read index, leader transfer, log compaction); must never
//! do I/O, read a clock, spawn a thread or use randomness other than its seed.
//! `RaftActor` feeds it ticks and messages and carries out its `Ready`s.
//!
//! Layout: `types` (plain data shared with the WAL and actors), `node` (the state
//! machine and its caller contract — read its docs first), `log`, `progress`
//! (flow control), `confchange` (membership change encoding), `rng`, `error`.
mod confchange;
mod error;
mod log;
mod node;
mod progress;
mod rng;
pub mod types;

pub use confchange::ConfChange;
pub use error::RaftError;
pub use node::{Config, PersistAck, ProgressStatus, RaftNode, Ready, Restored, Status};
pub use progress::ProgressState;
pub use types::*;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
