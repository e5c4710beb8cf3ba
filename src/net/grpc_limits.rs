//! grpc-go's answer to an oversize request, on tonic: tonic refuses a request
//! message past the decoding limit with `OutOfRange` and its own text; grpc-go
//! (etcd's server) answers `ResourceExhausted`, "grpc: received message larger
//! than max (N vs. M)", and clients (etcdctl, clientv3) show that text. The
//! client port's gRPC wrapper (`net::listener`) rewrites tonic's trailers-only
//! error response into grpc-go's with [`rewrite_oversize_status`].
//!
//! Owns that one rewrite: it never looks at a request or at a successful
//! response's body, and leaves every other status alone.

use tonic::codegen::http::HeaderMap;

use crate::net::status::{oversize_request, Code};

/// tonic's text for a request message over the limit (tonic 0.14's decoder).
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// Rewrites a response's trailers-only status from tonic's oversize-request
/// error to grpc-go's; any other response is left as it is.
pub fn rewrite_oversize_status(headers: &mut HeaderMap) {
    if headers.get("grpc-status").is_none_or(|v| v.as_bytes() != b"11") {
        return;
    }
    let Some(text) = tonic::Status::from_header_map(headers).and_then(|s| grpc_go_text(s.message())) else {
        return;
    };
    let status = tonic::Status::new(Code::ResourceExhausted.grpc(), text);
    if status.add_header(headers).is_err() {
        tracing::debug!("could not rewrite an oversize-request status");
    }
}

/// grpc-go's text for tonic's oversize-message text.
fn grpc_go_text(tonic_message: &str) -> Option<String> {
    let rest = tonic_message.strip_prefix(TONIC_TOO_LARGE)?;
    let (found, rest) = rest.split_once(" bytes")?;
    let limit = rest.rsplit_once(": ")?.1.strip_suffix(" bytes")?;
    let (found, limit) = (found.parse::<u64>().ok()?, limit.parse::<u64>().ok()?);
    Some(oversize_request(found, limit).1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_text_becomes_grpc_go_text() {
        assert_eq!(
            grpc_go_text("Error, decoded message length too large: found 600007 bytes, the limit is: 525288 bytes").as_deref(),
            Some("grpc: received message larger than max (600007 vs. 525288)")
        );
        assert_eq!(grpc_go_text("etcdserver: mvcc: required revision has been compacted"), None);
    }
}
