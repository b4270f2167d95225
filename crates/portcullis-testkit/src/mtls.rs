//! A test PKI for mutual-TLS tests: a root, one or more intermediates, client
//! leaves with any SAN / EKU / validity, CRLs signed by any CA of the chain,
//! and a gateway config writer with an echo upstream.
//!
//! Separate from `pki.rs` (whose `TestCa` serves the gateway-core tests):
//! here every authority's key is kept so CRLs can be signed by the root (to
//! revoke an intermediate) or by the issuing intermediate (to revoke a leaf).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// A fresh positive serial (9 bytes, first byte 0x10..0x7f, unique in the process).
fn next_serial() -> SerialNumber {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut b = vec![0x10 | (std::process::id() as u8 & 0x3f)];
    b.extend_from_slice(&(n as u32).to_be_bytes());
    b.extend_from_slice(&t.to_be_bytes());
    SerialNumber::from_slice(&b)
}

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write test file");
    #[cfg(unix)]
    if path.extension().is_some_and(|e| e == "key") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

/// One CA certificate with its key.
pub struct Authority {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub pem: String,
    pub der: Vec<u8>,
    pub serial: SerialNumber,
    pub path: PathBuf,
}

impl Authority {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

/// Extended key usage of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eku {
    Client,
    Server,
    ClientAndServer,
    /// No EKU extension at all.
    None,
}

/// Validity of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid,
    Expired,
    NotYetValid,
}

/// How a client leaf should be made.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub cn: String,
    pub org: Option<String>,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    pub eku: Eku,
    pub validity: Validity,
}

impl ClientSpec {
    pub fn new(cn: &str) -> ClientSpec {
        ClientSpec {
            cn: cn.into(),
            org: Some("Portcullis Test".into()),
            dns: vec![],
            uris: vec![],
            emails: vec![],
            eku: Eku::Client,
            validity: Validity::Valid,
        }
    }
    pub fn org(mut self, o: Option<&str>) -> Self {
        self.org = o.map(str::to_string);
        self
    }
    pub fn dns(mut self, d: &str) -> Self {
        self.dns.push(d.into());
        self
    }
    pub fn uri(mut self, u: &str) -> Self {
        self.uris.push(u.into());
        self
    }
    pub fn email(mut self, e: &str) -> Self {
        self.emails.push(e.into());
        self
    }
    pub fn eku(mut self, e: Eku) -> Self {
        self.eku = e;
        self
    }
    pub fn validity(mut self, v: Validity) -> Self {
        self.validity = v;
        self
    }
}

/// An issued client certificate.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The leaf alone (PEM) and its DER.
    pub leaf_pem: String,
    pub leaf_der: Vec<u8>,
    pub key_pem: String,
    /// Leaf + intermediates (PEM), as a client sends it.
    pub chain_pem: String,
    /// Intermediates' DER, in chain order (issuer of the leaf first).
    pub intermediates_der: Vec<Vec<u8>>,
    pub serial: SerialNumber,
    /// `<stem>.crt` holds `chain_pem`; `<stem>.leaf.crt` the leaf alone.
    pub cert_path: PathBuf,
    pub leaf_path: PathBuf,
    pub key_path: PathBuf,
    /// Leaf cert + key in one PEM file (`<stem>.pem`), for clients that want that.
    pub combined_path: PathBuf,
}

/// root → intermediate(s) → leaves. `cas[0]` is the root; leaves are issued
/// by the last one.
pub struct MtlsCa {
    pub dir: PathBuf,
    pub name: String,
    pub cas: Vec<Authority>,
}

