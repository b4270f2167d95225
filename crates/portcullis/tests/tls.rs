//! TLS on the listener, probed with `openssl s_client` and curl: protocol
//! versions, the `modern` profile, ALPN h2, SNI certificate selection, and
//! 421 when the Host is not the SNI name.

mod common;
use common::*;

fn echo_gateway(env: &TestEnv, listener_extra: &str) -> GatewayProcess {
    let echo = free_port();
    let cfg = format!(
        "[log]\naccess_log = \"off\"\n\n{}[[echo]]\naddress = \"127.0.0.1:{echo}\"\n\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
        env.listener_toml(listener_extra)
    );
    env.start(&cfg)
}

#[test]
fn tls_1_1_refused_1_2_and_1_3_accepted() {
    let env = env();
    let _gw = echo_gateway(&env, "");
    // SECLEVEL=0 so that the client really offers TLS 1.1 and the refusal is the server's.
    let old = s_client(
        env.https_port,
        &[
            "-servername",
            "localhost",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
        ],
    );
    assert!(!old.ok, "TLS 1.1 was accepted:\n{}", old.output);
    assert!(
        !old.output.contains("no protocols available"),
        "the client did not offer TLS 1.1:\n{}",
        old.output
    );
    assert!(
        old.output.contains("protocol version") || old.output.contains("alert"),
        "expected a protocol_version alert:\n{}",
        old.output
    );

    let v12 = s_client(env.https_port, &["-servername", "localhost", "-tls1_2"]);
    assert!(v12.ok, "{}", v12.output);
    assert_eq!(v12.protocol.as_deref(), Some("TLSv1.2"), "{}", v12.output);

    let v13 = s_client(env.https_port, &["-servername", "localhost", "-tls1_3"]);
    assert!(v13.ok, "{}", v13.output);
    assert_eq!(v13.protocol.as_deref(), Some("TLSv1.3"), "{}", v13.output);

    // curl agrees, and a request works on each.
    for (min, max) in [("--tlsv1.2", "1.2"), ("--tlsv1.3", "1.3")] {
        let r = Curl::https(env.https_port, "/", env.ca_file())
            .arg(min)
            .arg("--tls-max")
            .arg(max)
            .run();
        assert_eq!(r.status, 200);
    }
    let e = Curl::https(env.https_port, "/", env.ca_file())
        .arg("--tlsv1.1")
        .arg("--tls-max")
        .arg("1.1")
        .try_run();
    assert!(e.is_err(), "curl with TLS 1.1 got a response");
}

#[test]
fn aes_gcm_clients_get_aes_128_and_chacha_clients_keep_chacha() {
    let env = env();
    let _gw = echo_gateway(&env, "");
    let pick = |version: &str, flag: &str, suites: &str| {
        let h = s_client(
            env.https_port,
            &["-servername", "localhost", version, flag, suites],
        );
        assert!(h.ok, "{suites}: {}", h.output);
        h.cipher.unwrap_or_default()
    };
    // AES-256 first, AES-128 offered: the two AES-GCM suites count as equal, ours wins.
    assert_eq!(
        pick(
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"
        ),
        "TLS_AES_128_GCM_SHA256"
    );
    // Otherwise the client's preference decides (Mozilla: prefer_server_ciphers off).
    assert_eq!(
        pick(
            "-tls1_3",
            "-ciphersuites",
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
        ),
        "TLS_CHACHA20_POLY1305_SHA256"
    );
    assert_eq!(
        pick("-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"),
        "TLS_AES_256_GCM_SHA384"
    );
    // TLS 1.2: the same rule.
    let v12 = pick(
        "-tls1_2",
        "-cipher",
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    );
    assert!(v12.ends_with("AES128-GCM-SHA256"), "{v12}");
    let v12 = pick(
        "-tls1_2",
        "-cipher",
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    );
    assert!(v12.ends_with("CHACHA20-POLY1305"), "{v12}");
}

#[test]
fn modern_profile_refuses_tls_1_2() {
    let env = env();
    let _gw = echo_gateway(&env, "tls_profile = \"modern\"\n");
    let v12 = s_client(env.https_port, &["-servername", "localhost", "-tls1_2"]);
    assert!(
        !v12.ok,
        "TLS 1.2 accepted by the modern profile:\n{}",
        v12.output
    );
    let v13 = s_client(env.https_port, &["-servername", "localhost", "-tls1_3"]);
    assert!(v13.ok, "{}", v13.output);
    assert_eq!(v13.protocol.as_deref(), Some("TLSv1.3"));
}

