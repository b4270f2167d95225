//! Getting access-log lines out of the request path and onto stdout or a file.
//!
//! Owns [`AccessLog`], a cheap clonable handle, and the dedicated std thread
//! behind it. A line is rendered into a per-thread scratch buffer, then
//! appended to the shared batch under a lock held only for that copy (no
//! allocation, no queue, and lines stay in the order they were logged); the
//! thread takes the batch every POLL and writes when 64 KiB are gathered, one
//! second after the oldest line, and on [`AccessLog::flush_blocking`]. Reopen
//! and flush go through a channel in order with the lines logged before them
//! (the `control` lock makes the two paths agree). It must never block a
//! caller on the hot path: a batch that passes its bound drops the line and
//! counts it.

use std::cell::RefCell;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    /// Opened for appending, created with mode 0640; reopened on [`AccessLog::reopen`].
    File(PathBuf),
    Off,
}

/// Bytes the batch may hold before new lines are dropped (the writer empties
/// it every POLL; at 50k lines/s it holds about 250 KiB then).
const BATCH_MAX: usize = 8 * 1024 * 1024;
/// A render buffer that grew past this is not kept for the next line.
const SCRATCH_KEEP: usize = 16 * 1024;
/// Buffered bytes that trigger a write.
const BATCH_BYTES: usize = 64 * 1024;
/// The longest a line waits in the writer's buffer.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// How often the writer thread collects lines.
const POLL: Duration = Duration::from_millis(20);

/// A handle on an access log. Clones share the batches and one writer thread;
/// the thread writes what is left and ends when the last clone is dropped.
#[derive(Clone)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    tx: Sender<Msg>,
    batches: Arc<Batches>,
    stats: Arc<Stats>,
    target: LogTarget,
}

/// What the request path appends to and the writer thread empties.
struct Batches {
    batch: Mutex<Batch>,
    /// Held while reopen/flush take the batch's lines into their message and
    /// while the writer reads the channel then takes the batch: a line logged
    /// after `reopen()` returned can never be written before it.
    control: Mutex<()>,
}

#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    lines: u64,
}

#[derive(Default)]
struct Stats {
    dropped: AtomicU64,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

enum Msg {
    /// Reopen the file after writing `before` (the lines logged before the call).
    Reopen(Vec<u8>, u64),
    /// Write `before` and everything gathered, sync, then answer.
    Flush(Vec<u8>, u64, mpsc::SyncSender<()>),
}

// === impl Batches ===

impl Batches {
    fn new() -> Batches {
        Batches {
            batch: Mutex::new(Batch::default()),
            control: Mutex::new(()),
        }
    }

    /// Appends one line; false when the batch is full (the line is lost).
    fn append(&self, line: &[u8]) -> bool {
        let mut b = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        if b.buf.len() + line.len() > BATCH_MAX {
            return false;
        }
        b.buf.extend_from_slice(line);
        b.lines += 1;
        true
    }

