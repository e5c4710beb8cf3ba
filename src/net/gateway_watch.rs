//! etcd's watch stream on the JSON gateway (`POST /v3/watch`), as etcd 3.4's
//! grpc-gateway serves it: the request body is a stream of JSON `WatchRequest`
//! objects (a create first, then creates, cancels and progress requests, read as
//! they arrive); the answer is a chunked stream of newline-terminated
//! `{"result": WatchResponse}` objects, for as long as the client stays.
//!
//! etcd's gateway behaviour kept here: an undecodable first request is answered
//! with a 500 error body (`code` 2); a later undecodable one ends the reading of
//! the request body but not the stream; the end of the body does not end the
//! stream either (only the client's going away does). One difference: a body
//! with no request at all gets an empty answer at once instead of a silent
//! stream that could never carry anything.
//!
//! Owns decoding and encoding only: the stream and its watchers live in the
//! `WatchHub`, driven through `net::watch_session` (shared with gRPC). It must
//! never hold watch state of its own.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use futures::StreamExt;
use serde::Serialize;

use crate::error::RequestError;
use crate::net::status::{etcd_status, Code};
use crate::net::gateway::Acting;
use crate::net::watch_session::{RequestSink, WatchSession};
use crate::proto::etcdserverpb as pb;

/// A request object larger than this cannot fit `max-request-bytes` once decoded
/// (base64 and JSON grow it by about 4/3): reading stops there.
fn buffer_limit(max_request_bytes: usize) -> usize {
    max_request_bytes.saturating_mul(2).saturating_add(64 * 1024)
}

/// Splits a byte stream into JSON `WatchRequest` objects (separated by
/// whitespace or nothing, as Go's `json.Decoder` reads them).
#[derive(Default)]
pub struct RequestDecoder {
    buf: Vec<u8>,
}

impl RequestDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete request; `Ok(None)` when more bytes are needed.
    pub fn next_request(&mut self) -> Result<Option<pb::WatchRequest>, String> {
        let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<pb::WatchRequest>();
        match values.next() {
            None => {
                self.buf.clear(); // only whitespace
                Ok(None)
            }
            Some(Ok(request)) => {
                let used = values.byte_offset();
                self.buf.drain(..used);
                crate::net::grpc_codec::count_received(prost::Message::encoded_len(&request));
                Ok(Some(request))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(e.to_string()),
        }
    }

    /// At the end of the body: anything left is a truncated request.
    pub fn finish(&self) -> Result<(), String> {
        if self.buf.iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else {
            Err("unexpected EOF".into())
        }
    }
}

/// The error body etcd's gateway writes, with the HTTP status of its code.
fn error_response(code: Code, text: &str) -> HttpResponse {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: &'a str,
        message: &'a str,
        code: i32,
    }
    let body = serde_json::to_string(&ErrorBody { error: text, message: text, code: code as i32 }).unwrap_or_default();
    HttpResponse::build(StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(body)
}

fn request_error(e: &RequestError) -> HttpResponse {
    let (code, text) = etcd_status(e);
    error_response(code, &text)
}

/// One line of the answer (counted as the gRPC message it stands for).
fn frame(resp: &pb::WatchResponse) -> web::Bytes {
    crate::net::grpc_codec::count_sent(prost::Message::encoded_len(resp));
    #[derive(Serialize)]
    struct Frame<'a> {
        result: &'a pb::WatchResponse,
    }
    let mut line = serde_json::to_vec(&Frame { result: resp }).unwrap_or_default();
    line.push(b'\n');
    web::Bytes::from(line)
}

/// Where the first request stands once the body has been read up to it.
enum First {
    Request(pb::WatchRequest),
    /// The body ended with no request: etcd keeps such a stream open and silent;
    /// stead ends it at once (nothing could ever be sent on it, and holding it
    /// would hold the connection).
    None,
}

async fn read_first(
    payload: &mut web::Payload,
    decoder: &mut RequestDecoder,
    limit: usize,
) -> Result<First, HttpResponse> {
    loop {
        match decoder.next_request() {
            Ok(Some(request)) => return Ok(First::Request(request)),
            Ok(None) => {}
            // etcd's gateway answers an undecodable first request with gRPC code
            // Unknown (HTTP 500) and the decoder's message.
            Err(e) => return Err(error_response(Code::Unknown, &e)),
        }
        match payload.next().await {
            Some(Ok(chunk)) => {
                if decoder.buffered() + chunk.len() > limit {
                    return Err(request_error(&RequestError::RequestTooLarge));
                }
                decoder.push(&chunk);
            }
            Some(Err(e)) => return Err(error_response(Code::Unknown, &e.to_string())),
            None => {
                return match decoder.finish() {
                    Ok(()) => Ok(First::None),
                    Err(e) => Err(error_response(Code::Unknown, &e)),
                };
            }
        }
    }
}

