//! Upgraded connections (WebSocket and other HTTP/1.1 Upgrade protocols).
//!
//! Owns the byte tunnel between a client's upgraded connection and the
//! upstream's, after both sides agreed on 101. It copies both ways at once
//! (a side's end half-closes the other), and closes both when both ends are
//! done, a write fails, the client's certificate is revoked, or no byte has
//! moved for the idle timeout. It does not look inside the frames.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
        let base = tokio::time::Instant::now();
        let last = AtomicU64::new(0);
        let touch = || last.store(base.elapsed().as_millis() as u64, Ordering::Relaxed);
        // Both directions at once: a write waiting on one side never stops the
        // other side from being read (one loop doing both deadlocks as soon as
        // both peers write more than the socket buffers hold, as an echo does).
        let both = async {
            tokio::try_join!(
                copy_half(&mut cr, &mut uw, &touch),
                copy_half(&mut ur, &mut cw, &touch)
            )
            .map(|_| ())
        };
        let idle_watch = async {
            loop {
                let at = base + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
                if at <= tokio::time::Instant::now() {
                    return;
                }
                tokio::time::sleep_until(at).await;
            }
        };
        let mut kill = kill;
        tokio::select! {
            _ = both => {}
            _ = crate::mtls::revoked(&mut kill) => {
                tracing::info!(%request_id, "upgraded connection closed: client certificate revoked");
            }
            _ = idle_watch => {
                tracing::debug!(%request_id, "upgraded connection idle for {:?}: closed", idle);
            }
        }
        // A peer that stopped reading cannot take even the close: bounded, then dropped.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(cw.shutdown(), uw.shutdown())
        })
        .await;
    });
}

/// Copies one direction until its reader ends (then half-closes the writer)
/// or a write fails (an error ends the whole tunnel). `touch` records progress.
async fn copy_half<R, W>(mut r: R, mut w: W, touch: &impl Fn()) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = w.shutdown().await;
                return Ok(());
            }
            Ok(n) => {
                touch();
                w.write_all(&buf[..n]).await?;
                touch();
            }
        }
    }
}
