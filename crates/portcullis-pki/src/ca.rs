//! The CA: a root and an intermediate in a directory, and the issuing of leaf certificates.
//!
//! Owns: the CA directory layout (`ca.json`, `root.crt`, `root.key`, `intermediate.crt`,
//! `intermediate.key`, the inventory), the certificate profiles (root, intermediate,
//! server, client) and the order of an issue: sign, record durably, then hand out.
//! Must not: serve anything over the network or block on anything but local files.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    string::Ia5String, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

use crate::atomic_file::{create_private_dir, write_private_file, write_public_file};
use crate::bundle::Issued;
use crate::inventory::{
    now_unix, CertKind, CertRecord, Event, Inventory, InventoryState, JOURNAL_FILE,
};
use crate::key::{self, KeyAlgorithm};
use crate::PkiError;

pub(crate) const META_FILE: &str = "ca.json";
pub(crate) const ROOT_CERT: &str = "root.crt";
pub(crate) const ROOT_KEY: &str = "root.key";
pub(crate) const INTERMEDIATE_CERT: &str = "intermediate.crt";
pub(crate) const INTERMEDIATE_KEY: &str = "intermediate.key";

/// Hard ceiling for client certificates (the guide: 90 days or less).
pub const MAX_CLIENT_VALIDITY: Duration = Duration::from_secs(90 * 86_400);
/// Default client validity.
pub const DEFAULT_CLIENT_VALIDITY: Duration = Duration::from_secs(30 * 86_400);
/// Ceiling for server certificates (the CA/Browser Forum's 398 days).
pub const MAX_SERVER_VALIDITY: Duration = Duration::from_secs(398 * 86_400);
/// Default server validity.
pub const DEFAULT_SERVER_VALIDITY: Duration = Duration::from_secs(90 * 86_400);

const ROOT_VALIDITY: time::Duration = time::Duration::days(3653);
const INTERMEDIATE_VALIDITY: time::Duration = time::Duration::days(1826);
/// Leaves are valid from a minute ago, so a client with a slightly slow clock accepts them.
const BACKDATE: time::Duration = time::Duration::seconds(60);

/// Options for [`Ca::init`].
#[derive(Clone, Debug)]
pub struct CaInitOptions {
    pub key: KeyAlgorithm,
    /// Organisation name; the CAs are called "<name> Root CA" and "<name> Intermediate CA".
    pub name: String,
    /// Encrypts `root.key` (PBES2, AES-256-CBC, PBKDF2-HMAC-SHA256) when set.
    pub root_passphrase: Option<String>,
}

impl Default for CaInitOptions {
    fn default() -> Self {
        CaInitOptions {
            key: KeyAlgorithm::default(),
            name: "Portcullis".to_string(),
            root_passphrase: None,
        }
    }
}

/// What a client certificate should say.
#[derive(Clone, Debug)]
pub struct ClientRequest {
    /// The subject CN: the client's identity.
    pub name: String,
    pub validity: Duration,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// A SPIFFE ID (`spiffe://trust-domain/path`), added as a URI SAN.
    pub spiffe: Option<String>,
    /// Sign this CSR's public key instead of generating a key; the identity still comes
    /// from this request, never from the CSR's subject.
    pub csr_pem: Option<String>,
}

impl ClientRequest {
    pub fn new(name: impl Into<String>) -> Self {
        ClientRequest {
            name: name.into(),
            validity: DEFAULT_CLIENT_VALIDITY,
            dns: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            ips: Vec::new(),
            spiffe: None,
            csr_pem: None,
        }
    }
}

/// `ca.json`: what the CA is, written last by `init`, so its presence means a complete CA.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    pub format: u32,
    pub name: String,
    pub key: KeyAlgorithm,
    pub root_key_encrypted: bool,
    pub created_at: i64,
    /// Lower than 90 days to shorten every client certificate's ceiling.
    #[serde(default = "default_max_client_secs")]
    pub max_client_validity_secs: u64,
    /// Written into leaves as the CRL distribution point when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_url: Option<String>,
    /// Written into leaves as the OCSP responder (AIA) when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_url: Option<String>,
}

fn default_max_client_secs() -> u64 {
    MAX_CLIENT_VALIDITY.as_secs()
}

