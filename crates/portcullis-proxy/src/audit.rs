//! The tamper-evident audit log: one JSON line per security decision.
//!
//! Owns [`AuditLog`] (a cheap clonable handle), the writer thread behind it,
//! the line format and the hash chain, and [`verify`], which walks a file's
//! chain and says where it breaks. Every line carries `seq` (1, 2, 3 …) and
//! `prev`, the hex SHA-256 of the previous line's bytes (without its `\n`);
//! the first line of a file chains from [`GENESIS`]. An edit, a deletion, an
//! insertion or a reordering breaks the chain at a line [`verify`] names.
//!
//! The request path only queues an event ([`AuditLog::record`] never blocks
//! and never touches the disk): the writer thread assigns `seq`, computes the
//! chain, appends to the file (O_APPEND, created 0600) and syncs it. The
//! queue is bounded: when it is full (a slow disk under a flood of denials)
//! events are dropped and counted, a warning is logged, and the writer puts
//! an `audit_dropped` record with the count into the chain, so the loss
//! itself is on file.
//!
//! Opening a file that already has records continues its chain (the last
//! line gives `seq` and the hash), so restarts keep one chain. Handles are
//! shared per path within the process: opening a path that is already open
//! returns the same handle (a reload that keeps `[audit] path` keeps the
//! writer and its chain), and reopening after the last handle is gone waits
//! for the old writer to finish first.
//!
//! What it must not do: write secrets. Callers pass identities (certificate
//! subject, consumer name, key id) and reasons; never tokens, API keys,
//! signatures or passwords.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use crate::mtls::identity::{hex_lower, sha256};

/// `prev` of the first line of a file.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Events that may wait in the queue before new ones are dropped.
const QUEUE_EVENTS: usize = 8 * 1024;
/// How often the writer thread looks at the queue.
const POLL: Duration = Duration::from_millis(20);
/// Longest line [`AuditLog::open`] looks back for when continuing a chain.
const MAX_LINE: u64 = 1024 * 1024;
/// Longest text kept in one field (a client cannot grow a line without bound).
const MAX_FIELD: usize = 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// 401: no credential, or a wrong, expired or disabled one.
    AuthFailure,
    /// 403: authenticated (or identified by certificate), not allowed here.
    AuthzDenied,
    /// 495 / 496: a route needed a (trusted) client certificate; enrollment or renewal refused.
    CertRefused,
    /// A rate-limit zone refused the request.
    RateLimited,
    /// A certificate issued through the gateway (enrollment with a token).
    CertIssued,
    /// A certificate renewed through the gateway (mutual TLS).
    CertRenewed,
    CertRevoked,
    /// Something done through the admin API.
    AdminAction,
    /// A new configuration is in force.
    Reload,
    /// A new configuration was refused; the running one stays.
    ReloadFailed,
    /// Records lost (queue full or write errors); written by the log itself.
    AuditDropped,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::AuthFailure => "auth_failure",
            AuditKind::AuthzDenied => "authz_denied",
            AuditKind::CertRefused => "cert_refused",
            AuditKind::RateLimited => "rate_limited",
            AuditKind::CertIssued => "cert_issued",
            AuditKind::CertRenewed => "cert_renewed",
            AuditKind::CertRevoked => "cert_revoked",
            AuditKind::AdminAction => "admin_action",
            AuditKind::Reload => "reload",
            AuditKind::ReloadFailed => "reload_failed",
            AuditKind::AuditDropped => "audit_dropped",
        }
    }
}

/// One security decision, before the writer gives it `seq`, `time` and `prev`.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub kind: AuditKind,
    pub peer: Option<SocketAddr>,
    /// Client certificate subject, consumer name or key id; never a credential.
    pub identity: Option<String>,
    pub route: Option<String>,
    pub reason: String,
    pub request_id: Option<String>,
    /// Extra facts (serial numbers, the admin action, the zone …), in order.
    pub detail: Vec<(&'static str, String)>,
    time: SystemTime,
}

