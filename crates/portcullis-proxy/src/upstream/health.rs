//! Active health checks: a path polled on every server at an interval.
//!
//! Owns the polling tasks. A server is marked down after `fails` failed
//! checks in a row and up again after `passes` good ones; a good check is a
//! 2xx or 3xx answer within `timeout`. The tasks end when the returned
//! handles are dropped (the runtime that owns them is replaced or shut down).

use std::sync::Arc;

use http::Request;

use super::Upstream;
use crate::body::RequestBody;
use crate::config::HealthCheckConfig;

/// Aborts its task when dropped.
#[derive(Debug)]
pub struct TaskGuard(tokio::task::JoinHandle<()>);

impl TaskGuard {
    /// Spawns a task that ends when the guard is dropped.
    pub fn spawn(f: impl std::future::Future<Output = ()> + Send + 'static) -> TaskGuard {
        TaskGuard(tokio::spawn(f))
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts one polling task per server of `up`.
pub fn spawn_health_checks(up: &Arc<Upstream>, hc: &HealthCheckConfig) -> Vec<TaskGuard> {
    (0..up.servers.len())
        .map(|i| {
            let up = up.clone();
            let hc = hc.clone();
            TaskGuard(tokio::spawn(async move { poll_server(up, i, hc).await }))
        })
        .collect()
}

async fn check_once(up: &Upstream, i: usize, hc: &HealthCheckConfig) -> Result<(), String> {
    let server = &up.servers[i];
    let uri = format!("{}{}", server.base, hc.path);
    let req = Request::get(uri)
        .header(http::header::HOST, &*server.authority)
        .header(http::header::USER_AGENT, "portcullis-health-check")
        .body(RequestBody::Empty)
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(hc.timeout, up.client().request(req)).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(e)) => Err(format!("{e}")),
        Ok(Ok(resp)) => {
            let status = resp.status();
            if status.is_success() || status.is_redirection() {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
    }
}

async fn poll_server(up: Arc<Upstream>, i: usize, hc: HealthCheckConfig) {
    let mut ok_streak = 0u32;
    let mut fail_streak = 0u32;
    let mut ticker = tokio::time::interval(hc.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let server = &up.servers[i];
        match check_once(&up, i, &hc).await {
            Ok(()) => {
                fail_streak = 0;
                ok_streak = ok_streak.saturating_add(1);
                if server.is_health_down() && ok_streak >= hc.passes {
                    server.set_health_down(false);
                    tracing::info!(upstream = %up.name, server = %server.authority, "health check passed: server is up");
                }
            }
            Err(reason) => {
                ok_streak = 0;
                fail_streak = fail_streak.saturating_add(1);
                if !server.is_health_down() && fail_streak >= hc.fails {
                    server.set_health_down(true);
                    tracing::warn!(upstream = %up.name, server = %server.authority, %reason, "health check failed: server is down");
                }
            }
        }
    }
}
