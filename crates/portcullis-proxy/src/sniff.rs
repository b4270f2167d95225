//! A read-side guard in front of hyper, for the two abuses hyper does not
//! refuse by itself.
//!
//! HTTP/1.1: hyper follows RFC 9112 §6.3 for a request with both
//! Content-Length and Transfer-Encoding (Transfer-Encoding wins, the
//! connection closes afterwards) and drops Content-Length before the stack can
//! see it. Such a request is a smuggling attempt, and the gateway refuses it
//! with 400: this guard reads the first request head of each connection and
//! flags it. (Later requests on the same connection cannot desync either:
//! hyper closes the connection after one.)
//!
//! HTTP/2: the h2 crate answers every PING and SETTINGS frame; a flood of
//! them costs CPU without end. The guard walks the frame headers (cheap: it
//! only reads 9-byte headers at known offsets) and cuts a connection that
//! sends more than a bucket's worth of PING/SETTINGS frames.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Control frames (PING, SETTINGS) allowed at once, and refilled per second.
const CONTROL_BURST: f64 = 200.0;
const CONTROL_PER_SEC: f64 = 50.0;
const H2_PREFACE_LEN: usize = 24;

enum Mode {
    /// Reading the first HTTP/1.1 request head (bytes so far).
    H1Head(Vec<u8>),
    /// Walking HTTP/2 frames: bytes to skip before the next frame header, and a partial header.
    H2 {
        skip: usize,
        header: Vec<u8>,
        tokens: f64,
        last: std::time::Instant,
    },
    Done,
}

