//! nginx-compatible access logging.
//!
//! Owns the access-log line: the `log_format` language ([`LogFormat`], parsed
//! once at config time), the per-request facts a line is made of
//! ([`LogRecord`], borrowed from the request path, never copied), rendering a
//! record into bytes, and the writer ([`AccessLog`]) that gets those bytes to
//! stdout or a file from its own thread.
//!
//! What it must not do: block the async runtime (a full queue drops the line
//! and counts it), allocate per variable on the hot path, or decide *what*
//! is logged beyond the format: redacting credentials is the request path's
//! job, before a header reaches a [`LogRecord`].
//!
//! - `format`: parsing and rendering (text with nginx `\xHH` escaping, JSON).
//! - `record`: [`LogRecord`] and [`TlsLogInfo`].
//! - `writer`: [`AccessLog`], [`LogTarget`], the writer thread.

mod format;
mod record;
mod writer;

pub use format::{FormatError, LogFormat, TextFormat};
pub use record::{Headers, LogRecord, PickedHeaders, TlsLogInfo};
pub use writer::{AccessLog, LogTarget};