fn ca_params(cn: &str, org: &str, pathlen: Option<u8>, days: i64) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, org);
    d.push(DnType::CommonName, cn);
    p.distinguished_name = d;
    p.is_ca = IsCa::Ca(match pathlen {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.use_authority_key_identifier_extension = true;
    p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    p.not_after = OffsetDateTime::now_utc() + Duration::days(days);
    p
}

impl MtlsCa {
    /// Root → one intermediate (pathlen 0), ECDSA P-256, written into `dir`.
    pub fn new(dir: &Path, name: &str) -> MtlsCa {
        Self::with_depth(dir, name, 1)
    }

    /// Root → `intermediates` intermediates → leaves.
    pub fn with_depth(dir: &Path, name: &str, intermediates: usize) -> MtlsCa {
        std::fs::create_dir_all(dir).expect("mkdir");
        let root_key = KeyPair::generate().expect("key");
        let mut rp = ca_params(&format!("{name} Root"), name, None, 3650);
        let serial = next_serial();
        rp.serial_number = Some(serial.clone());
        rp.use_authority_key_identifier_extension = false;
        let root = rp.self_signed(&root_key).expect("root");
        let root_path = dir.join("root.crt");
        write(&root_path, root.pem().as_bytes());
        let mut cas = vec![Authority {
            params: rp,
            key: root_key,
            pem: root.pem(),
            der: root.der().to_vec(),
            serial,
            path: root_path,
        }];
        for i in 0..intermediates {
            let key = KeyPair::generate().expect("key");
            let left = (intermediates - 1 - i) as u8;
            let mut p = ca_params(
                &format!("{name} Intermediate {}", i + 1),
                name,
                Some(left),
                1825,
            );
            let serial = next_serial();
            p.serial_number = Some(serial.clone());
            let c = p
                .signed_by(&key, &cas.last().expect("issuer").issuer())
                .expect("intermediate");
            let path = dir.join(format!("intermediate{}.crt", i + 1));
            write(&path, c.pem().as_bytes());
            cas.push(Authority {
                params: p,
                key,
                pem: c.pem(),
                der: c.der().to_vec(),
                serial,
                path,
            });
        }
        MtlsCa {
            dir: dir.to_path_buf(),
            name: name.into(),
            cas,
        }
    }

    pub fn root(&self) -> &Authority {
        &self.cas[0]
    }

    pub fn root_path(&self) -> &Path {
        &self.cas[0].path
    }

    /// The CA that issues leaves.
    pub fn issuing(&self) -> &Authority {
        self.cas.last().expect("a CA")
    }

    /// Issues a client leaf; writes `<stem>.crt` (leaf + intermediates),
    /// `<stem>.leaf.crt`, `<stem>.key` and `<stem>.pem` (leaf + key).
    pub fn issue(&self, stem: &str, spec: &ClientSpec) -> ClientCert {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut d = DistinguishedName::new();
        if let Some(o) = &spec.org {
            d.push(DnType::OrganizationName, o.as_str());
        }
        d.push(DnType::CommonName, spec.cn.as_str());
        p.distinguished_name = d;
        for n in &spec.dns {
            p.subject_alt_names
                .push(SanType::DnsName(n.as_str().try_into().expect("dns")));
        }
        for u in &spec.uris {
            p.subject_alt_names
                .push(SanType::URI(u.as_str().try_into().expect("uri")));
        }
        for e in &spec.emails {
            p.subject_alt_names
                .push(SanType::Rfc822Name(e.as_str().try_into().expect("email")));
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = match spec.eku {
            Eku::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Eku::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Eku::ClientAndServer => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Eku::None => vec![],
        };
        p.use_authority_key_identifier_extension = true;
        let serial = next_serial();
        p.serial_number = Some(serial.clone());
        let now = OffsetDateTime::now_utc();
        (p.not_before, p.not_after) = match spec.validity {
            Validity::Expired => (now - Duration::days(30), now - Duration::days(1)),
            Validity::NotYetValid => (now + Duration::days(1), now + Duration::days(30)),
            // Whole seconds, so Not-After round-trips exactly.
            Validity::Valid => (
                now - Duration::hours(1),
                (now + Duration::days(60))
                    .replace_nanosecond(0)
                    .expect("ns"),
            ),
        };
        let cert = p.signed_by(&key, &self.issuing().issuer()).expect("leaf");
        let mut chain_pem = cert.pem();
        let mut intermediates_der = Vec::new();
        for a in self.cas.iter().skip(1).rev() {
            chain_pem.push_str(&a.pem);
            intermediates_der.push(a.der.clone());
        }
        let cert_path = self.dir.join(format!("{stem}.crt"));
        let leaf_path = self.dir.join(format!("{stem}.leaf.crt"));
        let key_path = self.dir.join(format!("{stem}.key"));
        let combined_path = self.dir.join(format!("{stem}.pem"));
        write(&cert_path, chain_pem.as_bytes());
        write(&leaf_path, cert.pem().as_bytes());
        write(&key_path, key.serialize_pem().as_bytes());
        write(
            &combined_path,
            format!("{}{}", chain_pem, key.serialize_pem()).as_bytes(),
        );
        ClientCert {
            leaf_pem: cert.pem(),
            leaf_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            chain_pem,
            intermediates_der,
            serial,
            cert_path,
            leaf_path,
            key_path,
            combined_path,
        }
    }

    /// A CRL (PEM) signed by `self.cas[by]` revoking `serials`, valid for a day
    /// (or expired a day ago when `expired`).
    pub fn crl_pem(&self, by: usize, serials: &[&SerialNumber], expired: bool) -> String {
        let now = OffsetDateTime::now_utc();
        let (this_update, next_update) = if expired {
            (now - Duration::days(3), now - Duration::days(1))
        } else {
            (now - Duration::minutes(5), now + Duration::days(1))
        };
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: next_serial(),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: (*s).clone(),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.cas[by].issuer())
            .expect("sign CRL")
            .pem()
            .expect("CRL PEM")
    }
}

/// Writes `data` to `path` atomically (temp file + rename), as a CRL publisher would.
pub fn replace_file(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("tmp-replace");
    std::fs::write(&tmp, data).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Percent-encodes everything but unreserved characters (as nginx's $ssl_client_escaped_cert).
pub fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Removes ANSI escape sequences (in case a log is coloured).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            if it.peek() == Some(&'[') {
                it.next();
                for c in it.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A gateway test bed: a temp dir, a server certificate for `localhost`
/// (from its own CA), ports for the gateway and the built-in echo upstream.
pub struct Bed {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub server_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub port: u16,
    pub echo_port: u16,
}

impl Default for Bed {
    fn default() -> Self {
        Self::new()
    }
}

impl Bed {
    pub fn new() -> Bed {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let sca = crate::TestCa::new(&dir.join("server-ca"), "Server");
        let sc = sca.issue("server", &crate::pki::LeafSpec::server(&["localhost"]));
        Bed {
            server_ca: sca.root_path.clone(),
            server_cert: sc.cert_path,
            server_key: sc.key_path,
            port: crate::free_port(),
            echo_port: crate::free_port(),
            dir,
            tmp,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The config: one listener "main" (with `listener` lines), the echo
    /// upstream "echo", then `routes` (TOML `[[route]]` tables).
    pub fn config(&self, listener: &str, routes: &str) -> String {
        format!(
            r#"[log]
access_log = "off"
level = "info"

[[echo]]
address = "127.0.0.1:{echo}"

[[upstream]]
name = "echo"
servers = ["127.0.0.1:{echo}"]

[[listener]]
name = "main"
address = "127.0.0.1:{port}"
{listener}

[[listener.certificate]]
cert = "{cert}"
key = "{key}"

{routes}
"#,
            echo = self.echo_port,
            port = self.port,
            cert = self.server_cert.display(),
            key = self.server_key.display(),
        )
    }

    /// Writes the config and starts `bin serve` on it.
    pub fn start(&self, bin: &Path, listener: &str, routes: &str) -> crate::GatewayProcess {
        let path = self.dir.join("portcullis.toml");
        std::fs::write(&path, self.config(listener, routes)).expect("write config");
        let g = crate::GatewayProcess::start(bin, &path, self.addr());
        assert!(
            crate::wait_for_port(std::net::SocketAddr::from(([127, 0, 0, 1], self.echo_port))),
            "echo upstream did not start"
        );
        g
    }

    /// `curl` against `https://localhost:PORT{path}` with an optional client
    /// certificate (chain file + key) and extra arguments.
    pub fn curl(&self, cert: Option<&ClientCert>, path: &str, extra: &[&str]) -> CurlResult {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "--resolve"])
            .arg(format!("localhost:{}:127.0.0.1", self.port))
            .arg("--cacert")
            .arg(&self.server_ca)
            .args(["-w", "\n%{http_code}"]);
        if let Some(c) = cert {
            cmd.arg("--cert")
                .arg(&c.cert_path)
                .arg("--key")
                .arg(&c.key_path);
        }
        cmd.args(extra);
        cmd.arg(format!("https://localhost:{}{}", self.port, path));
        let out = crate::run(&mut cmd);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
        CurlResult {
            exit: out.status.code().unwrap_or(-1),
            status: code.trim().parse().unwrap_or(0),
            body: body.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// What curl did.
#[derive(Debug)]
pub struct CurlResult {
    /// curl's exit code (0 = transfer done; 35/56/… = TLS or connection error).
    pub exit: i32,
    /// HTTP status (0 when there was none).
    pub status: u16,
    pub body: String,
    pub stderr: String,
}

impl CurlResult {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Headers the echo upstream saw, as (lower-case name, value).
    pub fn echoed_headers(&self) -> Vec<(String, String)> {
        self.json()["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().expect("name").to_ascii_lowercase(),
                    p[1].as_str().expect("value").to_string(),
                )
            })
            .collect()
    }

    /// The one value of `name` the upstream saw (panics when it saw several).
    pub fn echoed(&self, name: &str) -> Option<String> {
        let all: Vec<String> = self
            .echoed_headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect();
        assert!(all.len() <= 1, "{name} seen {} times: {all:?}", all.len());
        all.into_iter().next()
    }
}

/// Waits until `cond` holds, polling every 20 ms, up to `limit`; true when it did.
pub fn wait_until(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
