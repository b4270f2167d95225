//! WebSocket policy of a route and the terminated-framing relay.
//!
//! Owns what a `[route.websocket]` table decides: the Origin allowlist
//! checked at the upgrade (before anything reaches the upstream), and, when
//! the route asks for message-level control (heartbeats, message or frame
//! size limits, a message rate, a close at the token's expiry), the relay
//! that terminates the WebSocket framing on both sides: the client and the
//! gateway speak one WebSocket session, the gateway and the upstream
//! another, and messages (text, binary, close with its code) are relayed
//! between them. Without such options the byte tunnel (`tunnel.rs`) is used.
//! Every connection closed here is counted by a bounded reason
//! ([`CloseReason::as_str`], [`close_counts`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

/// How long a closing side may take to answer our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A route's WebSocket policy (`[route.websocket]`); the default checks nothing.
#[derive(Debug, Clone, Default)]
pub struct WebsocketPolicy {
    /// Lowercased origins: "https://app.example.com", "https://*.example.com" or "*".
    /// Empty: Origin is not checked.
    pub allowed_origins: Vec<String>,
    /// An upgrade without Origin passes the allowlist (non-browser clients).
    pub allow_missing_origin: bool,
    /// Ping the client this often.
    pub heartbeat_interval: Option<Duration>,
    /// Close when no pong arrives this long after a ping.
    pub heartbeat_timeout: Duration,
    /// Largest message from the client (1009 beyond).
    pub max_message_size: Option<usize>,
    /// Largest frame from the client (1009 beyond).
    pub max_frame_size: Option<usize>,
    /// Client messages per second (1008 beyond the burst).
    pub message_rate: Option<f64>,
    /// Messages the client may send at once above the rate.
    pub message_burst: u64,
    /// Close a JWT-authenticated connection (1008) when its token expires.
    pub close_on_token_expiry: bool,
}

impl WebsocketPolicy {
    /// Does the route need the gateway to read the frames?
    pub fn terminates(&self) -> bool {
        self.heartbeat_interval.is_some()
            || self.max_message_size.is_some()
            || self.max_frame_size.is_some()
            || self.message_rate.is_some()
            || self.close_on_token_expiry
    }

    /// Does the upgrade's Origin header pass the allowlist?
    pub fn origin_allowed(&self, origin: Option<&http::HeaderValue>) -> bool {
        if self.allowed_origins.is_empty() {
            return true;
        }
        let Some(origin) = origin else {
            return self.allow_missing_origin;
        };
        let Ok(o) = origin.to_str() else {
            return false;
        };
        let o = o.trim().to_ascii_lowercase();
        self.allowed_origins.iter().any(|a| origin_matches(a, &o))
    }
}

/// Is `pattern` (lowercase: "https://app.example.com[:port]", "https://*.example.com" or "*")
/// the origin `o` (lowercase)?
pub fn origin_matches(pattern: &str, o: &str) -> bool {
    if pattern == "*" {
        return o != "null";
    }
    if pattern == o {
        return true;
    }
    // "https://*.example.com": same scheme, a host ending in ".example.com"
    // with at least one label before it; the port (if any) part of the suffix.
    let (Some((ps, prest)), Some((os, orest))) = (pattern.split_once("://"), o.split_once("://"))
    else {
        return false;
    };
    let Some(suffix) = prest.strip_prefix("*.") else {
        return false;
    };
    ps == os
        && orest.len() > suffix.len() + 1
        && orest.ends_with(suffix)
        && orest.as_bytes()[orest.len() - suffix.len() - 1] == b'.'
        && !orest.contains('/')
        && !orest[..orest.len() - suffix.len() - 1].contains(':')
}

/// Why a terminated WebSocket connection ended (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed (close frame).
    ClientClosed,
    /// The upstream closed (close frame).
    UpstreamClosed,
    /// No pong within the heartbeat timeout (1001).
    HeartbeatTimeout,
    /// A message or frame above the route's limit (1009).
    MessageTooBig,
    /// The client sent faster than the route's message rate (1008).
    RateExceeded,
    /// No message either way for the idle timeout (1001).
    IdleTimeout,
    /// The client's certificate was revoked (1008).
    CertificateRevoked,
    /// The client's token expired (1008).
    TokenExpired,
    /// The client broke the protocol (1002 / 1007).
    ProtocolError,
    /// The client's connection ended without a close frame.
    ClientGone,
    /// The upstream's connection ended or broke the protocol (1011 to the client).
    UpstreamGone,
}