impl AuditEvent {
    pub fn new(kind: AuditKind, reason: impl Into<String>) -> AuditEvent {
        AuditEvent {
            kind,
            peer: None,
            identity: None,
            route: None,
            reason: reason.into(),
            request_id: None,
            detail: Vec::new(),
            time: SystemTime::now(),
        }
    }

    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    pub fn identity(mut self, identity: Option<&str>) -> Self {
        self.identity = identity.map(str::to_owned);
        self
    }

    pub fn route(mut self, route: &str) -> Self {
        self.route = Some(route.to_owned());
        self
    }

    pub fn request_id(mut self, id: &str) -> Self {
        self.request_id = Some(id.to_owned());
        self
    }

    pub fn detail(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.detail.push((key, value.into()));
        self
    }

    /// The JSON line (without `\n`) for this event at `seq` after `prev`.
    #[cfg(test)]
    fn render(&self, seq: u64, prev: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        self.render_into(&mut out, seq, prev);
        out
    }

    /// Appends the line to `out`, fields in a fixed order (seq first, prev last),
    /// strings escaped by serde_json, no intermediate JSON values.
    fn render_into(&self, out: &mut Vec<u8>, seq: u64, prev: &str) {
        fn clip(s: &str) -> std::borrow::Cow<'_, str> {
            if s.len() <= MAX_FIELD {
                return s.into();
            }
            let mut end = MAX_FIELD;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &s[..end]).into()
        }
        fn key(out: &mut Vec<u8>, k: &str) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
        }
        fn string(out: &mut Vec<u8>, v: &str) {
            let _ = serde_json::to_writer(&mut *out, &*clip(v));
        }
        fn opt(out: &mut Vec<u8>, v: Option<&str>) {
            match v {
                Some(v) => string(out, v),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(seq.to_string().as_bytes());
        key(out, "time");
        string(out, &rfc3339_ms(self.time));
        key(out, "event");
        string(out, self.kind.as_str());
        key(out, "peer");
        opt(out, self.peer.map(|p| p.to_string()).as_deref());
        key(out, "identity");
        opt(out, self.identity.as_deref());
        key(out, "route");
        opt(out, self.route.as_deref());
        key(out, "reason");
        string(out, &self.reason);
        key(out, "request_id");
        opt(out, self.request_id.as_deref());
        if !self.detail.is_empty() {
            key(out, "detail");
            for (i, (k, v)) in self.detail.iter().enumerate() {
                out.push(if i == 0 { b'{' } else { b',' });
                string(out, k);
                out.push(b':');
                string(out, v);
            }
            out.push(b'}');
        }
        key(out, "prev");
        string(out, prev);
        out.push(b'}');
    }
}

/// `2026-11-29T01:55:15.123Z`
fn rfc3339_ms(t: SystemTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(t)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// A handle on an audit log. Clones share one queue, one writer thread and
/// one chain; [`AuditLog::disabled`] records nothing.
#[derive(Clone, Default)]
pub struct AuditLog {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    path: PathBuf,
}

enum Msg {
    Event(Box<AuditEvent>),
    Flush(SyncSender<()>),
}

/// Set by a writer thread when it has written everything and closed the file.
type Done = Arc<(Mutex<bool>, Condvar)>;

struct OpenEntry {
    handle: Weak<Shared>,
    done: Done,
}

/// Audit logs open in this process, by absolute path.
fn registry() -> &'static Mutex<HashMap<PathBuf, OpenEntry>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, OpenEntry>>> = OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The path with its directory made absolute and symlinks in it resolved.
fn registry_key(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            dir.canonicalize()
                .map(|d| d.join(name))
                .unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

/// Where a chain stands: the last record's seq and its line's hash (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl ChainHead {
    fn genesis() -> ChainHead {
        ChainHead {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// Does this process have an audit log open at `path` (a reload will keep it)?
pub fn is_open(path: &Path) -> bool {
    let open = registry().lock().unwrap_or_else(|p| p.into_inner());
    open.get(&registry_key(path))
        .is_some_and(|e| e.handle.strong_count() > 0)
}

/// Reads where the chain of an existing audit file stands (genesis for a
/// missing or empty file). An error when the last line is cut short or is
/// not an audit record: a new record could not chain onto it.
pub fn read_head(path: &Path) -> io::Result<ChainHead> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ChainHead::genesis()),
        Err(e) => return Err(e),
    };
    last_line_head(&mut f)
}

fn last_line_head(f: &mut File) -> io::Result<ChainHead> {
    let len = f.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(ChainHead::genesis());
    }
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let take = len.min(MAX_LINE + 1);
    f.seek(SeekFrom::Start(len - take))?;
    let mut tail = Vec::with_capacity(take as usize);
    f.take(take).read_to_end(&mut tail)?;
    let Some(body) = tail.strip_suffix(b"\n") else {
        return Err(bad(
            "the last line is incomplete (no newline at the end: a write was cut short)".into(),
        ));
    };
    let start = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if take < len => return Err(bad("the last line is longer than 1 MiB".into())),
        None => 0,
    };
    let line = &body[start..];
    let rec = parse_record(line).map_err(|e| bad(format!("the last line {e}")))?;
    Ok(ChainHead {
        seq: rec.seq,
        hash: hex_lower(&sha256(line)),
    })
}

