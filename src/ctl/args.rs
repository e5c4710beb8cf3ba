//! steadctl's command line, declared with clap but parsed the way etcdctl's
//! cobra/pflag does: Go-style bool flags (`--prefix`, `--prefix=false`), int64
//! flags with Go base prefixes, Go durations, comma-separated `--endpoints`,
//! `ETCDCTL_*` environment variables for global flags, command-prefix matching,
//! and clap errors rewritten into pflag's texts.
//!
//! Owns only parsing: no I/O, no request building.

use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand};

use super::gofmt;

fn go_bool(s: &str) -> Result<bool, String> {
    gofmt::parse_bool(s)
}
fn go_int64(s: &str) -> Result<i64, String> {
    gofmt::parse_int(s, 0)
}
fn go_duration(s: &str) -> Result<Duration, String> {
    gofmt::parse_duration(s)
}

#[derive(Parser, Debug)]
#[command(
    name = "steadctl",
    about = "A simple command line client for stead (etcdctl v3 compatible).",
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// etcdctl's persistent (global) flags. Those steadctl cannot honour are still
/// declared so that using them fails with a clear error instead of "unknown flag".
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// gRPC endpoints (here: JSON gateway endpoints, host:port or http://host:port)
    #[arg(long, global = true, value_delimiter = ',', default_value = "127.0.0.1:2379", env = "ETCDCTL_ENDPOINTS")]
    pub endpoints: Vec<String>,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(short = 'w', long = "write-out", global = true, default_value = "simple", env = "ETCDCTL_WRITE_OUT")]
    pub write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, env = "ETCDCTL_HEX")]
    pub hex: bool,
    /// dial timeout for client connections
    #[arg(long, global = true, default_value = "2s", value_parser = go_duration, env = "ETCDCTL_DIAL_TIMEOUT")]
    pub dial_timeout: Duration,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, default_value = "5s", value_parser = go_duration, env = "ETCDCTL_COMMAND_TIMEOUT")]
    pub command_timeout: Duration,
    /// keepalive time for client connections (accepted; HTTP requests are short-lived)
    #[arg(long, global = true, default_value = "2s", value_parser = go_duration, env = "ETCDCTL_KEEPALIVE_TIME")]
    pub keepalive_time: Duration,
    /// keepalive timeout for client connections (accepted; HTTP requests are short-lived)
    #[arg(long, global = true, default_value = "6s", value_parser = go_duration, env = "ETCDCTL_KEEPALIVE_TIMEOUT")]
    pub keepalive_timeout: Duration,
    /// disable transport security for client connections (steadctl: only true is supported)
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = go_bool, env = "ETCDCTL_INSECURE_TRANSPORT")]
    pub insecure_transport: bool,
    /// accept insecure SRV records describing cluster endpoints (no effect without -d)
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = go_bool, env = "ETCDCTL_INSECURE_DISCOVERY")]
    pub insecure_discovery: bool,
    /// skip server certificate verification (not supported: no TLS)
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY")]
    pub insecure_skip_tls_verify: bool,
    /// enable client-side debug logging (here: clientv3's retry warnings on stderr)
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, env = "ETCDCTL_DEBUG")]
    pub debug: bool,
    /// identify secure client using this TLS certificate file (not supported)
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    pub cert: Option<String>,
    /// identify secure client using this TLS key file (not supported)
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    pub key: Option<String>,
    /// verify certificates of TLS-enabled secure servers using this CA bundle (not supported)
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    pub cacert: Option<String>,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, env = "ETCDCTL_USER")]
    pub user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD")]
    pub password: Option<String>,
    /// domain name to query for SRV records describing cluster endpoints (not supported)
    #[arg(short = 'd', long, global = true, env = "ETCDCTL_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,
    /// service name to query when using DNS discovery (not supported)
    #[arg(long, global = true, env = "ETCDCTL_DISCOVERY_SRV_NAME")]
    pub discovery_srv_name: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Gets the key or a range of keys
    Get(GetArgs),
    /// Puts the given key into the store
    Put(PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(TxnArgs),
    /// Compacts the event history in etcd
    Compaction(CompactionArgs),
    /// Endpoint related commands
    Endpoint(EndpointArgs),
    /// Transfers leadership to another etcd cluster member.
    #[command(name = "move-leader")]
    MoveLeader(NoArgs),
    /// Watches events stream on keys or prefixes
    Watch(WatchArgs),
    /// Lease related commands
    Lease(LeaseArgs),
    /// Membership related commands
    Member(MemberArgs),
    /// Enable or disable authentication
    Auth(AuthArgs),
    /// User related commands
    User(UserArgs),
    /// Role related commands
    Role(RoleArgs),
    /// Acquires a named lock
    Lock(LockArgs),
    /// Observes and participates in leader election
    Elect(ElectArgs),
    /// Prints the version of steadctl
    Version(VersionArgs),
    /// Alarm related commands
    Alarm(AlarmArgs),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(DefragArgs),
    /// Manages etcd node snapshots
    Snapshot(SnapshotArgs),
    /// etcdctl commands steadctl does not implement yet.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug, Clone, Default)]
pub struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long = "sort-by", default_value = "")]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value = "0", value_parser = go_int64)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value = "0", value_parser = go_int64)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub keys_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub print_value_only: bool,
    /// Get only the count (etcdctl 3.5; needs -w fields)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub count_only: bool,
    /// Minimum modify revision (etcdctl 3.5)
    #[arg(long, default_value = "0", value_parser = go_int64)]
    pub min_mod_rev: i64,
    /// Maximum modify revision (etcdctl 3.5)
    #[arg(long, default_value = "0", value_parser = go_int64)]
    pub max_mod_rev: i64,
    /// Minimum create revision (etcdctl 3.5)
    #[arg(long, default_value = "0", value_parser = go_int64)]
    pub min_create_rev: i64,
    /// Maximum create revision (etcdctl 3.5)
    #[arg(long, default_value = "0", value_parser = go_int64)]
    pub max_create_rev: i64,
    /// <key> [range_end]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub ignore_lease: bool,
    /// <key> <value>
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub from_key: bool,
    /// <key> [range_end]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short = 'i', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub interactive: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CompactionArgs {
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub physical: bool,
    /// <revision>
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct WatchArgs {
    /// Interactive mode (not supported yet)
    #[arg(short = 'i', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value = "0", value_parser = go_int64)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prev_kv: bool,
    /// get periodic watch progress notification from server (etcdctl 3.5)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub progress_notify: bool,
    /// [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct AlarmArgs {
    #[command(subcommand)]
    pub command: Option<AlarmCommand>,
}