    /// Takes the batch's lines: `out` (emptied) and the batch swap buffers,
    /// so the lock is held for no copy. Returns how many lines.
    fn take_all(&self, out: &mut Vec<u8>) -> u64 {
        out.clear();
        let mut b = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut b.buf, out);
        std::mem::take(&mut b.lines)
    }
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
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let batches = Arc::new(Batches::new());
        let writer = Writer {
            rx,
            batches: batches.clone(),
            sink,
            stats: stats.clone(),
            buf: Vec::with_capacity(2 * BATCH_BYTES),
            lines: 0,
            fresh: Vec::new(),
            failing: false,
        };
        std::thread::Builder::new()
            .name("accesslog-writer".into())
            .spawn(move || writer.run())?;
        Ok(AccessLog {
            shared: Some(Arc::new(Shared {
                tx,
                batches,
                stats,
                target,
            })),
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

    /// Queues one complete line (with its `\n`). Never waits for the writer:
    /// if the batch is full the line is dropped and counted in [`AccessLog::dropped`].
    pub fn log(&self, line: Vec<u8>) {
        self.log_with(|buf| buf.extend_from_slice(&line));
    }

    /// Renders a line with `render` into a per-thread buffer and appends it
    /// to the batch; does nothing (and does not call `render`) when the log is off.
    ///
    /// ```text
    /// access.log_with(|buf| format.render(&record, buf));
    /// ```
    pub fn log_with(&self, render: impl FnOnce(&mut Vec<u8>)) {
        let Some(s) = &self.shared else { return };
        let kept = SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                render(&mut buf);
                let kept = buf.is_empty() || s.batches.append(&buf);
                if buf.capacity() > SCRATCH_KEEP {
                    *buf = Vec::new();
                }
                kept
            }
            // Called from inside another `log_with`'s render: no shared buffer.
            Err(_) => {
                let mut buf = Vec::with_capacity(256);
                render(&mut buf);
                buf.is_empty() || s.batches.append(&buf)
            }
        });
        if !kept {
            // The writer is not keeping up: lose this line, keep the rest.
            s.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the writer thread to reopen the file (after logrotate moved it,
    /// on SIGUSR1). Lines logged before this call go to the old file. Does not
    /// wait for the writer; a no-op for stdout and off.
    pub fn reopen(&self) {
        let Some(s) = &self.shared else { return };
        if !matches!(s.target, LogTarget::File(_)) {
            return;
        }
        let _order = s.batches.control.lock().unwrap_or_else(|e| e.into_inner());
        let mut before = Vec::new();
        let lines = s.batches.take_all(&mut before);
        let _ = s.tx.send(Msg::Reopen(before, lines));
    }

    /// Blocks until every line logged before this call is written and, for a
    /// file, synced to disk. For shutdown, reloads and tests: it blocks the
    /// calling thread (inside async code prefer [`AccessLog::flush`]).
    pub fn flush_blocking(&self) {
        let Some(s) = &self.shared else { return };
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        {
            let _order = s.batches.control.lock().unwrap_or_else(|e| e.into_inner());
            let mut before = Vec::new();
            let lines = s.batches.take_all(&mut before);
            if s.tx.send(Msg::Flush(before, lines, ack_tx)).is_err() {
                return;
            }
        }
        let _ = ack_rx.recv();
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
    batches: Arc<Batches>,
    sink: Sink,
    stats: Arc<Stats>,
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: u64,
    /// The batches' lines of one collection, before they join `buf`.
    fresh: Vec<u8>,
    /// The last write failed: report the next failure only after a success.
    failing: bool,
}

/// What the writer does with the lines logged before it, in order.
enum Step {
    Reopen,
    Flush(mpsc::SyncSender<()>),
}

impl Writer {
    /// Sleeps POLL, then, under `control`, reads the channel and takes the
    /// batches; writes outside the lock. Nothing wakes this thread per line.
    fn run(mut self) {
        let mut deadline: Option<Instant> = None;
        loop {
            std::thread::sleep(POLL);
            let mut steps: Vec<(Vec<u8>, u64, Step)> = Vec::new();
            let mut closed = false;
            let fresh_lines;
            {
                let _order = self
                    .batches
                    .control
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                loop {
                    match self.rx.try_recv() {
                        Ok(Msg::Reopen(before, n)) => steps.push((before, n, Step::Reopen)),
                        Ok(Msg::Flush(before, n, ack)) => steps.push((before, n, Step::Flush(ack))),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                fresh_lines = self.batches.take_all(&mut self.fresh);
            }
            // Lines already buffered, then the messages in order, then the
            // batches' lines (logged after every message just read, or at
            // the same time).
            for (data, n, step) in steps {
                self.buf.extend_from_slice(&data);
                self.lines += n;
                match step {
                    Step::Reopen => {
                        self.write_out();
                        self.reopen();
                    }
                    Step::Flush(ack) => {
                        self.write_out();
                        self.sync();
                        let _ = ack.send(());
                    }
                }
            }
            self.buf.extend_from_slice(&self.fresh);
            self.lines += fresh_lines;
            // `fresh` goes back to the batch at the next take: keep it from
            // holding on to a burst's worth of memory.
            self.fresh.clear();
            if self.fresh.capacity() > 4 * BATCH_BYTES {
                self.fresh.shrink_to(BATCH_BYTES);
            }
            if self.buf.is_empty() {
                deadline = None;
            } else {
                deadline.get_or_insert_with(|| Instant::now() + MAX_DELAY);
            }
            if closed {
                self.write_out();
                self.sync();
                return;
            }
            if self.buf.len() >= BATCH_BYTES || deadline.is_some_and(|d| Instant::now() >= d) {
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
            self.buf.shrink_to(2 * BATCH_BYTES);
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
        // The inner line is complete first.
        assert_eq!(read(&path), "a\ninner\nb\n");
    }

    #[test]
    fn lines_from_many_threads_at_once_are_all_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(LogTarget::File(path.clone())).unwrap();
        // Every line is kept, each whole, and each thread's in its own order.
        std::thread::scope(|sc| {
            for t in 0..4 {
                let log = log.clone();
                sc.spawn(move || {
                    for i in 0..2000 {
                        log.log_with(|b| b.extend_from_slice(format!("{t} {i}\n").as_bytes()));
                    }
                });
            }
        });
        log.flush_blocking();
        let text = read(&path);
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8000);
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("{t} ")))
                .collect();
            let want: Vec<String> = (0..2000).map(|i| format!("{t} {i}")).collect();
            assert_eq!(mine, want);
        }
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), 8000);
        assert_eq!(log.dropped(), 0);
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
