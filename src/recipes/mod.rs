//! etcd's concurrency recipes served by the server (etcd's `v3lock` and
//! `v3election` services), written once on top of the `ClientService`: every
//! step is an ordinary txn, range or watch, exactly as etcd's server runs its
//! `clientv3/concurrency` Mutex and Election against itself.
//!
//! The shape of both recipes: a waiter's key is `NAME/<lease id in hex>`, put
//! with its lease by a txn that only creates it when absent; the waiter whose key
//! has the smallest create revision under `NAME/` holds the lock (or leads). A
//! later waiter waits until every older key under the prefix is deleted, watching
//! from the revision it read them at, so no deletion can slip between the read
//! and the watch.
//!
//! Owns no state: the keys are the state. It must never touch actors directly
//! (only through `ClientService`), and must never leave a waiter's key behind
//! when its wait fails or its caller goes away (`KeyCleanup`).

pub mod election;
pub mod lock;
mod waiters;

use crate::error::RequestError;

/// etcd's session TTL (`concurrency.defaultSessionTTL`), seconds: what a lock
/// or campaign request without a lease gets as a fresh lease.
pub const SESSION_TTL_SECONDS: i64 = 60;

/// The recipes' errors as etcd answers them: its recipe servers call etcd
/// through a client, so inner errors lose their gRPC code but keep their text.
fn through_recipe(e: RequestError) -> RequestError {
    match e {
        RequestError::ElectionNotLeader
        | RequestError::ElectionNoLeader
        | RequestError::LeaderKeyMissing
        | RequestError::WaiterKeyDeleted(_)
        | RequestError::ThroughRecipe(_) => e,
        other => RequestError::ThroughRecipe(Box::new(other)),
    }
}
