//! The generator's own ceiling: an axum endpoint on the same runtime that
//! answers every POST with a fixed JSON body the size of a token answer, so
//! its cost is HTTP parsing and nothing else. What the generator reaches
//! against it bounds every other figure on this machine.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;

/// About the size of a client_credentials answer with an ES256 JWT.
const ANSWER: &str = concat!(
    r#"{"access_token":"eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImtleS0xIn0."#,
    r#"eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xL28vYWNtZSIsInN1YiI6ImJlbmNoIiwiYXVkIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZSIsImV4cCI6MTc5NTk1NjA2NiwiaWF0IjoxNzk1OTU1NzY2LCJqdGkiOiIwMTIzNDU2Nzg5YWJjZGVmIiwiY2xpZW50X2lkIjoiYmVuY2gifQ."#,
    r#"O9XSCDLhzZZRM5axN5mgXkgLDnjueQ_k5BrAp7PlijOZfCehdMVmGaGzCnE08uMIg_DTTIyWCbm2OwRmylfUtw","#,
    r#""token_type":"Bearer","expires_in":300}"#
);

/// Serves the fixed answer on 127.0.0.1:0 on the current runtime.
pub async fn start() -> SocketAddr {
    let app =
        Router::new().route("/token", post(|| async { ([(CONTENT_TYPE, "application/json")], ANSWER) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
