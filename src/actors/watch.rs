//! `WatchHub`: owns every watcher of this member and the client streams they are
//! on, and turns the store's committed changes into etcd watch responses.
//!
//! One hub per member, on the store's arbiter (as etcd notifies its watchers
//! on the apply path; a change reaches the hub without a thread hop), so
//! everything it does runs between applies. A stream (one client watch
//! stream: a gateway request, later a gRPC call) holds several watchers. The hub
//! keeps etcd's two sets:
//!
//! - **synced** watchers have been sent everything up to the hub's revision; each
//!   `Committed` batch from the store fans out to them at once, one response per
//!   revision (a txn's events together), indexed by key for single-key watches.
//! - **unsynced** watchers are behind: they started in the past, or their stream's
//!   buffer was full when an event came. A sync round reads whole revisions of
//!   history from the store in bounded chunks (`ReadHistory`, one read in flight)
//!   and hands each watcher what it misses, then moves it to the synced set.
//!
//! The seam between the two is one number per watcher, `next_rev`: the first
//! revision it has not been sent. Events below it are dropped, so nothing is
//! sent twice, and a watcher leaves the unsynced set only once `next_rev` is past
//! the hub's revision, so nothing is skipped.
//!
//! Every stream has a bounded buffer (`stream_buffer_responses`). The hub never
//! waits on it: a response that does not fit sends its watcher back to catch-up,
//! which the apply path never sees. Control answers (created, canceled, progress)
//! are never dropped: they wait in a small per-stream backlog, and a stream whose
//! backlog overflows (a client that sends requests but never reads) is closed.
//!
//! The hub never blocks, never touches storage (history comes from the store by
//! message) and keeps no state of other actors. The decisions live in [`HubCore`],
//! plain data with no actix, so they are tested directly; the actor only carries
//! its reads out.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::actors::raft::GetRaftStatus;
use crate::actors::store::{Committed, GetStatus, HeaderIds, Read, ReadHistory, ReadRequest};
use crate::error::RequestError;
use crate::metrics::ActorMetrics;
use crate::kv::apply::Response;
use crate::proto::etcdserverpb::{self as pb, watch_create_request::FilterType, watch_request::RequestUnion};
use crate::proto::mvccpb;
use crate::storage::mvcc;

/// etcd's text when a create request's range is empty (key ≥ range_end).
pub const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";
/// etcd's text when a client-chosen watch id is already used on the stream.
pub const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// The cancel reason when the hub already holds `watchers_max` watchers.
pub const ERR_TOO_MANY_WATCHERS: &str = "etcdserver: too many requests";

/// The watch id etcd puts on answers that belong to no watcher (a refused create,
/// a stream-wide progress notification).
pub const NO_WATCH_ID: i64 = -1;

/// The hub's limits and timers.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Periodic progress notifications for `progress_notify` watchers that had no
    /// events since the last one (etcd: 10 minutes).
    pub progress_interval: Duration,
    /// How often unsynced watchers are caught up and backlogs retried (etcd's
    /// syncWatchersLoop runs every 100 ms).
    pub sync_interval: Duration,
    /// Responses a stream may have waiting for its client.
    pub stream_buffer_responses: usize,
    /// Control answers a stream may have waiting beyond its buffer before it is
    /// closed.
    pub stream_backlog_max: usize,
    /// Events per history read (whole revisions, so a big txn can exceed it).
    pub history_chunk_events: usize,
    /// Watchers on this member, all streams together.
    pub watchers_max: usize,
    /// A `fragment` watcher's response larger than this is split (etcd:
    /// `--max-request-bytes`).
    pub fragment_bytes: usize,
}

impl HubConfig {
    pub fn new(max_request_bytes: usize) -> Self {
        HubConfig {
            progress_interval: Duration::from_secs(600),
            sync_interval: Duration::from_millis(100),
            stream_buffer_responses: 128,
            stream_backlog_max: 1024,
            history_chunk_events: 1000,
            watchers_max: 100_000,
            fragment_bytes: max_request_bytes,
        }
    }
}

pub type StreamId = u64;
/// Watchers are named by their stream and their watch id on it.
type WatcherKey = (StreamId, i64);

/// Opens a stream: the answer carries its id and the receiving end of its buffer.
/// Dropping the receiver closes the stream (the hub notices on its next send).
#[derive(Message)]
#[rtype(result = "OpenedStream")]
pub struct OpenStream;

#[derive(MessageResponse)]
pub struct OpenedStream {
    pub id: StreamId,
    pub responses: mpsc::Receiver<pb::WatchResponse>,
}

/// A request the client sent on a stream, in the order it sent them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StreamRequest {
    pub stream: StreamId,
    pub request: pb::WatchRequest,
    /// A create request the API edge refused (auth), with etcd's cancel reason:
    /// answered created + canceled in the stream's order, never watched.
    pub refused: Option<String>,
}

/// The client went away: the stream and its watchers go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseStream {
    pub stream: StreamId,
}

/// Where the hub reads history and response-header figures; given once the store
/// exists (the store is created with the hub's address).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub history: Recipient<ReadHistory>,
    pub read: Recipient<Read>,
    pub status: Recipient<GetStatus>,
    pub raft: Recipient<GetRaftStatus>,
    pub ids: HeaderIds,
    /// The store's revision when it was asked, before this message was sent.
    pub revision: i64,
}

/// The hub's figures, for tests and metrics.
#[derive(Message)]
#[rtype(result = "HubStats")]
pub struct GetHubStats;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, MessageResponse)]
pub struct HubStats {
    pub streams: usize,
    pub watchers: usize,
    pub synced: usize,
    pub unsynced: usize,
    pub revision: i64,
    /// Events handed to watchers' streams since the hub started.
    pub events_sent: u64,
}

// ---------------------------------------------------------------------------------
// Pure parts: key ranges, filters, conversion, fragmenting.
// ---------------------------------------------------------------------------------

/// The keys a watcher covers, after etcd's normalisation of a create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// `range_end` empty: this key only.
    Single(Vec<u8>),
    /// `range_end` is `\0`: every key ≥ this one.
    FromKey(Vec<u8>),
    /// `[key, range_end)`.
    Range(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    /// etcd's rules: an empty key is `\0` (the smallest key), a `\0` range end
    /// means "from key", and a range end not above the key is an empty range.
    pub fn from_request(key: &[u8], range_end: &[u8]) -> Result<KeyRange, &'static str> {
        let key = if key.is_empty() { vec![0] } else { key.to_vec() };
        match range_end {
            [] => Ok(KeyRange::Single(key)),
            [0] => Ok(KeyRange::FromKey(key)),
            end if key.as_slice() >= end => Err(ERR_EMPTY_RANGE),
            end => Ok(KeyRange::Range(key, end.to_vec())),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => key.as_slice() == k,
            KeyRange::FromKey(key) => k >= key.as_slice(),
            KeyRange::Range(key, end) => k >= key.as_slice() && k < end.as_slice(),
        }
    }
}

/// Which event kinds a watcher does not want (etcd's NOPUT / NODELETE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filters {
    pub no_put: bool,
    pub no_delete: bool,
}

impl Filters {
    pub fn from_request(filters: &[i32]) -> Filters {
        let mut f = Filters::default();
        for x in filters {
            match FilterType::try_from(*x) {
                Ok(FilterType::Noput) => f.no_put = true,
                Ok(FilterType::Nodelete) => f.no_delete = true,
                Err(_) => {} // etcd ignores filters it does not know
            }
        }
        f
    }

    pub fn passes(&self, kind: mvcc::EventKind) -> bool {
        match kind {
            mvcc::EventKind::Put => !self.no_put,
            mvcc::EventKind::Delete => !self.no_delete,
        }
    }
}

pub fn kv_to_pb(kv: &mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key.clone(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value.clone(),
        lease: kv.lease,
    }
}

