//! `portcullis agent`: keeps a client certificate valid, beside the client that uses it.
//!
//! Owns: deciding whether to enroll (no certificate yet, with a one-time token) or to
//! renew (at a fraction of the lifetime, two thirds by default, over mutual TLS with the
//! current certificate), generating the new ECDSA P-256 key and CSR locally (the private
//! key never leaves this process), installing the result atomically, running the reload
//! command, and retrying with capped exponential backoff.
//! Must not: sign anything (the gateway's `[pki]` endpoints do, see
//! crates/portcullis-proxy/src/pki_service.rs) or log secrets (the token, keys).
//!
//! Installing a renewal touches two files. Each is replaced atomically (temp file +
//! rename), and the order makes a crash at any point recoverable:
//!   1. the new key goes to `KEY.pending` (0600),
//!   2. the new chain replaces `CERT`,
//!   3. the new key replaces `KEY`, then `KEY.pending` is removed.
//!
//! On start, a `KEY.pending` that matches `CERT` finishes step 3; one that does not is
//! stale (a crash before step 2) and is removed. So `CERT` and `KEY` never stay
//! mismatched after the agent has run again, and no reader ever sees half a file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::PublicKeyData;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// First wait after a failure; doubles up to `--max-backoff`.
const INITIAL_BACKOFF: Duration = Duration::from_secs(2);
/// Longest single sleep while waiting for renewal: files are re-read at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// Time limit for one HTTP exchange (connect, TLS, request, response body).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body accepted (a PEM chain is a few kilobytes).
const MAX_RESPONSE: usize = 256 * 1024;

/// `portcullis agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Certificate file to keep valid (leaf + intermediate, PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// Private key file (PKCS#8 PEM, mode 0600); generated here, never sent anywhere.
    #[arg(long)]
    pub key: PathBuf,
    /// CA certificate(s), PEM, that verify the gateway's server certificate.
    #[arg(long)]
    pub ca: PathBuf,
    /// The gateway's PKI endpoints, e.g. https://gateway:8443/pki (no path means /pki).
    #[arg(long)]
    pub url: String,
    /// One-time enrollment token (`portcullis token create`), used when there is no certificate yet.
    #[arg(long, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// File whose first line is the enrollment token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Shell command (`sh -c`) run after new files are in place, e.g. "systemctl reload app".
    /// It gets PORTCULLIS_CERT and PORTCULLIS_KEY in its environment.
    #[arg(long)]
    pub reload_cmd: Option<String>,
    /// Enroll, or renew if due, then exit: 0 on success or nothing to do, 1 on failure.
    #[arg(long)]
    pub once: bool,
    /// Renew when this fraction of the lifetime (notBefore to notAfter) has passed.
    #[arg(long, default_value_t = 2.0 / 3.0)]
    pub renew_at_fraction: f64,
    /// Longest wait between retries after a failure (e.g. 30s, 5m).
    #[arg(long, default_value = "5m")]
    pub max_backoff: String,
}

/// Validated settings.
struct Agent {
    cert: PathBuf,
    key: PathBuf,
    pending_key: PathBuf,
    roots: Arc<rustls::RootCertStore>,
    base: String,
    token: Option<Token>,
    reload_cmd: Option<String>,
    once: bool,
    fraction: f64,
    max_backoff: Duration,
}

enum Token {
    Literal(String),
    File(PathBuf),
}

/// How a step failed: worth retrying, or not.
enum Failure {
    /// Network trouble, 5xx, time-outs: retry with backoff.
    Retry(anyhow::Error),
    /// Refused for good (token used or expired, certificate revoked or expired, bad
    /// files): retrying cannot help.
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Fatal(e)
    }
}

/// What a successful step leaves: when to look again, and whether the reload failed.
struct Done {
    next: SystemTime,
    reload_failed: bool,
}

/// The certificate on disk.
struct Current {
    not_before: SystemTime,
    not_after: SystemTime,
    serial: String,
    subject: String,
}

