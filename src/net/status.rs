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
    PermissionDenied = 7,
    FailedPrecondition = 9,
    OutOfRange = 11,
    Unimplemented = 12,
    Unavailable = 14,
    Unauthenticated = 16,
    DataLoss = 15,
}

impl Code {
    /// The HTTP status etcd's gateway answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => 400,
            Code::NotFound => 404,
            Code::PermissionDenied => 403,
            Code::Unauthenticated => 401,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::DeadlineExceeded => 504,
            Code::Unknown | Code::DataLoss => 500,
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
        RootUserNotExist => (Code::FailedPrecondition, "etcdserver: root user does not exist"),
        RootRoleNotExist => (Code::FailedPrecondition, "etcdserver: root user does not have root role"),
        UserAlreadyExist => (Code::FailedPrecondition, "etcdserver: user name already exists"),
        UserEmpty => (Code::InvalidArgument, "etcdserver: user name is empty"),
        UserNotFound => (Code::FailedPrecondition, "etcdserver: user name not found"),
        RoleAlreadyExist => (Code::FailedPrecondition, "etcdserver: role name already exists"),
        RoleNotFound => (Code::FailedPrecondition, "etcdserver: role name not found"),
        RoleEmpty => (Code::InvalidArgument, "etcdserver: role name is empty"),
        AuthFailed => (Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
        PermissionDenied => (Code::PermissionDenied, "etcdserver: permission denied"),
        RoleNotGranted => (Code::FailedPrecondition, "etcdserver: role is not granted to the user"),
        PermissionNotGranted => (Code::FailedPrecondition, "etcdserver: permission is not granted to the role"),
        AuthNotEnabled => (Code::FailedPrecondition, "etcdserver: authentication is not enabled"),
        InvalidAuthToken => (Code::Unauthenticated, "etcdserver: invalid auth token"),
        InvalidAuthMgmt => (Code::InvalidArgument, "etcdserver: invalid auth management"),
        AuthOldRevision => (Code::InvalidArgument, "etcdserver: revision of auth store is old"),
        Unmapped(inner) => return (Code::Unknown, auth_package_text(inner)),
        NoSpace => (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        Corrupt => (Code::DataLoss, "etcdserver: corrupt cluster"),
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

/// A gRPC status as grpc-go prints it (`rpc error: code = … desc = …`): etcd
/// puts that text in a watch's cancel reason.
pub fn go_status_text(err: &RequestError) -> String {
    let (code, text) = etcd_status(err);
    let name = match code {
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Unavailable => "Unavailable",
        Code::Unauthenticated => "Unauthenticated",
        Code::DataLoss => "DataLoss",
    };
    format!("rpc error: code = {name} desc = {text}")
}

/// The text etcd's auth package itself gives an error (`auth: …`), which its
/// maintenance service returns without mapping it to an `etcdserver:` status.
fn auth_package_text(err: &RequestError) -> String {
    match err {
        RequestError::UserEmpty => "auth: user name is empty".into(),
        RequestError::UserNotFound => "auth: user not found".into(),
        RequestError::PermissionDenied => "auth: permission denied".into(),
        RequestError::InvalidAuthToken => "auth: invalid auth token".into(),
        RequestError::AuthOldRevision => "auth: revision in header is old".into(),
        other => etcd_status(other).1,
    }
}

/// An alarm as etcd prints it (Go's protobuf text form of `AlarmMember`, as in
/// Status `errors` and `etcdctl alarm list`): zero fields left out, each field
/// followed by a space, e.g. `memberID:10 alarm:NOSPACE `.
pub fn alarm_text(a: &crate::proto::etcdserverpb::AlarmMember) -> String {
    let mut text = String::new();
    if a.member_id != 0 {
        text.push_str(&format!("memberID:{} ", a.member_id));
    }
    if a.alarm != 0 {
        text.push_str(&format!("alarm:{} ", crate::kv::alarms::alarm_name(a.alarm)));
    }
    text
}

/// grpc-go's answer to a request message past the server's receive limit (what
/// etcd's clients see): `found` bytes against `limit`.
pub fn oversize_request(found: u64, limit: u64) -> (Code, String) {
    (Code::ResourceExhausted, format!("grpc: received message larger than max ({found} vs. {limit})"))
}
