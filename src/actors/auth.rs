//! `AuthActor`: who is asking, and may they. Runs on an arbiter of its own.
//!
//! It owns the simple tokens (token → user, each with a TTL that every use
//! renews, as etcd's simple token provider) and mirrors the applied auth state
//! (`kv::auth::AuthState`) from the store's `AuthChanged` messages, so the API
//! edge can resolve a token and check a read or an admin call without touching
//! the store. Tokens are assigned when an `Authenticate` entry applies, on every
//! member alike, so a token from one member is honoured by all of them.
//!
//! Password hashing and checking (bcrypt, slow on purpose) run on the blocking
//! pool, never on this actor's event loop; a failed login is logged with the
//! user name only. The auth state itself changes only through the log: this
//! actor never writes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::error::RequestError;
use crate::kv::auth::{Access, AuthInfo, AuthState, TokenChange};
use crate::proto::etcdserverpb as pb;

/// etcd's default bcrypt cost (`--bcrypt-cost`).
pub const BCRYPT_COST: u32 = 10;
/// How long a simple token lives unused (etcd's `--auth-token-ttl` default).
pub const SIMPLE_TOKEN_TTL: Duration = Duration::from_secs(300);
/// How often expired tokens are dropped.
const TOKEN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// From the store, after an apply batch that applied auth entries: the new state
/// (when it changed) and what happened to tokens, in apply order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AuthChanged {
    pub state: Option<Arc<AuthState>>,
    pub tokens: Vec<TokenChange>,
}

/// What a request needs beyond a valid token, checked at the API edge (writes
/// are checked again when they apply, against the state at that index).
#[derive(Debug, Clone)]
pub enum Need {
    /// Nothing here (a write: checked when it applies).
    Nothing,
    Read { key: Vec<u8>, range_end: Vec<u8> },
    /// A read-only txn: every key it reads.
    ReadTxn(pb::TxnRequest),
    /// The root role (membership, maintenance).
    Admin,
}

/// Resolves a request's token (if any) and checks `need`: answers who asked
/// (empty without a token), or why they may not.
#[derive(Message)]
#[rtype(result = "Result<AuthInfo, RequestError>")]
pub struct Authorize {
    pub token: Option<String>,
    pub need: Need,
}

/// Checks a user's password (bcrypt, off the event loop): answers the auth
/// revision it was checked at.
#[derive(Message)]
#[rtype(result = "Result<u64, RequestError>")]
pub struct CheckPassword {
    pub name: String,
    pub password: String,
}

/// (enabled, auth revision), etcd 3.5's AuthStatus.
#[derive(Message)]
#[rtype(result = "(bool, u64)")]
pub struct GetAuthStatus;

struct Token {
    username: String,
    expires: Instant,
}

pub struct AuthActor {
    state: Arc<AuthState>,
    tokens: HashMap<String, Token>,
    token_ttl: Duration,
    /// Published for the API edge's fast path: with auth off and no token, a
    /// request need not ask this actor at all.
    enabled: Arc<AtomicBool>,
}

impl AuthActor {
    pub fn new(token_ttl: Duration, enabled: Arc<AtomicBool>) -> Self {
        AuthActor { state: Arc::new(AuthState::default()), tokens: HashMap::new(), token_ttl, enabled }
    }

    fn resolve(&mut self, token: &str) -> Result<AuthInfo, RequestError> {
        let now = Instant::now();
        match self.tokens.get_mut(token) {
            Some(t) if t.expires > now => {
                t.expires = now + self.token_ttl;
                Ok(AuthInfo { username: t.username.clone(), revision: self.state.revision() })
            }
            _ => {
                tracing::warn!("invalid auth token");
                Err(RequestError::InvalidAuthToken)
            }
        }
    }

    fn authorize(&mut self, msg: Authorize) -> Result<AuthInfo, RequestError> {
        let who = match &msg.token {
            Some(token) => self.resolve(token)?,
            None => AuthInfo::default(),
        };
        match &msg.need {
            Need::Nothing => {}
            Need::Read { key, range_end } => self.state.check_access(&who, key, range_end, Access::Read)?,
            Need::ReadTxn(t) => self.state.check_txn(&who, t)?,
            Need::Admin => self.state.check_admin(&who)?,
        }
        Ok(who)
    }
}

impl Actor for AuthActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TOKEN_SWEEP_INTERVAL, |act, _| {
            let now = Instant::now();
            act.tokens.retain(|_, t| t.expires > now);
        });
    }
}

impl Handler<AuthChanged> for AuthActor {
    type Result = ();
    fn handle(&mut self, msg: AuthChanged, _: &mut Context<Self>) {
        if let Some(state) = msg.state {
            self.enabled.store(state.enabled(), Ordering::Release);
            self.state = state;
        }
        for change in msg.tokens {
            match change {
                TokenChange::Assigned { token, username } => {
                    self.tokens.insert(token, Token { username, expires: Instant::now() + self.token_ttl });
                }
                TokenChange::UserChanged(name) => self.tokens.retain(|_, t| t.username != name),
                TokenChange::DropAll => self.tokens.clear(),
            }
        }
    }
}

impl Handler<Authorize> for AuthActor {
    type Result = Result<AuthInfo, RequestError>;
    fn handle(&mut self, msg: Authorize, _: &mut Context<Self>) -> Self::Result {
        self.authorize(msg)
    }
}

impl Handler<GetAuthStatus> for AuthActor {
    type Result = MessageResult<GetAuthStatus>;
    fn handle(&mut self, _: GetAuthStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.state.enabled(), self.state.revision()))
    }
}

impl Handler<CheckPassword> for AuthActor {
    type Result = ResponseFuture<Result<u64, RequestError>>;
    fn handle(&mut self, msg: CheckPassword, _: &mut Context<Self>) -> Self::Result {
        let enabled = self.state.enabled();
        let revision = self.state.revision();
        // A user without a password (or no such user) still costs one bcrypt
        // check, so a failed login takes as long whatever the reason.
        let hash = self
            .state
            .user(&msg.name)
            .filter(|u| !u.options.as_ref().is_some_and(|o| o.no_password))
            .map(|u| String::from_utf8_lossy(&u.password).into_owned());
        Box::pin(async move {
            if !enabled {
                return Err(RequestError::AuthNotEnabled);
            }
            let name = msg.name;
            let password = msg.password;
            let matched = actix_rt::task::spawn_blocking(move || match hash {
                Some(hash) => bcrypt::verify(password, &hash).unwrap_or(false),
                None => {
                    let _ = bcrypt::verify(password, dummy_hash());
                    false
                }
            })
            .await
            .map_err(|e| RequestError::Internal(format!("password check failed: {e}")))?;
            if matched {
                Ok(revision)
            } else {
                tracing::warn!(user = %name, "invalid authentication was requested");
                Err(RequestError::AuthFailed)
            }
        })
    }
}

/// A bcrypt hash of cost `BCRYPT_COST` that no password is checked against in
/// earnest (it only evens out the time a failed login takes).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("stead: no such user", BCRYPT_COST).unwrap_or_default())
}

/// The bcrypt hash a new password is stored as, computed off the event loops.
pub async fn hash_password(password: String) -> Result<String, RequestError> {
    actix_rt::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST))
        .await
        .map_err(|e| RequestError::Internal(format!("password hashing failed: {e}")))?
        .map_err(|e| RequestError::Internal(format!("password hashing failed: {e}")))
}
