//! The error a client request can end in, once it has left the API edge: raised by
//! validation, the apply path and the actors. Variants say what happened; only
//! `net::status` knows etcd's gRPC codes and texts for them.

/// Why a client request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("key is not provided")]
    EmptyKey,
    #[error("key not found")]
    KeyNotFound,
    #[error("value is provided")]
    ValueProvided,
    #[error("lease is provided")]
    LeaseProvided,
    #[error("too many operations in txn request")]
    TooManyOps,
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    #[error("request is too large")]
    RequestTooLarge,
    #[error("required revision has been compacted")]
    Compacted,
    #[error("required revision is a future revision")]
    FutureRevision,
    #[error("requested lease not found")]
    LeaseNotFound,
    #[error("lease already exists")]
    LeaseExists,
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("no leader")]
    NoLeader,
    #[error("request timed out")]
    Timeout,
    #[error("server stopped")]
    Stopped,
    #[error("too many requests")]
    TooManyRequests,
    #[error("member not found")]
    MemberNotFound,
    #[error("member ID already exist")]
    MemberExists,
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    #[error("can only promote a learner member")]
    MemberNotLearner,
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("unhealthy cluster")]
    Unhealthy,
    #[error("leader changed")]
    LeaderChanged,
    #[error("not leader")]
    NotLeader,
    #[error("given member URLs are invalid")]
    MemberBadUrls,
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    #[error("root user does not exist")]
    RootUserNotExist,
    #[error("root user does not have root role")]
    RootRoleNotExist,
    #[error("user name already exists")]
    UserAlreadyExist,
    #[error("user name is empty")]
    UserEmpty,
    #[error("user name not found")]
    UserNotFound,
    #[error("role name already exists")]
    RoleAlreadyExist,
    #[error("role name not found")]
    RoleNotFound,
    #[error("role name is empty")]
    RoleEmpty,
    #[error("authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("permission denied")]
    PermissionDenied,
    #[error("role is not granted to the user")]
    RoleNotGranted,
    #[error("permission is not granted to the role")]
    PermissionNotGranted,
    #[error("authentication is not enabled")]
    AuthNotEnabled,
    #[error("invalid auth token")]
    InvalidAuthToken,
    #[error("invalid auth management")]
    InvalidAuthMgmt,
    #[error("revision of auth store is old")]
    AuthOldRevision,
    /// An auth error that etcd's maintenance service passes to the client
    /// unmapped (code Unknown, the auth package's own `auth: …` text).
    #[error("{0}")]
    Unmapped(Box<RequestError>),
    /// A NOSPACE alarm is active (or the backend is past its quota).
    #[error("database space exceeded")]
    NoSpace,
    /// A CORRUPT alarm is active.
    #[error("corrupt cluster")]
    Corrupt,
    /// etcd's election recipe: the caller's key is no longer the leader key.
    #[error("election: not leader")]
    ElectionNotLeader,
    /// etcd's election recipe: no key under the election's prefix.
    #[error("election: no leader")]
    ElectionNoLeader,
    /// Proclaim or Resign without the `leader` field.
    #[error("leader field must be provided")]
    LeaderKeyMissing,
    /// A lock or campaign waiter's own key went away (its lease expired or was
    /// revoked, or someone deleted it) while it waited for its turn.
    #[error("key {0} was deleted while waiting for its turn")]
    WaiterKeyDeleted(String),
    /// An error from a request the server made on a client's behalf (the lock
    /// and election recipes): etcd serves those through its own client, so its
    /// answer keeps the text but not the code.
    #[error("{0}")]
    ThroughRecipe(Box<RequestError>),
    /// The request body could not be decoded (gateway JSON, gRPC bytes).
    #[error("{0}")]
    Malformed(String),
    /// A feature stead does not implement yet: said plainly, never faked.
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    /// A fault inside the server (storage error and the like).
    #[error("{0}")]
    Internal(String),
}
