//! The first run, end to end: `portcullis quickstart` in an empty directory,
//! then curl as the printed commands do, with and without the client
//! certificate; a second run reuses the files. The quickstart's ports are
//! fixed (8443, 8080, 9090, 9901), so this is the only test in this file that
//! starts it; the generated config is also checked and served on free ports.

mod common;
use common::*;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Quickstart(Child);
impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_quickstart(cwd: &Path, log: &str) -> Quickstart {
    let child = Command::new(BIN)
        .arg("quickstart")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(cwd.join(format!("{log}.out"))).unwrap())
        .stderr(std::fs::File::create(cwd.join(format!("{log}.err"))).unwrap())
        .spawn()
        .expect("spawn quickstart");
    Quickstart(child)
}

fn stop(mut q: Quickstart) -> Option<i32> {
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(q.0.id().to_string())
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(st)) = q.0.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn quickstart_end_to_end() {
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("portcullis-data");
    let https: SocketAddr = "127.0.0.1:8443".parse().unwrap();

    // First run: creates everything and serves.
    let q = start_quickstart(cwd.path(), "first");
    if !wait_for_port(https) {
        panic!(
            "quickstart did not listen on 8443:\n{}",
            std::fs::read_to_string(cwd.path().join("first.err")).unwrap_or_default()
        );
    }
    for f in [
        "ca.crt",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
        "portcullis.toml",
    ] {
        assert!(data.join(f).exists(), "{f} was not created");
    }
    let ca = data.join("ca.crt");
    // As printed: without and with the client certificate (optional mTLS).
    let r = Curl::https(8443, "/hello", &ca).run();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/hello");
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let r = Curl::https(8443, "/hello", &ca)
        .client_cert(&data.join("client.crt"), &data.join("client.key"))
        .run();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = Curl::https(8443, "/hello", &ca).http2().run();
    assert_eq!(r.version, "2");
    // 127.0.0.1 is in the server certificate too.
    let r = Curl::new("https://127.0.0.1:8443/ip").cacert(&ca).run();
    assert_eq!(r.status, 200);
    // Plain HTTP redirects, keeping path and query.
    let r = Curl::new("http://localhost:8080/hello?x=1")
        .resolve("localhost", 8080)
        .run();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://localhost:8443/hello?x=1")
    );
    // The admin API on loopback: metrics after the requests above, and `status`.
    let m = Curl::new("http://127.0.0.1:9901/metrics").run();
    assert_eq!(m.status, 200);
    assert!(
        m.text().contains(
            "portcullis_http_requests_total{route=\"api\",method=\"GET\",status=\"2xx\"}"
        ),
        "{}",
        m.text()
    );
    let st = run(Command::new(BIN)
        .arg("status")
        .arg("--config")
        .arg(data.join("portcullis.toml"))
        .args(["--interval", "0.2"]));
    let st_out = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success() && st_out.contains("READY"), "{st_out}");
    let out = std::fs::read_to_string(cwd.path().join("first.out")).unwrap_or_default();
    assert!(
        out.contains("curl --cacert"),
        "no curl commands printed:\n{out}"
    );
    assert!(
        out.contains("--cert"),
        "no client-certificate command printed:\n{out}"
    );
    assert_eq!(stop(q), Some(0), "Ctrl-C must stop it cleanly");

    // The written config passes `check`, and serves on other ports as a copy.
    let cfg = data.join("portcullis.toml");
    let out = run(Command::new(BIN).arg("check").arg("--config").arg(&cfg));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (p_https, p_http, p_echo, p_admin) = (free_port(), free_port(), free_port(), free_port());
    let copy = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("8443", &p_https.to_string())
        .replace("8080", &p_http.to_string())
        .replace("9090", &p_echo.to_string())
        .replace("9901", &p_admin.to_string());
    let copy_path = data.join("copy.toml");
    std::fs::write(&copy_path, copy).unwrap();
    {
        let _gw =
            GatewayProcess::start(Path::new(BIN), &copy_path, ([127, 0, 0, 1], p_https).into());
        let r = Curl::https(p_https, "/copy", &ca).run();
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // Second run: reuses what exists (same CA), serves again.
    let ca_before = std::fs::read(&ca).unwrap();
    let key_before = std::fs::read(data.join("server.key")).unwrap();
    let q = start_quickstart(cwd.path(), "second");
    assert!(wait_for_port(https), "second run did not listen");
    let r = Curl::https(8443, "/again", &ca).run();
    assert_eq!(r.status, 200);
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        ca_before,
        "the CA was replaced"
    );
    assert_eq!(std::fs::read(data.join("server.key")).unwrap(), key_before);
    let out = std::fs::read_to_string(cwd.path().join("second.out")).unwrap_or_default();
    assert!(out.contains("Using the existing"), "{out}");
    assert_eq!(stop(q), Some(0));
}
