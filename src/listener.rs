//! Serving a [`Router`] on a TCP listener with the limits every Portcullis
//! listener has (token service, SCIM service, standalone, the operator's
//! probes), so that a client that is slow on purpose cannot hold the server:
//!
//! ```text
//!  accept ◄── a permit of ListenerLimits::max_connections (else the next
//!    │        connection waits in the kernel's backlog until one closes)
//!    ▼
//!  HTTP/1.1 connection ── head not complete within header_read_timeout ──► closed
//!    │                    (also an idle keep-alive connection: the next head)
//!    ▼
//!  request (handler + reading its body) ── longer than request_timeout ──► 408
//! ```
//!
//! axum's own `serve` takes no such settings, so connections are driven here
//! with hyper's HTTP/1 builder (its header read timeout) and the request
//! timeout wraps each request's future: the one place every request passes,
//! with no layer to add per router. Each request carries the peer address as
//! axum's [`ConnectInfo`], as `into_make_service_with_connect_info` gives it.
//! On shutdown the listener stops accepting and requests in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// What one listener tolerates from its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Time to send a request's head (request line and headers), counted
    /// from the first read; an idle keep-alive connection waits at most this
    /// long for its next request.
    pub header_read_timeout: Duration,
    /// Time for a request from its head to the response: the handler, and
    /// reading the body it asks for. Past it the client gets 408.
    pub request_timeout: Duration,
    /// Connections open at once; further ones wait to be accepted.
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the
/// requests in flight. Errors accepting a connection (the process is out of
/// file descriptors, say) are logged and retried, never fatal.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Every connection holds a receiver; `closed` resolves once all are gone.
    let (stop, stopped) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "could not accept a connection; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stopping = stopped.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                answer(app.clone(), request, peer, limits.request_timeout)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => log_connection_end(result, peer),
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    log_connection_end(connection.await, peer);
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    drop(stopped);
    // Tell every connection to finish its request in flight and close.
    let _ = stop.send(());
    stop.closed().await;
}

async fn answer(
    app: Router,
    request: Request<Incoming>,
    peer: SocketAddr,
    within: Duration,
) -> Result<Response, Infallible> {
    let mut request = request.map(Body::new);
    request.extensions_mut().insert(ConnectInfo(peer));
    match tokio::time::timeout(within, app.oneshot(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::debug!(%peer, ?within, "request timed out");
            Ok((StatusCode::REQUEST_TIMEOUT, "the request took too long\n").into_response())
        }
    }
}

fn log_connection_end(result: Result<(), hyper::Error>, peer: SocketAddr) {
    if let Err(error) = result {
        // A client that went away or was too slow: worth a debug line, not a warning.
        tracing::debug!(%peer, %error, "connection ended");
    }
}