/// Reads the rest of the body and hands each request to the hub in order. A
/// request that cannot be decoded ends the reading (as etcd's gateway does), the
/// stream goes on.
async fn forward_requests(sink: RequestSink, mut payload: web::Payload, mut decoder: RequestDecoder, limit: usize) {
    let stream = sink.stream();
    loop {
        loop {
            match decoder.next_request() {
                Ok(Some(request)) => {
                    if !sink.send(request).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("watch stream {stream}: undecodable request, no longer reading requests: {e}");
                    return;
                }
            }
        }
        match payload.next().await {
            Some(Ok(chunk)) if decoder.buffered() + chunk.len() <= limit => decoder.push(&chunk),
            Some(Ok(_)) => {
                tracing::debug!("watch stream {stream}: request too large, no longer reading requests");
                return;
            }
            // The body broke off: the client is gone (with a chunked body this is
            // the one sign of it a handler gets), so its stream goes too.
            Some(Err(e)) => {
                tracing::debug!("watch stream {stream}: request body broke off ({e}); closing the stream");
                sink.close();
                return;
            }
            None => return,
        }
    }
}

/// `POST /v3/watch`.
pub async fn watch(Acting(service): Acting, mut payload: web::Payload) -> HttpResponse {
    let Some(hub) = service.watch().cloned() else {
        return request_error(&RequestError::NotImplemented("watch"));
    };
    let limit = buffer_limit(service.limits().max_request_bytes);
    let mut decoder = RequestDecoder::default();
    let first = match read_first(&mut payload, &mut decoder, limit).await {
        Ok(first) => first,
        Err(response) => return response,
    };
    let First::Request(first) = first else {
        return HttpResponse::Ok().content_type("application/json").finish();
    };
    let mut session = match WatchSession::open(hub, service.clone()).await {
        Ok(session) => session,
        Err(e) => return request_error(&e),
    };
    if let Err(e) = session.send(first).await {
        return request_error(&e);
    }
    let reader = actix_rt::spawn(forward_requests(session.sink(), payload, decoder, limit));
    session.set_reader(reader.abort_handle());
    let body = session.into_responses().map(|resp| Ok::<_, actix_web::Error>(frame(&resp)));
    HttpResponse::Ok().content_type("application/json").streaming(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::watch_request::RequestUnion;

    fn kind(r: &pb::WatchRequest) -> &'static str {
        match r.request_union {
            Some(RequestUnion::CreateRequest(_)) => "create",
            Some(RequestUnion::CancelRequest(_)) => "cancel",
            Some(RequestUnion::ProgressRequest(_)) => "progress",
            None => "none",
        }
    }

    /// Requests split anywhere across chunks, with or without whitespace between
    /// them, come out whole and in order (Go's json.Decoder reads them so).
    #[test]
    fn decoder_splits_a_stream_of_objects() {
        let body = br#"{"create_request":{"key":"Zm9v","watch_id":"7"}} {"progress_request":{}}{"cancel_request":{"watch_id":7}}
{}"#;
        for split in 0..body.len() {
            let mut d = RequestDecoder::default();
            let mut got = Vec::new();
            d.push(&body[..split]);
            while let Some(r) = d.next_request().expect("valid") {
                got.push(kind(&r));
            }
            d.push(&body[split..]);
            while let Some(r) = d.next_request().expect("valid") {
                got.push(kind(&r));
            }
            assert_eq!(got, ["create", "progress", "cancel", "none"], "split at {split}");
            assert!(d.finish().is_ok());
        }
    }

    #[test]
    fn decoder_reports_garbage_and_truncation() {
        let mut d = RequestDecoder::default();
        d.push(b"garbage");
        assert!(d.next_request().is_err());
        let mut d = RequestDecoder::default();
        d.push(br#"{"create_request":{"key":"#);
        assert_eq!(d.next_request(), Ok(None));
        assert!(d.finish().is_err());
    }

    /// Both spellings in, filters by name or number (as etcd's gateway takes them).
    #[test]
    fn decoder_takes_camel_case_and_numeric_filters() {
        let mut d = RequestDecoder::default();
        d.push(br#"{"createRequest":{"key":"Zm9v","startRevision":"5","prevKv":true,"filters":["NOPUT",1]}}"#);
        let Some(RequestUnion::CreateRequest(c)) = d.next_request().expect("valid").and_then(|r| r.request_union)
        else {
            panic!("a create request")
        };
        assert_eq!((c.key.as_slice(), c.start_revision, c.prev_kv, c.filters), (&b"foo"[..], 5, true, vec![0, 1]));
    }

    /// The frame is etcd's: `{"result":…}` and a newline, zero values omitted.
    #[test]
    fn frame_matches_etcd() {
        let resp = pb::WatchResponse {
            header: Some(pb::ResponseHeader { cluster_id: 1, member_id: 2, revision: 4, raft_term: 2 }),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
            ..Default::default()
        };
        assert_eq!(
            std::str::from_utf8(&frame(&resp)).unwrap(),
            "{\"result\":{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":\"4\",\"raft_term\":\"2\"},\
             \"watch_id\":\"-1\",\"created\":true,\"canceled\":true,\
             \"cancel_reason\":\"mvcc: duplicate watch ID provided on the WatchStream\"}}\n"
        );
    }
}
