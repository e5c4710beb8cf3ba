//! etcd's KV semantics on top of the MVCC store: what a request must satisfy
//! before it is proposed (`validate`) and what it does when applied (`apply`).
pub mod apply;
pub mod leases;
pub mod members;
pub mod validate;
