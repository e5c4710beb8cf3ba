//! One client watch stream as both client APIs drive it (the JSON gateway's
//! `POST /v3/watch` and gRPC `etcdserverpb.Watch/Watch`): open a stream on the
//! `WatchHub`, hand it the client's requests in order, give back the hub's
//! responses as a stream, and close the hub's stream when that response stream
//! is dropped (the client went away or the server stops).
//!
//! Knows no wire format: each API decodes its own requests, runs its own reader
//! task (the gateway's on the actix worker, gRPC's on tokio) and encodes the
//! responses. It must never hold watch state of its own: that is the hub's.

use actix::Addr;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::actors::watch::{CloseStream, OpenStream, StreamId, StreamRequest, WatchHub};
use crate::error::RequestError;
use crate::net::status::go_status_text;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::service::ClientService;
use crate::proto::etcdserverpb as pb;

/// An open stream on the hub, until its responses are taken as a stream.
pub struct WatchSession {
    responses: mpsc::Receiver<pb::WatchResponse>,
    guard: CloseGuard,
}

/// Hands one stream's requests to the hub; cheap to clone into a reader task.
#[derive(Clone)]
pub struct RequestSink {
    hub: Addr<WatchHub>,
    stream: StreamId,
    /// The client service acting for the stream's caller: checks each create's
    /// range against their permissions.
    caller: ClientService,
}

/// Closes the hub's stream and stops the reader task when dropped.
struct CloseGuard {
    sink: RequestSink,
    reader: Option<AbortHandle>,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
        self.sink.close();
    }
}

impl RequestSink {
    pub fn stream(&self) -> StreamId {
        self.stream
    }

    /// Hands a request to the hub and waits for it to be taken (back-pressure on
    /// a client that writes requests faster than the hub serves them). `false`
    /// when the hub is gone.
    pub async fn send(&self, request: pb::WatchRequest) -> bool {
        let refused = match &request.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                self.caller.authorize_watch(&c.key, &c.range_end).await.err().map(|e| go_status_text(&e))
            }
            _ => None,
        };
        self.hub.send(StreamRequest { stream: self.stream, request, refused }).await.is_ok()
    }

    /// The client is gone: the hub drops the stream and its watchers, which ends
    /// the response stream.
    pub fn close(&self) {
        self.hub.do_send(CloseStream { stream: self.stream });
    }
}

impl WatchSession {
    /// Opens a stream on the hub for `caller` (the service acting for the
    /// client's credentials).
    pub async fn open(hub: Addr<WatchHub>, caller: ClientService) -> Result<WatchSession, RequestError> {
        let opened = hub.send(OpenStream).await.map_err(|_| RequestError::Stopped)?;
        let sink = RequestSink { hub, stream: opened.id, caller };
        Ok(WatchSession { responses: opened.responses, guard: CloseGuard { sink, reader: None } })
    }

    pub fn id(&self) -> StreamId {
        self.guard.sink.stream
    }

    /// Where the client's requests go.
    pub fn sink(&self) -> RequestSink {
        self.guard.sink.clone()
    }

    /// Hands one request to the hub; `Stopped` when the hub is gone.
    pub async fn send(&self, request: pb::WatchRequest) -> Result<(), RequestError> {
        if self.guard.sink.send(request).await {
            Ok(())
        } else {
            Err(RequestError::Stopped)
        }
    }

    /// The task reading the client's requests: aborted when the session goes.
    pub fn set_reader(&mut self, reader: AbortHandle) {
        if let Some(old) = self.guard.reader.replace(reader) {
            old.abort();
        }
    }

    /// The hub's responses, in order, until the hub closes the stream. Dropping
    /// the stream closes the session.
    pub fn into_responses(self) -> impl Stream<Item = pb::WatchResponse> + Send + 'static {
        futures::stream::unfold(self, |mut session| async move {
            let resp = session.responses.recv().await?;
            Some((resp, session))
        })
    }
}
