//! The one place that knows etcd's gRPC status codes and error texts. Clients map
//! errors back by their text, so each text here is etcd 3.4's, character for
//! character.

use crate::error::RequestError;

/// gRPC status codes (the subset etcd uses), as numbers on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    OutOfRange = 11,
    Unimplemented = 12,
    Unavailable = 14,
}

impl Code {
    /// The HTTP status etcd's gateway answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => 400,
            Code::NotFound => 404,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::DeadlineExceeded => 504,
            Code::Unknown => 500,
        }
    }
}

impl Code {
    /// The same code as tonic names it (the numbers are gRPC's).
    pub fn grpc(self) -> tonic::Code {
        tonic::Code::from_i32(self as i32)
    }
}

/// etcd's error for a request error as a gRPC status: etcd's code and text, as
/// etcd's gRPC server answers (clients map the error back by its text).
pub fn grpc_status(err: &RequestError) -> tonic::Status {
    let (code, text) = etcd_status(err);
    tonic::Status::new(code.grpc(), text)
}

/// etcd's (code, text) for a request error.
pub fn etcd_status(err: &RequestError) -> (Code, String) {
    use RequestError::*;
    let (code, text): (Code, &str) = match err {
        EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
        KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
        ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
        LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
        TooManyOps => (Code::InvalidArgument, "etcdserver: too many operations in txn request"),
        DuplicateKey => (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
        RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
        Compacted => (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
        FutureRevision => (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
        LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
        LeaseExists => (Code::FailedPrecondition, "etcdserver: lease already exists"),
        LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
        NoLeader => (Code::Unavailable, "etcdserver: no leader"),
        Timeout => (Code::Unavailable, "etcdserver: request timed out"),
        Stopped => (Code::Unavailable, "etcdserver: server stopped"),
        TooManyRequests => (Code::ResourceExhausted, "etcdserver: too many requests"),
        MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
        MemberExists => (Code::FailedPrecondition, "etcdserver: member ID already exist"),
        PeerUrlExists => (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
        MemberNotLearner => (Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
        LearnerNotReady => {
            (Code::FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
        }
        MemberBadUrls => (Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
        NotEnoughStartedMembers => {
            (Code::FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
        }
        Unhealthy => (Code::Unavailable, "etcdserver: unhealthy cluster"),
        LeaderChanged => (Code::Unavailable, "etcdserver: leader changed"),
        NotLeader => (Code::FailedPrecondition, "etcdserver: not leader"),
        BadLeaderTransferee => (Code::FailedPrecondition, "etcdserver: bad leader transferee"),
        ElectionNotLeader => (Code::Unknown, "election: not leader"),
        ElectionNoLeader => (Code::Unknown, "election: no leader"),
        LeaderKeyMissing => (Code::Unknown, "\"leader\" field must be provided"),
        WaiterKeyDeleted(key) => {
            return (Code::Unknown, format!("stead: key {key} was deleted while waiting for its turn (lease expired or revoked)"))
        }
        // etcd's lock and election servers call etcd through its own client,
        // which turns every error into a plain one: gRPC answers it as Unknown.
        ThroughRecipe(inner) => return (Code::Unknown, etcd_status(inner).1),
        Malformed(msg) => return (Code::InvalidArgument, msg.clone()),
        NotImplemented(what) => return (Code::Unimplemented, format!("stead: {what} is not implemented yet")),
        Internal(msg) => return (Code::Unknown, msg.clone()),
    };
    (code, text.to_string())
}