pub fn run(args: AgentArgs) -> ExitCode {
    crate::serve::init_logging("info", false);
    let agent = match Agent::new(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(agent.run())
}

impl Agent {
    fn new(a: AgentArgs) -> Result<Agent> {
        if !(a.renew_at_fraction > 0.0 && a.renew_at_fraction < 1.0) {
            bail!(
                "--renew-at-fraction {}: must be between 0 and 1 (exclusive)",
                a.renew_at_fraction
            );
        }
        let max_backoff =
            crate::pki_cli::parse_duration(&a.max_backoff).context("--max-backoff")?;
        let mut roots = rustls::RootCertStore::empty();
        let ca_certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&a.ca)
            .with_context(|| format!("--ca {}", a.ca.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("--ca {}: not PEM certificates", a.ca.display()))?;
        if ca_certs.is_empty() {
            bail!("--ca {}: no certificate in the file", a.ca.display());
        }
        for c in ca_certs {
            roots
                .add(c)
                .with_context(|| format!("--ca {}: not a usable CA certificate", a.ca.display()))?;
        }
        let base = base_url(&a.url)?;
        let token = match (a.token, a.token_file) {
            (Some(t), _) => Some(Token::Literal(t)),
            (None, Some(f)) => Some(Token::File(f)),
            (None, None) => None,
        };
        let mut pending = a.key.clone().into_os_string();
        pending.push(".pending");
        Ok(Agent {
            pending_key: PathBuf::from(pending),
            cert: a.cert,
            key: a.key,
            roots: Arc::new(roots),
            base,
            token,
            reload_cmd: a.reload_cmd.filter(|c| !c.trim().is_empty()),
            once: a.once,
            fraction: a.renew_at_fraction,
            max_backoff,
        })
    }

    async fn run(self) -> ExitCode {
        tracing::info!(cert = %self.cert.display(), key = %self.key.display(), url = %self.base, "agent started");
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let wait = match self.step().await {
                Ok(done) => {
                    backoff = INITIAL_BACKOFF;
                    if self.once {
                        return if done.reload_failed {
                            ExitCode::FAILURE
                        } else {
                            ExitCode::SUCCESS
                        };
                    }
                    let wait = done
                        .next
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    wait.min(MAX_SLEEP)
                }
                Err(Failure::Fatal(e)) => {
                    tracing::error!("{e:#}");
                    return ExitCode::FAILURE;
                }
                Err(Failure::Retry(e)) => {
                    if self.once {
                        tracing::error!("{e:#}");
                        return ExitCode::FAILURE;
                    }
                    let wait = jitter(backoff);
                    tracing::warn!(retry_in_secs = wait.as_secs(), "{e:#}");
                    backoff = (backoff * 2).min(self.max_backoff);
                    wait
                }
            };
            if !sleep_or_stop(wait).await {
                tracing::info!("agent stopped");
                return ExitCode::SUCCESS;
            }
        }
    }

    /// One look at the files: enroll, renew or nothing.
    async fn step(&self) -> Result<Done, Failure> {
        self.recover_pending_key()?;
        let current = match std::fs::metadata(&self.cert) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Failure::Fatal(
                    anyhow!(e).context(format!("{}", self.cert.display())),
                ))
            }
            Ok(_) => Some(self.read_current()?),
        };
        let now = SystemTime::now();
        let chain = match current {
            None => {
                let Some(token) = self.token_secret()? else {
                    return Err(Failure::Fatal(anyhow!(
                        "no certificate at {} and no --token or --token-file to enroll with",
                        self.cert.display()
                    )));
                };
                tracing::info!(cert = %self.cert.display(), "no certificate yet: enrolling with the token");
                self.enroll(&token).await?
            }
            Some(cur) if now >= cur.not_after => {
                match self.token_secret()? {
                    Some(token) => {
                        tracing::warn!(serial = %cur.serial, "the certificate has expired: enrolling again with the token");
                        self.enroll(&token).await?
                    }
                    None => {
                        return Err(Failure::Fatal(anyhow!(
                            "the certificate {} (serial {}) expired at {}; an expired certificate cannot renew: enroll again with a new token (--token)",
                            self.cert.display(),
                            cur.serial,
                            fmt_time(cur.not_after)
                        )))
                    }
                }
            }
            Some(cur) => {
                let due = self.due(&cur);
                if now < due {
                    tracing::info!(
                        serial = %cur.serial,
                        subject = %cur.subject,
                        not_after = %fmt_time(cur.not_after),
                        renew_at = %fmt_time(due),
                        "certificate is valid; renewal not due yet"
                    );
                    return Ok(Done {
                        next: due,
                        reload_failed: false,
                    });
                }
                tracing::info!(serial = %cur.serial, subject = %cur.subject, not_after = %fmt_time(cur.not_after), "renewal due: renewing over mutual TLS");
                self.renew().await?
            }
        };
        let new = self.install(&chain)?;
        let next = self.due(&new);
        tracing::info!(
            serial = %new.serial,
            subject = %new.subject,
            not_after = %fmt_time(new.not_after),
            renew_at = %fmt_time(next),
            "new certificate installed"
        );
        let reload_failed = !self.reload().await;
        Ok(Done {
            next,
            reload_failed,
        })
    }

    fn due(&self, c: &Current) -> SystemTime {
        let life = c
            .not_after
            .duration_since(c.not_before)
            .unwrap_or(Duration::ZERO);
        c.not_before + life.mul_f64(self.fraction)
    }

    fn token_secret(&self) -> Result<Option<String>> {
        let t = match &self.token {
            None => return Ok(None),
            Some(Token::Literal(t)) => t.trim().to_string(),
            Some(Token::File(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("--token-file {}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        };
        if t.is_empty() {
            bail!("the enrollment token is empty");
        }
        Ok(Some(t))
    }

    /// Reads the current certificate and checks the key file belongs to it.
    fn read_current(&self) -> Result<Current> {
        let pem = std::fs::read(&self.cert)
            .with_context(|| format!("cannot read {}", self.cert.display()))?;
        let (cur, spki) = parse_leaf(&pem).with_context(|| format!("{}", self.cert.display()))?;
        let key_pem = std::fs::read_to_string(&self.key).with_context(|| {
            format!(
                "cannot read the key {} for the certificate {}",
                self.key.display(),
                self.cert.display()
            )
        })?;
        let key = rcgen::KeyPair::from_pem(&key_pem)
            .map_err(|e| anyhow!("{}: not a usable private key: {e}", self.key.display()))?;
        if key.subject_public_key_info() != spki {
            bail!(
                "{} does not belong to the certificate {}",
                self.key.display(),
                self.cert.display()
            );
        }
        Ok(cur)
    }

    /// Finishes or discards an interrupted installation (see the module docs).
    fn recover_pending_key(&self) -> Result<()> {
        let pending = match std::fs::read_to_string(&self.pending_key) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(anyhow!(e).context(format!("{}", self.pending_key.display()))),
        };
        let matches = std::fs::read(&self.cert)
            .ok()
            .and_then(|pem| parse_leaf(&pem).ok())
            .zip(rcgen::KeyPair::from_pem(&pending).ok())
            .is_some_and(|((_, spki), key)| key.subject_public_key_info() == spki);
        if matches {
            tracing::warn!(key = %self.key.display(), "finishing an interrupted installation: the pending key belongs to the certificate");
            portcullis_pki::write_private_file(&self.key, pending.as_bytes())?;
        } else {
            tracing::warn!(pending = %self.pending_key.display(), "removing a pending key left by an interrupted renewal");
        }
        std::fs::remove_file(&self.pending_key)
            .with_context(|| format!("cannot remove {}", self.pending_key.display()))?;
        Ok(())
    }

    /// Writes the pending key, then the chain, then the key (see the module docs).
    fn install(&self, got: &(String, String)) -> Result<Current> {
        let (chain, key_pem) = got;
        portcullis_pki::write_private_file(&self.pending_key, key_pem.as_bytes())?;
        portcullis_pki::write_public_file(&self.cert, chain.as_bytes())?;
        portcullis_pki::write_private_file(&self.key, key_pem.as_bytes())?;
        std::fs::remove_file(&self.pending_key)
            .with_context(|| format!("cannot remove {}", self.pending_key.display()))?;
        let (cur, _) = parse_leaf(chain.as_bytes())?;
        Ok(cur)
    }

    /// Runs the reload command; false when it failed.
    async fn reload(&self) -> bool {
        let Some(cmd) = &self.reload_cmd else {
            return true;
        };
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("PORTCULLIS_CERT", &self.cert)
            .env("PORTCULLIS_KEY", &self.key)
            .stdin(std::process::Stdio::null())
            .status()
            .await;
        match status {
            Ok(s) if s.success() => {
                tracing::info!(command = %cmd, "reload command succeeded");
                true
            }
            Ok(s) => {
                tracing::error!(command = %cmd, status = %s, "reload command failed (the new certificate is in place)");
                false
            }
            Err(e) => {
                tracing::error!(command = %cmd, error = %e, "cannot run the reload command (the new certificate is in place)");
                false
            }
        }
    }

    /// POST {base}/enroll with the token; returns (chain, key).
    async fn enroll(&self, token: &str) -> Result<(String, String), Failure> {
        let (key, csr) = new_key_and_csr("portcullis-agent")?;
        let config = self.tls_builder()?.with_no_client_auth();
        let auth = format!("Bearer {token}");
        let chain = self
            .post(config, "enroll", csr, Some(&auth))
            .await
            .map_err(|f| f.context("enrollment"))?;
        check_chain(&chain, &key).map_err(|e| Failure::Fatal(e.context("enrollment")))?;
        Ok((chain, key.serialize_pem()))
    }

    /// POST {base}/renew over mutual TLS with the current certificate; returns (chain, key).
    async fn renew(&self) -> Result<(String, String), Failure> {
        let (key, csr) = new_key_and_csr("portcullis-agent")?;
        let chain_der: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| anyhow!("{}: {e}", self.cert.display()))?;
        let current_key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| anyhow!("{}: {e}", self.key.display()))?;
        let config = self
            .tls_builder()?
            .with_client_auth_cert(chain_der, current_key)
            .context("the current certificate and key cannot be used for TLS")?;
        let chain = self
            .post(config, "renew", csr, None)
            .await
            .map_err(|f| f.context("renewal"))?;
        check_chain(&chain, &key).map_err(|e| Failure::Fatal(e.context("renewal")))?;
        Ok((chain, key.serialize_pem()))
    }

    fn tls_builder(
        &self,
    ) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(self.roots.clone()))
    }

    /// POSTs a CSR, returns the PEM body of a 200 answer.
    async fn post(
        &self,
        tls: rustls::ClientConfig,
        endpoint: &str,
        csr: String,
        authorization: Option<&str>,
    ) -> Result<String, Failure> {
        let url = format!("{}/{endpoint}", self.base);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let mut req = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/pkcs10")
            .header(http::header::ACCEPT, "application/x-pem-file");
        if let Some(a) = authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(Bytes::from(csr)))
            .with_context(|| format!("bad URL {url}"))?;
        let exchange = async {
            let resp = client.request(req).await.map_err(|e| {
                let fatal = refused_in_handshake(&e);
                let err = anyhow!(error_chain(&e)).context(format!("POST {url}"));
                match fatal {
                    Some(why) => Failure::Fatal(err.context(why)),
                    None => Failure::Retry(err),
                }
            })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| Failure::Retry(anyhow!("POST {url}: reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, Failure>((status, body))
        };
        let (status, body) = tokio::time::timeout(HTTP_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                Failure::Retry(anyhow!(
                    "POST {url}: no answer within {}s",
                    HTTP_TIMEOUT.as_secs()
                ))
            })??;
        if status == http::StatusCode::OK {
            return String::from_utf8(body.to_vec())
                .map_err(|_| Failure::Fatal(anyhow!("POST {url}: the answer is not PEM text")));
        }
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                Some(format!(
                    "{}: {}",
                    v.get("error")?.as_str()?,
                    v.get("message")?.as_str()?
                ))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        let err = anyhow!("POST {url}: the gateway answered {status}: {detail}");
        // 408/429 and 5xx may pass; other 4xx are the CA's answer (token used or expired,
        // certificate revoked, bad CSR): asking again gets the same answer.
        if status.is_server_error()
            || status == http::StatusCode::REQUEST_TIMEOUT
            || status == http::StatusCode::TOO_MANY_REQUESTS
        {
            Err(Failure::Retry(err))
        } else {
            Err(Failure::Fatal(err))
        }
    }
}