const REASONS: [CloseReason; 11] = [
    CloseReason::ClientClosed,
    CloseReason::UpstreamClosed,
    CloseReason::HeartbeatTimeout,
    CloseReason::MessageTooBig,
    CloseReason::RateExceeded,
    CloseReason::IdleTimeout,
    CloseReason::CertificateRevoked,
    CloseReason::TokenExpired,
    CloseReason::ProtocolError,
    CloseReason::ClientGone,
    CloseReason::UpstreamGone,
];

static CLOSES: [AtomicU64; 11] = [const { AtomicU64::new(0) }; 11];

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::UpstreamClosed => "upstream_closed",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::RateExceeded => "message_rate",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::CertificateRevoked => "certificate_revoked",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::ClientGone => "client_gone",
            CloseReason::UpstreamGone => "upstream_gone",
        }
    }

    fn index(self) -> usize {
        REASONS.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Closes counted since the process started, by reason.
pub fn close_counts() -> Vec<(&'static str, u64)> {
    REASONS
        .iter()
        .map(|r| (r.as_str(), CLOSES[r.index()].load(Ordering::Relaxed)))
        .collect()
}

fn record_close(reason: CloseReason, request_id: &str, metrics: Option<&crate::metrics::Metrics>) {
    CLOSES[reason.index()].fetch_add(1, Ordering::Relaxed);
    match reason {
        CloseReason::ClientClosed | CloseReason::UpstreamClosed | CloseReason::ClientGone => {
            tracing::debug!(%request_id, reason = reason.as_str(), "websocket closed")
        }
        _ => {
            // `websocket_closes{reason}`: the closes the gateway decided.
            if let Some(m) = metrics {
                m.count(&m.websocket_closes, reason.as_str());
            }
            tracing::info!(%request_id, reason = reason.as_str(), "websocket closed by the gateway")
        }
    }
}

/// The close code an endpoint sends when its peer's frames failed to parse.
pub fn close_code_for(e: &WsError) -> Option<(CloseCode, &'static str)> {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Some((CloseCode::Size, "message too big"))
        }
        WsError::Capacity(_) => Some((CloseCode::Size, "frame too big")),
        WsError::Utf8(_) => Some((CloseCode::Invalid, "invalid UTF-8")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((CloseCode::Protocol, "protocol error")),
        _ => None,
    }
}

fn close_frame(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// Reads until the peer's close reply (or the end of the connection), at most `CLOSE_WAIT`.
async fn drain<S>(ws: &mut S)
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Echoes every text and binary message, answers pings and closes as RFC 6455
/// asks (a close frame with 1002, 1007 or 1009 when the peer's frames are bad).
/// The built-in echo upstream serves its WebSocket sessions with it.
pub async fn echo_session<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            None => return,
            Some(Ok(m)) if m.is_text() || m.is_binary() => {
                if ws.send(m).await.is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                if let Some((code, why)) = close_code_for(&e) {
                    let _ = ws.close(Some(close_frame(code, why))).await;
                    drain(&mut ws).await;
                }
                return;
            }
        }
    }
}

/// What the relay needs besides the two connections.
pub struct Session {
    pub policy: WebsocketPolicy,
    pub idle: Duration,
    pub request_id: String,
    /// Turns true when the client's certificate is revoked.
    pub kill: Option<tokio::sync::watch::Receiver<bool>>,
    /// When the client's token expires (only with `close_on_token_expiry`).
    pub token_expires: Option<SystemTime>,
    /// Where gateway-decided closes are counted.
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

/// A client upgrade: HTTP/1.1 101 or an HTTP/2 extended CONNECT stream.
pub type ClientUpgrade = OnUpgrade;

/// Starts the terminated relay once both upgrades complete.
pub fn spawn_terminated(client: ClientUpgrade, upstream: OnUpgrade, s: Session) {
    tokio::spawn(async move {
        let (c, u) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(request_id = %s.request_id, error = %e, "upgrade did not complete");
                return;
            }
        };
        relay(TokioIo::new(c), TokioIo::new(u), s).await;
    });
}

/// How a relay ended: the reason, the close frame each side still gets
/// (None: it closed itself or is gone), and which sides stopped reading (they
/// are dropped, not drained).
struct End {
    reason: CloseReason,
    to_client: Option<CloseFrame>,
    to_upstream: Option<CloseFrame>,
    client_stalled: bool,
    upstream_stalled: bool,
}

impl End {
    fn new(
        reason: CloseReason,
        to_client: Option<CloseFrame>,
        to_upstream: Option<CloseFrame>,
    ) -> End {
        End {
            reason,
            to_client,
            to_upstream,
            client_stalled: false,
            upstream_stalled: false,
        }
    }
}