/// etcdctl's alarm subcommands, in its registration order.
#[derive(Subcommand, Debug, Clone)]
pub enum AlarmCommand {
    /// Disarms all alarms
    Disarm(NoArgs),
    /// Lists all alarms
    List(NoArgs),
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug, Clone)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub cluster: bool,
    /// Data directory of etcd (offline defragmentation; not supported by steadctl)
    #[arg(long = "data-dir", default_value = "")]
    pub data_dir: String,
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value = "10", value_parser = go_int64)]
    pub ttl: i64,
    /// <lockname> [exec-command arg1 arg2 ...]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: Option<SnapshotCommand>,
}

/// etcdctl's snapshot subcommands, in its registration order.
#[derive(Subcommand, Debug, Clone)]
pub enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file
    Save(NoArgs),
    /// Restores an etcd member snapshot to an etcd directory
    Restore(SnapshotRestoreArgs),
    /// Gets backend snapshot status of a given file
    Status(NoArgs),
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug, Clone)]
pub struct SnapshotRestoreArgs {
    /// Path to the data directory
    #[arg(long = "data-dir", default_value = "")]
    pub data_dir: String,
    /// Path to the dedicated wal directory (not supported by steadctl)
    #[arg(long = "wal-dir", default_value = "")]
    pub wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long = "initial-cluster", default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long = "initial-advertise-peer-urls", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long = "skip-hash-check", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub skip_hash_check: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short = 'l', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub listen: bool,
    /// <election-name> [proposal]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub cluster: bool,
    #[command(subcommand)]
    pub command: Option<EndpointCommand>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health(NoArgs),
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status(NoArgs),
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: Option<AuthCommand>,
}

