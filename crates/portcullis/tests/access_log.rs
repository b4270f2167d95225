//! The access log as operators use it: the guide's api_log format written to
//! a file with TLS details, and reopened on SIGUSR1 after logrotate moved it.

mod common;

use std::time::Duration;

use common::*;

fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn api_log_lines_and_reopen_on_sigusr1() {
    let env = env();
    let cfg = echo_config(&env, "[[route]]\npath = \"/\"\nupstream = \"echo\"\n").replace(
        "access_log = \"off\"",
        "access_log = \"access.log\"\naccess_format = \"api_log\"",
    );
    let gw = env.start(&cfg);
    let log = env.path().join("access.log");
    let r = Curl::https(env.https_port, "/first?x=1", env.ca_file())
        .header("User-Agent: probe/1")
        .run();
    assert_eq!(r.status, 200);
    let lines = wait_for_lines(&log, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert!(l.starts_with("127.0.0.1 - - ["), "{l}");
    assert!(l.contains("\"GET /first?x=1 HTTP/"), "{l}");
    assert!(l.contains(" 200 "), "{l}");
    assert!(l.contains("\"probe/1\""), "{l}");
    assert!(
        l.contains("ssl=TLSv1.3/TLS_AES_") || l.contains("ssl=TLSv1.3/TLS_CHACHA20"),
        "{l}"
    );

    // logrotate: move the file away, signal, and the next line goes to a new file.
    std::fs::rename(&log, env.path().join("access.log.1")).unwrap();
    gw.signal("USR1");
    let mut reopened = false;
    for _ in 0..100 {
        let _ = Curl::https(env.https_port, "/second", env.ca_file()).run();
        if wait_for_lines(&log, 1)
            .iter()
            .any(|l| l.contains("GET /second"))
        {
            reopened = true;
            break;
        }
    }
    assert!(reopened, "no line reached the reopened access.log");
    let old = std::fs::read_to_string(env.path().join("access.log.1")).unwrap();
    assert!(old.contains("GET /first"));
}
