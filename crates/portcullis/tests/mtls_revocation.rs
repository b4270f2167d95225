//! Revocation that reaches live connections: a CRL replaced on disk while
//! the gateway runs (and a revocation in the built-in CA) makes new
//! handshakes with the revoked certificate fail and closes that client's open
//! HTTP/1.1 keep-alive, HTTP/2 and WebSocket connections, while other
//! clients' connections stay open and keep working.
//!
//! The issue asks for "closed within 1 s"; tests never assert timing, so each
//! closure is a bounded wait that fails after 3 s: it asserts that the
//! closure happened, not how fast.

mod mtls_common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mtls_common::*;
use portcullis_testkit::mtls::{replace_file, Bed, ClientCert, ClientSpec, MtlsCa};
use rustls::AlertDescription;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How long a closure may take before the test fails (the target is 1 s).
const CLOSE_LIMIT: Duration = Duration::from_secs(3);

type H1Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;
type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

fn get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap()
}

/// An open HTTP/1.1 keep-alive connection; the task ends when the connection does.
async fn open_h1(bed: &Bed, cfg: Arc<rustls::ClientConfig>) -> (H1Sender, JoinHandle<()>) {
    let tls = connect(bed, cfg).await.expect("handshake");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let r = tx.send_request(get("/h1")).await.expect("h1 request");
    assert_eq!(r.status(), 200);
    r.into_body().collect().await.expect("body");
    (tx, task)
}

