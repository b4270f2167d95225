//! `portcullis ca …`, `portcullis cert …`, `portcullis token …`, `portcullis crl`: the
//! command line of the internal CA (crate `portcullis-pki`). Owns argument parsing,
//! where files go and what is printed; every check and every write is the library's.
//! The CA directory is `--dir`, else `$PORTCULLIS_CA_DIR`, else `./portcullis-data/ca`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use portcullis_pki::{
    client_snippets, Ca, CaInitOptions, CertRecord, ClientRequest, Issued, KeyAlgorithm,
    RevocationReason, SnippetPaths, DEFAULT_CLIENT_VALIDITY, DEFAULT_CRL_VALIDITY,
    DEFAULT_SERVER_VALIDITY,
};

const DEFAULT_CA_DIR: &str = "portcullis-data/ca";
const CA_DIR_ENV: &str = "PORTCULLIS_CA_DIR";
/// Test-only switch for `cert issue client --minutes` (short-lived certificates in tests).
const SHORT_VALIDITY_ENV: &str = "PORTCULLIS_TEST_SHORT_VALIDITY";

/// Where the CA lives.
#[derive(Args, Debug, Clone)]
pub struct CaDir {
    /// CA directory [default: $PORTCULLIS_CA_DIR or ./portcullis-data/ca]
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
}

impl CaDir {
    fn path(&self) -> PathBuf {
        self.dir
            .clone()
            .or_else(|| std::env::var_os(CA_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CA_DIR))
    }

    fn open(&self) -> Result<Ca> {
        let dir = self.path();
        Ca::open(&dir).map_err(|e| anyhow!(e))
    }
}

// === ca ===

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Create a root CA and an intermediate that signs leaves; refuses to overwrite.
    Init {
        #[command(flatten)]
        dir: CaDir,
        /// ecdsa-p256 | ecdsa-p384 | ed25519 | rsa-3072
        #[arg(long, default_value = "ecdsa-p256")]
        key: String,
        /// Organisation name used in the CA subjects.
        #[arg(long, default_value = "Portcullis")]
        name: String,
        /// Encrypt root.key with the passphrase in this environment variable.
        #[arg(long, conflicts_with = "passphrase_file")]
        passphrase_env: Option<String>,
        /// Encrypt root.key with the passphrase in this file (first line).
        #[arg(long, conflicts_with = "passphrase_prompt")]
        passphrase_file: Option<PathBuf>,
        /// Ask for the passphrase on the terminal (twice), and encrypt root.key with it.
        #[arg(long, conflicts_with = "passphrase_env")]
        passphrase_prompt: bool,
        /// CRL URL written into issued certificates (the gateway's CRL endpoint).
        #[arg(long)]
        crl_url: Option<String>,
        /// OCSP responder URL written into issued certificates (AIA).
        #[arg(long)]
        ocsp_url: Option<String>,
        /// Lower the client validity ceiling below 90 days.
        #[arg(long)]
        max_client_days: Option<u64>,
    },
    /// Print the CA's settings and certificates.
    Show {
        #[command(flatten)]
        dir: CaDir,
    },
}

