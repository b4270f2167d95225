//! Glue between the request path's `LogCtx` and the access-log renderer.
use crate::accesslog::{AccessLog, LogFormat};
use crate::stack::LogCtx;

pub fn write(access: &AccessLog, _format: &LogFormat, ctx: &LogCtx, sent: u64) {
    let line = format!(
        "{} \"{} {} {:?}\" {} {} {:?}\n",
        ctx.conn.peer.ip(),
        ctx.method,
        ctx.uri,
        ctx.version,
        ctx.status,
        sent,
        ctx.start.elapsed()
    );
    access.log(line.into_bytes());
}