/// A store event as a watch event; `prev_kv` only when the watcher asked for it.
pub fn event_to_pb(ev: &mvcc::Event, prev_kv: Option<mvccpb::KeyValue>) -> mvccpb::Event {
    let kind = match ev.kind {
        mvcc::EventKind::Put => mvccpb::event::EventType::Put,
        mvcc::EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event { r#type: kind as i32, kv: Some(kv_to_pb(&ev.kv)), prev_kv }
}

/// etcd's IsCreateEvent: a put that started a generation has no previous value.
fn is_create(ev: &mvcc::Event) -> bool {
    ev.kind == mvcc::EventKind::Put && ev.kv.create_revision == ev.kv.mod_revision
}

/// etcd's sendFragments: a response of at least `max_bytes` (encoded) with more
/// than one event is cut into several, each as large as it may be while under the
/// limit (but with at least one event); all but the last have `fragment` set.
pub fn fragment(resp: pb::WatchResponse, max_bytes: usize) -> Vec<pb::WatchResponse> {
    if resp.encoded_len() < max_bytes || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut template = resp.clone();
    template.events = Vec::new();
    template.fragment = true;
    let base = template.encoded_len();
    let mut out = Vec::new();
    let mut current = template.clone();
    let mut size = base;
    for ev in resp.events {
        // Each event is one length-delimited field 11 (1 tag byte).
        let ev_len = ev.encoded_len();
        let add = 1 + prost::length_delimiter_len(ev_len) + ev_len;
        if !current.events.is_empty() && size + add >= max_bytes {
            out.push(std::mem::replace(&mut current, template.clone()));
            size = base;
        }
        size += add;
        current.events.push(ev);
    }
    current.fragment = false;
    out.push(current);
    out
}

// ---------------------------------------------------------------------------------
// The hub's state and decisions, with no actix in them.
// ---------------------------------------------------------------------------------

#[derive(Debug)]
struct Watcher {
    range: KeyRange,
    filters: Filters,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
    /// The first revision this watcher has not been sent (everything before it
    /// was sent, or precedes its start revision).
    next_rev: i64,
    synced: bool,
    /// Whether it was sent events since the last periodic progress tick (etcd
    /// sends the periodic notification only to quiet watchers).
    sent_since_tick: bool,
}

struct Session {
    sink: mpsc::Sender<pb::WatchResponse>,
    /// Control answers that did not fit the buffer; while any wait, no event is
    /// sent on the stream (they must arrive first).
    backlog: VecDeque<pb::WatchResponse>,
    watchers: BTreeSet<i64>,
    /// etcd assigns ids counting up from 0, skipping ones in use.
    next_auto_id: i64,
    /// A progress request waiting for the stream's watchers to be synced.
    progress_pending: bool,
}

/// How a send on a stream went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Yes,
    /// No room (or control answers queued first): try again later.
    Full,
    /// The client is gone.
    Closed,
}

/// What the next sync round should read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPlan {
    pub from_rev: i64,
    pub max_events: usize,
    /// Some catching-up watcher wants `prev_kv`: read each event's previous value.
    pub want_prev_kv: bool,
}

/// Previous values for history events, by (key, mod_revision) of the event.
pub type PrevKvs = HashMap<(Vec<u8>, i64), mvccpb::KeyValue>;

pub struct HubCore {
    config: HubConfig,
    ids: HeaderIds,
    raft_term: u64,
    /// Every change up to here has been offered to the synced watchers.
    revision: i64,
    sessions: BTreeMap<StreamId, Session>,
    next_stream: StreamId,
    watchers: BTreeMap<WatcherKey, Watcher>,
    /// Synced single-key watchers, by key.
    synced_by_key: HashMap<Vec<u8>, BTreeSet<WatcherKey>>,
    /// Synced range and from-key watchers (scanned per event).
    synced_ranges: BTreeSet<WatcherKey>,
    unsynced: BTreeSet<WatcherKey>,
    /// Watchers with `progress_notify`.
    progress_watchers: BTreeSet<WatcherKey>,
    /// How many watchers want `prev_kv`; `wants_prev_kv` says whether any do,
    /// for the store, whose puts read the values they replace only then.
    prev_kv_watchers: usize,
    wants_prev_kv: Arc<AtomicBool>,
    /// Events handed to watchers' streams (etcd's `events_total`).
    events_sent: u64,
}

impl HubCore {
    pub fn new(config: HubConfig, ids: HeaderIds, revision: i64) -> Self {
        HubCore {
            config,
            ids,
            raft_term: 0,
            revision,
            sessions: BTreeMap::new(),
            next_stream: 1,
            watchers: BTreeMap::new(),
            synced_by_key: HashMap::new(),
            synced_ranges: BTreeSet::new(),
            unsynced: BTreeSet::new(),
            progress_watchers: BTreeSet::new(),
            prev_kv_watchers: 0,
            wants_prev_kv: Arc::new(AtomicBool::new(false)),
            events_sent: 0,
        }
    }

    /// Shares `flag` with the store: true while some watcher wants `prev_kv`.
    pub fn publish_prev_kv_wanted(&mut self, flag: Arc<AtomicBool>) {
        flag.store(self.prev_kv_watchers > 0, Ordering::Release);
        self.wants_prev_kv = flag;
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn set_ids(&mut self, ids: HeaderIds) {
        self.ids = ids;
    }

    pub fn set_raft_term(&mut self, term: u64) {
        self.raft_term = self.raft_term.max(term);
    }

    /// The store's revision, learnt other than by events (at attach): revisions
    /// only move forward.
    pub fn observe_revision(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    pub fn stats(&self) -> HubStats {
        HubStats {
            streams: self.sessions.len(),
            watchers: self.watchers.len(),
            synced: self.watchers.len() - self.unsynced.len(),
            unsynced: self.unsynced.len(),
            revision: self.revision,
            events_sent: self.events_sent,
        }
    }

    fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.ids.cluster_id,
            member_id: self.ids.member_id,
            revision,
            raft_term: self.raft_term,
        }
    }

    // -- streams ---------------------------------------------------------------------

    pub fn open_stream(&mut self) -> (StreamId, mpsc::Receiver<pb::WatchResponse>) {
        let (sink, responses) = mpsc::channel(self.config.stream_buffer_responses.max(1));
        let id = self.next_stream;
        self.next_stream += 1;
        let session =
            Session { sink, backlog: VecDeque::new(), watchers: BTreeSet::new(), next_auto_id: 0, progress_pending: false };
        self.sessions.insert(id, session);
        (id, responses)
    }

    pub fn close_stream(&mut self, stream: StreamId) {
        let Some(session) = self.sessions.remove(&stream) else { return };
        tracing::debug!("watch stream {stream} closed with {} watchers", session.watchers.len());
        for id in session.watchers {
            self.remove_watcher((stream, id));
        }
    }