pin_project! {
    /// Wraps a connection's stream; see the module header.
    pub struct Guard<S> {
        #[pin]
        inner: S,
        mode: Mode,
        max_head: usize,
        ambiguous: Arc<AtomicBool>,
        // HTTP/1.1 only: header lines added to the error answers hyper writes by itself.
        inject: Option<Arc<Vec<u8>>>,
        pending: Vec<u8>,
        // HTTP/1.1: the first request head must be complete by then (slowloris) → 408.
        head_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<S> Guard<S> {
    /// `h2` is the ALPN result; `ambiguous` is set when the first HTTP/1.1 head
    /// carries both Content-Length and Transfer-Encoding.
    pub fn new(
        inner: S,
        h2: bool,
        max_head: usize,
        ambiguous: Arc<AtomicBool>,
        inject: Option<Arc<Vec<u8>>>,
    ) -> Self {
        let mode = if h2 {
            Mode::H2 {
                skip: H2_PREFACE_LEN,
                header: Vec::with_capacity(9),
                tokens: CONTROL_BURST,
                last: std::time::Instant::now(),
            }
        } else {
            Mode::H1Head(Vec::new())
        };
        let inject = if h2 { None } else { inject };
        Guard {
            inner,
            mode,
            max_head,
            ambiguous,
            inject,
            pending: Vec::new(),
            head_deadline: None,
        }
    }

    /// Answers 408 and closes when the first request head takes longer than `t`.
    pub fn with_head_timeout(mut self, t: std::time::Duration) -> Self {
        if matches!(self.mode, Mode::H1Head(_)) {
            self.head_deadline = Some(Box::pin(tokio::time::sleep(t)));
        }
        self
    }
}

/// Does a request head have both Content-Length and Transfer-Encoding?
fn head_is_ambiguous(head: &[u8]) -> bool {
    let mut cl = false;
    let mut te = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        // Whitespace before the colon is refused by hyper anyway; compare trimmed.
        let name = name.strip_suffix(b" ").unwrap_or(name);
        if name.eq_ignore_ascii_case(b"content-length") {
            cl = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
        }
    }
    cl && te
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
}

impl Mode {
    /// Looks at newly read bytes; `Err` cuts the connection.
    fn observe(&mut self, data: &[u8], max_head: usize, ambiguous: &AtomicBool) -> io::Result<()> {
        match self {
            Mode::Done => Ok(()),
            Mode::H1Head(buf) => {
                buf.extend_from_slice(data);
                if let Some(end) = find_head_end(buf) {
                    if head_is_ambiguous(&buf[..end]) {
                        ambiguous.store(true, Ordering::Relaxed);
                    }
                    *self = Mode::Done;
                } else if buf.len() > max_head {
                    // hyper answers 431 for this; stop looking.
                    *self = Mode::Done;
                }
                Ok(())
            }
            Mode::H2 {
                skip,
                header,
                tokens,
                last,
            } => {
                let mut rest = data;
                while !rest.is_empty() {
                    if *skip > 0 {
                        let n = (*skip).min(rest.len());
                        *skip -= n;
                        rest = &rest[n..];
                        continue;
                    }
                    let need = 9 - header.len();
                    let n = need.min(rest.len());
                    header.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if header.len() < 9 {
                        break;
                    }
                    let len = ((header[0] as usize) << 16)
                        | ((header[1] as usize) << 8)
                        | header[2] as usize;
                    let kind = header[3];
                    let ack = header[4] & 1 == 1;
                    header.clear();
                    *skip = len;
                    // PING (6) and SETTINGS (4) that ask for an answer.
                    if (kind == 6 || kind == 4) && !ack {
                        let now = std::time::Instant::now();
                        *tokens = (*tokens
                            + now.duration_since(*last).as_secs_f64() * CONTROL_PER_SEC)
                            .min(CONTROL_BURST);
                        *last = now;
                        *tokens -= 1.0;
                        if *tokens < 0.0 {
                            tracing::warn!(
                                "HTTP/2 control-frame flood (PING/SETTINGS): connection cut"
                            );
                            return Err(io::Error::new(
                                io::ErrorKind::ConnectionAborted,
                                "HTTP/2 control frame flood",
                            ));
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite> AsyncRead for Guard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if let Some(deadline) = this.head_deadline.as_mut() {
            if !matches!(this.mode, Mode::H1Head(_)) {
                *this.head_deadline = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                *this.head_deadline = None;
                *this.mode = Mode::Done;
                let body = b"{\"error\":\"request_timeout\",\"message\":\"the request headers took too long\"}";
                let mut resp = format!("HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n", body.len()).into_bytes();
                if let Some(extra) = this.inject.as_ref() {
                    resp.extend_from_slice(extra);
                }
                resp.extend_from_slice(b"\r\n");
                resp.extend_from_slice(body);
                // Best effort: one write attempt, then the connection ends.
                let _ = this.inner.as_mut().poll_write(cx, &resp);
                let _ = this.inner.as_mut().poll_flush(cx);
                tracing::debug!("request head not complete in time: 408 and close");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head timeout",
                )));
            }
        }
        let before = buf.filled().len();
        let r = this.inner.as_mut().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            if !matches!(this.mode, Mode::Done) {
                let new = &buf.filled()[before..];
                if let Err(e) = this.mode.observe(new, *this.max_head, this.ambiguous) {
                    return Poll::Ready(Err(e));
                }
            }
        }
        r
    }
}

/// hyper's own answers to unparsable requests (400, 414, 431) are the only
/// 4xx heads without an X-Request-Id: every answer of the stack has one.
fn is_bare_error_head(buf: &[u8]) -> bool {
    if !buf.starts_with(b"HTTP/1.1 4") {
        return false;
    }
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = &buf[..head_end];
    !head
        .windows(13)
        .any(|w| w.eq_ignore_ascii_case(b"x-request-id:"))
}

/// Writes what is pending; Ready(Ok) once it is all out.
fn drain<S: AsyncWrite>(
    mut inner: Pin<&mut S>,
    pending: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !pending.is_empty() {
        match inner.as_mut().poll_write(cx, pending) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                pending.drain(..n);
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Poll::Ready(Ok(()))
}

impl<S: AsyncWrite> AsyncWrite for Guard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.inject.is_none() {
            return this.inner.poll_write(cx, buf);
        }
        let mut inner = this.inner;
        match drain(inner.as_mut(), this.pending, cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if let (Some(extra), true) = (this.inject.as_ref(), is_bare_error_head(buf)) {
            let line_end = buf
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(buf.len(), |p| p + 2);
            this.pending.extend_from_slice(&buf[..line_end]);
            this.pending.extend_from_slice(extra);
            this.pending.extend_from_slice(&buf[line_end..]);
            // The bytes are ours now; this drain, the next write or the flush sends them.
            if let Poll::Ready(Err(e)) = drain(inner, this.pending, cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let mut inner = this.inner;
        match drain(inner.as_mut(), this.pending, cx) {
            Poll::Ready(Ok(())) => inner.poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let mut inner = this.inner;
        match drain(inner.as_mut(), this.pending, cx) {
            Poll::Ready(Ok(())) => inner.poll_shutdown(cx),
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if self.inject.is_some() && (!self.pending.is_empty() || is_bare_error_head(first)) {
            return self.poll_write(cx, first);
        }
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_error_heads() {
        assert!(is_bare_error_head(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!is_bare_error_head(
            b"HTTP/1.1 404 Not Found\r\nx-request-id: abc\r\n\r\n"
        ));
        assert!(!is_bare_error_head(b"HTTP/1.1 200 OK\r\n\r\n"));
    }

    #[test]
    fn ambiguous_heads() {
        assert!(head_is_ambiguous(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(head_is_ambiguous(
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n"
        ));
        assert!(!head_is_ambiguous(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n"
        ));
        assert!(!head_is_ambiguous(b"POST / HTTP/1.1\r\nHost: a\r\nX-Note: Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"));
    }

    #[test]
    fn h1_head_split_across_reads() {
        let flag = AtomicBool::new(false);
        let mut m = Mode::H1Head(Vec::new());
        m.observe(b"POST / HTTP/1.1\r\nContent-Len", 1024, &flag)
            .unwrap();
        m.observe(
            b"gth: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            1024,
            &flag,
        )
        .unwrap();
        assert!(flag.load(Ordering::Relaxed));
        assert!(matches!(m, Mode::Done));
    }

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let l = payload.len();
        let mut f = vec![
            (l >> 16) as u8,
            (l >> 8) as u8,
            l as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn ping_flood_is_cut_and_normal_traffic_is_not() {
        let flag = AtomicBool::new(false);
        let mut m = Mode::H2 {
            skip: H2_PREFACE_LEN,
            header: Vec::new(),
            tokens: CONTROL_BURST,
            last: std::time::Instant::now(),
        };
        m.observe(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, &flag)
            .unwrap();
        m.observe(&frame(4, 0, &[0; 6]), 0, &flag).unwrap();
        // Headers and data frames are not counted, whatever their number.
        for _ in 0..1000 {
            m.observe(&frame(1, 4, &[0x82]), 0, &flag).unwrap();
            m.observe(&frame(0, 0, &[1, 2, 3]), 0, &flag).unwrap();
        }
        // A few pings pass; a flood is cut.
        let mut flood = Vec::new();
        for _ in 0..1000 {
            flood.extend(frame(6, 0, &[0; 8]));
        }
        assert!(m.observe(&flood[..17 * 10], 0, &flag).is_ok());
        assert!(m.observe(&flood, 0, &flag).is_err());
    }
}
