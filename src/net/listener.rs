//! The client port: etcd's JSON gateway (HTTP/1.1, actix-web) and etcd's gRPC API
//! (HTTP/2, tonic) on the same listener, as etcd serves them.
//!
//! An actix-server accepts the connections; its per-connection service peeks at
//! the first bytes without reading them. The HTTP/2 client preface goes to this
//! worker's tonic server (fed through a bounded channel of accepted connections);
//! anything else is served in place by the actix-web gateway `App`, wrapped as an
//! actix-http `HttpService`. Nothing is copied or proxied: the kernel's receive
//! buffer still holds the peeked bytes for whichever side serves the connection,
//! and the gateway path costs one `recv(MSG_PEEK)` per connection (none per
//! request: keep-alive connections stay with the gateway).
//!
//! Owns connection routing only; it must never look inside a request.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive};
use actix_rt::net::TcpStream;
use actix_server::{GracefulShutdownSignal, Server, ServerBuilder};
use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use tokio::sync::mpsc;
use tonic::codegen::{http, http::Request, Service as TowerService};

use crate::net::{gateway, grpc};
use crate::service::ClientService;

/// What an HTTP/2 client sends first (RFC 9113 §3.4); gRPC always speaks HTTP/2.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a new connection may stay silent before it is closed (actix-web's
/// client request timeout, which closed silent connections before).
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between peeks while only part of the preface has arrived.
const PARTIAL_PREFACE_PAUSE: Duration = Duration::from_millis(1);
/// Accepted gRPC connections waiting for the worker's tonic server to take them.
const GRPC_HANDOFF_QUEUE_MAX: usize = 64;
/// Worker threads accepting and serving client connections.
const WORKERS: usize = 2;
/// Seconds a stopping server gives open connections to finish.
const SHUTDOWN_TIMEOUT_S: u64 = 5;

/// The client listeners of one member, built like actix-web's `HttpServer`:
/// `new`, then `listen` for each bound socket, then `run`.
pub struct ClientServer {
    builder: ServerBuilder,
    service: ClientService,
}

impl ClientServer {
    pub fn new(service: ClientService) -> Self {
        let builder = Server::build().workers(WORKERS).shutdown_timeout(SHUTDOWN_TIMEOUT_S);
        ClientServer { builder, service }
    }

    /// Serves both APIs on an already bound listener.
    pub fn listen(mut self, listener: std::net::TcpListener) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let service = self.service.clone();
        let shutdown = self.builder.graceful_shutdown_signal();
        self.builder = self.builder.listen(format!("stead-client-{addr}"), listener, move || {
            // Called on each worker thread as it starts.
            crate::threads::name_current_thread("stead-client");
            connection_service(service.clone(), shutdown.clone(), addr)
        })?;
        Ok(self)
    }

    /// Starts the workers; the returned server resolves when it has stopped
    /// (SIGINT / SIGTERM, as before).
    pub fn run(self) -> Server {
        self.builder.run()
    }
}

/// Which API a connection speaks, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http,
}