pub fn run_ca(cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Init {
            dir,
            key,
            name,
            passphrase_env,
            passphrase_file,
            passphrase_prompt,
            crl_url,
            ocsp_url,
            max_client_days,
        } => {
            let key: KeyAlgorithm = key.parse()?;
            let root_passphrase = match (passphrase_env, passphrase_file) {
                (Some(var), _) => Some(
                    std::env::var(&var)
                        .ok()
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            anyhow!("--passphrase-env {var}: the environment variable is not set or empty")
                        })?,
                ),
                (None, Some(file)) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("--passphrase-file {}", file.display()))?;
                    let line = text.lines().next().unwrap_or("").to_string();
                    if line.is_empty() {
                        bail!("--passphrase-file {}: the file's first line is empty", file.display());
                    }
                    Some(line)
                }
                (None, None) if passphrase_prompt => {
                    let first = rpassword::prompt_password("Passphrase for the root key: ").context("cannot read the passphrase from the terminal")?;
                    if first.is_empty() {
                        bail!("the passphrase is empty");
                    }
                    let again = rpassword::prompt_password("Again: ").context("cannot read the passphrase from the terminal")?;
                    if again != first {
                        bail!("the two passphrases differ; nothing was created");
                    }
                    Some(first)
                }
                (None, None) => None,
            };
            let path = dir.path();
            let encrypted = root_passphrase.is_some();
            let mut ca = Ca::init(
                &path,
                &CaInitOptions {
                    key,
                    name,
                    root_passphrase,
                },
            )?;
            if crl_url.is_some() || ocsp_url.is_some() || max_client_days.is_some() {
                ca.update_config(|c| {
                    c.crl_url = crl_url;
                    c.ocsp_url = ocsp_url;
                    if let Some(d) = max_client_days {
                        c.max_client_validity_secs = d.saturating_mul(86_400);
                    }
                })?;
            }
            let crl = ca.write_crl(&ca.default_crl_path(), DEFAULT_CRL_VALIDITY)?;
            println!("Created a {key} CA in {}", path.display());
            println!("  root.crt          trust anchor: give it to relying parties");
            println!(
                "  root.key          {}keep it offline; issuing does not need it",
                if encrypted { "encrypted; " } else { "" }
            );
            println!("  intermediate.crt  signs client and server certificates, CRLs, OCSP");
            println!(
                "  crl.pem           CRL #{} (re-sign with `portcullis crl`)",
                crl.number
            );
            Ok(())
        }
        CaCommand::Show { dir } => {
            let ca = dir.open()?;
            let c = ca.config();
            println!("dir:                 {}", ca.dir().display());
            println!("name:                {}", c.name);
            println!("key:                 {}", c.key);
            println!("root key encrypted:  {}", c.root_key_encrypted);
            println!(
                "max client validity: {} days",
                ca.max_client_validity().as_secs() / 86_400
            );
            println!(
                "crl url:             {}",
                c.crl_url.as_deref().unwrap_or("-")
            );
            println!(
                "ocsp url:            {}",
                c.ocsp_url.as_deref().unwrap_or("-")
            );
            let state = ca.state()?;
            println!(
                "certificates:        {} issued, {} revoked",
                state.certs.len(),
                state.revoked().len()
            );
            Ok(())
        }
    }
}