    /// Sends a control answer: into the buffer, else behind it in the backlog.
    /// Never lost while the stream lives.
    fn send_control(&mut self, stream: StreamId, resp: pb::WatchResponse) {
        let Some(session) = self.sessions.get_mut(&stream) else { return };
        if session.backlog.is_empty() {
            match session.sink.try_send(resp) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.close_stream(stream);
                    return;
                }
                Err(mpsc::error::TrySendError::Full(resp)) => session.backlog.push_back(resp),
            }
        } else {
            session.backlog.push_back(resp);
        }
        if session.backlog.len() > self.config.stream_backlog_max {
            tracing::warn!("watch stream {stream}: its client reads no answers; closing it");
            self.close_stream(stream);
        }
    }

    /// Sends data (events, a watcher's progress) only if all of it fits now and
    /// no control answer is waiting: all or nothing, so a revision is never split.
    fn send_data(&mut self, stream: StreamId, resps: Vec<pb::WatchResponse>) -> Sent {
        let Some(session) = self.sessions.get_mut(&stream) else { return Sent::Closed };
        if session.sink.is_closed() {
            return Sent::Closed;
        }
        if !session.backlog.is_empty() || session.sink.capacity() < resps.len() {
            return Sent::Full;
        }
        for resp in resps {
            // The hub is the only sender: the room checked above is still there.
            if session.sink.try_send(resp).is_err() {
                return Sent::Closed;
            }
        }
        Sent::Yes
    }

    /// Moves backlogged control answers into buffers with room; answers pending
    /// progress requests whose watchers are all synced now.
    pub fn flush_backlogs(&mut self) {
        let mut closed = Vec::new();
        for (id, session) in self.sessions.iter_mut() {
            while let Some(resp) = session.backlog.pop_front() {
                match session.sink.try_send(resp) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(resp)) => {
                        session.backlog.push_front(resp);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        closed.push(*id);
                        break;
                    }
                }
            }
            if session.backlog.is_empty() && session.sink.is_closed() {
                closed.push(*id);
            }
        }
        for id in closed {
            self.close_stream(id);
        }
        let pending: Vec<StreamId> =
            self.sessions.iter().filter(|(_, s)| s.progress_pending).map(|(id, _)| *id).collect();
        for id in pending {
            self.answer_progress_if_synced(id);
        }
    }

    // -- requests --------------------------------------------------------------------

    pub fn request(&mut self, stream: StreamId, request: pb::WatchRequest) {
        if !self.sessions.contains_key(&stream) {
            return;
        }
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(stream, create),
            Some(RequestUnion::CancelRequest(cancel)) => self.cancel(stream, cancel.watch_id),
            Some(RequestUnion::ProgressRequest(_)) => {
                if let Some(s) = self.sessions.get_mut(&stream) {
                    s.progress_pending = true;
                }
                self.answer_progress_if_synced(stream);
            }
            // As etcd: a request of no known kind is ignored, the stream goes on.
            None => {}
        }
    }

    /// etcd's answer to a create it will not serve: created and canceled at
    /// once, with no watch id.
    fn refusal(&self, reason: &str) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(self.header(self.revision)),
            watch_id: NO_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        }
    }

    /// A create the API edge refused (auth): answered in the stream's order.
    pub fn refuse_create(&mut self, stream: StreamId, reason: &str) {
        if self.sessions.contains_key(&stream) {
            self.send_control(stream, self.refusal(reason));
        }
    }

    fn create(&mut self, stream: StreamId, c: pb::WatchCreateRequest) {
        let refuse = |core: &Self, reason: &str| core.refusal(reason);
        let range = match KeyRange::from_request(&c.key, &c.range_end) {
            Ok(r) => r,
            Err(reason) => return self.send_control(stream, refuse(self, reason)),
        };
        if self.watchers.len() >= self.config.watchers_max {
            return self.send_control(stream, refuse(self, ERR_TOO_MANY_WATCHERS));
        }
        let Some(session) = self.sessions.get_mut(&stream) else { return };
        // etcd: watch id 0 (AutoWatchID) asks the server to pick one.
        let id = if c.watch_id == 0 {
            while session.watchers.contains(&session.next_auto_id) {
                session.next_auto_id += 1;
            }
            session.next_auto_id += 1;
            session.next_auto_id - 1
        } else if session.watchers.contains(&c.watch_id) {
            return self.send_control(stream, refuse(self, ERR_DUPLICATE_ID));
        } else {
            c.watch_id
        };
        session.watchers.insert(id);
        // etcd: 0 is "from the next revision"; a negative start is history from
        // the first revision (compacted, if anything was).
        let next_rev = match c.start_revision {
            0 => self.revision + 1,
            r => r.max(1),
        };
        let watcher = Watcher {
            range,
            filters: Filters::from_request(&c.filters),
            prev_kv: c.prev_kv,
            progress_notify: c.progress_notify,
            fragment: c.fragment,
            next_rev,
            synced: false,
            sent_since_tick: false,
        };
        let key = (stream, id);
        if watcher.progress_notify {
            self.progress_watchers.insert(key);
        }
        let synced = next_rev > self.revision;
        if watcher.prev_kv {
            // Set before the watcher sees any live event: a batch the store
            // applied before it saw the flag arrives marked `prevs_read: false`,
            // and the watcher catches up from history for it instead.
            self.prev_kv_watchers += 1;
            self.wants_prev_kv.store(true, Ordering::Release);
        }
        self.watchers.insert(key, watcher);
        let created = pb::WatchResponse {
            header: Some(self.header(self.revision)),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        self.send_control(stream, created);
        if synced {
            self.mark_synced(key);
        } else {
            self.unsynced.insert(key);
        }
    }

    fn cancel(&mut self, stream: StreamId, id: i64) {
        let present = self.sessions.get_mut(&stream).is_some_and(|s| s.watchers.remove(&id));
        if !present {
            return; // etcd answers nothing for an unknown id
        }
        self.remove_watcher((stream, id));
        let resp = pb::WatchResponse {
            header: Some(self.header(self.revision)),
            watch_id: id,
            canceled: true,
            ..Default::default()
        };
        self.send_control(stream, resp);
        self.answer_progress_if_synced(stream);
    }

    /// A progress request is answered once every watcher on the stream is synced:
    /// its revision then promises that nothing up to it is still to come. (etcd
    /// 3.4 answers at once even while watchers catch up, which breaks that promise;
    /// later etcd waits as here. The answer's shape is 3.4's.)
    fn answer_progress_if_synced(&mut self, stream: StreamId) {
        let Some(session) = self.sessions.get(&stream) else { return };
        if !session.progress_pending || session.watchers.iter().any(|id| self.unsynced.contains(&(stream, *id))) {
            return;
        }
        if let Some(s) = self.sessions.get_mut(&stream) {
            s.progress_pending = false;
        }
        let resp =
            pb::WatchResponse { header: Some(self.header(self.revision)), watch_id: NO_WATCH_ID, ..Default::default() };
        self.send_control(stream, resp);
    }

    // -- the synced / unsynced sets --------------------------------------------------

    fn mark_synced(&mut self, key: WatcherKey) {
        let Some(w) = self.watchers.get_mut(&key) else { return };
        debug_assert!(w.next_rev > self.revision, "a synced watcher has been sent everything up to the hub's revision");
        w.synced = true;
        self.unsynced.remove(&key);
        match &w.range {
            KeyRange::Single(k) => {
                self.synced_by_key.entry(k.clone()).or_default().insert(key);
            }
            _ => {
                self.synced_ranges.insert(key);
            }
        }
        self.answer_progress_if_synced(key.0);
    }

    /// Sends a synced watcher back to catch-up from `next_rev`.
    fn mark_unsynced(&mut self, key: WatcherKey, next_rev: i64) {
        let Some(w) = self.watchers.get_mut(&key) else { return };
        w.next_rev = next_rev;
        if !w.synced {
            return;
        }
        w.synced = false;
        tracing::debug!("watch stream {}: watcher {} fell behind at revision {next_rev}; catching up", key.0, key.1);
        Self::unindex(&mut self.synced_by_key, &mut self.synced_ranges, key, &w.range);
        self.unsynced.insert(key);
    }

    fn unindex(
        by_key: &mut HashMap<Vec<u8>, BTreeSet<WatcherKey>>,
        ranges: &mut BTreeSet<WatcherKey>,
        key: WatcherKey,
        range: &KeyRange,
    ) {
        match range {
            KeyRange::Single(k) => {
                if let Some(set) = by_key.get_mut(k) {
                    set.remove(&key);
                    if set.is_empty() {
                        by_key.remove(k);
                    }
                }
            }
            _ => {
                ranges.remove(&key);
            }
        }
    }

    fn remove_watcher(&mut self, key: WatcherKey) {
        if let Some(w) = self.watchers.remove(&key) {
            if w.prev_kv {
                self.prev_kv_watchers -= 1;
                if self.prev_kv_watchers == 0 {
                    self.wants_prev_kv.store(false, Ordering::Release);
                }
            }
            if w.synced {
                Self::unindex(&mut self.synced_by_key, &mut self.synced_ranges, key, &w.range);
            }
        }
        self.unsynced.remove(&key);
        self.progress_watchers.remove(&key);
    }

    /// Sends `events` (of revisions ≥ the watcher's `next_rev`) to one watcher;
    /// `Yes` moves its `next_rev` to `through + 1`.
    fn deliver(&mut self, key: WatcherKey, header_rev: i64, events: Vec<mvccpb::Event>, through: i64) -> Sent {
        let Some(w) = self.watchers.get(&key) else { return Sent::Closed };
        let count = events.len() as u64;
        let resp =
            pb::WatchResponse { header: Some(self.header(header_rev)), watch_id: key.1, events, ..Default::default() };
        let resps = if w.fragment { fragment(resp, self.config.fragment_bytes) } else { vec![resp] };
        let sent = self.send_data(key.0, resps);
        if sent == Sent::Yes {
            self.events_sent += count;
            if let Some(w) = self.watchers.get_mut(&key) {
                w.next_rev = through + 1;
                w.sent_since_tick = true;
            }
        }
        sent
    }

    // -- live events -----------------------------------------------------------------

    /// A committed apply batch: events in (main, sub) order, `revision` the
    /// store's revision after it. Each revision goes out as one response per
    /// watcher, in order; a watcher whose stream has no room goes to catch-up,
    /// and so does one that wants `prev_kv` when `prevs_read` is false (the
    /// store did not read the replaced values: history reads them).
    pub fn committed(&mut self, revision: i64, events: &[mvcc::Event], prevs_read: bool) {
        let mut closed = BTreeSet::new();
        let mut start = 0;
        while start < events.len() {
            let rev = events[start].kv.mod_revision;
            let end = start + events[start..].iter().take_while(|e| e.kv.mod_revision == rev).count();
            assert!(rev > self.revision, "watch events go forward: revision {rev} after {}", self.revision);
            self.fan_out(rev, &events[start..end], prevs_read, &mut closed);
            self.revision = rev;
            start = end;
        }
        self.revision = self.revision.max(revision);
        for stream in closed {
            self.close_stream(stream);
        }
    }

    fn fan_out(&mut self, rev: i64, events: &[mvcc::Event], prevs_read: bool, closed: &mut BTreeSet<StreamId>) {
        let mut out: BTreeMap<WatcherKey, Vec<mvccpb::Event>> = BTreeMap::new();
        let mut without_prevs = BTreeSet::new();
        for ev in events {
            let single = self.synced_by_key.get(&ev.kv.key).into_iter().flatten();
            let ranged = self.synced_ranges.iter().filter(|k| self.watchers[k].range.contains(&ev.kv.key));
            for key in single.chain(ranged) {
                let w = &self.watchers[key];
                if rev < w.next_rev || !w.filters.passes(ev.kind) {
                    continue;
                }
                if w.prev_kv && !prevs_read {
                    without_prevs.insert(*key);
                    continue;
                }
                let prev = if w.prev_kv { ev.prev_kv.as_ref().map(kv_to_pb) } else { None };
                out.entry(*key).or_default().push(event_to_pb(ev, prev));
            }
        }
        for key in without_prevs {
            self.mark_unsynced(key, rev);
        }
        for (key, evs) in out {
            if closed.contains(&key.0) {
                continue;
            }
            match self.deliver(key, rev, evs, rev) {
                Sent::Yes => {}
                Sent::Full => self.mark_unsynced(key, rev),
                Sent::Closed => {
                    closed.insert(key.0);
                }
            }
        }
    }

    // -- catch-up from history -------------------------------------------------------

    /// A stream can take data now.
    fn has_room(&self, stream: StreamId) -> bool {
        self.sessions.get(&stream).is_some_and(|s| s.backlog.is_empty() && s.sink.capacity() > 0)
    }

    /// The next history read: from the oldest revision an unsynced watcher with
    /// room on its stream still needs.
    pub fn history_plan(&self) -> Option<HistoryPlan> {
        let mut plan: Option<HistoryPlan> = None;
        for key in &self.unsynced {
            if !self.has_room(key.0) {
                continue;
            }
            let w = &self.watchers[key];
            let p = plan.get_or_insert(HistoryPlan {
                from_rev: w.next_rev,
                max_events: self.config.history_chunk_events,
                want_prev_kv: false,
            });
            p.from_rev = p.from_rev.min(w.next_rev);
            p.want_prev_kv |= w.prev_kv;
        }
        plan
    }

    /// The store's history from `from_rev` (whole revisions up to
    /// `history.next_rev - 1`): each unsynced watcher inside that span gets its part
    /// as one response; a watcher that has reached the hub's revision is synced.
    /// `prev_kvs` is `None` when previous values were not read: watchers that want
    /// them wait for a round that reads them.
    pub fn history_loaded(&mut self, from_rev: i64, history: &mvcc::History, prev_kvs: Option<&PrevKvs>) {
        let through = history.next_rev - 1;
        let header_rev = self.revision.max(through);
        let candidates: Vec<WatcherKey> = self.unsynced.iter().copied().collect();
        let mut closed = BTreeSet::new();
        for key in candidates {
            let w = &self.watchers[&key];
            if w.next_rev < from_rev || w.next_rev > through + 1 || (w.prev_kv && prev_kvs.is_none()) {
                continue; // not covered by this read (or created since it was planned)
            }
            if !self.has_room(key.0) {
                continue;
            }
            let events: Vec<mvccpb::Event> = history
                .events
                .iter()
                .filter(|e| e.kv.mod_revision >= w.next_rev && w.filters.passes(e.kind) && w.range.contains(&e.kv.key))
                .map(|e| {
                    let prev = if w.prev_kv && !is_create(e) {
                        prev_kvs.and_then(|p| p.get(&(e.kv.key.clone(), e.kv.mod_revision))).cloned()
                    } else {
                        None
                    };
                    event_to_pb(e, prev)
                })
                .collect();
            if events.is_empty() {
                if let Some(w) = self.watchers.get_mut(&key) {
                    w.next_rev = w.next_rev.max(through + 1);
                }
            } else {
                match self.deliver(key, header_rev, events, through) {
                    Sent::Yes => {}
                    Sent::Full => continue,
                    Sent::Closed => {
                        closed.insert(key.0);
                        continue;
                    }
                }
            }
            if self.watchers[&key].next_rev > self.revision {
                self.mark_synced(key);
            }
        }
        for stream in closed {
            self.close_stream(stream);
        }
    }

    /// The store has compacted history below `compact_rev`: the unsynced watchers
    /// that still need older revisions are cancelled with etcd's answer (no header
    /// revision, `compact_revision` set).
    pub fn history_compacted(&mut self, compact_rev: i64) {
        let gone: Vec<WatcherKey> =
            self.unsynced.iter().copied().filter(|k| self.watchers[k].next_rev < compact_rev).collect();
        for key in gone {
            if let Some(s) = self.sessions.get_mut(&key.0) {
                s.watchers.remove(&key.1);
            }
            self.remove_watcher(key);
            let resp = pb::WatchResponse {
                header: Some(self.header(0)),
                watch_id: key.1,
                canceled: true,
                compact_revision: compact_rev,
                ..Default::default()
            };
            self.send_control(key.0, resp);
            self.answer_progress_if_synced(key.0);
        }
    }

    // -- progress --------------------------------------------------------------------

    /// The periodic tick: each synced `progress_notify` watcher that was sent no
    /// events since the last tick gets the hub's revision (skipped if its stream is
    /// full: it is receiving events then, as etcd reasons).
    pub fn progress_tick(&mut self) {
        let keys: Vec<WatcherKey> = self.progress_watchers.iter().copied().collect();
        let mut closed = BTreeSet::new();
        for key in keys {
            let Some(w) = self.watchers.get_mut(&key) else { continue };
            let quiet = !std::mem::replace(&mut w.sent_since_tick, false);
            if !quiet || !w.synced || closed.contains(&key.0) {
                continue;
            }
            let resp =
                pb::WatchResponse { header: Some(self.header(self.revision)), watch_id: key.1, ..Default::default() };
            if self.send_data(key.0, vec![resp]) == Sent::Closed {
                closed.insert(key.0);
            }
        }
        for stream in closed {
            self.close_stream(stream);
        }
    }
}

