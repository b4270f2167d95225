//! Getting access-log lines out of the request path and onto stdout or a file.
//!
//! Owns [`AccessLog`], a cheap clonable handle, and the dedicated std thread
//! behind it. Lines go through a bounded queue; the thread batches them and
//! writes when 64 KiB are buffered, one second after the oldest buffered
//! line, and on [`AccessLog::flush_blocking`]. It must never block a caller
//! on the hot path: when the queue is full the line is dropped and counted.

use std::cell::RefCell;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    /// Opened for appending, created with mode 0640; reopened on [`AccessLog::reopen`].
    File(PathBuf),
    Off,
}

/// Lines that may wait in the queue before new ones are dropped.
const QUEUE_LINES: usize = 16 * 1024;
/// Buffered bytes that trigger a write.
const BATCH_BYTES: usize = 64 * 1024;
/// The longest a line waits in the writer's buffer.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// How often the writer thread looks at the queue.
const POLL: Duration = Duration::from_millis(20);
/// A render buffer that grew past this is not kept for the next line.
const SCRATCH_KEEP: usize = 16 * 1024;

/// A handle on an access log. Clones share one queue and one writer thread;
/// the thread writes what is left and ends when the last clone is dropped.
#[derive(Clone)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    tx: SyncSender<Msg>,
    stats: Arc<Stats>,
    target: LogTarget,
}

#[derive(Default)]
struct Stats {
    dropped: AtomicU64,
}

enum Msg {
    Line(Vec<u8>),
    Reopen,
    Flush(SyncSender<()>),
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

// === impl AccessLog ===

impl AccessLog {
    /// Opens `target` (a file is created or appended to now, so a bad path is
    /// an error here) and starts the writer thread. `Off` starts nothing.
    pub fn open(target: LogTarget) -> io::Result<AccessLog> {
        let sink = match &target {
            LogTarget::Off => return Ok(AccessLog { shared: None }),
            LogTarget::Stdout => Sink::Stdout,
            LogTarget::File(path) => Sink::File {
                file: open_file(path)?,
                path: path.clone(),
            },
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            rx,
            sink,
            stats: stats.clone(),
            buf: Vec::with_capacity(BATCH_BYTES + SCRATCH_KEEP),
            lines: 0,
            failing: false,
        };
        std::thread::Builder::new()
            .name("accesslog-writer".into())
            .spawn(move || writer.run())?;
        Ok(AccessLog {
            shared: Some(Arc::new(Shared { tx, stats, target })),
        })
    }

    /// False for [`LogTarget::Off`]: callers can skip building records.
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    pub fn target(&self) -> &LogTarget {
        match &self.shared {
            Some(s) => &s.target,
            None => &LogTarget::Off,
        }
    }

    /// Queues one complete line (with its `\n`). Never blocks: if the queue
    /// is full the line is dropped and counted in [`AccessLog::dropped`].
    pub fn log(&self, line: Vec<u8>) {
        let Some(s) = &self.shared else { return };
        match s.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                s.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Renders a line with `render` into a per-thread buffer and queues it;
    /// does nothing (and does not call `render`) when the log is off.
    ///
    /// ```text
    /// access.log_with(|buf| format.render(&record, buf));
    /// ```
    pub fn log_with(&self, render: impl FnOnce(&mut Vec<u8>)) {
        if self.shared.is_none() {
            return;
        }
        let line = SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                render(&mut buf);
                let line = buf.to_vec();
                if buf.capacity() > SCRATCH_KEEP {
                    *buf = Vec::new();
                }
                line
            }
            // Called from inside another `log_with`'s render: no shared buffer.
            Err(_) => {
                let mut buf = Vec::with_capacity(256);
                render(&mut buf);
                buf
            }
        });
        if !line.is_empty() {
            self.log(line);
        }
    }

    /// Asks the writer thread to reopen the file (after logrotate moved it,
    /// on SIGUSR1). Lines queued before this call go to the old file. Does not
    /// block; a no-op for stdout and off.
    pub fn reopen(&self) {
        let Some(s) = &self.shared else { return };
        if !matches!(s.target, LogTarget::File(_)) {
            return;
        }
        // A full queue: the writer is busy; wait for room off the caller's thread.
        if let Err(TrySendError::Full(msg)) = s.tx.try_send(Msg::Reopen) {
            let tx = s.tx.clone();
            let _ = std::thread::Builder::new()
                .name("accesslog-reopen".into())
                .spawn(move || tx.send(msg));
        }
    }

    /// Blocks until every line queued before this call is written and, for a
    /// file, synced to disk. For shutdown, reloads and tests: it blocks the
    /// calling thread (inside async code prefer [`AccessLog::flush`]).
    pub fn flush_blocking(&self) {
        let Some(s) = &self.shared else { return };
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if s.tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    /// [`AccessLog::flush_blocking`] on tokio's blocking pool.
    pub async fn flush(&self) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.flush_blocking()).await;
    }

    /// Lines lost so far: dropped because the queue was full, or lost to
    /// write errors.
    pub fn dropped(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.stats.dropped.load(Ordering::Relaxed))
    }
}

impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("target", self.target())
            .field("dropped", &self.dropped())
            .finish()
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

// === impl Writer ===

enum Sink {
    Stdout,
    File { path: PathBuf, file: File },
}

/// The writer thread's state.
struct Writer {
    rx: Receiver<Msg>,
    sink: Sink,
    stats: Arc<Stats>,
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: u64,
    /// The last write failed: report the next failure only after a success.
    failing: bool,
}

