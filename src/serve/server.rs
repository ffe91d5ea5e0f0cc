//! The accept loop: HTTP/1.1 connections served by hyper, at most `--max-connections` at once
//! (a connection beyond that gets a 503 JSON answer and is closed, never dropped unanswered),
//! a time limit on reading each request's headers, and graceful shutdown: stop accepting, let
//! every request in progress finish, then return.
use super::api::busy_router;
use super::metrics::Metrics;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

pub struct ServerLimits {
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers (also the idle keep-alive time).
    pub header_timeout: Duration,
    /// How long shutdown waits for requests in progress.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn run(listener: TcpListener, app: Router, metrics: Arc<Metrics>, limits: ServerLimits, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let busy = busy_router(metrics.clone(), limits.max_connections);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let permit = slots.clone().try_acquire_owned().ok();
        let admitted = permit.is_some();
        let router = if admitted { app.clone() } else { busy.clone() };
        let service = router.map_request(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(admitted);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = permit;
            let start = std::time::Instant::now();
            if let Err(e) = connection.await {
                match rejected_status(&e) {
                    // hyper answered a request it could not parse before any route saw it:
                    // counted and logged like every other answer.
                    Some(status) => {
                        metrics.request("unparsed", status, start.elapsed());
                        tracing::info!(target: "masklab::serve::access", peer = %peer, route = "unparsed", status, error = %e, "request");
                    }
                    None => tracing::debug!(peer = %peer, error = %e, "connection ended with an error"),
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in progress after {:?}: stopping anyway", limits.drain_timeout);
    }
}

/// The status hyper answered a request with when it could not parse it (its automatic 400, 414
/// or 431, see hyper's `Server::on_error`); None for errors without an answer (a closed or
/// timed-out connection, an HTTP/2 preface).
fn rejected_status(e: &hyper::Error) -> Option<u16> {
    if !e.is_parse() || e.is_parse_version_h2() || e.is_parse_status() {
        return None;
    }
    if e.is_parse_too_large() {
        // hyper tells its two "too large" errors apart only in their text.
        return Some(if e.to_string().contains("URI too long") { 414 } else { 431 });
    }
    Some(400)
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