/// Relays messages between the client's session and the upstream's until one ends.
///
/// The two directions run concurrently (each with its own half of both
/// sessions), so a write that waits on one side never stops the other side
/// from being read: with one loop doing both, a client sending large messages
/// to an echoing upstream could fill both directions' buffers and deadlock.
/// A third future watches the deadlines (idle, pong, token) and revocation.
pub async fn relay(client: TokioIo<Upgraded>, upstream: TokioIo<Upgraded>, s: Session) {
    let p = &s.policy;
    let cfg = WebSocketConfig::default()
        .max_message_size(p.max_message_size.or(Some(64 << 20)))
        .max_frame_size(p.max_frame_size.or(Some(16 << 20)));
    let cw = WebSocketStream::from_raw_socket(client, Role::Server, Some(cfg)).await;
    let uw = WebSocketStream::from_raw_socket(upstream, Role::Client, None).await;
    let (mut c_tx, mut c_rx) = cw.split();
    let (mut u_tx, mut u_rx) = uw.split();
    let mut kill = s.kill.clone();
    let rid = s.request_id.as_str();

    // Shared between the three futures (one task): milliseconds since `base`.
    let base = tokio::time::Instant::now();
    let ms = |at: tokio::time::Instant| at.duration_since(base).as_millis() as u64;
    let last_activity = AtomicU64::new(0);
    // 0: no pong awaited; else 1 + the deadline in ms (so a deadline at 0 still counts).
    let pong_due = AtomicU64::new(0);
    let pong_armed = tokio::sync::Notify::new();
    let touch = || last_activity.store(ms(tokio::time::Instant::now()), Ordering::Relaxed);
    // True while a message waits to be written to the client. An upstream that
    // stops reading meanwhile may only be waiting on us (an echo blocked on
    // its own write): the client's stall is the cause and is reported as such.
    let to_client_pending = AtomicBool::new(false);

    let hb_interval = p.heartbeat_interval;
    // A token valid for more than a year: no deadline (the idle timeout still applies).
    let token_deadline = s
        .token_expires
        .and_then(|t| after(t.duration_since(SystemTime::now()).unwrap_or_default()));
    // A write that cannot complete for this long means the peer stopped reading.
    let (stall, stalled) = match hb_interval {
        Some(_) => (p.heartbeat_timeout, CloseReason::HeartbeatTimeout),
        None => (s.idle, CloseReason::IdleTimeout),
    };

    let client_to_upstream = async {
        let mut bucket = p.message_rate.map(|rate| {
            let cap = p.message_burst.max(1) as f64;
            (rate, cap, cap, Instant::now())
        });
        loop {
            match c_rx.next().await {
                None => {
                    return End::new(
                        CloseReason::ClientGone,
                        None,
                        Some(close_frame(CloseCode::Away, "client gone")),
                    )
                }
                Some(Ok(Message::Close(f))) => {
                    // tungstenite queued the echo of the client's close; the upstream gets its code.
                    return End::new(
                        CloseReason::ClientClosed,
                        None,
                        Some(f.unwrap_or(close_frame(CloseCode::Normal, ""))),
                    );
                }
                Some(Ok(Message::Pong(_))) => pong_due.store(0, Ordering::Relaxed),
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Frame(_))) => {}
                Some(Ok(m)) => {
                    if let Some((rate, cap, tokens, at)) = bucket.as_mut() {
                        let now = Instant::now();
                        *tokens =
                            (*tokens + now.duration_since(*at).as_secs_f64() * *rate).min(*cap);
                        *at = now;
                        if *tokens < 1.0 {
                            return End::new(
                                CloseReason::RateExceeded,
                                Some(close_frame(CloseCode::Policy, "message rate exceeded")),
                                Some(close_frame(CloseCode::Away, "client closed")),
                            );
                        }
                        *tokens -= 1.0;
                    }
                    touch();
                    let mut send = u_tx.send(m);
                    let sent = loop {
                        match tokio::time::timeout(stall, &mut send).await {
                            // The other direction ends the relay when the client stays stalled.
                            Err(_) if to_client_pending.load(Ordering::Relaxed) => continue,
                            r => break r,
                        }
                    };
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(request_id = %rid, error = %e, "upstream send failed");
                            return End::new(
                                CloseReason::UpstreamGone,
                                Some(close_frame(CloseCode::Error, "upstream error")),
                                None,
                            );
                        }
                        Err(_) => {
                            let mut end = End::new(
                                CloseReason::UpstreamGone,
                                Some(close_frame(CloseCode::Error, "upstream stalled")),
                                None,
                            );
                            end.upstream_stalled = true;
                            return end;
                        }
                    }
                }
                Some(Err(e)) => {
                    return match close_code_for(&e) {
                        Some((CloseCode::Size, why)) => End::new(
                            CloseReason::MessageTooBig,
                            Some(close_frame(CloseCode::Size, why)),
                            Some(close_frame(CloseCode::Away, "client closed")),
                        ),
                        Some((code, why)) => End::new(
                            CloseReason::ProtocolError,
                            Some(close_frame(code, why)),
                            Some(close_frame(CloseCode::Away, "client closed")),
                        ),
                        None => End::new(
                            CloseReason::ClientGone,
                            None,
                            Some(close_frame(CloseCode::Away, "client gone")),
                        ),
                    }
                }
            }
        }
    };

    let upstream_to_client = async {
        let client_stalled = || {
            let mut end = End::new(
                stalled,
                None,
                Some(close_frame(CloseCode::Away, "client gone")),
            );
            end.client_stalled = true;
            end
        };
        let client_gone = || {
            End::new(
                CloseReason::ClientGone,
                None,
                Some(close_frame(CloseCode::Away, "client gone")),
            )
        };
        let mut next_ping = hb_interval.and_then(after);
        let mut ping_seq: u64 = 0;
        loop {
            let ping_at = next_ping.unwrap_or_else(|| tokio::time::Instant::now() + FAR);
            tokio::select! {
                m = u_rx.next() => match m {
                    None | Some(Err(_)) => return End::new(CloseReason::UpstreamGone, Some(close_frame(CloseCode::Error, "upstream error")), None),
                    Some(Ok(Message::Close(f))) => {
                        let down = f.filter(|f| sendable(f.code)).unwrap_or(close_frame(CloseCode::Normal, ""));
                        return End::new(CloseReason::UpstreamClosed, Some(down), None);
                    }
                    Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) | Some(Ok(Message::Frame(_))) => {}
                    Some(Ok(m)) => {
                        touch();
                        match send_to_client(&mut c_tx, m, stall, &to_client_pending).await {
                            ClientSend::Sent => {}
                            ClientSend::Gone => return client_gone(),
                            // The client stopped reading: as dead as one that stopped answering pings.
                            ClientSend::Stalled => return client_stalled(),
                        }
                    }
                },
                _ = tokio::time::sleep_until(ping_at), if next_ping.is_some() => {
                    ping_seq += 1;
                    let ping = Message::Ping(Bytes::from(ping_seq.to_be_bytes().to_vec()));
                    match send_to_client(&mut c_tx, ping, stall, &to_client_pending).await {
                        ClientSend::Sent => {}
                        ClientSend::Gone => return client_gone(),
                        ClientSend::Stalled => return client_stalled(),
                    }
                    if pong_due.load(Ordering::Relaxed) == 0 {
                        if let Some(at) = after(p.heartbeat_timeout) {
                            pong_due.store(1 + ms(at), Ordering::Relaxed);
                            pong_armed.notify_one();
                        }
                    }
                    next_ping = hb_interval.and_then(after);
                }
            }
        }
    };

    let watchdog = async {
        let idle = s.idle.min(FAR);
        let idle_at = |far| {
            (base + Duration::from_millis(last_activity.load(Ordering::Relaxed)))
                .checked_add(idle)
                .unwrap_or(far)
        };
        loop {
            let far = tokio::time::Instant::now() + FAR;
            let pong_at = match pong_due.load(Ordering::Relaxed) {
                0 => None,
                d => Some(base + Duration::from_millis(d - 1)),
            };
            let timer = [
                pong_at.unwrap_or(far),
                idle_at(far),
                token_deadline.unwrap_or(far),
            ]
            .into_iter()
            .min()
            .unwrap_or(far);
            tokio::select! {
                _ = crate::mtls::revoked(&mut kill) => {
                    return End::new(CloseReason::CertificateRevoked, Some(close_frame(CloseCode::Policy, "certificate revoked")), Some(close_frame(CloseCode::Away, "client closed")));
                }
                _ = pong_armed.notified() => {}
                _ = tokio::time::sleep_until(timer) => {
                    let now = tokio::time::Instant::now();
                    if token_deadline.is_some_and(|t| t <= now) {
                        return End::new(CloseReason::TokenExpired, Some(close_frame(CloseCode::Policy, "token expired")), Some(close_frame(CloseCode::Away, "client closed")));
                    }
                    if pong_at.is_some_and(|t| t <= now) && pong_due.load(Ordering::Relaxed) != 0 {
                        return End::new(CloseReason::HeartbeatTimeout, Some(close_frame(CloseCode::Away, "heartbeat timeout")), Some(close_frame(CloseCode::Away, "client gone")));
                    }
                    if idle_at(far) <= now {
                        return End::new(CloseReason::IdleTimeout, Some(close_frame(CloseCode::Away, "idle timeout")), Some(close_frame(CloseCode::Away, "idle timeout")));
                    }
                }
            }
        }
    };

    let mut end = tokio::select! {
        e = client_to_upstream => e,
        e = upstream_to_client => e,
        e = watchdog => e,
    };
    record_close(end.reason, rid, s.metrics.as_deref());

    // Close both sessions: send the frames, then wait (bounded) for the replies.
    // A side that cannot take its close frame in time stopped reading: drop it.
    end.client_stalled = send_close(&mut c_tx, end.to_client.take(), end.client_stalled).await;
    end.upstream_stalled =
        send_close(&mut u_tx, end.to_upstream.take(), end.upstream_stalled).await;
    match (end.client_stalled, end.upstream_stalled) {
        (false, false) => {
            tokio::join!(drain(&mut c_rx), drain(&mut u_rx));
        }
        (true, false) => drain(&mut u_rx).await,
        (false, true) => drain(&mut c_rx).await,
        (true, true) => {}
    }
}