impl Writer {
    /// Polls the queue every POLL instead of blocking on it: a sender then
    /// never has to wake this thread (no futex per log line on the request
    /// path); lines wait at most POLL (plus the batch delay) to be written.
    fn run(mut self) {
        let mut deadline: Option<Instant> = None;
        loop {
            std::thread::sleep(POLL);
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Line(line)) => {
                        self.buf.extend_from_slice(&line);
                        self.lines += 1;
                        deadline.get_or_insert_with(|| Instant::now() + MAX_DELAY);
                        if self.buf.len() >= BATCH_BYTES {
                            self.write_out();
                            deadline = None;
                        }
                    }
                    Ok(Msg::Reopen) => {
                        self.write_out();
                        deadline = None;
                        self.reopen();
                    }
                    Ok(Msg::Flush(ack)) => {
                        self.write_out();
                        deadline = None;
                        self.sync();
                        let _ = ack.send(());
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.write_out();
                        self.sync();
                        return;
                    }
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.write_out();
                deadline = None;
            }
        }
    }

    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let r = match &mut self.sink {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&self.buf).and_then(|()| out.flush())
            }
            Sink::File { file, .. } => file.write_all(&self.buf),
        };
        match r {
            Ok(()) => self.failing = false,
            Err(e) => {
                self.stats.dropped.fetch_add(self.lines, Ordering::Relaxed);
                if !self.failing {
                    eprintln!(
                        "access log {}: write failed, {} lines lost: {e}",
                        self.sink.name(),
                        self.lines
                    );
                }
                self.failing = true;
            }
        }
        self.buf.clear();
        self.lines = 0;
        if self.buf.capacity() > 4 * BATCH_BYTES {
            self.buf.shrink_to(BATCH_BYTES + SCRATCH_KEEP);
        }
    }

    fn sync(&mut self) {
        if let Sink::File { file, .. } = &self.sink {
            let _ = file.sync_data();
        }
    }

    fn reopen(&mut self) {
        let Sink::File { path, file } = &mut self.sink else {
            return;
        };
        match open_file(path) {
            Ok(new) => *file = new,
            // Keep writing to the old file rather than losing lines.
            Err(e) => eprintln!("{e}; still writing to the previous file"),
        }
    }
}

impl Sink {
    fn name(&self) -> String {
        match self {
            Sink::Stdout => "stdout".into(),
            Sink::File { path, .. } => path.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn flush_blocking_writes_everything_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(LogTarget::File(path.clone())).unwrap();
        let clone = log.clone();
        for i in 0..1000 {
            clone.log(format!("line {i}\n").into_bytes());
        }
        log.flush_blocking();
        let text = read(&path);
        assert_eq!(text.lines().count(), 1000);
        assert_eq!(text.lines().last(), Some("line 999"));
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn file_is_appended_to_and_created_0640() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        let log = AccessLog::open(LogTarget::File(path.clone())).unwrap();
        log.log(b"one\n".to_vec());
        log.flush_blocking();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // 0640, less whatever the umask takes away.
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
        drop(log);
        let log = AccessLog::open(LogTarget::File(path.clone())).unwrap();
        log.log(b"two\n".to_vec());
        log.flush_blocking();
        assert_eq!(read(&path), "one\ntwo\n");
    }

    #[test]
    fn reopen_after_rename_writes_to_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let log = AccessLog::open(LogTarget::File(path.clone())).unwrap();
        log.log(b"before 1\n".to_vec());
        log.flush_blocking();
        log.log(b"before 2\n".to_vec());
        std::fs::rename(&path, &rotated).unwrap();
        // Queued before the reopen: still goes to the renamed file.
        log.log(b"before 3\n".to_vec());
        log.reopen();
        log.log(b"after\n".to_vec());
        log.flush_blocking();
        assert_eq!(read(&rotated), "before 1\nbefore 2\nbefore 3\n");
        assert_eq!(read(&path), "after\n");
    }

    #[test]
    fn lines_are_written_within_a_second_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(LogTarget::File(path.clone())).unwrap();
        log.log(b"soon\n".to_vec());
        let until = Instant::now() + Duration::from_secs(3);
        while read(&path).is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(read(&path), "soon\n");
    }

    #[test]
    fn log_with_renders_into_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(LogTarget::File(path.clone())).unwrap();
        log.log_with(|b| b.extend_from_slice(b"a\n"));
        log.log_with(|b| {
            b.extend_from_slice(b"b");
            // Re-entrant use must not panic.
            log.log_with(|inner| inner.extend_from_slice(b"inner\n"));
            b.extend_from_slice(b"\n");
        });
        log.flush_blocking();
        assert_eq!(read(&path), "a\ninner\nb\n");
    }

    #[test]
    fn off_is_a_no_op() {
        let log = AccessLog::open(LogTarget::Off).unwrap();
        assert!(!log.enabled());
        let mut called = false;
        log.log_with(|_| called = true);
        assert!(!called);
        log.log(b"x\n".to_vec());
        log.reopen();
        log.flush_blocking();
        assert_eq!(log.dropped(), 0);
        assert_eq!(log.target(), &LogTarget::Off);
    }

    #[test]
    fn open_fails_on_a_bad_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = AccessLog::open(LogTarget::File(dir.path().join("no/such/dir/log"))).unwrap_err();
        assert!(err.to_string().contains("no/such/dir/log"), "{err}");
    }

    #[tokio::test]
    async fn async_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(LogTarget::File(path.clone())).unwrap();
        log.log(b"x\n".to_vec());
        log.flush().await;
        assert_eq!(read(&path), "x\n");
    }
}
