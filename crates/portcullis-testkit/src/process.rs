//! Processes for tests: free ports, the gateway binary, external clients.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A port that is free now, for a test's listener (the gateway's, an echo's).
///
/// Taken from below the kernel's ephemeral range (`ip_local_port_range`):
/// a port from inside it, released after probing, could be handed by the
/// kernel to another test's mock server (a bind to port 0) or to a
/// connection's source port before the gateway bound it. The gateway then
/// failed to start, and the readiness check connected to the other test's
/// server instead (a CI run failed on "couldn't connect" that way). Ports
/// are probed by binding, start at an offset that differs between
/// processes, and are never handed out twice in one process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let (lo, hi) = test_port_range();
    let span = u32::from(hi - lo);
    let seed = std::process::id().wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for i in 0..span {
        let port = lo + ((seed.wrapping_add(i)) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    // Every port of the range taken: fall back to one the kernel picks.
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind port 0")
            .local_addr()
            .expect("addr")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Up to 10,000 ports just below the ephemeral range (20000..30000 when the
/// range cannot be read or starts too low).
fn test_port_range() -> (u16, u16) {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok());
    match low {
        Some(l) if l >= 12_000 => (l - 10_000, l),
        _ => (20_000, 30_000),
    }
}

/// Waits until something accepts on `addr` (up to 20 s). Returns false on time-out.
pub fn wait_for_port(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Runs a command to completion, capturing output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// A running `portcullis serve`, killed when dropped.
pub struct GatewayProcess {
    pub child: Child,
    pub config: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl GatewayProcess {
    /// Starts `bin serve --config config` and waits for `ready` to accept.
    pub fn start(bin: &Path, config: &Path, ready: SocketAddr) -> GatewayProcess {
        let dir = config.parent().expect("config dir");
        let stdout = dir.join("gateway.stdout");
        let stderr = dir.join("gateway.stderr");
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn gateway");
        let mut g = GatewayProcess {
            child,
            config: config.to_path_buf(),
            stdout,
            stderr,
        };
        if !wait_for_port(ready) {
            let _ = g.child.kill();
            panic!(
                "gateway did not start listening on {ready}; stderr:\n{}",
                g.stderr_text()
            );
        }
        g
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Sends a signal by name ("TERM", "USR1", …) with kill(1).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for exit up to `timeout`; returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `python3 -c script args…`, capturing output.
pub fn python(script: &str, args: &[&str]) -> Output {
    run(Command::new("python3").arg("-c").arg(script).args(args))
}

/// The shared directory next to the repository (`../shared` from the repo
/// root), if it exists. `manifest_dir` is the caller's `CARGO_MANIFEST_DIR`.
pub fn shared_dir(manifest_dir: &str) -> Option<PathBuf> {
    let mut p = PathBuf::from(manifest_dir);
    // crates/<name> → repository root → its parent.
    for _ in 0..3 {
        p.pop();
    }
    let d = p.join("shared");
    d.is_dir().then_some(d)
}

/// A redis-server of the test's own on a free port, killed on drop; `None`
/// (with a loud message) when redis-server is not installed.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> Option<RedisServer> {
        if !Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            eprintln!("\n!!!!! SKIPPED: redis-server is not installed (scripts/install-test-deps.sh installs it) !!!!!\n");
            return None;
        }
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        assert!(
            wait_for_port(SocketAddr::from(([127, 0, 0, 1], port))),
            "redis-server did not listen on {port}"
        );
        Some(RedisServer { child, port })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
