//! The pure Raft core. Owns the consensus state machine; must never do I/O, read a
//! clock, spawn a thread or use randomness other than its seed.
pub mod types;
pub use types::*;
