//! Durable state: the write-ahead log (the source of truth), the MVCC store and
//! the backend it keeps its data in.
pub mod backend;
pub mod hash;
pub mod mvcc;
pub mod snapshot;
pub mod snapshot_file;
pub mod wal;