/// etcdctl's auth subcommands (and etcd 3.5's `status`).
#[derive(Subcommand, Debug, Clone)]
pub enum AuthCommand {
    /// Enables authentication
    Enable(NoArgs),
    /// Disables authentication
    Disable(NoArgs),
    /// Returns authentication status
    Status(NoArgs),
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug, Clone)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: Option<UserCommand>,
}

/// etcdctl's user subcommands, in its registration order.
#[derive(Subcommand, Debug, Clone)]
pub enum UserCommand {
    /// Adds a new user
    Add(UserAddArgs),
    /// Deletes a user
    Delete(NoArgs),
    /// Gets detailed information of a user
    Get(UserGetArgs),
    /// Lists all users
    List(NoArgs),
    /// Changes password of user
    Passwd(UserPasswdArgs),
    /// Grants a role to a user
    #[command(name = "grant-role")]
    GrantRole(NoArgs),
    /// Revokes a role from a user
    #[command(name = "revoke-role")]
    RevokeRole(NoArgs),
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug, Clone)]
pub struct UserAddArgs {
    /// Read password from stdin instead of interactive terminal
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = go_bool)]
    pub interactive: bool,
    /// Supply password from the command line flag
    #[arg(long = "new-user-password", default_value = "")]
    pub new_user_password: String,
    /// Create a user without password (CN based auth only)
    #[arg(long = "no-password", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub no_password: bool,
    /// <user name or user:password>
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct UserGetArgs {
    /// Show permissions of roles granted to the user
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub detail: bool,
    /// <user name>
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct UserPasswdArgs {
    /// If true, read password from stdin instead of interactive terminal
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = go_bool)]
    pub interactive: bool,
    /// <user name>
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RoleArgs {
    #[command(subcommand)]
    pub command: Option<RoleCommand>,
}

/// etcdctl's role subcommands, in its registration order.
#[derive(Subcommand, Debug, Clone)]
pub enum RoleCommand {
    /// Adds a new role
    Add(NoArgs),
    /// Deletes a role
    Delete(NoArgs),
    /// Gets detailed information of a role
    Get(NoArgs),
    /// Lists all roles
    List(NoArgs),
    /// Grants a key to a role
    #[command(name = "grant-permission")]
    GrantPermission(RolePermArgs),
    /// Revokes a key from a role
    #[command(name = "revoke-permission")]
    RevokePermission(RolePermArgs),
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug, Clone)]
pub struct RolePermArgs {
    /// grant (or revoke) a prefix permission
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prefix: bool,
    /// grant (or revoke) a permission of keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub from_key: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct LeaseArgs {
    #[command(subcommand)]
    pub command: Option<LeaseCommand>,
}