/// The chain fields of one line.
struct Parsed {
    seq: u64,
    prev: String,
}

fn parse_record(line: &[u8]) -> Result<Parsed, String> {
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("is not JSON ({e})"))?;
    let seq = v
        .get("seq")
        .and_then(serde_json::Value::as_u64)
        .ok_or("has no numeric \"seq\"")?;
    let prev = v
        .get("prev")
        .and_then(serde_json::Value::as_str)
        .filter(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("has no \"prev\" hash")?
        .to_ascii_lowercase();
    Ok(Parsed { seq, prev })
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

// === impl AuditLog ===

impl AuditLog {
    /// A handle that records nothing (no `[audit]` section).
    pub fn disabled() -> AuditLog {
        AuditLog { shared: None }
    }

    /// Opens (or creates, mode 0600) the audit file at `path` and continues
    /// its chain. When this process already has it open, returns that handle.
    /// Errors: the file cannot be opened, or its last line is not a complete
    /// audit record.
    pub fn open(path: &Path) -> io::Result<AuditLog> {
        AuditLog::open_with(path, QUEUE_EVENTS)
    }

    fn open_with(path: &Path, queue: usize) -> io::Result<AuditLog> {
        let ctx =
            |e: io::Error| io::Error::new(e.kind(), format!("audit log {}: {e}", path.display()));
        let key = registry_key(path);
        let mut open = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = open.get(&key) {
            if let Some(shared) = entry.handle.upgrade() {
                return Ok(AuditLog {
                    shared: Some(shared),
                });
            }
            // The last handle is gone; its writer may still be finishing: wait for it.
            let (lock, cv) = &*entry.done;
            let mut done = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !*done {
                let (d, timeout) = cv
                    .wait_timeout(done, Duration::from_secs(10))
                    .unwrap_or_else(|p| p.into_inner());
                done = d;
                if timeout.timed_out() && !*done {
                    return Err(ctx(io::Error::other(
                        "the previous writer of this file did not finish",
                    )));
                }
            }
        }
        let mut file = open_file(path).map_err(ctx)?;
        // Another process (a CLI revocation, an overlapping restart) may be appending.
        let _ = file.lock();
        let head = last_line_head(&mut file);
        let end = file.metadata().map_or(0, |m| m.len());
        let _ = file.unlock();
        let head = head.map_err(|e| {
            ctx(io::Error::new(
                e.kind(),
                format!("{e}; run `portcullis audit verify {}`, then move the file aside to start a new chain", path.display()),
            ))
        })?;
        let (tx, rx) = mpsc::sync_channel(queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let done: Done = Arc::new((Mutex::new(false), Condvar::new()));
        let writer = Writer {
            rx,
            file,
            path: path.to_path_buf(),
            head,
            end,
            dropped: dropped.clone(),
            reported: 0,
            failing: false,
        };
        let done2 = done.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                writer.run();
                let (lock, cv) = &*done2;
                *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
                cv.notify_all();
            })
            .map_err(ctx)?;
        let shared = Arc::new(Shared {
            tx,
            dropped,
            path: path.to_path_buf(),
        });
        open.insert(
            key,
            OpenEntry {
                handle: Arc::downgrade(&shared),
                done,
            },
        );
        Ok(AuditLog {
            shared: Some(shared),
        })
    }

    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// The file, when enabled.
    pub fn path(&self) -> Option<&Path> {
        self.shared.as_ref().map(|s| s.path.as_path())
    }

    /// Queues one event. Never blocks: when the queue is full the event is
    /// dropped and counted (and the count is recorded in the chain later).
    pub fn record(&self, event: AuditEvent) {
        let Some(s) = &self.shared else { return };
        match s.tx.try_send(Msg::Event(Box::new(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A decision on a request: one call per site in the request path.
    /// Builds nothing when the log is disabled.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        kind: AuditKind,
        peer: SocketAddr,
        identity: Option<&str>,
        route: &str,
        request_id: &str,
        reason: &str,
    ) {
        if self.enabled() {
            self.record(
                AuditEvent::new(kind, reason)
                    .peer(peer)
                    .identity(identity)
                    .route(route)
                    .request_id(request_id),
            );
        }
    }

    /// An action taken through the admin API: who (the admin certificate's
    /// subject, or "loopback"), what (e.g. "revoke", "reload") and on what.
    pub fn admin_action(&self, actor: &str, action: &str, detail: &str) {
        if self.enabled() {
            self.record(
                AuditEvent::new(AuditKind::AdminAction, detail)
                    .identity(Some(actor))
                    .detail("action", action),
            );
        }
    }

    /// A reload: `trigger` is what asked for it ("sighup", "file_watch",
    /// "admin_api"); `Err` carries why the new configuration was refused.
    pub fn reload(&self, trigger: &str, config: &Path, result: Result<(), &str>) {
        if !self.enabled() {
            return;
        }
        let ev = match result {
            Ok(()) => AuditEvent::new(AuditKind::Reload, "configuration reloaded"),
            Err(why) => AuditEvent::new(AuditKind::ReloadFailed, why),
        };
        self.record(
            ev.detail("trigger", trigger)
                .detail("config", config.display().to_string()),
        );
    }

    /// Blocks until every event queued before this call is written and
    /// synced. For shutdown and tests; inside async code prefer [`AuditLog::flush`].
    pub fn flush_blocking(&self) {
        let Some(s) = &self.shared else { return };
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if s.tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    /// [`AuditLog::flush_blocking`] on tokio's blocking pool.
    pub async fn flush(&self) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.flush_blocking()).await;
    }

    /// Events lost so far (queue full or write errors).
    pub fn dropped(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }

    /// Do two handles share one writer (and chain)?
    pub fn same_as(&self, other: &AuditLog) -> bool {
        match (&self.shared, &other.shared) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path())
            .field("dropped", &self.dropped())
            .finish()
    }
}

// === impl Writer ===

/// The writer thread's state.
struct Writer {
    rx: Receiver<Msg>,
    file: File,
    path: PathBuf,
    /// The last record on disk.
    head: ChainHead,
    /// The file's length after our last write: longer means another writer appended.
    end: u64,
    dropped: Arc<AtomicU64>,
    /// Dropped events already recorded in the chain.
    reported: u64,
    /// The last write failed: warn again only after a success.
    failing: bool,
}

impl Writer {
    /// Polls the queue every POLL rather than blocking on it, so that the
    /// request path never has to wake this thread.
    fn run(mut self) {
        let mut batch: Vec<AuditEvent> = Vec::new();
        loop {
            std::thread::sleep(POLL);
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Event(ev)) => batch.push(*ev),
                    Ok(Msg::Flush(ack)) => {
                        self.write(&mut batch);
                        let _ = ack.send(());
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.write(&mut batch);
                        return;
                    }
                }
            }
            self.write(&mut batch);
        }
    }

    /// Chains, appends and syncs `batch` (plus a note of dropped events).
    fn write(&mut self, batch: &mut Vec<AuditEvent>) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        let unreported = dropped.saturating_sub(self.reported);
        if unreported > 0 {
            if !self.failing {
                tracing::warn!(path = %self.path.display(), lost = unreported, "audit log: events dropped (queue full or write errors; the disk is too slow?)");
            }
            batch.push(
                AuditEvent::new(
                    AuditKind::AuditDropped,
                    format!("{unreported} audit event(s) lost: queue full or write errors"),
                )
                .detail("lost", unreported.to_string()),
            );
        }
        if batch.is_empty() {
            return;
        }
        // Writers of one file (this gateway, `portcullis cert revoke --audit-log`, an
        // overlapping restart) take turns under an exclusive lock and chain onto the
        // last line on disk. A file that shrank (cut, or truncated by hand) keeps our
        // chain, so that the cut shows in `audit verify`.
        let _ = self.file.lock();
        let len = self.file.metadata().map_or(self.end, |m| m.len());
        if len > self.end {
            match last_line_head(&mut self.file) {
                Ok(h) => self.head = h,
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "audit log: another writer left an incomplete line; chaining on from this writer's last record")
                }
            }
        } else if len < self.end {
            tracing::error!(path = %self.path.display(), "audit log: the file shrank since the last write (truncated?); the chain goes on from the last record written");
        }
        self.write_locked(batch, dropped, unreported);
        self.end = self.file.metadata().map_or(self.end, |m| m.len());
        let _ = self.file.unlock();
        batch.clear();
    }

    fn write_locked(&mut self, batch: &[AuditEvent], dropped: u64, unreported: u64) {
        let mut head = self.head.clone();
        let mut buf = Vec::with_capacity(batch.len() * 320);
        for ev in batch.iter() {
            let start = buf.len();
            ev.render_into(&mut buf, head.seq + 1, &head.hash);
            head = ChainHead {
                seq: head.seq + 1,
                hash: hex_lower(&sha256(&buf[start..])),
            };
            buf.push(b'\n');
        }
        let result = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.head = head;
                self.reported = dropped;
                self.failing = false;
            }
            Err(e) => {
                // The chain stays at the last line known written; the next batch
                // reuses these seq numbers, and its note counts what was lost.
                let lost = batch.len() as u64 - u64::from(unreported > 0);
                self.dropped.fetch_add(lost, Ordering::Relaxed);
                if !self.failing {
                    tracing::error!(path = %self.path.display(), lost, error = %e, "audit log: write failed");
                }
                self.failing = true;
            }
        }
    }
}