/// How a send to the client went.
enum ClientSend {
    Sent,
    Gone,
    /// Not taken within the stall limit: the client stopped reading.
    Stalled,
}

/// Sends to the client within `stall`; `pending` is true while it waits, so
/// the other direction does not blame the upstream for the back-pressure.
async fn send_to_client<T>(
    tx: &mut T,
    m: Message,
    stall: Duration,
    pending: &AtomicBool,
) -> ClientSend
where
    T: futures_util::Sink<Message> + Unpin,
{
    pending.store(true, Ordering::Relaxed);
    let sent = tokio::time::timeout(stall, tx.send(m)).await;
    pending.store(false, Ordering::Relaxed);
    match sent {
        Ok(Ok(())) => ClientSend::Sent,
        Ok(Err(_)) => ClientSend::Gone,
        Err(_) => ClientSend::Stalled,
    }
}

/// Sends a close frame unless the side already stalled; true when it stalled
/// (could not take the frame within `CLOSE_WAIT`).
async fn send_close<T>(tx: &mut T, frame: Option<CloseFrame>, stalled: bool) -> bool
where
    T: futures_util::Sink<Message> + Unpin,
{
    match frame {
        Some(f) if !stalled => tokio::time::timeout(CLOSE_WAIT, tx.send(Message::Close(Some(f))))
            .await
            .is_err(),
        _ => stalled,
    }
}

