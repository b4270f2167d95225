//! Body types of the request path.
//!
//! Owns `RequestBody` (what goes upstream: the client's body under a size
//! limit, or nothing) and `ResponseBody` (what goes to the client: the
//! upstream's body or a small synthetic one), plus `BodyError`, whose
//! `TooLarge` cause the rescue layer turns into 413.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

/// Why a body stream failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("body stream: {0}")]
    Stream(#[from] hyper::Error),
    #[error("the request body paused longer than {0:?}")]
    Timeout(std::time::Duration),
}

pin_project! {
    /// The body sent upstream.
    #[project = RequestBodyProj]
    pub enum RequestBody {
        Empty,
        // A body read whole before forwarding (to check a signature's Content-Digest).
        Buffered { data: Option<Bytes> },
        Limited {
            #[pin] inner: Incoming,
            remaining: u64,
            limit: u64,
            // Longest pause between two pieces of the body (slow POST).
            idle: std::time::Duration,
            timer: Pin<Box<tokio::time::Sleep>>,
        },
    }
}

impl RequestBody {
    pub fn limited(inner: Incoming, limit: u64, idle: std::time::Duration) -> Self {
        RequestBody::Limited {
            inner,
            remaining: limit,
            limit,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.project() {
            RequestBodyProj::Empty => Poll::Ready(None),
            RequestBodyProj::Buffered { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
            }
            RequestBodyProj::Limited {
                inner,
                remaining,
                limit,
                idle,
                timer,
            } => match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let next = tokio::time::Instant::now() + *idle;
                    timer.as_mut().reset(next);
                    if let Some(data) = frame.data_ref() {
                        let n = data.len() as u64;
                        if n > *remaining {
                            return Poll::Ready(Some(Err(BodyError::TooLarge(*limit))));
                        }
                        *remaining -= n;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Stream(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => {
                    if std::future::Future::poll(timer.as_mut(), cx).is_ready() {
                        return Poll::Ready(Some(Err(BodyError::Timeout(*idle))));
                    }
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Buffered { data } => data.is_none(),
            RequestBody::Limited { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Buffered { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestBody::Limited { inner, .. } => inner.size_hint(),
        }
    }
}

pin_project! {
    /// The body sent to the client.
    #[project = ResponseBodyProj]
    pub enum ResponseBody {
        Full { data: Option<Bytes> },
        Upstream { #[pin] inner: Incoming },
    }
}

impl ResponseBody {
    pub fn full(data: impl Into<Bytes>) -> Self {
        let b: Bytes = data.into();
        ResponseBody::Full {
            data: (!b.is_empty()).then_some(b),
        }
    }
    pub fn empty() -> Self {
        ResponseBody::Full { data: None }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ResponseBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResponseBodyProj::Upstream { inner } => inner.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full { data } => data.is_none(),
            ResponseBody::Upstream { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ResponseBody::Upstream { inner } => inner.size_hint(),
        }
    }
}