// === verify ===

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    /// The last record (genesis for an empty file): keep it elsewhere to
    /// detect a later edit of the last line or a cut of the file's end.
    pub head: ChainHead,
}

/// Where and why a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// 1-based line number where the break shows.
    pub line: u64,
    pub message: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Walks an audit file's chain from the start.
pub fn verify(input: impl BufRead) -> io::Result<Result<Verified, ChainBreak>> {
    let mut lines = Lines {
        input,
        peeked: None,
        number: 0,
    };
    let mut head = ChainHead::genesis();
    while let Some((n, line, complete)) = lines.next()? {
        let brk = |message: String| Ok(Err(ChainBreak { line: n, message }));
        if !complete {
            return brk(format!(
                "truncated: the last line ends without a newline (a write was cut short or the file was cut) after seq {}",
                head.seq
            ));
        }
        let rec = match parse_record(&line) {
            Ok(r) => r,
            Err(e) => return brk(format!("not an audit record: the line {e}")),
        };
        let expected = head.seq + 1;
        if rec.seq != expected {
            if n == 1 {
                return brk(format!(
                    "the file starts at seq {} instead of 1: records before it were deleted",
                    rec.seq
                ));
            }
            if rec.seq > expected {
                if let Some(at) = lines.find_seq(expected)? {
                    return brk(format!("seq {} where {expected} was expected; seq {expected} is at line {at}: lines were reordered", rec.seq));
                }
                let missing = rec.seq - expected;
                return brk(format!(
                    "seq {} follows seq {}: {missing} record(s) deleted before this line",
                    rec.seq, head.seq
                ));
            }
            return brk(format!(
                "seq {} follows seq {}: a line was inserted or lines were reordered",
                rec.seq, head.seq
            ));
        }
        if rec.prev != head.hash {
            if n == 1 {
                return brk("the first line does not chain from the genesis value: it was edited, or records before it were deleted".into());
            }
            // Line n-1 edited: its hash changed, but line n+1 (if any) still chains to n.
            // Line n edited (its prev): line n+1 no longer chains to n either.
            let own = hex_lower(&sha256(&line));
            let message = match lines.peek_prev()? {
                Some(next_prev) if next_prev == own => format!(
                    "hash mismatch: prev does not match the SHA-256 of line {}: line {} was edited",
                    n - 1,
                    n - 1
                ),
                Some(_) => format!("hash mismatch: prev does not match the SHA-256 of line {}, and line {} does not chain to this one: line {n} was edited", n - 1, n + 1),
                None => format!(
                    "hash mismatch: prev does not match the SHA-256 of line {}: line {} or line {n} was edited",
                    n - 1,
                    n - 1
                ),
            };
            return brk(message);
        }
        head = ChainHead {
            seq: rec.seq,
            hash: hex_lower(&sha256(&line)),
        };
    }
    Ok(Ok(Verified {
        records: head.seq,
        head,
    }))
}