// ---------------------------------------------------------------------------------
// The actor.
// ---------------------------------------------------------------------------------

struct StoreLinks {
    history: Recipient<ReadHistory>,
    read: Recipient<Read>,
    status: Recipient<GetStatus>,
    raft: Recipient<GetRaftStatus>,
}

pub struct WatchHub {
    core: HubCore,
    links: Option<StoreLinks>,
    /// One history read at a time bounds the hub's memory and the store's load.
    history_in_flight: bool,
    instruments: ActorMetrics,
}

impl WatchHub {
    /// Feeds the member's metrics (without it they go to a registry nobody reads).
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.instruments = metrics.actor("watch");
        self
    }

    /// A hub that knows no store yet (see `Attach`): it follows `Committed` batches
    /// and accepts streams, and catches watchers up once attached.
    /// Shares `flag` with the store: true while some watcher wants `prev_kv`.
    pub fn with_prev_kv_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.core.publish_prev_kv_wanted(flag);
        self
    }

    pub fn new(config: HubConfig) -> Self {
        WatchHub {
            core: HubCore::new(config, HeaderIds { cluster_id: 0, member_id: 0 }, 0),
            links: None,
            history_in_flight: false,
            instruments: ActorMetrics::detached("watch"),
        }
    }

    /// Starts the next history read if one is needed and none is running.
    fn schedule_sync(&mut self, ctx: &mut Context<Self>) {
        if self.history_in_flight {
            return;
        }
        let (Some(links), Some(plan)) = (&self.links, self.core.history_plan()) else { return };
        self.history_in_flight = true;
        let history = links.history.clone();
        let read = links.read.clone();
        let status = links.status.clone();
        let fut = async move {
            let loaded =
                history.send(ReadHistory { from_revision: plan.from_rev, max_events: plan.max_events }).await;
            match loaded {
                Ok(Ok(h)) => {
                    let prev = if plan.want_prev_kv { Some(read_prev_kvs(&read, &h).await) } else { None };
                    SyncOutcome::Loaded(h, prev)
                }
                Ok(Err(RequestError::Compacted)) => match status.send(GetStatus).await {
                    Ok(st) => SyncOutcome::Compacted(st.compact_revision),
                    Err(_) => SyncOutcome::Failed("the store stopped".into()),
                },
                Ok(Err(e)) => SyncOutcome::Failed(e.to_string()),
                Err(_) => SyncOutcome::Failed("the store stopped".into()),
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |outcome, act, ctx| {
            act.history_in_flight = false;
            match outcome {
                SyncOutcome::Loaded(h, prev) => {
                    act.core.history_loaded(plan.from_rev, &h, prev.as_ref());
                    act.schedule_sync(ctx);
                }
                SyncOutcome::Compacted(rev) => {
                    act.core.history_compacted(rev);
                    act.schedule_sync(ctx);
                }
                // Tried again on the next tick.
                SyncOutcome::Failed(e) => tracing::warn!("watch hub: reading history failed: {e}"),
            }
        }));
    }
}