/// A CA directory opened for issuing: the intermediate key is loaded, the root key is not.
pub struct Ca {
    dir: PathBuf,
    config: CaConfig,
    root_pem: String,
    intermediate_pem: String,
    intermediate_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    inventory: Inventory,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// === impl Ca ===

impl Ca {
    /// Creates a root CA and an intermediate in `dir`. Refuses when a CA (or any part of
    /// one) is already there.
    pub fn init(dir: &Path, opts: &CaInitOptions) -> Result<Ca, PkiError> {
        let name = opts.name.trim();
        if name.is_empty() {
            return Err(PkiError::InvalidRequest("the CA name is empty".into()));
        }
        if opts.root_passphrase.as_deref() == Some("") {
            return Err(PkiError::InvalidRequest(
                "the root key passphrase is empty".into(),
            ));
        }
        for f in [
            META_FILE,
            ROOT_CERT,
            ROOT_KEY,
            INTERMEDIATE_CERT,
            INTERMEDIATE_KEY,
            JOURNAL_FILE,
        ] {
            if dir.join(f).exists() {
                return Err(PkiError::AlreadyExists {
                    path: dir.to_path_buf(),
                });
            }
        }
        create_private_dir(dir)?;

        let now = OffsetDateTime::now_utc();

        // Root.
        let root_key = opts.key.generate()?;
        let mut root_params = CertificateParams::default();
        root_params.distinguished_name = dn(name, &format!("{name} Root CA"));
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root_params.not_before = now - BACKDATE;
        root_params.not_after = now + ROOT_VALIDITY;
        root_params.serial_number = Some(random_serial().0);
        let root_cert = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, &root_key);

        // Intermediate: signs leaves, CRLs and OCSP responses; may not sign other CAs.
        let int_key = opts.key.generate()?;
        let mut int_params = CertificateParams::default();
        int_params.distinguished_name = dn(name, &format!("{name} Intermediate CA"));
        int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        int_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        int_params.use_authority_key_identifier_extension = true;
        int_params.not_before = now - BACKDATE;
        int_params.not_after = now + INTERMEDIATE_VALIDITY;
        int_params.serial_number = Some(random_serial().0);
        let int_cert = int_params.signed_by(&int_key, &root_issuer)?;

        let root_key_pem = match &opts.root_passphrase {
            Some(pass) => {
                key::encrypt_pkcs8_pem(&key::portable_pkcs8(root_key.serialized_der()), pass)?
            }
            None => key::private_key_pem(&root_key),
        };

        write_private_file(&dir.join(ROOT_KEY), root_key_pem.as_bytes())?;
        write_private_file(
            &dir.join(INTERMEDIATE_KEY),
            key::private_key_pem(&int_key).as_bytes(),
        )?;
        write_public_file(&dir.join(ROOT_CERT), root_cert.pem().as_bytes())?;
        write_public_file(&dir.join(INTERMEDIATE_CERT), int_cert.pem().as_bytes())?;

        let config = CaConfig {
            format: 1,
            name: name.to_string(),
            key: opts.key,
            root_key_encrypted: opts.root_passphrase.is_some(),
            created_at: now_unix(),
            max_client_validity_secs: MAX_CLIENT_VALIDITY.as_secs(),
            crl_url: None,
            ocsp_url: None,
        };
        write_config(dir, &config)?;
        Ca::open(dir)
    }