#[test]
fn alpn_negotiates_h2_and_http_1_1() {
    let env = env();
    let _gw = echo_gateway(&env, "");
    let h2 = s_client(
        env.https_port,
        &["-servername", "localhost", "-alpn", "h2,http/1.1"],
    );
    assert!(h2.ok, "{}", h2.output);
    assert_eq!(h2.alpn.as_deref(), Some("h2"), "{}", h2.output);
    let h1 = s_client(
        env.https_port,
        &["-servername", "localhost", "-alpn", "http/1.1"],
    );
    assert_eq!(h1.alpn.as_deref(), Some("http/1.1"), "{}", h1.output);

    let r = Curl::https(env.https_port, "/v", env.ca_file())
        .http2()
        .run();
    assert_eq!(r.status, 200);
    assert_eq!(r.version, "2");
    // The upstream is spoken to in HTTP/1.1 whatever the client used.
    assert_eq!(r.json()["version"], "HTTP/1.1");
    let r = Curl::https(env.https_port, "/v", env.ca_file())
        .http1()
        .run();
    assert_eq!(r.version, "1.1");
}

#[test]
fn http2_can_be_switched_off() {
    let env = env();
    let _gw = echo_gateway(&env, "http2 = false\n");
    let hs = s_client(
        env.https_port,
        &["-servername", "localhost", "-alpn", "h2,http/1.1"],
    );
    assert!(hs.ok, "{}", hs.output);
    assert_ne!(hs.alpn.as_deref(), Some("h2"), "{}", hs.output);
}

#[test]
fn sni_picks_exact_wildcard_and_default_certificates() {
    let env = env();
    let exact = env
        .ca
        .issue("exact", &LeafSpec::server(&["api.example.test"]));
    let wild = env.ca.issue("wild", &LeafSpec::server(&["*.wild.test"]));
    let _ = (&exact, &wild);
    let echo = free_port();
    let cfg = format!(
        "[log]\naccess_log = \"off\"\n\n[[listener]]\naddress = \"127.0.0.1:{port}\"\n\n\
         [[listener.certificate]]\ncert = \"exact.crt\"\nkey = \"exact.key\"\n\n\
         [[listener.certificate]]\ncert = \"wild.crt\"\nkey = \"wild.key\"\n\n\
         [[listener.certificate]]\ncert = \"server.crt\"\nkey = \"server.key\"\ndefault = true\n\n\
         [[echo]]\naddress = \"127.0.0.1:{echo}\"\n\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n\
         [[route]]\npath = \"/\"\nupstream = \"echo\"\n",
        port = env.https_port
    );
    let _gw = env.start(&cfg);
    let cn = |sni: Option<&str>| {
        let mut args = vec![];
        match sni {
            Some(s) => args.extend(["-servername", s]),
            None => args.push("-noservername"),
        }
        let hs = s_client(env.https_port, &args);
        assert!(hs.ok, "{sni:?}: {}", hs.output);
        hs.subject.unwrap_or_default()
    };
    assert!(cn(Some("api.example.test")).contains("CN = api.example.test"));
    assert!(cn(Some("a.wild.test")).contains("CN = *.wild.test"));
    assert!(cn(Some("b.wild.test")).contains("CN = *.wild.test"));
    // The wildcard covers one label only; other names and no SNI get the default.
    assert!(cn(Some("x.y.wild.test")).contains("CN = localhost"));
    assert!(cn(Some("unknown.test")).contains("CN = localhost"));
    assert!(cn(None).contains("CN = localhost"));

    // curl verifies each name against the chosen certificate and gets through.
    for host in ["api.example.test", "a.wild.test", "localhost"] {
        let r = Curl::https_host(host, env.https_port, "/", env.ca_file()).run();
        assert_eq!(r.status, 200, "{host}: {}", r.text());
    }
}

#[test]
fn host_different_from_sni_is_421() {
    let env = env();
    let other = env
        .ca
        .issue("other", &LeafSpec::server(&["localhost", "other.test"]));
    let _ = other;
    let echo = free_port();
    let cfg = format!(
        "[log]\naccess_log = \"off\"\n\n[[listener]]\naddress = \"127.0.0.1:{port}\"\n\n\
         [[listener.certificate]]\ncert = \"other.crt\"\nkey = \"other.key\"\n\n\
         [[echo]]\naddress = \"127.0.0.1:{echo}\"\n\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n\
         [[route]]\npath = \"/\"\nupstream = \"echo\"\n",
        port = env.https_port
    );
    let _gw = env.start(&cfg);
    // SNI localhost, Host other.test (a certificate that covers both: only the gateway objects).
    for proto in ["--http1.1", "--http2"] {
        let r = Curl::https(env.https_port, "/", env.ca_file())
            .arg(proto)
            .header("Host: other.test")
            .run();
        assert_eq!(r.status, 421, "{proto}: {}", r.text());
        assert_eq!(r.json()["error"], "misdirected_request");
        assert!(r.has_header("strict-transport-security"));
    }
    let ok = Curl::https_host("other.test", env.https_port, "/", env.ca_file()).run();
    assert_eq!(ok.status, 200);
}