/// etcdctl's lease subcommands, in its registration order.
#[derive(Subcommand, Debug, Clone)]
pub enum LeaseCommand {
    /// Creates leases
    Grant(NoArgs),
    /// Revokes leases
    Revoke(NoArgs),
    /// Get lease information
    Timetolive(LeaseTimeToLiveArgs),
    /// List all active leases
    List(NoArgs),
    /// Keeps leases alive (renew)
    #[command(name = "keep-alive")]
    KeepAlive(LeaseKeepAliveArgs),
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug, Clone)]
pub struct LeaseTimeToLiveArgs {
    /// Get keys attached to this lease
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub keys: bool,
    /// <leaseID>
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct LeaseKeepAliveArgs {
    /// Resets the keep-alive time to its original value and exits immediately
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub once: bool,
    /// <leaseID>
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: Option<MemberCommand>,
}

/// etcdctl's member subcommands, in its registration order.
#[derive(Subcommand, Debug, Clone)]
pub enum MemberCommand {
    /// Adds a member into the cluster
    Add(MemberAddArgs),
    /// Removes a member from the cluster
    Remove(NoArgs),
    /// Updates a member in the cluster
    Update(MemberUpdateArgs),
    /// Lists all members in the cluster
    List(NoArgs),
    /// Promotes a non-voting member in the cluster
    Promote(NoArgs),
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug, Clone)]
pub struct MemberAddArgs {
    /// comma separated peer URLs for the new member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    /// indicates if the new member is raft learner
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub learner: bool,
    /// <memberName>
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct MemberUpdateArgs {
    /// comma separated peer URLs for the updated member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    /// <memberID>
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct NoArgs {
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct VersionArgs {
    pub args: Vec<String>,
}

/// A txn request line (`put …`, `get …`, `del …`), parsed by the same flag sets.
#[derive(Parser, Debug)]
#[command(no_binary_name = true, infer_subcommands = true, disable_help_subcommand = true)]
pub struct TxnOpLine {
    #[command(subcommand)]
    pub op: TxnOp,
}

#[derive(Subcommand, Debug)]
pub enum TxnOp {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

/// pflag's name for a flag in errors: `--limit`, or `-i, --interactive`.
fn pflag_name(clap_arg: &str) -> String {
    // clap renders e.g. "--limit <LIMIT>" or "-w, --write-out <WRITE_OUT>"
    let long = clap_arg
        .split([' ', ',', '[', '=', '<'])
        .find(|t| t.starts_with("--"))
        .map(str::to_string);
    match long.as_deref() {
        Some("--interactive") => "-i, --interactive".to_string(),
        Some("--write-out") => "-w, --write-out".to_string(),
        Some("--discovery-srv") => "-d, --discovery-srv".to_string(),
        Some(l) => l.to_string(),
        None => clap_arg.split(' ').next().unwrap_or(clap_arg).to_string(),
    }
}

fn ctx_string(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    }
}

/// What a clap parse failure means in etcdctl's terms.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseFailure {
    /// `-h/--help`: print this text on stdout and exit 0.
    Help(String),
    /// A flag error: pflag's message (cobra prints the usage on stdout).
    Flag { message: String, usage: String },
    /// Anything else clap rejects.
    Other(String),
}

/// Rewrite a clap error into pflag/cobra's wording.
pub fn translate_error(err: &clap::Error, usage: String) -> ParseFailure {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ParseFailure::Help(err.render().to_string())
        }
        ErrorKind::UnknownArgument => {
            let arg = ctx_string(err, ContextKind::InvalidArg).unwrap_or_default();
            let message = if let Some(long) = arg.strip_prefix("--") {
                format!("unknown flag: --{}", long.split('=').next().unwrap_or(long))
            } else if let Some(short) = arg.strip_prefix('-') {
                let c = short.chars().next().unwrap_or('-');
                format!("unknown shorthand flag: '{c}' in {arg}")
            } else {
                format!("unknown flag: {arg}")
            };
            ParseFailure::Flag { message, usage }
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = ctx_string(err, ContextKind::InvalidArg).unwrap_or_default();
            let value = ctx_string(err, ContextKind::InvalidValue).unwrap_or_default();
            let name = pflag_name(&arg);
            let message = if err.kind() == ErrorKind::InvalidValue && value.is_empty() {
                format!("flag needs an argument: {name}")
            } else {
                let cause = std::error::Error::source(err).map(|s| s.to_string()).unwrap_or_default();
                format!("invalid argument {} for {} flag: {cause}", gofmt::quote(value.as_bytes()), gofmt::quote(name.as_bytes()))
            };
            ParseFailure::Flag { message, usage }
        }
        ErrorKind::NoEquals => {
            let arg = ctx_string(err, ContextKind::InvalidArg).unwrap_or_default();
            ParseFailure::Flag { message: format!("bad flag syntax: {}", pflag_name(&arg)), usage }
        }
        ErrorKind::InvalidSubcommand => {
            let sub = ctx_string(err, ContextKind::InvalidSubcommand).unwrap_or_default();
            ParseFailure::Other(format!(
                "unknown command {} for \"steadctl\"\nRun 'steadctl --help' for usage.",
                gofmt::quote(sub.as_bytes())
            ))
        }
        _ => ParseFailure::Other(err.render().to_string().trim_end().trim_start_matches("error: ").to_string()),
    }
}