enum SyncOutcome {
    Loaded(mvcc::History, Option<PrevKvs>),
    Compacted(i64),
    Failed(String),
}

/// The previous value of each history event that has one (etcd reads it at
/// `mod_revision - 1`; compacted away means none).
async fn read_prev_kvs(read: &Recipient<Read>, h: &mvcc::History) -> PrevKvs {
    let mut wanted: Vec<(Vec<u8>, i64)> =
        h.events.iter().filter(|e| !is_create(e)).map(|e| (e.kv.key.clone(), e.kv.mod_revision)).collect();
    wanted.retain(|(_, rev)| *rev > 1);
    wanted.dedup();
    let reads = wanted.into_iter().map(|(key, rev)| async move {
        let (responder, answer) = crate::reply::channel();
        let request =
            pb::RangeRequest { key: key.clone(), revision: rev - 1, limit: 1, serializable: true, ..Default::default() };
        if read.send(Read { read_index: 0, request: ReadRequest::Range(request), responder }).await.is_err() {
            return None;
        }
        match answer.await {
            Ok(Ok(Response::Range(r))) => r.kvs.into_iter().next().map(|kv| ((key, rev), kv)),
            _ => None,
        }
    });
    futures::future::join_all(reads).await.into_iter().flatten().collect()
}

impl Actor for WatchHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        crate::metrics::start_mailbox_probe(ctx, |a: &Self| &a.instruments);
        ctx.run_interval(self.core.config.sync_interval, |act, ctx| {
            act.core.flush_backlogs();
            act.schedule_sync(ctx);
            // The term in response headers; only asked while someone watches.
            if let Some(links) = act.links.as_ref().filter(|_| act.core.stats().streams > 0) {
                let raft = links.raft.clone();
                ctx.spawn(async move { raft.send(GetRaftStatus).await.ok() }.into_actor(act).map(|st, act, _| {
                    if let Some(st) = st {
                        act.core.set_raft_term(st.term);
                    }
                }));
            }
        });
        ctx.run_interval(self.core.config.progress_interval, |act, _| act.core.progress_tick());
    }
}

crate::mailbox_probe_handler!(WatchHub, instruments);

impl Handler<Attach> for WatchHub {
    type Result = ();
    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("Attach");
        self.core.set_ids(msg.ids);
        self.core.observe_revision(msg.revision);
        self.links = Some(StoreLinks { history: msg.history, read: msg.read, status: msg.status, raft: msg.raft });
        let raft = self.links.as_ref().map(|l| l.raft.clone());
        if let Some(raft) = raft {
            ctx.wait(async move { raft.send(GetRaftStatus).await.ok() }.into_actor(self).map(|st, act, _| {
                if let Some(st) = st {
                    act.core.set_raft_term(st.term);
                }
            }));
        }
        self.schedule_sync(ctx);
    }
}

impl Handler<Committed> for WatchHub {
    type Result = ();
    fn handle(&mut self, msg: Committed, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("Committed");
        self.core.committed(msg.revision, &msg.events, msg.prevs_read);
        self.schedule_sync(ctx);
    }
}

impl Handler<OpenStream> for WatchHub {
    type Result = OpenedStream;
    fn handle(&mut self, _: OpenStream, _: &mut Context<Self>) -> OpenedStream {
        let _t = self.instruments.handling("OpenStream");
        let (id, responses) = self.core.open_stream();
        OpenedStream { id, responses }
    }
}

impl Handler<StreamRequest> for WatchHub {
    type Result = ();
    fn handle(&mut self, msg: StreamRequest, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("StreamRequest");
        match msg.refused {
            Some(reason) => self.core.refuse_create(msg.stream, &reason),
            None => self.core.request(msg.stream, msg.request),
        }
        self.schedule_sync(ctx);
    }
}

impl Handler<CloseStream> for WatchHub {
    type Result = ();
    fn handle(&mut self, msg: CloseStream, _: &mut Context<Self>) {
        let _t = self.instruments.handling("CloseStream");
        self.core.close_stream(msg.stream);
    }
}