/// The per-connection service of one worker: it starts the worker's tonic server
/// and the worker's gateway, then routes each accepted connection to one of them.
fn connection_service(
    service: ClientService,
    shutdown: GracefulShutdownSignal,
    addr: SocketAddr,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()> {
    fn_factory(move || {
        let (service, shutdown) = (service.clone(), shutdown.clone());
        async move {
            let gateway = gateway_service(service.clone(), shutdown.clone(), addr).new_service(()).await?;
            let gateway = Rc::new(gateway);
            let grpc = spawn_grpc(service, shutdown.clone());
            Ok(fn_service(move |stream: TcpStream| {
                let (gateway, grpc, shutdown) = (Rc::clone(&gateway), grpc.clone(), shutdown.clone());
                async move {
                    // A connection still silent when the server stops is closed
                    // at once, as the gateway closes its idle ones.
                    let protocol = tokio::select! {
                        protocol = sniff(&stream) => protocol,
                        () = shutdown.notified() => Ok(None),
                    };
                    match protocol {
                        Ok(Some(Protocol::Http)) => {
                            // The gateway logs its own connection errors.
                            let _ = gateway.call(stream).await;
                        }
                        Ok(Some(Protocol::Grpc)) => {
                            // As Go and tonic do for their own listeners: no
                            // Nagle delay on small unary responses.
                            let _ = stream.set_nodelay(true);
                            if grpc.send(stream).await.is_err() {
                                tracing::debug!("gRPC server stopped; dropping a connection");
                            }
                        }
                        Ok(None) => {}
                        Err(e) => tracing::debug!("client connection: {e}"),
                    }
                    Ok::<(), ()>(())
                }
            }))
        }
    })
}

/// Peeks at a new connection's first bytes: `None` when it closes or stays silent.
async fn sniff(stream: &TcpStream) -> io::Result<Option<Protocol>> {
    let mut first = [0u8; HTTP2_PREFACE.len()];
    let deadline = tokio::time::Instant::now() + FIRST_BYTES_TIMEOUT;
    loop {
        let Ok(peeked) = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await else {
            return Ok(None);
        };
        let n = peeked?;
        if n == 0 {
            return Ok(None);
        }
        if first[..n] != HTTP2_PREFACE[..n] {
            return Ok(Some(Protocol::Http));
        }
        if n == HTTP2_PREFACE.len() {
            return Ok(Some(Protocol::Grpc));
        }
        // Only part of the preface so far (a split segment): the socket stays
        // readable, so wait a moment instead of spinning on the same bytes.
        if tokio::time::timeout_at(deadline, tokio::time::sleep(PARTIAL_PREFACE_PAUSE)).await.is_err() {
            return Ok(None);
        }
    }
}

/// Starts this worker's tonic server on its own runtime, fed by the returned
/// sender; it drains and stops when the server starts shutting down.
fn spawn_grpc(service: ClientService, shutdown: GracefulShutdownSignal) -> mpsc::Sender<TcpStream> {
    let (tx, rx) = mpsc::channel::<TcpStream>(GRPC_HANDOFF_QUEUE_MAX);
    let incoming = futures::stream::unfold(rx, |mut rx| async move {
        // etcdctl's per-endpoint clients send a URL as `:authority`, which h2
        // refuses: see `net::h2_authority`.
        rx.recv().await.map(|stream| (Ok::<_, io::Error>(crate::net::h2_authority::AuthorityFix::new(stream)), rx))
    });
    let metrics = service.metrics().clone();
    let max_streams = service.limits().max_concurrent_streams;
    let routes = grpc::routes(service);
    actix_rt::spawn(async move {
        let served = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(max_streams))
            .layer(tower_layer::layer_fn(move |inner| CountRpcs { inner, metrics: metrics.clone() }))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move { shutdown.notified().await })
            .await;
        if let Err(e) = served {
            tracing::error!("gRPC server: {e}");
        }
    });
    tx
}

/// The JSON gateway as actix-web's `HttpServer` would serve it on a connection,
/// with its defaults (keep-alive, request and disconnect timeouts).
fn gateway_service(
    service: ClientService,
    shutdown: GracefulShutdownSignal,
    addr: SocketAddr,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = actix_http::error::DispatchError, InitError = ()>
{
    let data = web::Data::new(service);
    let app = App::new().app_data(data).configure(gateway::configure);
    HttpService::build()
        .graceful_shutdown_signal(move || {
            let shutdown = shutdown.clone();
            async move { shutdown.notified().await }
        })
        .keep_alive(KeepAlive::default())
        .client_request_timeout(Duration::from_secs(5))
        .client_disconnect_timeout(Duration::from_secs(1))
        // As Go's HTTP server under etcd's gateway: a client that closes its
        // side is gone, and its pending request (a lock or campaign that waits)
        // is dropped, which deletes its waiter key.
        .h1_allow_half_closed(false)
        .local_addr(addr)
        .finish(map_config(
            app.into_factory().map_err(|err: actix_web::Error| err.error_response()),
            |_| AppConfig::default(),
        ))
        .tcp()
}

/// Counts etcd's unary gRPC calls in `grpc_server_{started,handled}_total`, as
/// go-grpc-prometheus does for etcd, after giving an oversize request grpc-go's
/// status (`net::grpc_limits`): the code is the response's `grpc-status`
/// header (tonic answers an error as a trailers-only response), `OK` without one.
#[derive(Clone)]
struct CountRpcs<S> {
    inner: S,
    metrics: crate::metrics::Metrics,
}

impl<S, B, R> TowerService<Request<B>> for CountRpcs<S>
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
        let rpc = crate::metrics::etcd_unary_rpc(request.uri().path());
        if let Some(rpc) = rpc {
            self.metrics.rpc_started(rpc);
        }
        let metrics = self.metrics.clone();
        let started = std::time::Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            // grpc-go's status for an oversize request, before it is counted.
            crate::net::grpc_limits::rewrite_oversize_status(response.headers_mut());
            if let Some(rpc) = rpc {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0);
                metrics.rpc_handled(rpc, crate::metrics::grpc_code_name(code), started);
            }
            Ok(response)
        })
    }
}