/// etcdctl's `argify`: split a txn line into words, honouring `"double"` quotes
/// (Go escapes). Single quotes reproduce etcdctl 3.4's bug: it slices the token
/// with the number of words (`args[i][1 : len(args)-1]`), so `put 'a' v` works
/// but `put 'x y' v` stores key `x`. An out-of-range slice (a Go panic there)
/// is an error here.
pub fn argify(s: &str) -> Result<Vec<String>, String> {
    // The Go regexp: "(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?
    enum Tok {
        Word(String),
        Double(String),
        Single(String),
    }
    let b: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' {
            let mut j = i + 1;
            let mut closed = false;
            while j < b.len() {
                if b[j] == '\\' && j + 1 < b.len() {
                    j += 2;
                    continue;
                }
                if b[j] == '"' {
                    closed = true;
                    break;
                }
                j += 1;
            }
            if closed {
                toks.push(Tok::Double(b[i..=j].iter().collect()));
                i = j + 1;
            } else {
                // An unterminated quote matches nothing in Go's regexp: skip it.
                i += 1;
            }
            continue;
        }
        if c == '\'' {
            if let Some(off) = b[i + 1..].iter().position(|&x| x == '\'') {
                let j = i + 1 + off;
                toks.push(Tok::Single(b[i..=j].iter().collect()));
                i = j + 1;
            } else {
                i += 1;
            }
            continue;
        }
        // [^'"\s]\S*[^'"\s]? — a word runs to the next whitespace.
        let mut j = i + 1;
        while j < b.len() && !b[j].is_whitespace() {
            j += 1;
        }
        toks.push(Tok::Word(b[i..j].iter().collect()));
        i = j;
    }
    let n = toks.len();
    toks.into_iter()
        .map(|t| match t {
            Tok::Word(w) => Ok(w),
            Tok::Double(lit) => unquote_go(&lit),
            Tok::Single(lit) => {
                let bytes = lit.as_bytes();
                let hi = n.wrapping_sub(1);
                if n < 2 || hi > bytes.len() {
                    return Err(format!(
                        "runtime error: slice bounds out of range [1:{}] (etcdctl's single-quote parsing)",
                        n as i64 - 1
                    ));
                }
                Ok(String::from_utf8_lossy(&bytes[1..hi]).into_owned())
            }
        })
        .collect()
}