// === cert ===

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Issue a client or server certificate.
    #[command(subcommand)]
    Issue(IssueCommand),
    /// List issued certificates.
    List {
        #[command(flatten)]
        dir: CaDir,
        /// Only valid certificates expiring within this time (e.g. 7d, 12h).
        #[arg(long)]
        expiring: Option<String>,
        /// Only revoked certificates.
        #[arg(long)]
        revoked: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one certificate by serial or name.
    Show {
        #[command(flatten)]
        dir: CaDir,
        serial_or_name: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a certificate and sign a new CRL at once.
    Revoke {
        #[command(flatten)]
        dir: CaDir,
        serial_or_name: String,
        /// keyCompromise | superseded | cessationOfOperation | affiliationChanged | privilegeWithdrawn | unspecified …
        #[arg(long, default_value = "unspecified")]
        reason: String,
        /// Where to write the new CRL [default: <dir>/crl.pem].
        #[arg(long)]
        crl: Option<PathBuf>,
        /// Also record the revocation in this audit log (the gateway's [audit] path).
        #[arg(long)]
        audit_log: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum IssueCommand {
    /// A client certificate (clientAuth), CN = NAME.
    Client {
        #[command(flatten)]
        dir: CaDir,
        name: String,
        /// Validity in days [default: 30, at most 90].
        #[arg(long, conflicts_with = "hours")]
        days: Option<u64>,
        /// Validity in hours.
        #[arg(long, conflicts_with = "minutes")]
        hours: Option<u64>,
        /// TEST ONLY: validity in minutes; refused unless PORTCULLIS_TEST_SHORT_VALIDITY=1
        /// (integration tests use it for 2-minute certificates).
        #[arg(long, hide = true, conflicts_with = "days")]
        minutes: Option<u64>,
        /// Extra SAN: a DNS name, an IP, an email (a@b) or a URI (scheme://…). Repeatable.
        #[arg(long)]
        san: Vec<String>,
        /// SPIFFE ID (spiffe://trust-domain/path).
        #[arg(long)]
        spiffe: Option<String>,
        /// Sign this CSR (PEM) instead of generating a key: the key never leaves the client.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Output directory [default: next to the CA dir, in certs/].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write NAME.p12 protected by the password in this environment variable.
        #[arg(long)]
        p12_password_env: Option<String>,
        /// Gateway URL used in the printed examples.
        #[arg(long, default_value = "https://localhost:8443/")]
        url: String,
    },
    /// A server certificate (serverAuth) for DNS names and IPs.
    Server {
        #[command(flatten)]
        dir: CaDir,
        /// DNS names (the first one names the files).
        dns: Vec<String>,
        /// IP address SANs. Repeatable.
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Validity in days [default: 90, at most 398].
        #[arg(long)]
        days: Option<u64>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run_cert(cmd: CertCommand) -> Result<()> {
    match cmd {
        CertCommand::Issue(issue) => run_issue(issue),
        CertCommand::List {
            dir,
            expiring,
            revoked,
            json,
        } => {
            let ca = dir.open()?;
            let state = ca.state()?;
            let mut recs: Vec<&CertRecord> = match &expiring {
                Some(s) => state.expiring(parse_duration(s).context("--expiring")?),
                None => state.certs.values().collect(),
            };
            if revoked {
                recs.retain(|r| r.revoked.is_some());
            }
            if json {
                for r in recs {
                    println!("{}", r.to_json(false));
                }
                return Ok(());
            }
            if recs.is_empty() {
                println!("no certificates match");
                return Ok(());
            }
            println!(
                "{:<32}  {:<6}  {:<24}  {:<20}  STATUS",
                "SERIAL", "KIND", "NAME", "NOT AFTER"
            );
            for r in recs {
                println!(
                    "{:<32}  {:<6}  {:<24}  {:<20}  {}",
                    r.serial,
                    kind_str(r),
                    r.name,
                    portcullis_pki::rfc3339(r.not_after),
                    r.status()
                );
            }
            Ok(())
        }
        CertCommand::Show {
            dir,
            serial_or_name,
            json,
        } => {
            let ca = dir.open()?;
            let state = ca.state()?;
            let r = state.find(&serial_or_name)?;
            if json {
                println!("{}", r.to_json(true));
                return Ok(());
            }
            println!("serial:     {}", r.serial);
            println!("kind:       {}", kind_str(r));
            println!("name:       {}", r.name);
            println!(
                "SANs:       {}",
                if r.sans.is_empty() {
                    "-".into()
                } else {
                    r.sans.join(", ")
                }
            );
            println!("not before: {}", portcullis_pki::rfc3339(r.not_before));
            println!("not after:  {}", portcullis_pki::rfc3339(r.not_after));
            println!("status:     {}", r.status());
            if let Some(from) = &r.renewed_from {
                println!("renews:     {from}");
            }
            println!(
                "key:        {}",
                if r.from_csr {
                    "client-generated (CSR)"
                } else {
                    "generated by the CA"
                }
            );
            print!("{}", r.cert_pem);
            Ok(())
        }
        CertCommand::Revoke {
            dir,
            serial_or_name,
            reason,
            crl,
            audit_log,
        } => {
            let ca = dir.open()?;
            let reason: RevocationReason = reason.parse()?;
            // Opened first: a bad path fails before anything is revoked.
            let audit = audit_log
                .as_deref()
                .map(portcullis_proxy::audit::AuditLog::open)
                .transpose()?;
            let rec = ca.revoke(&serial_or_name, reason)?;
            if let Some(audit) = audit {
                use portcullis_proxy::audit::{AuditEvent, AuditKind};
                let actor = std::env::var("SUDO_USER")
                    .or_else(|_| std::env::var("USER"))
                    .unwrap_or_else(|_| "unknown".into());
                audit.record(
                    AuditEvent::new(AuditKind::CertRevoked, reason.to_string())
                        .identity(Some(&rec.name))
                        .detail("serial", rec.serial.to_string())
                        .detail("actor", format!("cli:{actor}")),
                );
                audit.flush_blocking();
                if audit.dropped() > 0 {
                    bail!(
                        "revoked, but the audit record could not be written to {}",
                        audit
                            .path()
                            .map_or(String::new(), |p| p.display().to_string())
                    );
                }
            }
            let path = crl.unwrap_or_else(|| ca.default_crl_path());
            let crl = ca
                .write_crl(&path, DEFAULT_CRL_VALIDITY)
                .context("revoked, but signing the new CRL failed: run `portcullis crl`")?;
            println!("Revoked {} ({}): {reason}", rec.serial, rec.name);
            println!(
                "CRL #{} written to {} ({} revoked)",
                crl.number,
                path.display(),
                crl.revoked_serials.len()
            );
            Ok(())
        }
    }
}

fn kind_str(r: &CertRecord) -> &'static str {
    match r.kind {
        portcullis_pki::CertKind::Client => "client",
        portcullis_pki::CertKind::Server => "server",
    }
}

fn default_out(ca: &Ca) -> PathBuf {
    ca.dir()
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.join("certs"))
        .unwrap_or_else(|| PathBuf::from("certs"))
}

/// A file stem from a name: letters, digits, `.`, `-`, `_`; anything else becomes `_`.
fn stem_for(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() {
        "cert".into()
    } else {
        s
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn run_issue(cmd: IssueCommand) -> Result<()> {
    match cmd {
        IssueCommand::Client {
            dir,
            name,
            days,
            hours,
            minutes,
            san,
            spiffe,
            csr,
            out,
            p12_password_env,
            url,
        } => {
            if minutes.is_some() && std::env::var(SHORT_VALIDITY_ENV).as_deref() != Ok("1") {
                bail!("--minutes is for tests only: set {SHORT_VALIDITY_ENV}=1 to use it");
            }
            let ca = dir.open()?;
            let mut req = ClientRequest::new(name.clone());
            req.validity = match (days, hours, minutes) {
                (Some(d), _, _) => Duration::from_secs(d.saturating_mul(86_400)),
                (None, Some(h), _) => Duration::from_secs(h.saturating_mul(3600)),
                (None, None, Some(m)) => Duration::from_secs(m.saturating_mul(60)),
                (None, None, None) => DEFAULT_CLIENT_VALIDITY,
            };
            for s in san {
                if let Ok(ip) = s.parse::<IpAddr>() {
                    req.ips.push(ip);
                } else if s.contains("://") {
                    req.uris.push(s);
                } else if s.contains('@') {
                    req.emails.push(s);
                } else {
                    req.dns.push(s);
                }
            }
            req.spiffe = spiffe;
            if let Some(path) = &csr {
                req.csr_pem = Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("--csr {}", path.display()))?,
                );
            }
            let p12_password = match &p12_password_env {
                Some(var) if csr.is_some() => bail!(
                    "--p12-password-env {var}: with --csr the key stays with the client, so there is no .p12 to build here"
                ),
                Some(var) => Some(std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(
                    || anyhow!("--p12-password-env {var}: the environment variable is not set or empty"),
                )?),
                None => None,
            };
            let issued = ca.issue_client(&req)?;
            let out = out.unwrap_or_else(|| default_out(&ca));
            let stem = stem_for(&name);
            print_issued(
                &ca,
                &issued,
                &out,
                &stem,
                p12_password.as_deref(),
                Some(&url),
            )
        }
        IssueCommand::Server {
            dir,
            dns,
            ip,
            days,
            out,
        } => {
            let ca = dir.open()?;
            let validity = days
                .map(|d| Duration::from_secs(d.saturating_mul(86_400)))
                .unwrap_or(DEFAULT_SERVER_VALIDITY);
            let issued = ca.issue_server(&dns, &ip, validity)?;
            let out = out.unwrap_or_else(|| default_out(&ca));
            let name = dns
                .first()
                .cloned()
                .or_else(|| ip.first().map(|i| i.to_string()))
                .unwrap_or_else(|| "server".into());
            print_issued(&ca, &issued, &out, &stem_for(&name), None, None)
        }
    }
}

fn print_issued(
    ca: &Ca,
    issued: &Issued,
    out: &Path,
    stem: &str,
    p12_password: Option<&str>,
    url: Option<&str>,
) -> Result<()> {
    let paths = issued.write_to(out, stem)?;
    let ca_path = out.join("ca.crt");
    portcullis_pki::write_public_file(&ca_path, ca.root_cert_pem().as_bytes())?;
    println!("Issued serial {}", issued.serial_hex);
    println!(
        "  expires    {}",
        portcullis_pki::rfc3339(
            issued
                .not_after
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        )
    );
    println!("  cert+chain {}", absolute(&paths.cert).display());
    if let Some(k) = &paths.key {
        println!("  key        {}  (mode 0600)", absolute(k).display());
    }
    println!("  CA         {}", absolute(&ca_path).display());
    if let Some(pass) = p12_password {
        let p = issued.write_pkcs12(out, stem, pass, ca.root_cert_pem())?;
        println!("  PKCS#12    {}", absolute(&p).display());
    }
    if let (Some(url), Some(key)) = (url, &paths.key) {
        let cert = absolute(&paths.cert);
        let key = absolute(key);
        let ca_abs = absolute(&ca_path);
        println!();
        print!(
            "{}",
            client_snippets(&SnippetPaths {
                cert: &cert,
                key: &key,
                ca: &ca_abs,
                url,
            })
        );
        println!("(--cacert/verify/ca must name the CA of the gateway's server certificate; {} is this CA's root.)", ca_abs.display());
    }
    Ok(())
}

// === token ===

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a one-time enrollment token for client NAME.
    Create {
        #[command(flatten)]
        dir: CaDir,
        name: String,
        /// How long the token works (e.g. 10m, 1h, 2d; at most 7d).
        #[arg(long, default_value = "10m")]
        ttl: String,
    },
    /// List enrollment tokens (never their secrets).
    List {
        #[command(flatten)]
        dir: CaDir,
    },
}

pub fn run_token(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create { dir, name, ttl } => {
            let ca = dir.open()?;
            let ttl = parse_duration(&ttl).context("--ttl")?;
            let tok = ca.create_token(&name, ttl)?;
            println!("{}", tok.secret);
            eprintln!(
                "one-time token {} for {:?}, expires {} (shown once; only its hash is stored)",
                tok.record.id,
                tok.record.name,
                portcullis_pki::rfc3339(tok.record.expires_at)
            );
            Ok(())
        }
        TokenCommand::List { dir } => {
            let ca = dir.open()?;
            let state = ca.state()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            println!("{:<16}  {:<24}  {:<20}  STATUS", "ID", "NAME", "EXPIRES");
            for t in state.tokens.values() {
                let status = match t.redeemed_at {
                    Some(at) => format!("used {}", portcullis_pki::rfc3339(at)),
                    None if t.expires_at <= now => "expired".into(),
                    None => "unused".into(),
                };
                println!(
                    "{:<16}  {:<24}  {:<20}  {status}",
                    t.id,
                    t.name,
                    portcullis_pki::rfc3339(t.expires_at)
                );
            }
            Ok(())
        }
    }
}

// === crl ===

/// `portcullis crl`: sign a fresh CRL (run it before nextUpdate, e.g. from cron).
#[derive(Args, Debug)]
pub struct CrlArgs {
    #[command(flatten)]
    pub dir: CaDir,
    /// Output path; `.der`/`.crl` write DER, anything else PEM [default: <dir>/crl.pem].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Time until nextUpdate (e.g. 24h, 7d).
    #[arg(long, default_value = "24h")]
    pub next_update: String,
}

pub fn run_crl(args: CrlArgs) -> Result<()> {
    let ca = args.dir.open()?;
    let next = parse_duration(&args.next_update).context("--next-update")?;
    let path = args.out.unwrap_or_else(|| ca.default_crl_path());
    let crl = ca.write_crl(&path, next)?;
    println!(
        "CRL #{} written to {} ({} revoked, next update {})",
        crl.number,
        path.display(),
        crl.revoked_serials.len(),
        portcullis_pki::rfc3339(
            crl.next_update
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        )
    );
    Ok(())
}

/// `30s`, `10m`, `12h`, `7d`, `2w`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a duration (examples: 30s, 10m, 12h, 7d, 2w)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("{s:?}: unknown unit {unit:?} (use s, m, h, d or w)"),
    };
    let secs = n
        .checked_mul(mult)
        .ok_or_else(|| anyhow!("{s:?} is too long"))?;
    if secs == 0 {
        bail!("{s:?}: the duration must be positive");
    }
    Ok(Duration::from_secs(secs))
}
