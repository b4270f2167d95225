//! Observation of finished requests: the access-log body wrapper.
//!
//! Owns `LoggedBody`, which counts the bytes of a response body as they are
//! sent and writes the access-log line exactly once, when the body ends or
//! is dropped (a client that went away is logged too, with what it got).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::accesslog::{AccessLog, LogFormat};
use crate::body::ResponseBody;
use crate::stack::LogCtx;

/// A response body that logs the request when it is done.
pub struct LoggedBody {
    inner: ResponseBody,
    sent: u64,
    log: Option<(AccessLog, Arc<LogFormat>, Box<LogCtx>)>,
}

impl LoggedBody {
    pub fn new(
        inner: ResponseBody,
        access: AccessLog,
        format: Arc<LogFormat>,
        ctx: LogCtx,
    ) -> Self {
        let log = access.enabled().then(|| (access, format, Box::new(ctx)));
        LoggedBody {
            inner,
            sent: 0,
            log,
        }
    }

    fn finish(&mut self) {
        if let Some((access, format, ctx)) = self.log.take() {
            crate::accesslog_glue::write(&access, &format, &ctx, self.sent);
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.sent += d.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
