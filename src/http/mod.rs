//! The HTTP server: accept loop, connection cap, header timeout and graceful shutdown.
//!
//! One hyper HTTP/1.1 connection task per socket, each watched by hyper-util's
//! `GracefulShutdown`. `stop()` closes the listener, lets the session engine answer every
//! pending message and end every stream, then waits for connections up to
//! `shutdownTimeoutMs` before returning anyway.

pub mod body;
pub mod chat;
mod manage;
pub mod proxy;
pub mod router;
pub mod sse;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::session::Gateway;

/// How long a connection in the reserve (past `limits.maxConnections`) may take to send its
/// request head, at most.
const RESERVE_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A running server; `shutdown` stops it.
pub struct Server {
    pub addr: SocketAddr,
    stop_tx: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    sweeper: JoinHandle<()>,
}

/// Binds the configured address and starts serving. A busy port fails with the address named.
pub async fn serve(gateway: Gateway) -> Result<Server, String> {
    let wanted = gateway.config().socket_addr();
    let listener = TcpListener::bind(wanted)
        .await
        .map_err(|e| format!("Cannot listen on {wanted}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("Cannot read the bound address of {wanted}: {e}"))?;
    let (stop_tx, stop_rx) = oneshot::channel();
    // Built here, before start() resolves, so what it reads (the environment) is read now.
    let ctx = Arc::new(router::Ctx::new(gateway.clone()));
    let task = gateway.runtime().spawn(accept_loop(listener, ctx, stop_rx));
    let sweeper = gateway.runtime().spawn(gateway.clone().sweep_forever());
    Ok(Server {
        addr,
        stop_tx: Some(stop_tx),
        task,
        sweeper,
    })
}

impl Server {
    /// Stops accepting, ends sessions and streams, and waits (bounded) for connections.
    pub async fn shutdown(mut self, gateway: &Gateway) {
        gateway.set_ready(false);
        self.sweeper.abort();
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        gateway.stop_sessions().await;
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<router::Ctx>,
    mut stop_rx: oneshot::Receiver<()>,
) {
    let gateway = ctx.gateway.clone();
    let graceful = GracefulShutdown::new();
    let config = gateway.config();
    let permits = Arc::new(Semaphore::new(config.max_connections));
    // Past the cap, a few more connections may still ask `/health` (and get a 503 for anything
    // else), so a flood of slow clients cannot make the gateway look dead to its monitor.
    let reserve = Arc::new(Semaphore::new(config.reserve_connections));
    let reserve_header_timeout = config.header_timeout.min(RESERVE_HEADER_TIMEOUT);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(_) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stop_rx => break,
        };
        // Past the cap and the reserve, the connection is closed at once rather than queued.
        let (permit, reserved) = match permits.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match reserve.clone().try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => {
                    drop(stream);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let service = service_fn(move |req| {
            let ctx = ctx.clone();
            async move {
                Ok::<_, Infallible>(if reserved {
                    router::handle_reserved(ctx, req).await
                } else {
                    router::handle(ctx, req).await
                })
            }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(if reserved {
                reserve_header_timeout
            } else {
                config.header_timeout
            })
            .keep_alive(!reserved)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        gateway.runtime().spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let deadline = gateway.config().shutdown_timeout;
    let _ = tokio::time::timeout(deadline, graceful.shutdown()).await;
}
