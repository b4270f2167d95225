//! Every class of config problem, through `portcullis check` and `serve`:
//! the message names file:line, the field and a fix; errors exit 2 (and
//! `serve` refuses to start); warnings do not fail the check.

mod common;
use common::*;

use std::process::Command;

struct Checked {
    code: Option<i32>,
    stderr: String,
    stdout: String,
}

fn check(env: &TestEnv, toml: &str) -> Checked {
    let out = env.check("portcullis.toml", toml);
    Checked {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

fn line_of(toml: &str, needle: &str) -> usize {
    toml.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle} not in config"))
}

/// Asserts an error at `file:line` whose text contains every `parts`, with a fix, exit 2.
fn assert_error(env: &TestEnv, toml: &str, line_needle: &str, parts: &[&str]) -> String {
    let c = check(env, toml);
    assert_eq!(
        c.code,
        Some(2),
        "check must exit 2:\n{}{}",
        c.stdout,
        c.stderr
    );
    let line = line_of(toml, line_needle);
    let loc = format!("portcullis.toml:{line}:");
    let diag = c
        .stderr
        .split("\n")
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0].contains(&loc) && w[0].contains("error"))
        .map(|w| format!("{}\n{}", w[0], w[1]))
        .unwrap_or_else(|| panic!("no error at {loc}:\n{}", c.stderr));
    for p in parts {
        assert!(diag.contains(p), "{p:?} missing from:\n{diag}");
    }
    assert!(diag.contains("fix:"), "no fix in:\n{diag}");
    // `serve` refuses the same file with exit 2 and the same message.
    let out = run(Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(env.path().join("portcullis.toml")));
    assert_eq!(out.status.code(), Some(2), "serve accepted a bad config");
    let serve_err = String::from_utf8_lossy(&out.stderr);
    assert!(
        serve_err.contains(&loc),
        "serve's message lacks {loc}:\n{serve_err}"
    );
    diag
}

fn base(env: &TestEnv, echo_port: u16) -> String {
    env.config_with(&format!(
        "[[echo]]\naddress = \"127.0.0.1:{echo_port}\"\n\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo_port}\"]\n\n[[route]]\nname = \"api\"\npath = \"/\"\nupstream = \"echo\"\n"
    ))
}

#[test]
fn a_valid_config_passes() {
    let env = env();
    let c = check(&env, &base(&env, free_port()));
    assert_eq!(c.code, Some(0), "{}{}", c.stdout, c.stderr);
    assert!(c.stdout.contains("OK"), "{}", c.stdout);
    assert!(!c.stderr.contains("warning"), "{}", c.stderr);
}

#[test]
fn syntax_error() {
    let env = env();
    let toml = base(&env, 1).replace("path = \"/\"", "path = \"/");
    assert_error(&env, &toml, "path = \"/", &[]);
}

#[test]
fn unknown_field() {
    let env = env();
    let toml = base(&env, 1).replace("path = \"/\"", "pathh = \"/\"");
    assert_error(&env, &toml, "pathh", &["unknown field", "pathh"]);
}

#[test]
fn missing_field() {
    let env = env();
    let toml = base(&env, 1).replace("upstream = \"echo\"\n", "");
    let c = check(&env, &toml);
    assert_eq!(c.code, Some(2));
    assert!(
        c.stderr.contains("missing field `upstream`"),
        "{}",
        c.stderr
    );
    assert!(c.stderr.contains("portcullis.toml:"), "{}", c.stderr);
    assert!(c.stderr.contains("fix:"), "{}", c.stderr);
}

#[test]
fn undefined_upstream_reference() {
    let env = env();
    let toml = base(&env, 1).replace("upstream = \"echo\"", "upstream = \"pay\"");
    assert_error(
        &env,
        &toml,
        "upstream = \"pay\"",
        &["\"pay\" is not defined", "\"echo\""],
    );
}

#[test]
fn bad_duration() {
    let env = env();
    let toml = base(&env, 1).replace(
        "[[route]]",
        "[[upstream]]\nname = \"slow\"\nservers = [\"127.0.0.1:1\"]\nresponse_timeout = \"5 weeks\"\n\n[[route]]",
    );
    assert_error(&env, &toml, "5 weeks", &["response_timeout", "5 weeks"]);
}

#[test]
fn missing_certificate_file() {
    let env = env();
    let toml = base(&env, 1).replace("cert = \"server.crt\"", "cert = \"nowhere.crt\"");
    assert_error(&env, &toml, "nowhere.crt", &["cannot read", "nowhere.crt"]);
}

#[test]
fn key_not_matching_certificate() {
    let env = env();
    env.ca.issue("other", &LeafSpec::server(&["localhost"]));
    let toml = base(&env, 1).replace("key = \"server.key\"", "key = \"other.key\"");
    assert_error(&env, &toml, "other.key", &["does not fit the certificate"]);
}

#[test]
fn expired_certificate_is_an_error() {
    let env = env();
    let mut spec = LeafSpec::server(&["localhost"]);
    spec.expired = true;
    env.ca.issue("expired", &spec);
    let toml = base(&env, 1)
        .replace("cert = \"server.crt\"", "cert = \"expired.crt\"")
        .replace("key = \"server.key\"", "key = \"expired.key\"");
    assert_error(&env, &toml, "expired.crt", &["expired"]);
}

/// A self-signed certificate valid for `days` days, made by openssl.
fn openssl_cert(env: &TestEnv, stem: &str, days: u32) {
    let out = run(Command::new("openssl")
        .current_dir(env.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.crt"),
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .args(["-days", &days.to_string()]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn certificate_expiring_within_30_days_is_a_warning() {
    let env = env();
    openssl_cert(&env, "soon", 10);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            env.path().join("soon.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let toml = base(&env, 1)
        .replace("cert = \"server.crt\"", "cert = \"soon.crt\"")
        .replace("key = \"server.key\"", "key = \"soon.key\"");
    let c = check(&env, &toml);
    assert_eq!(
        c.code,
        Some(0),
        "a warning must not fail the check:\n{}",
        c.stderr
    );
    let line = line_of(&toml, "soon.crt");
    assert!(
        c.stderr.contains(&format!("portcullis.toml:{line}:")) && c.stderr.contains("warning"),
        "{}",
        c.stderr
    );
    assert!(c.stderr.contains("within 30 days"), "{}", c.stderr);
    assert!(c.stderr.contains("fix:"), "{}", c.stderr);
}

#[cfg(unix)]
#[test]
fn world_readable_key_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let env = env();
    std::fs::set_permissions(&env.server.key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let toml = base(&env, 1);
    let c = check(&env, &toml);
    assert_eq!(c.code, Some(0), "{}", c.stderr);
    let line = line_of(&toml, "server.key");
    assert!(
        c.stderr.contains(&format!("portcullis.toml:{line}:")),
        "{}",
        c.stderr
    );
    assert!(
        c.stderr.contains("readable by group or others"),
        "{}",
        c.stderr
    );
    assert!(c.stderr.contains("chmod 600"), "{}", c.stderr);
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let env = env();
    let toml = base(&env, 1)
        .replace("upstream = \"echo\"", "upstream = \"pay\"")
        .replace("cert = \"server.crt\"", "cert = \"nowhere.crt\"");
    let c = check(&env, &toml);
    assert_eq!(c.code, Some(2));
    assert!(c.stderr.contains("\"pay\" is not defined"), "{}", c.stderr);
    assert!(c.stderr.contains("nowhere.crt"), "{}", c.stderr);
}