/// `strconv.Unquote` for a double-quoted Go literal (what `Sscanf("%q")` does).
pub fn unquote_go(lit: &str) -> Result<String, String> {
    let inner = lit
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(|| "invalid syntax".to_string())?;
    let mut out: Vec<u8> = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\n' {
            return Err("invalid syntax".into());
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next().ok_or("invalid syntax")?;
        let mut hex = |n: usize| -> Result<u32, String> {
            let s: String = (0..n).filter_map(|_| chars.next()).collect();
            if s.len() != n {
                return Err("invalid syntax".into());
            }
            u32::from_str_radix(&s, 16).map_err(|_| "invalid syntax".to_string())
        };
        match e {
            'a' => out.push(7),
            'b' => out.push(8),
            'f' => out.push(12),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(11),
            '\\' => out.push(b'\\'),
            '"' => out.push(b'"'),
            '\'' => return Err("invalid syntax".into()),
            'x' => out.push(hex(2)? as u8),
            'u' | 'U' => {
                let v = hex(if e == 'u' { 4 } else { 8 })?;
                let ch = char::from_u32(v).ok_or("invalid syntax")?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    let d = chars.next().and_then(|c| c.to_digit(8)).ok_or("invalid syntax")?;
                    v = v * 8 + d;
                }
                if v > 255 {
                    return Err("invalid syntax".into());
                }
                out.push(v as u8);
            }
            _ => return Err("invalid syntax".into()),
        }
    }
    // Keys may be arbitrary bytes; keep them (lossless for valid UTF-8).
    String::from_utf8(out).map_err(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("steadctl").chain(args.iter().copied()))
    }

    #[test]
    fn go_style_bools_and_interspersed_flags() {
        let cli = parse(&["get", "foo", "--prefix", "--limit=0x10", "-w", "json"]).unwrap();
        assert_eq!(cli.global.write_out, "json");
        match cli.command {
            Some(Command::Get(g)) => {
                assert!(g.prefix);
                assert_eq!(g.limit, 16);
                assert_eq!(g.args, vec!["foo"]);
            }
            other => panic!("{other:?}"),
        }
        let cli = parse(&["get", "foo", "--prefix=false"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Get(ref g)) if !g.prefix));
        // `--prefix true` is a flag and a positional, as in pflag.
        let cli = parse(&["get", "--prefix", "true"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Get(ref g)) if g.prefix && g.args == ["true"]));
    }

    #[test]
    fn endpoints_are_comma_separated() {
        let cli = parse(&["--endpoints=a:1,http://b:2", "get", "k"]).unwrap();
        assert_eq!(cli.global.endpoints, vec!["a:1", "http://b:2"]);
        assert!(matches!(cli.command, Some(Command::Get(_))));
    }

    #[test]
    fn flag_errors_use_pflag_wording() {
        // Texts captured from etcdctl 3.4.23.
        let cases: &[(&[&str], &str)] = &[
            (&["put", "a", "b", "--badflag"], "unknown flag: --badflag"),
            (&["get", "foo", "--limit=abc"], r#"invalid argument "abc" for "--limit" flag: strconv.ParseInt: parsing "abc": invalid syntax"#),
            (&["get", "foo", "--prefix=yes"], r#"invalid argument "yes" for "--prefix" flag: strconv.ParseBool: parsing "yes": invalid syntax"#),
            (&["get", "foo", "--command-timeout=abc"], r#"invalid argument "abc" for "--command-timeout" flag: time: invalid duration "abc""#),
            (&["put", "k", "-v"], "unknown shorthand flag: 'v' in -v"),
        ];
        for (args, want) in cases {
            let err = parse(args).expect_err("must fail");
            match translate_error(&err, String::new()) {
                ParseFailure::Flag { message, .. } => assert_eq!(&message, want, "{args:?}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn argify_matches_etcdctl() {
        let cases: &[(&str, &[&str])] = &[
            ("put a b", &["put", "a", "b"]),
            (r#"put "a b" "c\"d""#, &["put", "a b", "c\"d"]),
            // etcdctl 3.4's single-quote slicing bug, reproduced on purpose.
            ("put 'x y' z", &["put", "x", "z"]),
            ("put 'xyzw' z", &["put", "x", "z"]),
            ("get 'x y'", &["get", ""]),
            ("  get   a  --prefix ", &["get", "a", "--prefix"]),
            (r#"put k "\x00\n""#, &["put", "k", "\u{0}\n"]),
        ];
        for (line, want) in cases {
            assert_eq!(argify(line).unwrap(), *want, "{line}");
        }
    }
}