/// Lines of the input with their numbers, one line of lookahead.
struct Lines<R> {
    input: R,
    /// (line, ends with a newline)
    peeked: Option<Option<(Vec<u8>, bool)>>,
    number: u64,
}

impl<R: BufRead> Lines<R> {
    fn read(&mut self) -> io::Result<Option<(Vec<u8>, bool)>> {
        let mut buf = Vec::new();
        if self.input.read_until(b'\n', &mut buf)? == 0 {
            return Ok(None);
        }
        let complete = buf.last() == Some(&b'\n');
        if complete {
            buf.pop();
        }
        Ok(Some((buf, complete)))
    }

    fn next(&mut self) -> io::Result<Option<(u64, Vec<u8>, bool)>> {
        let item = match self.peeked.take() {
            Some(p) => p,
            None => self.read()?,
        };
        Ok(item.map(|(l, c)| {
            self.number += 1;
            (self.number, l, c)
        }))
    }

    /// The `prev` of the next line, if it is a record.
    fn peek_prev(&mut self) -> io::Result<Option<String>> {
        if self.peeked.is_none() {
            self.peeked = Some(self.read()?);
        }
        Ok(self
            .peeked
            .as_ref()
            .and_then(|p| p.as_ref())
            .and_then(|(l, _)| parse_record(l).ok())
            .map(|r| r.prev))
    }

