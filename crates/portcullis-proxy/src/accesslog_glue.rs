//! Glue between the request path's `LogCtx` and the access-log renderer:
//! builds a borrowed `LogRecord` from what the stack collected and hands the
//! rendering to the writer's per-thread buffer (one allocation per line).

use std::sync::OnceLock;
use std::time::SystemTime;

use http::HeaderMap;

use crate::accesslog::{AccessLog, LogFormat, LogRecord, TlsLogInfo};
use crate::stack::LogCtx;

fn empty_headers() -> &'static HeaderMap {
    static EMPTY: OnceLock<HeaderMap> = OnceLock::new();
    EMPTY.get_or_init(HeaderMap::new)
}

/// Writes the access-log line of a finished request.
pub fn write(access: &AccessLog, format: &LogFormat, ctx: &LogCtx, sent: u64) {
    let conn = &ctx.conn;
    let tls = TlsLogInfo {
        protocol: conn.tls_version,
        cipher: conn.cipher,
        sni: conn.sni.as_deref(),
        session_reused: conn.session_reused,
    };
    let mut rec = LogRecord::new(
        conn.peer,
        &ctx.method,
        &ctx.uri,
        ctx.version,
        &ctx.req_headers,
    );
    rec.local = Some(conn.local);
    rec.peer_text = conn.peer_ip.to_str().ok();
    rec.response_headers = empty_headers();
    rec.status = ctx.status;
    rec.body_bytes_sent = sent;
    rec.start = ctx.started;
    rec.duration = ctx.start.elapsed();
    rec.upstream_addr = ctx.upstream_addr.as_deref();
    rec.upstream_status = ctx.upstream_status;
    rec.upstream_response_time = ctx.upstream_response_time;
    rec.request_id = &ctx.request_id;
    rec.tls = Some(&tls);
    rec.route = ctx.route.as_deref();
    rec.scheme = Some("https");
    rec.host = ctx.host.as_ref().and_then(|v| v.to_str().ok());
    rec.server_name = conn.sni.as_deref();
    rec.connection = conn.id;
    rec.connection_requests = ctx.conn_requests;
    if let Some((zone, status)) = &ctx.limit {
        rec.limit_req_zone = Some(&zone.cfg.name);
        rec.limit_req_status = Some(status);
    }
    rec.consumer = ctx.consumer.as_deref();
    let v_remain;
    match &conn.identity {
        Some(id) => {
            rec.ssl_client_s_dn = Some(&id.subject_dn);
            rec.ssl_client_i_dn = Some(&id.issuer_dn);
            rec.ssl_client_serial = Some(&id.serial_hex);
            rec.ssl_client_fingerprint = Some(&id.fingerprint_sha256);
            rec.ssl_client_verify = Some("SUCCESS");
            v_remain = id.days_remaining(SystemTime::now()).to_string();
            rec.ssl_client_v_remain = Some(&v_remain);
        }
        None => rec.ssl_client_verify = Some("NONE"),
    }
    access.log_with(|buf| format.render(&rec, buf));
}