impl Handler<GetHubStats> for WatchHub {
    type Result = HubStats;
    fn handle(&mut self, _: GetHubStats, _: &mut Context<Self>) -> HubStats {
        let _t = self.instruments.handling("GetHubStats");
        self.core.stats()
    }
}


#[cfg(test)]
mod tests {
    //! The hub's decisions, driven by hand: each test names the etcd watch
    //! guarantee it checks (ordered, atomic per revision, no gap, no duplicate,
    //! compaction answer, filters, progress, fragment).
    use super::*;
    use crate::proto::etcdserverpb::watch_request::RequestUnion as R;

    fn kv(key: &str, rev: i64, create: i64, version: i64, value: &str) -> mvcc::KeyValue {
        mvcc::KeyValue {
            key: key.into(),
            create_revision: create,
            mod_revision: rev,
            version,
            value: value.into(),
            lease: 0,
        }
    }

    fn put(key: &str, rev: i64, create: i64, version: i64) -> mvcc::Event {
        let prev = (version > 1).then(|| kv(key, rev - 1, create, version - 1, "old"));
        let prev_lease = prev.as_ref().map_or(0, |p| p.lease);
        mvcc::Event { kind: mvcc::EventKind::Put, kv: kv(key, rev, create, version, "v"), prev_kv: prev, prev_lease }
    }

    fn del(key: &str, rev: i64) -> mvcc::Event {
        mvcc::Event {
            kind: mvcc::EventKind::Delete,
            kv: mvcc::KeyValue { key: key.into(), mod_revision: rev, ..Default::default() },
            prev_kv: Some(kv(key, rev - 1, rev - 1, 1, "old")),
            prev_lease: 0,
        }
    }

    fn config(buffer: usize) -> HubConfig {
        HubConfig { stream_buffer_responses: buffer, stream_backlog_max: 8, ..HubConfig::new(1024 * 1024) }
    }

    fn hub(revision: i64) -> HubCore {
        let mut h = HubCore::new(config(64), HeaderIds { cluster_id: 1, member_id: 2 }, revision);
        h.set_raft_term(3);
        h
    }

    fn create(key: &str, end: &str) -> pb::WatchCreateRequest {
        pb::WatchCreateRequest { key: key.into(), range_end: end.into(), ..Default::default() }
    }

    fn req(c: pb::WatchCreateRequest) -> pb::WatchRequest {
        pb::WatchRequest { request_union: Some(R::CreateRequest(c)) }
    }

    fn drain(rx: &mut mpsc::Receiver<pb::WatchResponse>) -> Vec<pb::WatchResponse> {
        let mut out = Vec::new();
        while let Ok(r) = rx.try_recv() {
            out.push(r);
        }
        out
    }

