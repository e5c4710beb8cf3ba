//! `AuthActor`: who is asking, and may they. Runs on an arbiter of its own.
//!
//! It owns the tokens, as `--auth-token` says: simple tokens (token → user,
//! each with a TTL that every use renews, as etcd's simple token provider), or
//! JWTs signed with a configured key pair (the user and the auth revision in
//! signed claims, so any member with the key honours them, and any auth change
//! voids them as "revision of auth store is old"). It mirrors the applied auth state
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
use crate::metrics::ActorMetrics;
use crate::kv::auth::{Access, AuthInfo, AuthState, TokenChange};
use crate::proto::etcdserverpb as pb;

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

/// A new password's bcrypt hash (at `--bcrypt-cost`), computed off the event loop.
#[derive(Message)]
#[rtype(result = "Result<String, RequestError>")]
pub struct HashPassword(pub String);

/// A signed token for a user whose password was checked at `revision`, when
/// tokens are JWTs; `None` with simple tokens (those are assigned through the
/// log).
#[derive(Message)]
#[rtype(result = "Result<Option<String>, RequestError>")]
pub struct IssueToken {
    pub username: String,
    pub revision: u64,
}

/// (enabled, auth revision), etcd 3.5's AuthStatus.
#[derive(Message)]
#[rtype(result = "(bool, u64)")]
pub struct GetAuthStatus;

struct Token {
    username: String,
    expires: Instant,
}

/// How tokens are made and checked (`--auth-token`).
pub enum TokenProvider {
    /// etcd's simple tokens: random, assigned through the log on every member,
    /// kept in memory, void after `ttl` unused.
    Simple { ttl: Duration },
    Jwt(JwtKeys),
}

/// A JWT key pair (or HMAC secret) and how long a token it signs lives.
pub struct JwtKeys {
    algorithm: jsonwebtoken::Algorithm,
    /// Without a private key this member only verifies tokens.
    signing: Option<jsonwebtoken::EncodingKey>,
    verifying: jsonwebtoken::DecodingKey,
    ttl: Duration,
}

/// The claims etcd puts in its JWTs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

impl TokenProvider {
    /// Reads etcd's `--auth-token` value: `simple`, or
    /// `jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256[,ttl=5m]` (for an
    /// HMAC method, `priv-key` is the secret). Key files are read here, at start.
    pub fn from_flag(flag: &str, simple_ttl: Duration) -> Result<TokenProvider, String> {
        let mut parts = flag.split(',');
        match parts.next().unwrap_or_default() {
            "simple" => Ok(TokenProvider::Simple { ttl: simple_ttl }),
            "jwt" => {
                let mut opts = HashMap::new();
                for part in parts {
                    let (k, v) = part.split_once('=').ok_or_else(|| format!("bad jwt option {part:?} (expected key=value)"))?;
                    opts.insert(k.trim(), v.trim());
                }
                let method = opts.get("sign-method").ok_or("jwt needs sign-method")?;
                let algorithm: jsonwebtoken::Algorithm =
                    method.parse().map_err(|_| format!("unsupported jwt sign-method {method:?}"))?;
                let ttl = match opts.get("ttl") {
                    Some(t) => crate::compactor::parse_go_duration(t).map_err(|e| format!("bad jwt ttl {t:?}: {e}"))?,
                    None => Duration::from_secs(300),
                };
                let read = |key: &str| -> Result<Option<Vec<u8>>, String> {
                    opts.get(key).map(|path| std::fs::read(path).map_err(|e| format!("reading {key} {path}: {e}"))).transpose()
                };
                let (private, public) = (read("priv-key")?, read("pub-key")?);
                use jsonwebtoken::{Algorithm as A, DecodingKey, EncodingKey};
                let bad = |e: jsonwebtoken::errors::Error| format!("bad jwt key: {e}");
                let (signing, verifying) = match algorithm {
                    A::HS256 | A::HS384 | A::HS512 => {
                        let secret = private.ok_or("an HMAC sign-method needs priv-key (the secret)")?;
                        (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
                    }
                    A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512 => (
                        private.map(|k| EncodingKey::from_rsa_pem(&k)).transpose().map_err(bad)?,
                        DecodingKey::from_rsa_pem(&public.ok_or("jwt needs pub-key")?).map_err(bad)?,
                    ),
                    A::ES256 | A::ES384 => (
                        private.map(|k| EncodingKey::from_ec_pem(&k)).transpose().map_err(bad)?,
                        DecodingKey::from_ec_pem(&public.ok_or("jwt needs pub-key")?).map_err(bad)?,
                    ),
                    A::EdDSA => (
                        private.map(|k| EncodingKey::from_ed_pem(&k)).transpose().map_err(bad)?,
                        DecodingKey::from_ed_pem(&public.ok_or("jwt needs pub-key")?).map_err(bad)?,
                    ),
                };
                Ok(TokenProvider::Jwt(JwtKeys { algorithm, signing, verifying, ttl }))
            }
            other => Err(format!("unknown token type {other:?} (expected simple or jwt,...)")),
        }
    }
}

pub struct AuthActor {
    state: Arc<AuthState>,
    tokens: HashMap<String, Token>,
    provider: TokenProvider,
    bcrypt_cost: u32,
    instruments: ActorMetrics,
    /// Published for the API edge's fast path: with auth off and no token, a
    /// request need not ask this actor at all.
    enabled: Arc<AtomicBool>,
}

impl AuthActor {
    pub fn new(provider: TokenProvider, bcrypt_cost: u32, enabled: Arc<AtomicBool>) -> Self {
        AuthActor {
            state: Arc::new(AuthState::default()),
            tokens: HashMap::new(),
            provider,
            bcrypt_cost,
            instruments: ActorMetrics::detached("auth"),
            enabled,
        }
    }