    /// Reads on to find the line holding `seq` (consumes the input).
    fn find_seq(&mut self, seq: u64) -> io::Result<Option<u64>> {
        while let Some((n, line, _)) = self.next()? {
            if parse_record(&line).is_ok_and(|r| r.seq == seq) {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    fn check(text: &str) -> Result<Verified, ChainBreak> {
        verify(io::Cursor::new(text.as_bytes())).unwrap()
    }

    fn ev(kind: AuditKind, n: usize) -> AuditEvent {
        AuditEvent::new(kind, format!("reason {n}"))
            .peer("192.0.2.7:5555".parse().unwrap())
            .identity(Some("CN=client,O=Example"))
            .route("api")
            .request_id(&format!("req-{n}"))
    }

    /// A file of `n` records.
    fn sample(dir: &Path, n: usize) -> (PathBuf, String) {
        let path = dir.join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..n {
            log.record(ev(AuditKind::AuthFailure, i));
        }
        log.flush_blocking();
        drop(log);
        let text = read(&path);
        (path, text)
    }

    #[test]
    fn lines_chain_from_genesis_with_the_fields() {
        let dir = tempfile::tempdir().unwrap();
        let (_, text) = sample(dir.path(), 3);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let mut prev = GENESIS.to_string();
        for (i, l) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["seq"], (i + 1) as u64);
            assert_eq!(v["prev"], prev.as_str());
            assert_eq!(v["event"], "auth_failure");
            assert_eq!(v["peer"], "192.0.2.7:5555");
            assert_eq!(v["identity"], "CN=client,O=Example");
            assert_eq!(v["route"], "api");
            assert_eq!(v["reason"], format!("reason {i}"));
            assert_eq!(v["request_id"], format!("req-{i}"));
            let t = v["time"].as_str().unwrap();
            assert!(
                t.len() == 24 && t.ends_with('Z') && t.as_bytes()[19] == b'.',
                "{t}"
            );
            prev = hex_lower(&sha256(l.as_bytes()));
        }
        // Fixed field order, seq first and prev last.
        assert!(lines[0].starts_with("{\"seq\":1,\"time\":"), "{}", lines[0]);
        assert!(lines[0].ends_with(&format!("\"prev\":\"{GENESIS}\"}}")));
        assert_eq!(
            check(&text),
            Ok(Verified {
                records: 3,
                head: ChainHead { seq: 3, hash: prev }
            })
        );
    }

    #[test]
    fn a_reopened_file_continues_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = sample(dir.path(), 2);
        let log = AuditLog::open(&path).unwrap();
        log.reload("sighup", Path::new("/etc/p.toml"), Ok(()));
        log.admin_action("CN=admin", "revoke", "serial 0a");
        log.flush_blocking();
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        log.reload("sighup", Path::new("/etc/p.toml"), Err("listener moved"));
        log.flush_blocking();
        let text = read(&path);
        assert_eq!(text.lines().count(), 5);
        assert_eq!(check(&text).unwrap().records, 5);
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["event"], "reload_failed");
        assert_eq!(last["reason"], "listener moved");
        assert_eq!(last["detail"]["trigger"], "sighup");
        let admin: serde_json::Value = serde_json::from_str(text.lines().nth(3).unwrap()).unwrap();
        assert_eq!(admin["event"], "admin_action");
        assert_eq!(admin["identity"], "CN=admin");
        assert_eq!(admin["detail"]["action"], "revoke");
    }

    #[test]
    fn open_twice_shares_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let a = AuditLog::open(&path).unwrap();
        let b = AuditLog::open(&dir.path().join(".").join("audit.log")).unwrap();
        assert!(a.same_as(&b));
        for i in 0..50 {
            a.record(ev(AuditKind::RateLimited, i));
            b.record(ev(AuditKind::AuthzDenied, i));
        }
        a.flush_blocking();
        b.flush_blocking();
        assert_eq!(check(&read(&path)).unwrap().records, 100);
        let other = AuditLog::open(&dir.path().join("other.log")).unwrap();
        assert!(!a.same_as(&other));
    }

    #[test]
    fn another_writer_appending_is_chained_onto() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        log.record(ev(AuditKind::AuthFailure, 1));
        log.flush_blocking();
        // Another process appends a chained record (as `cert revoke --audit-log` does).
        let head = read_head(&path).unwrap();
        let mut line = AuditEvent::new(AuditKind::CertRevoked, "keyCompromise")
            .render(head.seq + 1, &head.hash);
        line.push(b'\n');
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&line).unwrap();
        drop(f);
        log.record(ev(AuditKind::AuthFailure, 3));
        log.flush_blocking();
        let text = read(&path);
        assert_eq!(check(&text).unwrap().records, 3, "{text}");
        assert!(text.lines().nth(1).unwrap().contains("cert_revoked"));
    }

    #[test]
    fn a_truncated_file_keeps_the_chain_so_the_cut_shows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..3 {
            log.record(ev(AuditKind::AuthFailure, i));
        }
        log.flush_blocking();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        log.record(ev(AuditKind::AuthFailure, 4));
        log.flush_blocking();
        let e = check(&read(&path)).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("starts at seq 4"), "{e}");
    }

    #[test]
    fn file_is_created_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = sample(dir.path(), 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }

    #[test]
    fn verify_finds_an_edited_line() {
        let dir = tempfile::tempdir().unwrap();
        let (_, text) = sample(dir.path(), 5);
        let edited = text.replacen("reason 2", "reason X", 1);
        let e = check(&edited).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("line 3 was edited"), "{e}");
        // The prev field of a line edited: found at that line.
        let lines: Vec<&str> = text.lines().collect();
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        let bad_prev = lines[2].replace(v["prev"].as_str().unwrap(), &"1".repeat(64));
        let text2 = text.replace(lines[2], &bad_prev);
        let e = check(&text2).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("line 3 was edited"), "{e}");
    }

    #[test]
    fn verify_finds_a_deleted_line() {
        let dir = tempfile::tempdir().unwrap();
        let (_, text) = sample(dir.path(), 5);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(2);
        let e = check(&(lines.join("\n") + "\n")).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("deleted"), "{e}");
        // The first line deleted.
        let lines: Vec<&str> = text.lines().skip(1).collect();
        let e = check(&(lines.join("\n") + "\n")).unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.contains("deleted"), "{e}");
    }

    #[test]
    fn verify_finds_reordered_and_inserted_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (_, text) = sample(dir.path(), 5);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(1, 2);
        let e = check(&(lines.join("\n") + "\n")).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("reordered"), "{e}");
        // A copy of line 2 inserted after line 3.
        let mut lines: Vec<&str> = text.lines().collect();
        let copy = lines[1];
        lines.insert(3, copy);
        let e = check(&(lines.join("\n") + "\n")).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("inserted"), "{e}");
    }

    #[test]
    fn verify_finds_a_truncated_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let (_, text) = sample(dir.path(), 3);
        let cut = &text[..text.len() - 10];
        let e = check(cut).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("truncated"), "{e}");
        // Not JSON in the middle.
        let e = check(&text.replacen("{\"seq\":2", "garbage", 1)).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("not an audit record"), "{e}");
        assert_eq!(check("").unwrap().records, 0);
    }

    #[test]
    fn open_refuses_a_file_whose_last_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (path, text) = sample(dir.path(), 2);
        std::fs::write(&path, &text[..text.len() - 5]).unwrap();
        let err = AuditLog::open(&path).unwrap_err();
        assert!(err.to_string().contains("incomplete"), "{err}");
        std::fs::write(&path, "not json\n").unwrap();
        let err = AuditLog::open(&path).unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    #[test]
    fn long_fields_are_clipped_and_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        log.record(AuditEvent::new(
            AuditKind::AuthzDenied,
            format!("\"quoted\"\n{}", "é".repeat(5000)),
        ));
        log.flush_blocking();
        let text = read(&path);
        assert_eq!(text.lines().count(), 1);
        assert!(text.len() < 2 * MAX_FIELD + 400, "{}", text.len());
        assert_eq!(check(&text).unwrap().records, 1);
    }

    #[test]
    fn a_full_queue_drops_counts_and_records_the_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        // A queue of 4 and a writer that looks every 20 ms: most of these are dropped.
        let log = AuditLog::open_with(&path, 4).unwrap();
        let n = 10_000;
        for i in 0..n {
            log.record(ev(AuditKind::RateLimited, i));
        }
        log.flush_blocking();
        let dropped = log.dropped();
        assert!(dropped > 0, "nothing dropped");
        let text = read(&path);
        let written = text.lines().filter(|l| l.contains("rate_limited")).count() as u64;
        assert_eq!(written + dropped, n as u64);
        let lost: u64 = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "audit_dropped")
            .map(|v| {
                v["detail"]["lost"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(lost, dropped);
        assert!(check(&text).is_ok());
    }

    #[test]
    fn disabled_records_nothing() {
        let log = AuditLog::disabled();
        assert!(!log.enabled());
        log.request(
            AuditKind::AuthFailure,
            "127.0.0.1:1".parse().unwrap(),
            None,
            "r",
            "id",
            "missing",
        );
        log.flush_blocking();
        assert_eq!(log.dropped(), 0);
        assert!(log.path().is_none());
    }
}