impl Failure {
    fn context(self, c: &'static str) -> Failure {
        match self {
            Failure::Retry(e) => Failure::Retry(e.context(c)),
            Failure::Fatal(e) => Failure::Fatal(e.context(c)),
        }
    }
}

/// The gateway's base URL for the PKI endpoints, without a trailing slash.
fn base_url(url: &str) -> Result<String> {
    let uri: http::Uri = url
        .trim()
        .parse()
        .map_err(|e| anyhow!("--url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        bail!("--url {url:?}: must be https:// (the agent sends its CSR and token only over TLS)");
    }
    let Some(auth) = uri.authority() else {
        bail!("--url {url:?}: no host");
    };
    if uri.query().is_some() {
        bail!("--url {url:?}: no query string, please");
    }
    let path = uri.path().trim_end_matches('/');
    let path = if path.is_empty() { "/pki" } else { path };
    Ok(format!("https://{auth}{path}"))
}

/// A fresh ECDSA P-256 key and a CSR for it.
fn new_key_and_csr(cn: &str) -> Result<(rcgen::KeyPair, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("cannot generate a key")?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .context("cannot build the CSR")?;
    Ok((key, csr))
}

/// The leaf (first certificate) of a PEM chain and its SubjectPublicKeyInfo.
fn parse_leaf(pem: &[u8]) -> Result<(Current, Vec<u8>)> {
    let leaf = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| anyhow!("no PEM certificate"))?
        .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| anyhow!("not a valid certificate: {e}"))?;
    let v = cert.validity();
    let to_time = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    Ok((
        Current {
            not_before: to_time(v.not_before.timestamp()),
            not_after: to_time(v.not_after.timestamp()),
            serial: cert.raw_serial_as_string().replace(':', ""),
            subject: cert.subject().to_string(),
        },
        cert.public_key().raw.to_vec(),
    ))
}