async fn open_h2(bed: &Bed, cfg: Arc<rustls::ClientConfig>) -> (H2Sender, JoinHandle<()>) {
    let tls = connect(bed, cfg).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let r = tx.send_request(get("/h2")).await.expect("h2 request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2);
    r.into_body().collect().await.expect("body");
    (tx, task)
}

async fn open_ws(bed: &Bed, cfg: Arc<rustls::ClientConfig>) -> Ws {
    let tls = connect(bed, cfg).await.expect("handshake");
    let (mut ws, resp) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/ws", bed.port), tls)
            .await
            .expect("websocket upgrade");
    assert_eq!(resp.status(), 101);
    ws_roundtrip(&mut ws, "hello").await;
    ws
}

async fn ws_roundtrip(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("ws send");
    let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("ws echo in time")
        .expect("ws open")
        .expect("ws message");
    assert_eq!(m.into_text().expect("text").as_str(), text);
}

/// Waits up to CLOSE_LIMIT for a WebSocket to end (None, an error, or a close frame).
async fn ws_closed(ws: &mut Ws) -> bool {
    let wait = async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(CLOSE_LIMIT, wait).await.is_ok()
}

async fn finished_within(task: &mut JoinHandle<()>) -> bool {
    tokio::time::timeout(CLOSE_LIMIT, task).await.is_ok()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn listener_toml(cas: &[&std::path::Path], crls: &[&std::path::Path]) -> String {
    let list = |ps: &[&std::path::Path]| {
        ps.iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "client_auth = \"required\"\nclient_ca = [{}]\ncrl = [{}]",
        list(cas),
        list(crls)
    )
}

const ROUTES: &str = "[[route]]\npath = \"/\"\nupstream = \"echo\"\n";

#[test]
fn crl_replaced_on_disk_closes_the_revoked_clients_connections_only() {
    let bed = Bed::new();
    let d = &bed.dir;
    let ca = MtlsCa::new(&d.join("a"), "Alpha");
    let ca_b = MtlsCa::new(&d.join("b"), "Beta");
    let alice = ca.issue("alice", &ClientSpec::new("alice"));
    let bob = ca.issue("bob", &ClientSpec::new("bob"));
    let carol = ca_b.issue("carol", &ClientSpec::new("carol"));
    // Both CRLs start empty.
    let crl_a = d.join("alpha-int.crl.pem");
    std::fs::write(&crl_a, ca.crl_pem(1, &[], false)).unwrap();
    let crl_b = d.join("beta-root.crl.pem");
    std::fs::write(&crl_b, ca_b.crl_pem(0, &[], false)).unwrap();
    let g = bed.start(
        &bin(),
        &listener_toml(&[ca.root_path(), ca_b.root_path()], &[&crl_a, &crl_b]),
        ROUTES,
    );
    let cfg = |c: &ClientCert, alpn: &[&[u8]]| client_config(&bed, Some(c), alpn);
    let h1: &[&[u8]] = &[b"http/1.1"];
    let h2: &[&[u8]] = &[b"h2"];

    let rt = runtime();
    rt.block_on(async {
        let (mut a_h1, mut a_h1_task) = open_h1(&bed, cfg(&alice, h1)).await;
        let (mut a_h2, mut a_h2_task) = open_h2(&bed, cfg(&alice, h2)).await;
        let mut a_ws = open_ws(&bed, cfg(&alice, h1)).await;
        let (mut b_h1, mut b_h1_task) = open_h1(&bed, cfg(&bob, h1)).await;
        let (mut b_h2, b_h2_task) = open_h2(&bed, cfg(&bob, h2)).await;
        let mut b_ws = open_ws(&bed, cfg(&bob, h1)).await;
        let (_c_h1, mut c_h1_task) = open_h1(&bed, cfg(&carol, h1)).await;

        // Alpha's intermediate now revokes alice, written as a publisher would (new file, rename).
        replace_file(&crl_a, ca.crl_pem(1, &[&alice.serial], false).as_bytes());

        assert!(
            finished_within(&mut a_h1_task).await,
            "alice's keep-alive HTTP/1.1 connection stayed open"
        );
        assert!(
            finished_within(&mut a_h2_task).await,
            "alice's HTTP/2 connection stayed open"
        );
        assert!(ws_closed(&mut a_ws).await, "alice's WebSocket stayed open");
        assert!(a_h1.send_request(get("/again")).await.is_err());
        assert!(a_h2.send_request(get("/again")).await.is_err());

        // Bob (same CA) and carol (another CA) are untouched and keep working.
        assert!(!b_h1_task.is_finished() && !b_h2_task.is_finished() && !c_h1_task.is_finished());
        let r = b_h1
            .send_request(get("/still"))
            .await
            .expect("bob h1 still open");
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
        let r = b_h2
            .send_request(get("/still"))
            .await
            .expect("bob h2 still open");
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
        ws_roundtrip(&mut b_ws, "still here").await;

        // Beta's root revokes Beta's intermediate: carol's connection (a leaf under it) is closed.
        replace_file(
            &crl_b,
            ca_b.crl_pem(0, &[&ca_b.cas[1].serial], false).as_bytes(),
        );
        assert!(
            finished_within(&mut c_h1_task).await,
            "carol's connection stayed open after her intermediate was revoked"
        );
        assert!(
            !b_h1_task.is_finished(),
            "bob's connection was closed by Beta's CRL"
        );
        let r = b_h1
            .send_request(get("/still"))
            .await
            .expect("bob h1 still open");
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
        drop(b_h1);
        let _ = (&mut b_h1_task).await;
    });

    // New handshakes: alice and carol are refused as revoked; bob still gets in.
    let before = handshake_failures(&g, "revoked").len();
    assert_eq!(
        try_request(&bed, Some(&alice), "/"),
        Outcome::Alert(AlertDescription::CertificateRevoked)
    );
    assert_eq!(
        try_request(&bed, Some(&carol), "/"),
        Outcome::Alert(AlertDescription::CertificateRevoked)
    );
    let r = bed.curl(Some(&alice), "/", &[]);
    assert!(r.exit != 0 && r.status == 0, "{r:?}");
    expect_failure_logged(&g, "revoked", before + 2);
    assert_eq!(try_request(&bed, Some(&bob), "/"), Outcome::Status(200));
    let l = log(&g);
    assert!(l.contains("CRL changed on disk"), "{l}");
    assert!(
        l.contains("connection closed: client certificate revoked"),
        "{l}"
    );
}

/// A CRL file that becomes unreadable garbage keeps the previous CRL in force.
#[test]
fn a_broken_crl_on_disk_keeps_the_previous_one() {
    let bed = Bed::new();
    let ca = MtlsCa::new(&bed.dir.join("a"), "Alpha");
    let alice = ca.issue("alice", &ClientSpec::new("alice"));
    let bob = ca.issue("bob", &ClientSpec::new("bob"));
    let crl = bed.dir.join("alpha.crl.pem");
    std::fs::write(&crl, ca.crl_pem(1, &[&alice.serial], false)).unwrap();
    let g = bed.start(&bin(), &listener_toml(&[ca.root_path()], &[&crl]), ROUTES);
    assert_eq!(
        try_request(&bed, Some(&alice), "/"),
        Outcome::Alert(AlertDescription::CertificateRevoked)
    );
    replace_file(
        &crl,
        b"-----BEGIN X509 CRL-----\nnot a crl\n-----END X509 CRL-----\n",
    );
    assert!(
        portcullis_testkit::mtls::wait_until(CLOSE_LIMIT, || log(&g)
            .contains("could not be loaded")),
        "broken CRL not reported: {}",
        log(&g)
    );
    assert_eq!(
        try_request(&bed, Some(&alice), "/"),
        Outcome::Alert(AlertDescription::CertificateRevoked)
    );
    assert_eq!(try_request(&bed, Some(&bob), "/"), Outcome::Status(200));
}

/// The built-in CA: `portcullis cert revoke` rewrites ca/crl.pem, which the listener's `crl` names.
#[test]
fn builtin_ca_revoke_closes_live_connections() {
    let bed = Bed::new();
    let ca_dir = bed.dir.join("ca");
    let certs = bed.dir.join("certs");
    let pk = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "portcullis {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let dir = ca_dir.to_str().unwrap();
    let out = certs.to_str().unwrap();
    pk(&["ca", "init", "--dir", dir]);
    pk(&[
        "cert", "issue", "client", "alice", "--dir", dir, "--out", out,
    ]);
    pk(&["cert", "issue", "client", "bob", "--dir", dir, "--out", out]);
    pk(&["crl", "--dir", dir]);
    let crl = ca_dir.join("crl.pem");
    let g = bed.start(
        &bin(),
        &listener_toml(&[&ca_dir.join("root.crt")], &[&crl]),
        ROUTES,
    );
    let read = |n: &str| std::fs::read_to_string(certs.join(n)).unwrap();
    let (a_chain, a_key, b_chain, b_key) = (
        read("alice.crt"),
        read("alice.key"),
        read("bob.crt"),
        read("bob.key"),
    );
    let a_cfg = |alpn: &[&[u8]]| client_config_pem(&bed, Some((&a_chain, &a_key)), alpn);
    let b_cfg = client_config_pem(&bed, Some((&b_chain, &b_key)), &[b"http/1.1"]);
    assert_eq!(
        try_request_with(&bed, a_cfg(&[b"http/1.1"]), "/"),
        Outcome::Status(200)
    );

    let rt = runtime();
    rt.block_on(async {
        let (_a, mut a_task) = open_h1(&bed, a_cfg(&[b"http/1.1"])).await;
        let (_a2, mut a2_task) = open_h2(&bed, a_cfg(&[b"h2"])).await;
        let mut a_ws = open_ws(&bed, a_cfg(&[b"http/1.1"])).await;
        let (mut b, b_task) = open_h1(&bed, b_cfg.clone()).await;
        let revoke = std::process::Command::new(bin())
            .args([
                "cert",
                "revoke",
                "alice",
                "--dir",
                dir,
                "--reason",
                "keyCompromise",
            ])
            .output()
            .unwrap();
        assert!(
            revoke.status.success(),
            "{}",
            String::from_utf8_lossy(&revoke.stderr)
        );
        assert!(
            finished_within(&mut a_task).await,
            "alice's HTTP/1.1 connection stayed open after `cert revoke`"
        );
        assert!(
            finished_within(&mut a2_task).await,
            "alice's HTTP/2 connection stayed open after `cert revoke`"
        );
        assert!(
            ws_closed(&mut a_ws).await,
            "alice's WebSocket stayed open after `cert revoke`"
        );
        assert!(!b_task.is_finished());
        let r = b.send_request(get("/still")).await.expect("bob still open");
        assert_eq!(r.status(), 200);
    });
    let before = handshake_failures(&g, "revoked").len();
    assert_eq!(
        try_request_with(&bed, a_cfg(&[b"http/1.1"]), "/"),
        Outcome::Alert(AlertDescription::CertificateRevoked)
    );
    expect_failure_logged(&g, "revoked", before);
    assert_eq!(try_request_with(&bed, b_cfg, "/"), Outcome::Status(200));
}
