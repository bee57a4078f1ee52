//! The listener every Portcullis server uses (`portcullis::listener`), over
//! real TCP on loopback: its connection cap. Its timeouts are tested on the
//! real binary (`tests/standalone.rs`, `slow_clients_are_cut_off_while_others_are_served`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use portcullis::listener::{ListenerLimits, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(15);

async fn start(limits: ListenerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let app = Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { format!("hello {}", peer.ip()) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, limits, async {
        let _ = stopped.await;
    }));
    (address, stop)
}

/// Sends one request on a new connection and reads the whole answer.
async fn get_root(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_one_closes() {
    let limits =
        ListenerLimits { max_connections: 2, header_read_timeout: DEADLINE * 4, ..Default::default() };
    let (address, _stop) = start(limits).await;
    let answer = tokio::time::timeout(DEADLINE, get_root(address)).await.expect("served");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello 127.0.0.1"), "{answer}");

    // Two connections that say nothing take both places.
    let first = TcpStream::connect(address).await.unwrap();
    let _second = TcpStream::connect(address).await.unwrap();
    let mut third = tokio::spawn(get_root(address));
    // The third waits in the backlog: no answer while the two stay open.
    let early = tokio::time::timeout(Duration::from_millis(500), &mut third).await;
    assert!(early.is_err(), "a connection over the cap was served: {early:?}");

    // One place frees up: the waiting connection is served.
    drop(first);
    let answer = tokio::time::timeout(DEADLINE, third).await.expect("served once a place is free").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_flight_finish() {
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let in_handler = started.clone();
    let app = Router::new().route(
        "/slow",
        get(move || {
            let in_handler = in_handler.clone();
            async move {
                in_handler.notify_one();
                // Work that outlasts the shutdown signal.
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, ListenerLimits::default(), async {
        let _ = stopped.await;
    }));
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let reading = tokio::spawn(async move {
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    });
    tokio::time::timeout(DEADLINE, started.notified()).await.expect("the request reaches its handler");
    stop.send(()).unwrap();
    let answer = tokio::time::timeout(DEADLINE, reading).await.expect("answered").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");
    tokio::time::timeout(DEADLINE, server).await.expect("the server stops after the request").unwrap();
    assert!(TcpStream::connect(address).await.is_err(), "no longer listening");
}