    /// Opens an existing CA for issuing. Needs only the intermediate key.
    pub fn open(dir: &Path) -> Result<Ca, PkiError> {
        let meta_path = dir.join(META_FILE);
        let meta_text = match fs::read_to_string(&meta_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.join(ROOT_CERT).exists() || dir.join(INTERMEDIATE_KEY).exists() {
                    return Err(PkiError::corrupt(
                        &meta_path,
                        "missing: `ca init` did not finish here; remove the directory and run it again",
                    ));
                }
                return Err(PkiError::NotFound {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(PkiError::io(&meta_path, e)),
        };
        let config: CaConfig = serde_json::from_str(&meta_text)
            .map_err(|e| PkiError::corrupt(&meta_path, e.to_string()))?;
        if config.format != 1 {
            return Err(PkiError::corrupt(
                &meta_path,
                format!(
                    "unsupported format {} (this build reads format 1)",
                    config.format
                ),
            ));
        }

        let root_pem = read_text(&dir.join(ROOT_CERT))?;
        let intermediate_pem = read_text(&dir.join(INTERMEDIATE_CERT))?;
        let int_key_path = dir.join(INTERMEDIATE_KEY);
        let int_key_pem = read_text(&int_key_path)?;
        let int_key = key::key_from_pem(&int_key_pem, config.key)
            .map_err(|e| PkiError::corrupt(&int_key_path, format!("cannot load the key: {e}")))?;

        let intermediate_der = pem_der(&intermediate_pem, "CERTIFICATE").ok_or_else(|| {
            PkiError::corrupt(dir.join(INTERMEDIATE_CERT), "not a PEM certificate")
        })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&intermediate_der).map_err(|e| {
            PkiError::corrupt(dir.join(INTERMEDIATE_CERT), format!("cannot parse: {e}"))
        })?;
        if parsed.public_key().raw != int_key.subject_public_key_info().as_slice() {
            return Err(PkiError::corrupt(
                &int_key_path,
                "does not match intermediate.crt",
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&intermediate_der.clone().into(), int_key)?;

        Ok(Ca {
            dir: dir.to_path_buf(),
            config,
            root_pem,
            intermediate_pem,
            intermediate_der,
            issuer,
            inventory: Inventory::new(dir),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    pub fn root_cert_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn intermediate_cert_pem(&self) -> &str {
        &self.intermediate_pem
    }

    pub fn intermediate_cert_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// Intermediate then root: what a relying party needs besides the leaf.
    pub fn chain_pem(&self) -> String {
        let mut s = self.intermediate_pem.clone();
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&self.root_pem);
        s
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    pub(crate) fn signing_key(&self) -> &KeyPair {
        self.issuer.key()
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The current state of the inventory.
    pub fn state(&self) -> Result<InventoryState, PkiError> {
        self.inventory.load()
    }

    /// The ceiling for client certificates: 90 days, or lower when configured.
    pub fn max_client_validity(&self) -> Duration {
        Duration::from_secs(self.config.max_client_validity_secs).min(MAX_CLIENT_VALIDITY)
    }

    /// Changes the settings written into `ca.json` (endpoints, lower validity ceiling).
    pub fn update_config(&mut self, change: impl FnOnce(&mut CaConfig)) -> Result<(), PkiError> {
        let mut cfg = self.config.clone();
        change(&mut cfg);
        if cfg.max_client_validity_secs == 0
            || cfg.max_client_validity_secs > MAX_CLIENT_VALIDITY.as_secs()
        {
            return Err(PkiError::InvalidRequest(format!(
                "max client validity must be between 1 second and {} days",
                MAX_CLIENT_VALIDITY.as_secs() / 86_400
            )));
        }
        for url in [&cfg.crl_url, &cfg.ocsp_url].into_iter().flatten() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(PkiError::InvalidRequest(format!(
                    "{url:?} is not an http:// or https:// URL"
                )));
            }
        }
        write_config(&self.dir, &cfg)?;
        self.config = cfg;
        Ok(())
    }

    /// Issues a server certificate (serverAuth) for DNS names and IPs.
    pub fn issue_server(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Duration,
    ) -> Result<Issued, PkiError> {
        if dns_names.is_empty() && ips.is_empty() {
            return Err(PkiError::InvalidRequest(
                "a server certificate needs at least one DNS name or IP".into(),
            ));
        }
        check_validity(validity, MAX_SERVER_VALIDITY)?;
        let mut sans = Vec::new();
        for d in dns_names {
            sans.push(dns_san(d)?);
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let name = dns_names
            .first()
            .cloned()
            .unwrap_or_else(|| ips[0].to_string());
        self.issue_leaf(Leaf {
            kind: CertKind::Server,
            name,
            sans,
            validity,
            csr_pem: None,
            renewed_from: None,
        })
    }

    /// Issues a client certificate (clientAuth), CN = `req.name` plus the SANs.
    pub fn issue_client(&self, req: &ClientRequest) -> Result<Issued, PkiError> {
        self.issue_client_inner(req, None)
    }

    pub(crate) fn issue_client_inner(
        &self,
        req: &ClientRequest,
        renewed_from: Option<String>,
    ) -> Result<Issued, PkiError> {
        check_validity(req.validity, self.max_client_validity())?;
        let name = req.name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(PkiError::InvalidRequest(format!(
                "client name {:?} must be 1 to 64 printable characters",
                req.name
            )));
        }
        let mut sans = Vec::new();
        for d in &req.dns {
            sans.push(dns_san(d)?);
        }
        sans.extend(req.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        for u in &req.uris {
            sans.push(uri_san(u)?);
        }
        if let Some(id) = &req.spiffe {
            if !id.starts_with("spiffe://") || id.len() <= "spiffe://".len() {
                return Err(PkiError::InvalidRequest(format!(
                    "SPIFFE ID {id:?} must look like spiffe://trust-domain/path"
                )));
            }
            sans.push(uri_san(id)?);
        }
        for e in &req.emails {
            if !e.contains('@') {
                return Err(PkiError::InvalidRequest(format!(
                    "{e:?} is not an email address"
                )));
            }
            sans.push(SanType::Rfc822Name(ia5(e)?));
        }
        self.issue_leaf(Leaf {
            kind: CertKind::Client,
            name: name.to_string(),
            sans,
            validity: req.validity,
            csr_pem: req.csr_pem.clone(),
            renewed_from,
        })
    }

    fn issue_leaf(&self, leaf: Leaf) -> Result<Issued, PkiError> {
        let now = OffsetDateTime::now_utc();
        let validity = time::Duration::try_from(leaf.validity)
            .map_err(|_| PkiError::InvalidRequest("validity out of range".into()))?;
        let (serial, serial_hex) = random_serial();

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, leaf.name.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = leaf.sans.clone();
        params.is_ca = IsCa::ExplicitNoCa; // writes SKI and CA:FALSE
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial);
        params.not_before = now - BACKDATE;
        params.not_after = now + validity;
        params.extended_key_usages = vec![match leaf.kind {
            CertKind::Client => ExtendedKeyUsagePurpose::ClientAuth,
            CertKind::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        if let Some(url) = &self.config.crl_url {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        if let Some(url) = &self.config.ocsp_url {
            params.custom_extensions.push(ocsp_aia_extension(url));
        }

        let (cert, key_pem, from_csr) = match &leaf.csr_pem {
            Some(csr) => {
                let spki = csr_public_key(csr)?;
                params.key_usages = key_usages(spki_is_rsa(&spki));
                (params.signed_by(&spki, &self.issuer)?, None, true)
            }
            None => {
                let key = self.config.key.generate()?;
                params.key_usages = key_usages(self.config.key.is_rsa());
                let cert = params.signed_by(&key, &self.issuer)?;
                (cert, Some(key::private_key_pem(&key)), false)
            }
        };

        let cert_pem = cert.pem();
        let record = CertRecord {
            serial: serial_hex.clone(),
            kind: leaf.kind,
            name: leaf.name.clone(),
            sans: leaf.sans.iter().map(san_to_string).collect(),
            not_before: params.not_before.unix_timestamp(),
            not_after: params.not_after.unix_timestamp(),
            issued_at: now.unix_timestamp(),
            from_csr,
            renewed_from: leaf.renewed_from,
            cert_pem: cert_pem.clone(),
            revoked: None,
        };
        // Recorded durably before anyone sees the certificate.
        self.inventory.append(&[Event::Issued(record)])?;

        let mut chain_pem = cert_pem.clone();
        if !chain_pem.ends_with('\n') {
            chain_pem.push('\n');
        }
        chain_pem.push_str(&self.intermediate_pem);
        Ok(Issued {
            serial_hex,
            cert_pem,
            key_pem,
            chain_pem,
            not_after: SystemTime::from(params.not_after),
        })
    }

    /// Loads the root key (for operations that need it); decrypts it when encrypted.
    pub fn load_root_key(&self, passphrase: Option<&str>) -> Result<KeyPair, PkiError> {
        let path = self.dir.join(ROOT_KEY);
        let text = read_text(&path)?;
        if text.contains(key::ENCRYPTED_KEY_TAG) {
            let pass = passphrase.ok_or(PkiError::PassphraseRequired)?;
            let der = key::decrypt_pkcs8_pem(&text, pass)?;
            KeyPair::from_pkcs8_der_and_sign_algo(
                &PrivatePkcs8KeyDer::from(der),
                self.config.key.signature_algorithm(),
            )
            .map_err(|_| PkiError::WrongPassphrase)
        } else {
            key::key_from_pem(&text, self.config.key)
                .map_err(|e| PkiError::corrupt(&path, format!("cannot load the key: {e}")))
        }
    }
}

struct Leaf {
    kind: CertKind,
    name: String,
    sans: Vec<SanType>,
    validity: Duration,
    csr_pem: Option<String>,
    renewed_from: Option<String>,
}

fn key_usages(rsa: bool) -> Vec<KeyUsagePurpose> {
    if rsa {
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    }
}

fn check_validity(validity: Duration, max: Duration) -> Result<(), PkiError> {
    if validity.is_zero() {
        return Err(PkiError::InvalidRequest("validity must be positive".into()));
    }
    if validity > max {
        return Err(PkiError::ValidityTooLong {
            requested_days: validity.as_secs_f64() / 86_400.0,
            max_days: max.as_secs().div_ceil(86_400),
        });
    }
    Ok(())
}

fn dn(org: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    dn
}

/// 16 random bytes, top bit clear (positive) and second bit set (no leading zero byte to
/// strip): 126 bits of entropy.
pub(crate) fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
    (SerialNumber::from_slice(&bytes), hex)
}

fn ia5(s: &str) -> Result<Ia5String, PkiError> {
    Ia5String::try_from(s.to_string())
        .map_err(|_| PkiError::InvalidRequest(format!("{s:?} must be plain ASCII")))
}

fn dns_san(name: &str) -> Result<SanType, PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            (label == "*" && i == 0)
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        });
    if !ok {
        return Err(PkiError::InvalidRequest(format!(
            "{name:?} is not a valid DNS name"
        )));
    }
    Ok(SanType::DnsName(ia5(&name.to_ascii_lowercase())?))
}

fn uri_san(uri: &str) -> Result<SanType, PkiError> {
    match uri.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && !rest.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !uri.chars().any(|c| c.is_whitespace()) =>
        {
            Ok(SanType::URI(ia5(uri)?))
        }
        _ => Err(PkiError::InvalidRequest(format!(
            "{uri:?} is not a URI (scheme://…)"
        ))),
    }
}

pub(crate) fn san_to_string(san: &SanType) -> String {
    match san {
        SanType::DnsName(s) => format!("dns:{}", s.as_str()),
        SanType::IpAddress(ip) => format!("ip:{ip}"),
        SanType::URI(s) => format!("uri:{}", s.as_str()),
        SanType::Rfc822Name(s) => format!("email:{}", s.as_str()),
        other => format!("other:{other:?}"),
    }
}

/// Parses and checks a CSR (PEM), returning only its public key: the identity comes from
/// the CA's side, never from the CSR.
pub(crate) fn csr_public_key(csr_pem: &str) -> Result<rcgen::SubjectPublicKeyInfo, PkiError> {
    let der = pem_der(csr_pem, "CERTIFICATE REQUEST")
        .or_else(|| pem_der(csr_pem, "NEW CERTIFICATE REQUEST"))
        .ok_or_else(|| PkiError::InvalidCsr("not a PEM CERTIFICATE REQUEST".into()))?;
    let (rest, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| PkiError::InvalidCsr(format!("cannot parse: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCsr("trailing bytes after the CSR".into()));
    }
    csr.verify_signature()
        .map_err(|_| PkiError::InvalidCsr("the signature does not verify".into()))?;
    let spki = &csr.certification_request_info.subject_pki;
    if let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() {
        if rsa.key_size() < 2048 {
            return Err(PkiError::InvalidCsr(format!(
                "RSA key of {} bits is too weak (2048 at least)",
                rsa.key_size()
            )));
        }
    }
    rcgen::SubjectPublicKeyInfo::from_der(spki.raw)
        .map_err(|e| PkiError::InvalidCsr(format!("unsupported public key: {e}")))
}

fn spki_is_rsa(spki: &rcgen::SubjectPublicKeyInfo) -> bool {
    std::ptr::eq(spki.algorithm(), &rcgen::PKCS_RSA_SHA256)
        || spki.algorithm() == &rcgen::PKCS_RSA_SHA256
        || spki.algorithm() == &rcgen::PKCS_RSA_SHA384
        || spki.algorithm() == &rcgen::PKCS_RSA_SHA512
}

/// Authority Information Access with one OCSP responder URI (RFC 5280 §4.2.2.1).
fn ocsp_aia_extension(url: &str) -> rcgen::CustomExtension {
    let der = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                        1, 3, 6, 1, 5, 5, 7, 48, 1,
                    ]));
                w.next()
                    .write_tagged_implicit(yasna::Tag::context(6), |w| w.write_ia5_string(url));
            });
        });
    });
    rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], der)
}

fn write_config(dir: &Path, config: &CaConfig) -> Result<(), PkiError> {
    let mut json = serde_json::to_vec_pretty(config)
        .map_err(|e| PkiError::corrupt(dir.join(META_FILE), e.to_string()))?;
    json.push(b'\n');
    write_public_file(&dir.join(META_FILE), &json)
}

fn read_text(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| PkiError::io(path, e))
}

/// The DER of the first PEM block with `tag`.
pub(crate) fn pem_der(text: &str, tag: &str) -> Option<Vec<u8>> {
    pem::parse_many(text)
        .ok()?
        .into_iter()
        .find(|p| p.tag() == tag)
        .map(|p| p.into_contents())
}