/// The answer must be a chain whose leaf carries our new key and is currently valid.
fn check_chain(chain: &str, key: &rcgen::KeyPair) -> Result<()> {
    let (cur, spki) = parse_leaf(chain.as_bytes()).context("the gateway's answer")?;
    if spki != key.subject_public_key_info() {
        bail!("the gateway's certificate is not for the key this agent generated");
    }
    if SystemTime::now() >= cur.not_after {
        bail!("the gateway returned an expired certificate");
    }
    Ok(())
}

/// When the TLS handshake failed because the gateway refused our certificate, why.
fn refused_in_handshake(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use rustls::AlertDescription as A;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        // io::Error::source() skips its payload: look inside explicitly.
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(rustls::Error::AlertReceived(alert)) =
                candidate.downcast_ref::<rustls::Error>()
            {
                return match alert {
                    A::CertificateRevoked => {
                        Some("the gateway refused the certificate: it is revoked")
                    }
                    A::CertificateExpired => {
                        Some("the gateway refused the certificate: it is expired")
                    }
                    A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::AccessDenied => {
                        Some("the gateway refused the certificate")
                    }
                    _ => None,
                };
            }
        }
        cur = err.source();
    }
    None
}

/// "a: b: c" for an error and its sources (hyper's Display shows only the outer one).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// `d` plus up to a quarter more, so many agents do not retry in step.
fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// Sleeps `d`; false when SIGINT or SIGTERM arrived first.
async fn sleep_or_stop(d: Duration) -> bool {
    #[cfg(unix)]
    {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        let Ok(mut term) = term else {
            return tokio::select! {
                _ = tokio::time::sleep(d) => true,
                _ = tokio::signal::ctrl_c() => false,
            };
        };
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = tokio::signal::ctrl_c() => false,
            _ = term.recv() => false,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = tokio::signal::ctrl_c() => false,
        }
    }
}

fn fmt_time(t: SystemTime) -> String {
    portcullis_pki::rfc3339(
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_defaults_to_pki() {
        assert_eq!(base_url("https://gw:8443").unwrap(), "https://gw:8443/pki");
        assert_eq!(base_url("https://gw:8443/").unwrap(), "https://gw:8443/pki");
        assert_eq!(
            base_url("https://gw:8443/ca/pki/").unwrap(),
            "https://gw:8443/ca/pki"
        );
        assert!(base_url("http://gw:8443").is_err());
        assert!(base_url("gw:8443").is_err());
        assert!(base_url("https://gw/pki?x=1").is_err());
    }

    #[test]
    fn csr_and_leaf_parsing() {
        let (key, csr) = new_key_and_csr("x").unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(key.serialize_pem().contains("PRIVATE KEY"));
        assert!(parse_leaf(b"garbage").is_err());
        assert!(check_chain("", &key).is_err());
    }
}