    /// (watch_id, header revision, [(type, key, mod_revision, has prev_kv)]) per
    /// response, for compact assertions.
    type Brief = (i64, i64, Vec<(i32, String, i64, bool)>);
    fn brief(rs: &[pb::WatchResponse]) -> Vec<Brief> {
        rs.iter()
            .map(|r| {
                let evs = r
                    .events
                    .iter()
                    .map(|e| {
                        let kv = e.kv.as_ref().unwrap();
                        (e.r#type, String::from_utf8_lossy(&kv.key).into_owned(), kv.mod_revision, e.prev_kv.is_some())
                    })
                    .collect();
                (r.watch_id, r.header.as_ref().map_or(0, |h| h.revision), evs)
            })
            .collect()
    }

    fn history(events: Vec<mvcc::Event>, next_rev: i64) -> mvcc::History {
        mvcc::History { events, next_rev }
    }

    const PUT: i32 = 0;
    const DELETE: i32 = 1;

    #[test]
    fn key_ranges_follow_etcd_normalisation() {
        assert_eq!(KeyRange::from_request(b"", b""), Ok(KeyRange::Single(vec![0])));
        assert_eq!(KeyRange::from_request(b"a", b"\0"), Ok(KeyRange::FromKey(b"a".to_vec())));
        assert_eq!(KeyRange::from_request(b"b", b"a"), Err(ERR_EMPTY_RANGE));
        assert_eq!(KeyRange::from_request(b"a", b"a"), Err(ERR_EMPTY_RANGE));
        let prefix = KeyRange::from_request(b"foo", b"fop").unwrap();
        assert!(prefix.contains(b"foo") && prefix.contains(b"foo/x") && !prefix.contains(b"fop") && !prefix.contains(b"fo"));
        let from = KeyRange::from_request(b"m", b"\0").unwrap();
        assert!(from.contains(b"m") && from.contains(b"zzz") && !from.contains(b"l"));
        assert!(KeyRange::Single(b"k".to_vec()).contains(b"k") && !KeyRange::Single(b"k".to_vec()).contains(b"k2"));
    }

    #[test]
    fn filters_drop_puts_or_deletes() {
        let f = Filters::from_request(&[FilterType::Noput as i32]);
        assert!(!f.passes(mvcc::EventKind::Put) && f.passes(mvcc::EventKind::Delete));
        let f = Filters::from_request(&[FilterType::Nodelete as i32, 7]);
        assert!(f.passes(mvcc::EventKind::Put) && !f.passes(mvcc::EventKind::Delete));
    }

    /// Live events: one response per revision (a txn's events together), in
    /// revision order, prev_kv only when asked, header revision = the event's.
    #[test]
    fn live_events_arrive_per_revision_in_order() {
        let mut h = hub(4);
        let (s, mut rx) = h.open_stream();
        h.request(s, req(pb::WatchCreateRequest { prev_kv: true, ..create("a", "") }));
        h.request(s, req(create("b", "c")));
        let created = drain(&mut rx);
        assert_eq!(created.len(), 2);
        assert!(created.iter().all(|r| r.created && r.header.as_ref().unwrap().revision == 4));
        assert_eq!((created[0].watch_id, created[1].watch_id), (0, 1), "etcd assigns ids from 0");
        // One apply batch: a txn at 5 (a and b), a put of x at 6, a delete of a at 7.
        h.committed(7, &[put("a", 5, 2, 2), put("b", 5, 5, 1), put("x", 6, 6, 1), del("a", 7)], true);
        assert_eq!(
            brief(&drain(&mut rx)),
            vec![
                (0, 5, vec![(PUT, "a".into(), 5, true)]),
                (1, 5, vec![(PUT, "b".into(), 5, false)]),
                (0, 7, vec![(DELETE, "a".into(), 7, true)]),
            ]
        );
        assert_eq!(h.revision(), 7);
    }

    #[test]
    fn prefix_from_key_and_filters() {
        let mut h = hub(1);
        let (s, mut rx) = h.open_stream();
        h.request(s, req(pb::WatchCreateRequest { watch_id: 10, ..create("p/", "p0") }));
        h.request(s, req(pb::WatchCreateRequest { watch_id: 11, ..create("m", "\0") }));
        h.request(
            s,
            req(pb::WatchCreateRequest { watch_id: 12, filters: vec![FilterType::Noput as i32], ..create("p/", "p0") }),
        );
        h.request(
            s,
            req(pb::WatchCreateRequest {
                watch_id: 13,
                filters: vec![FilterType::Nodelete as i32],
                ..create("p/", "p0")
            }),
        );
        drain(&mut rx);
        h.committed(4, &[put("p/1", 2, 2, 1), put("a", 3, 3, 1), put("z", 3, 3, 1), del("p/1", 4)], true);
        assert_eq!(
            brief(&drain(&mut rx)),
            vec![
                (10, 2, vec![(PUT, "p/1".into(), 2, false)]),
                (11, 2, vec![(PUT, "p/1".into(), 2, false)]),
                (13, 2, vec![(PUT, "p/1".into(), 2, false)]),
                (11, 3, vec![(PUT, "z".into(), 3, false)]),
                (10, 4, vec![(DELETE, "p/1".into(), 4, false)]),
                (11, 4, vec![(DELETE, "p/1".into(), 4, false)]),
                (12, 4, vec![(DELETE, "p/1".into(), 4, false)]),
            ]
        );
    }

    /// The seam: a watcher from an old revision gets history, and live events
    /// that the history already covered are not sent again; nothing is skipped.
    #[test]
    fn history_then_live_with_no_gap_and_no_duplicate() {
        let mut h = hub(5);
        let (s, mut rx) = h.open_stream();
        h.request(s, req(pb::WatchCreateRequest { start_revision: 3, ..create("k", "") }));
        assert!(drain(&mut rx)[0].created);
        let plan = h.history_plan().expect("a catch-up read");
        assert_eq!(plan.from_rev, 3);
        // Revision 6 commits while the read is under way: not for this watcher yet.
        h.committed(6, &[put("k", 6, 3, 4)], true);
        assert!(drain(&mut rx).is_empty(), "an unsynced watcher gets no live events");
        // The store was already at 7 when it answered (its Committed for 7 is
        // still on the way to the hub).
        h.history_loaded(
            3,
            &history(vec![put("k", 3, 3, 1), put("k", 4, 3, 2), put("x", 5, 5, 1), put("k", 6, 3, 4), put("k", 7, 3, 5)], 8),
            None,
        );
        assert_eq!(
            brief(&drain(&mut rx)),
            vec![(0, 7, vec![(PUT, "k".into(), 3, false), (PUT, "k".into(), 4, false), (PUT, "k".into(), 6, false), (PUT, "k".into(), 7, false)])]
        );
        assert_eq!(h.stats().synced, 1);
        h.committed(7, &[put("k", 7, 3, 5)], true); // already sent from history
        h.committed(8, &[put("k", 8, 3, 6)], true);
        assert_eq!(brief(&drain(&mut rx)), vec![(0, 8, vec![(PUT, "k".into(), 8, false)])]);
    }

    /// History in chunks: a read that stops short leaves the watcher catching up
    /// from where it stopped.
    #[test]
    fn history_in_chunks() {
        let mut h = hub(6);
        let (s, mut rx) = h.open_stream();
        h.request(s, req(pb::WatchCreateRequest { start_revision: 2, ..create("k", "") }));
        drain(&mut rx);
        h.history_loaded(2, &history(vec![put("k", 2, 2, 1), put("k", 3, 2, 2)], 4), None);
        assert_eq!(h.stats().unsynced, 1);
        assert_eq!(h.history_plan().map(|p| p.from_rev), Some(4));
        h.history_loaded(4, &history(vec![put("k", 4, 2, 3), del("k", 6)], 7), None);
        assert_eq!(h.stats().unsynced, 0);
        let got = brief(&drain(&mut rx));
        let revs: Vec<i64> = got.iter().flat_map(|(_, _, e)| e.iter().map(|x| x.2)).collect();
        assert_eq!(revs, vec![2, 3, 4, 6]);
    }

    /// A batch the store applied without reading previous values goes to the
    /// watchers that do not want them; one that wants `prev_kv` catches up from
    /// history (which reads them) instead, from that revision. Such a watcher
    /// raises the store's flag, and drops it when it goes.
    #[test]
    fn a_prev_kv_watcher_catches_up_when_prevs_were_not_read() {
        let mut h = hub(4);
        let flag = Arc::new(AtomicBool::new(true));
        h.publish_prev_kv_wanted(flag.clone());
        assert!(!flag.load(Ordering::Acquire), "no watcher wants prev_kv yet");
        let (s, mut rx) = h.open_stream();
        h.request(s, req(create("k", "")));
        h.request(s, req(pb::WatchCreateRequest { prev_kv: true, ..create("k", "") }));
        drain(&mut rx);
        assert!(flag.load(Ordering::Acquire));
        h.committed(5, &[put("k", 5, 2, 2)], false);
        assert_eq!(brief(&drain(&mut rx)), vec![(0, 5, vec![(PUT, "k".into(), 5, false)])]);
        assert_eq!(h.stats().unsynced, 1);
        let plan = h.history_plan().expect("a catch-up read");
        assert_eq!((plan.from_rev, plan.want_prev_kv), (5, true));
        h.request(s, pb::WatchRequest { request_union: Some(R::CancelRequest(pb::WatchCancelRequest { watch_id: 1 })) });
        assert!(!flag.load(Ordering::Acquire), "the last prev_kv watcher went");
    }

    /// A stream whose buffer is full never holds up the others; its watcher
    /// catches up from history later, with nothing lost.
    #[test]
    fn full_buffer_moves_the_watcher_to_catch_up() {
        let mut h = HubCore::new(config(3), HeaderIds { cluster_id: 1, member_id: 2 }, 1);
        let (slow, mut slow_rx) = h.open_stream();
        let (fast, mut fast_rx) = h.open_stream();
        h.request(slow, req(create("k", "")));
        h.request(slow, req(create("other", "")));
        h.request(fast, req(create("k", "")));
        drain(&mut fast_rx);
        // slow's buffer: [created, created] + 1 free slot.
        h.committed(4, &[put("k", 2, 2, 1), put("k", 3, 2, 2), put("k", 4, 2, 3)], true);
        assert_eq!(h.stats().unsynced, 1);
        assert_eq!(drain(&mut fast_rx).len(), 3, "the fast stream got every revision");
        let got = brief(&drain(&mut slow_rx));
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].2[0].2, 2);
        let plan = h.history_plan().unwrap();
        assert_eq!(plan.from_rev, 3, "catch-up starts at the first revision not sent");
        h.history_loaded(3, &history(vec![put("k", 3, 2, 2), put("k", 4, 2, 3)], 5), None);
        h.committed(5, &[put("k", 5, 2, 4)], true);
        let revs: Vec<i64> = brief(&drain(&mut slow_rx)).iter().flat_map(|(_, _, e)| e.iter().map(|x| x.2)).collect();
        assert_eq!(revs, vec![3, 4, 5]);
        assert_eq!(h.stats().unsynced, 0);
    }

    /// etcd: a start revision below the compaction point is answered `created`,
    /// then `canceled` with `compact_revision` and a header without a revision.
    #[test]
    fn compacted_start_is_cancelled_with_compact_revision() {
        let mut h = hub(10);
        let (s, mut rx) = h.open_stream();
        h.request(s, req(pb::WatchCreateRequest { start_revision: 2, watch_id: 4, ..create("k", "") }));
        h.history_compacted(5);
        let got = drain(&mut rx);
        assert_eq!(got.len(), 2);
        assert!(got[0].created && !got[0].canceled);
        assert_eq!(
            got[1],
            pb::WatchResponse {
                header: Some(pb::ResponseHeader { cluster_id: 1, member_id: 2, revision: 0, raft_term: 3 }),
                watch_id: 4,
                canceled: true,
                compact_revision: 5,
                ..Default::default()
            }
        );
        assert_eq!(h.stats().watchers, 0);
        // The id is free again on the stream.
        h.request(s, req(pb::WatchCreateRequest { watch_id: 4, ..create("k", "") }));
        assert!(!drain(&mut rx)[0].canceled);
    }

    /// etcd's refusals: duplicate id and empty range (watch_id -1, created and
    /// canceled with the reason); auto ids skip the ones in use.
    #[test]
    fn refusals_and_ids() {
        let mut h = hub(4);
        let (s, mut rx) = h.open_stream();
        h.request(s, req(pb::WatchCreateRequest { watch_id: 1, ..create("k", "") }));
        h.request(s, req(pb::WatchCreateRequest { watch_id: 1, ..create("k", "") }));
        h.request(s, req(create("k", "")));
        h.request(s, req(create("k", "")));
        h.request(s, req(create("z", "a")));
        let got = drain(&mut rx);
        let summary: Vec<(i64, bool, bool, &str)> =
            got.iter().map(|r| (r.watch_id, r.created, r.canceled, r.cancel_reason.as_str())).collect();
        assert_eq!(
            summary,
            vec![
                (1, true, false, ""),
                (-1, true, true, ERR_DUPLICATE_ID),
                (0, true, false, ""),
                (2, true, false, ""),
                (-1, true, true, ERR_EMPTY_RANGE),
            ]
        );
    }

    #[test]
    fn cancel_stops_events_and_unknown_ids_get_no_answer() {
        let mut h = hub(1);
        let (s, mut rx) = h.open_stream();
        h.request(s, req(create("k", "")));
        let cancel = |id| pb::WatchRequest { request_union: Some(R::CancelRequest(pb::WatchCancelRequest { watch_id: id })) };
        h.request(s, cancel(0));
        h.request(s, cancel(9));
        let got = drain(&mut rx);
        assert_eq!(got.len(), 2);
        assert!(got[1].canceled && got[1].watch_id == 0 && got[1].header.as_ref().unwrap().revision == 1);
        h.committed(2, &[put("k", 2, 2, 1)], true);
        assert!(drain(&mut rx).is_empty());
        assert_eq!(h.stats().watchers, 0);
    }

    /// A progress request is answered with watch_id -1 and the hub's revision, once
    /// every watcher on the stream has been sent everything up to it.
    #[test]
    fn progress_request_waits_for_catch_up() {
        let mut h = hub(8);
        let (s, mut rx) = h.open_stream();
        let progress = pb::WatchRequest { request_union: Some(R::ProgressRequest(pb::WatchProgressRequest {})) };
        h.request(s, progress.clone());
        assert_eq!(brief(&drain(&mut rx)), vec![(-1, 8, vec![])]);
        h.request(s, req(pb::WatchCreateRequest { start_revision: 7, ..create("k", "") }));
        drain(&mut rx);
        h.request(s, progress);
        assert!(drain(&mut rx).is_empty(), "not while a watcher catches up");
        h.history_loaded(7, &history(vec![put("k", 7, 7, 1)], 9), None);
        assert_eq!(brief(&drain(&mut rx)), vec![(0, 8, vec![(PUT, "k".into(), 7, false)]), (-1, 8, vec![])]);
    }

    /// Periodic progress (etcd's progress_notify): synced watchers that asked for
    /// it and had no events since the last tick get the hub's revision.
    #[test]
    fn periodic_progress_for_quiet_watchers() {
        let mut h = hub(3);
        let (s, mut rx) = h.open_stream();
        h.request(s, req(pb::WatchCreateRequest { progress_notify: true, ..create("a", "") }));
        h.request(s, req(pb::WatchCreateRequest { progress_notify: true, ..create("b", "") }));
        h.request(s, req(create("c", "")));
        drain(&mut rx);
        h.committed(4, &[put("a", 4, 4, 1)], true);
        drain(&mut rx);
        h.progress_tick();
        assert_eq!(brief(&drain(&mut rx)), vec![(1, 4, vec![])], "a had events, c did not ask");
        h.progress_tick();
        assert_eq!(brief(&drain(&mut rx)), vec![(0, 4, vec![]), (1, 4, vec![])]);
    }

    /// etcd's sendFragments: a big response is cut under the limit, every piece
    /// but the last flagged `fragment`; one event is never cut.
    #[test]
    fn fragments_under_the_limit() {
        let big = |i: i64| mvccpb::Event {
            kv: Some(mvccpb::KeyValue { key: format!("k{i}").into(), value: vec![b'x'; 100], mod_revision: 5, ..Default::default() }),
            ..Default::default()
        };
        let resp = pb::WatchResponse { watch_id: 3, events: (0..10).map(big).collect(), ..Default::default() };
        let limit = 350;
        let parts = fragment(resp.clone(), limit);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.encoded_len() < limit && !p.events.is_empty() && p.watch_id == 3));
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment) && !parts.last().unwrap().fragment);
        let joined: Vec<mvccpb::Event> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, resp.events);
        let one = pb::WatchResponse { events: vec![big(1)], ..Default::default() };
        assert_eq!(fragment(one.clone(), 10), vec![one]);
        assert_eq!(fragment(resp.clone(), 1 << 20), vec![resp]);
    }

    /// Fragmenting watchers get their pieces through the hub, all of a revision at
    /// once.
    #[test]
    fn hub_fragments_for_fragment_watchers() {
        let mut h = HubCore::new(
            HubConfig { fragment_bytes: 40, ..config(64) },
            HeaderIds { cluster_id: 1, member_id: 2 },
            1,
        );
        let (s, mut rx) = h.open_stream();
        h.request(s, req(pb::WatchCreateRequest { fragment: true, ..create("a", "b") }));
        drain(&mut rx);
        h.committed(2, &[put("a1", 2, 2, 1), put("a2", 2, 2, 1), put("a3", 2, 2, 1)], true);
        let got = drain(&mut rx);
        assert!(got.len() > 1);
        assert_eq!(got.iter().map(|r| r.events.len()).sum::<usize>(), 3);
        assert!(!got.last().unwrap().fragment && got[0].fragment);
    }

    /// Control answers are never lost: past a full buffer they wait in order, and
    /// no event overtakes them; a stream that never reads is closed at the bound.
    #[test]
    fn backlog_keeps_control_answers_in_order() {
        let mut h = HubCore::new(config(1), HeaderIds { cluster_id: 1, member_id: 2 }, 1);
        let (s, mut rx) = h.open_stream();
        h.request(s, req(create("a", "")));
        h.request(s, req(create("b", "")));
        h.committed(2, &[put("a", 2, 2, 1)], true);
        let first = drain(&mut rx);
        assert_eq!((first.len(), first[0].watch_id, first[0].created), (1, 0, true));
        h.flush_backlogs();
        let second = drain(&mut rx);
        assert_eq!((second.len(), second[0].watch_id, second[0].created), (1, 1, true));
        // Watcher 0 missed revision 2 behind the backlog: it catches up.
        assert_eq!(h.history_plan().map(|p| p.from_rev), Some(2));
        for _ in 0..20 {
            h.request(s, req(create("c", "")));
        }
        assert_eq!(h.stats().streams, 0, "closed once its backlog passed the bound");
    }

    #[test]
    fn a_closed_stream_is_dropped_on_its_next_send() {
        let mut h = hub(1);
        let (s, rx) = h.open_stream();
        h.request(s, req(create("k", "")));
        drop(rx);
        h.committed(2, &[put("k", 2, 2, 1)], true);
        assert_eq!(h.stats(), HubStats { streams: 0, watchers: 0, synced: 0, unsynced: 0, revision: 2, events_sent: 0 });
    }

    /// 10,000 watchers on 100 streams: an event reaches only the watchers of its
    /// key (single-key watches are found by key, not by a scan).
    #[test]
    fn ten_thousand_watchers() {
        let mut h = HubCore::new(HubConfig::new(1 << 20), HeaderIds { cluster_id: 1, member_id: 2 }, 1);
        let mut rxs = Vec::new();
        for stream in 0..100 {
            let (s, rx) = h.open_stream();
            rxs.push(rx);
            for w in 0..100 {
                h.request(s, req(create(&format!("key{}", (stream * 100 + w) % 500), "")));
            }
        }
        for rx in &mut rxs {
            drain(rx);
        }
        assert_eq!(h.stats().watchers, 10_000);
        assert_eq!(h.synced_by_key.len(), 500);
        h.committed(2, &[put("key7", 2, 2, 1)], true);
        let got: usize = rxs.iter_mut().map(|rx| drain(rx).len()).sum();
        assert_eq!(got, 20);
        for s in 1..=100 {
            h.close_stream(s);
        }
        assert_eq!(h.stats().watchers, 0);
        assert!(h.synced_by_key.is_empty() && h.synced_ranges.is_empty() && h.progress_watchers.is_empty());
    }
}
