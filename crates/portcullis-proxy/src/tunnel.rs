//! Upgraded connections (WebSocket and other HTTP/1.1 Upgrade protocols).
//!
//! Owns the byte tunnel between a client's upgraded connection and the
//! upstream's, after both sides agreed on 101. It copies both ways and closes
//! both when either side ends or when no byte has moved for the idle timeout.
//! It does not look inside the frames.

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts the tunnel once both upgrades complete.
/// `kill` turns true when the client's certificate is revoked: the tunnel closes at once.
pub fn spawn(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle: Duration,
    request_id: String,
    kill: Option<tokio::sync::watch::Receiver<bool>>,
) {
    tokio::spawn(async move {
        let (c, u) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(%request_id, error = %e, "upgrade did not complete");
                return;
            }
        };
        let (mut cr, mut cw) = tokio::io::split(TokioIo::new(c));
        let (mut ur, mut uw) = tokio::io::split(TokioIo::new(u));
        let mut cbuf = vec![0u8; 16 * 1024];
        let mut ubuf = vec![0u8; 16 * 1024];
        let mut kill = kill;
        let mut client_open = true;
        let mut upstream_open = true;
        loop {
            if !client_open && !upstream_open {
                break;
            }
            tokio::select! {
                r = cr.read(&mut cbuf), if client_open => match r {
                    Ok(0) | Err(_) => { client_open = false; let _ = uw.shutdown().await; }
                    Ok(n) => if uw.write_all(&cbuf[..n]).await.is_err() { break },
                },
                r = ur.read(&mut ubuf), if upstream_open => match r {
                    Ok(0) | Err(_) => { upstream_open = false; let _ = cw.shutdown().await; }
                    Ok(n) => if cw.write_all(&ubuf[..n]).await.is_err() { break },
                },
                _ = async {
                    match kill.as_mut() {
                        Some(k) => { while !*k.borrow() { if k.changed().await.is_err() { std::future::pending::<()>().await } } }
                        None => std::future::pending::<()>().await,
                    }
                } => {
                    tracing::info!(%request_id, "upgraded connection closed: client certificate revoked");
                    break;
                }
                _ = tokio::time::sleep(idle) => {
                    tracing::debug!(%request_id, "upgraded connection idle for {:?}: closed", idle);
                    break;
                }
            }
        }
        let _ = cw.shutdown().await;
        let _ = uw.shutdown().await;
    });
}