    /// Feeds the member's metrics (without it they go to a registry nobody reads).
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.instruments = metrics.actor("auth");
        self
    }


    fn resolve(&mut self, token: &str) -> Result<AuthInfo, RequestError> {
        let invalid = || {
            tracing::warn!("invalid auth token");
            RequestError::InvalidAuthToken
        };
        match &self.provider {
            TokenProvider::Simple { ttl } => {
                let now = Instant::now();
                match self.tokens.get_mut(token) {
                    Some(t) if t.expires > now => {
                        t.expires = now + *ttl;
                        Ok(AuthInfo { username: t.username.clone(), revision: self.state.revision() })
                    }
                    _ => Err(invalid()),
                }
            }
            // The revision is the one the password was checked at: any auth
            // change since makes the token stale (the client logs in again).
            TokenProvider::Jwt(keys) => {
                if !self.state.enabled() {
                    return Err(invalid());
                }
                let validation = jsonwebtoken::Validation::new(keys.algorithm);
                let data = jsonwebtoken::decode::<Claims>(token, &keys.verifying, &validation).map_err(|_| invalid())?;
                Ok(AuthInfo { username: data.claims.username, revision: data.claims.revision })
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
        crate::metrics::start_mailbox_probe(ctx, |a: &Self| &a.instruments);
        ctx.run_interval(TOKEN_SWEEP_INTERVAL, |act, _| {
            let now = Instant::now();
            act.tokens.retain(|_, t| t.expires > now);
        });
    }
}

crate::mailbox_probe_handler!(AuthActor, instruments);

impl Handler<AuthChanged> for AuthActor {
    type Result = ();
    fn handle(&mut self, msg: AuthChanged, _: &mut Context<Self>) {
        let _t = self.instruments.handling("AuthChanged");
        if let Some(state) = msg.state {
            self.enabled.store(state.enabled(), Ordering::Release);
            self.state = state;
        }
        for change in msg.tokens {
            match change {
                TokenChange::Assigned { token, username } => {
                    if let TokenProvider::Simple { ttl } = &self.provider {
                        self.tokens.insert(token, Token { username, expires: Instant::now() + *ttl });
                    }
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
        let _t = self.instruments.handling("Authorize");
        self.authorize(msg)
    }
}

impl Handler<HashPassword> for AuthActor {
    type Result = ResponseFuture<Result<String, RequestError>>;
    fn handle(&mut self, msg: HashPassword, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("HashPassword");
        let cost = self.bcrypt_cost;
        Box::pin(async move {
            actix_rt::task::spawn_blocking(move || bcrypt::hash(msg.0, cost))
                .await
                .map_err(|e| RequestError::Internal(format!("password hashing failed: {e}")))?
                .map_err(|e| RequestError::Internal(format!("password hashing failed: {e}")))
        })
    }
}

impl Handler<IssueToken> for AuthActor {
    type Result = Result<Option<String>, RequestError>;
    fn handle(&mut self, msg: IssueToken, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("IssueToken");
        let TokenProvider::Jwt(keys) = &self.provider else { return Ok(None) };
        let signing = keys.signing.as_ref().ok_or_else(|| {
            RequestError::Internal("this member has no JWT private key (priv-key) to sign tokens with".into())
        })?;
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(keys.ttl)
            .as_secs();
        let claims = Claims { username: msg.username, revision: msg.revision, exp };
        jsonwebtoken::encode(&jsonwebtoken::Header::new(keys.algorithm), &claims, signing)
            .map(Some)
            .map_err(|e| RequestError::Internal(format!("signing a token: {e}")))
    }
}

impl Handler<GetAuthStatus> for AuthActor {
    type Result = MessageResult<GetAuthStatus>;
    fn handle(&mut self, _: GetAuthStatus, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("GetAuthStatus");
        MessageResult((self.state.enabled(), self.state.revision()))
    }
}

impl Handler<CheckPassword> for AuthActor {
    type Result = ResponseFuture<Result<u64, RequestError>>;
    fn handle(&mut self, msg: CheckPassword, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("CheckPassword");
        let enabled = self.state.enabled();
        let revision = self.state.revision();
        let cost = self.bcrypt_cost;
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
                    let _ = bcrypt::verify(password, dummy_hash(cost));
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

/// A bcrypt hash (of the member's cost) that no password is checked against
/// in earnest: it only evens out the time a failed login takes.
fn dummy_hash(cost: u32) -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("stead: no such user", cost).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_token_flag_is_checked() {
        let ttl = Duration::from_secs(300);
        assert!(matches!(TokenProvider::from_flag("simple", ttl), Ok(TokenProvider::Simple { .. })));
        for (flag, why) in [
            ("opaque", "unknown token type"),
            ("jwt,sign-method=RS256", "needs pub-key"),
            ("jwt,pub-key=/nonexistent.pem,sign-method=RS256", "reading pub-key"),
            ("jwt,priv-key=/dev/null", "needs sign-method"),
            ("jwt,sign-method=XX999", "unsupported jwt sign-method"),
            ("jwt,priv-key", "expected key=value"),
        ] {
            match TokenProvider::from_flag(flag, ttl) {
                Err(e) => assert!(e.contains(why), "{flag}: {e}"),
                Ok(_) => panic!("{flag} accepted"),
            }
        }
    }
}
