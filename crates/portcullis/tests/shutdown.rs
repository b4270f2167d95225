//! Graceful shutdown: after SIGTERM the gateway stops accepting, finishes the
//! request in flight, and exits 0.

mod common;
use common::*;

use std::time::Duration;

#[test]
fn sigterm_lets_an_in_flight_request_finish_and_exits_0() {
    let env = env();
    let slow = MockUpstream::start_with("slow-done", Duration::from_secs(2));
    let mut gw = env.start(
        &env.config_with(&format!(
            "[[upstream]]\nname = \"slow\"\nservers = [\"{}\"]\nresponse_timeout = \"30s\"\n\n\
         [[route]]\npath = \"/\"\nupstream = \"slow\"\n",
            slow.authority()
        ))
        .replace("[log]", "[server]\nshutdown_timeout = \"30s\"\n\n[log]"),
    );
    let port = env.https_port;
    let ca = env.ca_file().to_path_buf();
    let client = std::thread::spawn(move || Curl::https(port, "/slow", &ca).run());
    // Signal once the request is at the upstream (in flight), not after a guessed delay.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while slow.requests().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.signal("TERM");
    let r = client.join().expect("client thread");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "slow-done");
    let code = gw.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "stderr:\n{}", gw.stderr_text());
    // No longer accepting.
    assert!(Curl::https(port, "/", env.ca_file()).try_run().is_err());
}