/// Longest timer the relay sets; durations from config and tokens are capped by it.
const FAR: Duration = Duration::from_secs(86400 * 365);

/// `now + d`, or None when `d` is beyond a year (never overflows).
fn after(d: Duration) -> Option<tokio::time::Instant> {
    (d <= FAR).then(|| tokio::time::Instant::now() + d)
}

/// May an endpoint send this code in a close frame (1005, 1006, 1015 are never sent)?
fn sendable(code: CloseCode) -> bool {
    !matches!(
        code,
        CloseCode::Status | CloseCode::Abnormal | CloseCode::Tls
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(origin_matches(
            "https://app.example.com",
            "https://app.example.com"
        ));
        assert!(!origin_matches(
            "https://app.example.com",
            "http://app.example.com"
        ));
        assert!(origin_matches(
            "https://*.example.com",
            "https://a.example.com"
        ));
        assert!(origin_matches(
            "https://*.example.com",
            "https://a.b.example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://evilexample.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://a.example.com:8443"
        ));
        assert!(origin_matches(
            "https://*.example.com:8443",
            "https://a.example.com:8443"
        ));
        assert!(!origin_matches("*", "null"));
        assert!(origin_matches("*", "https://x.test"));
    }

    #[test]
    fn policy() {
        let p = WebsocketPolicy {
            allowed_origins: vec!["https://app.example.com".into()],
            ..Default::default()
        };
        assert!(!p.terminates());
        assert!(p.origin_allowed(Some(&http::HeaderValue::from_static(
            "https://APP.example.com"
        ))));
        assert!(!p.origin_allowed(Some(&http::HeaderValue::from_static(
            "https://evil.example"
        ))));
        assert!(!p.origin_allowed(None));
        let p = WebsocketPolicy {
            allow_missing_origin: true,
            ..p
        };
        assert!(p.origin_allowed(None));
        assert!(WebsocketPolicy::default().origin_allowed(None));
    }
}
