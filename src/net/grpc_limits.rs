//! grpc-go's answer to an oversize request, on tonic: tonic refuses a request
//! message past the decoding limit with `OutOfRange` and its own text; grpc-go
//! (etcd's server) answers `ResourceExhausted`, "grpc: received message larger
//! than max (N vs. M)", and clients (etcdctl, clientv3) show that text. This
//! tower layer rewrites tonic's trailers-only error response into grpc-go's.
//!
//! Owns that one rewrite: it never looks at a request or at a successful
//! response's body, and leaves every other status alone.

use tonic::codegen::http::{self, Request};
use tonic::codegen::Service as TowerService;

use crate::net::status::{oversize_request, Code};

/// tonic's text for a request message over the limit (tonic 0.14's decoder).
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// The service with tonic's oversize-request status rewritten as grpc-go's.
#[derive(Clone)]
pub struct GrpcGoLimits<S> {
    pub inner: S,
}

impl<S, B, R> TowerService<Request<B>> for GrpcGoLimits<S>
where
    S: TowerService<Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            let headers = response.headers_mut();
            if headers.get("grpc-status").is_some_and(|v| v.as_bytes() == b"11") {
                let rewritten = tonic::Status::from_header_map(headers).and_then(|s| grpc_go_text(s.message()));
                if let Some(text) = rewritten {
                    let status = tonic::Status::new(Code::ResourceExhausted.grpc(), text);
                    if status.add_header(headers).is_err() {
                        tracing::debug!("could not rewrite an oversize-request status");
                    }
                }
            }
            Ok(response)
        })
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
