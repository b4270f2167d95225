//! TLS for listeners: protocol profiles, SNI certificate selection, client
//! certificate verification, and certificate inspection for config checks.
//!
//! Owns building one `rustls::ServerConfig` per listener from a validated
//! `ListenerConfig`. It does not accept connections (`server.rs` does) and
//! keeps no state that changes after build.

mod sni;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::aws_lc_rs as provider;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use sni::SniResolver;

use crate::config::{ClientAuth, ListenerConfig, TlsProfile};

/// Errors building TLS state.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("{0}")]
    Other(String),
}

/// The key exchange group with this config name.
pub fn kx_group(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    use provider::kx_group::*;
    Some(match name.to_ascii_uppercase().as_str() {
        "X25519MLKEM768" => X25519MLKEM768,
        "X25519" => X25519,
        "P-256" | "SECP256R1" | "PRIME256V1" => SECP256R1,
        "P-384" | "SECP384R1" => SECP384R1,
        _ => return None,
    })
}

/// The crypto provider for a listener: Mozilla intermediate suites (AES-GCM
/// and ChaCha20 with ECDHE, TLS 1.2 and 1.3), in our preference order.
pub fn crypto_provider(key_exchange: &[String]) -> CryptoProvider {
    use provider::cipher_suite::*;
    let mut p = provider::default_provider();
    // Mozilla "intermediate" (v5.7), in its order; the client's preference wins
    // (ssl_prefer_server_ciphers off), as Mozilla recommends.
    p.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    if !key_exchange.is_empty() {
        p.kx_groups = key_exchange.iter().filter_map(|n| kx_group(n)).collect();
    }
    p
}

/// Checks that a private key belongs to the first certificate of a chain.
pub fn check_key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), String> {
    let p = provider::default_provider();
    CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &p)
        .map(|_| ())
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key does not match the certificate's public key".to_string()
            }
            other => other.to_string(),
        })
}

/// What the config checks need to know about a certificate chain.
#[derive(Debug, Clone)]
pub struct ChainInfo {
    pub dns_names: Vec<String>,
    pub not_after: Option<SystemTime>,
    pub chain_order_problem: Option<String>,
}

/// Parses a chain: SAN DNS names of the leaf, its expiry, and whether each
/// certificate is issued by the next one.
pub fn inspect_chain(chain: &[CertificateDer<'static>]) -> Result<ChainInfo, String> {
    use x509_parser::prelude::*;
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, c) in chain.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(c.as_ref())
            .map_err(|e| format!("certificate #{} in the file cannot be parsed: {e}", i + 1))?;
        parsed.push(cert);
    }
    let leaf = parsed.first().ok_or("the file holds no certificate")?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                dns_names.push(d.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    let ts = leaf.validity().not_after.timestamp();
    let not_after = (ts >= 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(ts as u64));
    let mut chain_order_problem = None;
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0].issuer() != pair[1].subject() {
            chain_order_problem = Some(format!(
                "certificate #{} (subject \"{}\") is not issued by certificate #{} (subject \"{}\"): the chain is out of order or incomplete",
                i + 1,
                pair[0].subject(),
                i + 2,
                pair[1].subject()
            ));
            break;
        }
    }
    Ok(ChainInfo {
        dns_names,
        not_after,
        chain_order_problem,
    })
}

/// A listener's TLS settings, in two orders of cipher suites; see
/// [`ListenerTls::for_hello`].
#[derive(Clone)]
pub struct ListenerTls {
    /// The client's preference decides (Mozilla: `ssl_prefer_server_ciphers off`).
    client_order: Arc<ServerConfig>,
    /// The same, with ours deciding: AES-128-GCM first.
    aes128_first: Arc<ServerConfig>,
}

impl ListenerTls {
    /// The settings for a handshake. The client's preference decides, except
    /// between the AES-GCM suites: a client whose first choice (of the suites
    /// we support) is AES-GCM gets AES-128-GCM when it offers it, as
    /// BoringSSL's "equal preference" groups do. Both are strong; AES-256
    /// comes with SHA-384, whose software implementation costs a handshake
    /// about a tenth more CPU on CPUs with SHA extensions for SHA-256 only
    /// (AMD Zen). A client that prefers ChaCha20 still gets ChaCha20.
    pub fn for_hello(&self, hello: &rustls::server::ClientHello<'_>) -> Arc<ServerConfig> {
        let supported = &self.client_order.crypto_provider().cipher_suites;
        let first = hello
            .cipher_suites()
            .iter()
            .find(|cs| supported.iter().any(|s| s.suite() == **cs));
        match first {
            Some(cs) if is_aes_gcm(*cs) => self.aes128_first.clone(),
            _ => self.client_order.clone(),
        }
    }
}

fn is_aes_gcm(cs: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as C;
    matches!(
        cs,
        C::TLS13_AES_128_GCM_SHA256
            | C::TLS13_AES_256_GCM_SHA384
            | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    )
}

/// Builds the rustls server configs of a listener.
///
/// `ticketer` is shared across reloads so resumption survives them.
pub fn server_config(
    l: &ListenerConfig,
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
    fetched: &crate::mtls::fetch::RevocationFetcher,
) -> Result<ListenerTls, TlsError> {
    let provider = Arc::new(crypto_provider(&l.key_exchange));
    let versions: &[&rustls::SupportedProtocolVersion] = match l.profile {
        TlsProfile::Intermediate => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsProfile::Modern => &[&rustls::version::TLS13],
    };
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = match l.client_auth {
        ClientAuth::Off => builder.with_no_client_auth(),
        mode => {
            let mut crls = crate::config::read_crls(&l.crl_paths).map_err(TlsError::Other)?;
            if l.crl_fetch {
                crls.extend(fetched.crls());
            }
            let settings = crate::mtls::VerifierSettings {
                mandatory: mode == ClientAuth::Required,
                verify_depth: l.verify_depth,
                require_client_auth_eku: l.require_client_auth_eku,
                crl_scope: l.crl_scope,
                crl_expired: l.crl_expired,
            };
            let verifier = crate::mtls::ClientVerifier::new(
                &l.client_ca,
                &crls,
                settings,
                provider.signature_verification_algorithms,
            )
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
            let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = Arc::new(verifier);
            builder.with_client_cert_verifier(verifier)
        }
    };
    let staple = |leaf: &[u8]| {
        if l.ocsp_stapling {
            fetched.staple(leaf)
        } else {
            None
        }
    };
    let resolver = SniResolver::build(&l.certificates, &provider, &staple)?;
    let mut cfg = builder.with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = if l.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    if l.session_resumption {
        cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(20_000);
        if let Some(t) = ticketer {
            cfg.ticketer = t;
        }
    } else {
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
    }
    // Same certificates, verifier, session cache and ticketer (shared `Arc`s).
    let mut ours = cfg.clone();
    ours.ignore_client_order = true;
    Ok(ListenerTls {
        client_order: Arc::new(cfg),
        aes128_first: Arc::new(ours),
    })
}

/// A new session-ticket key rotator (shared by all listeners and reloads).
pub fn new_ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, TlsError> {
    provider::Ticketer::new().map_err(TlsError::Rustls)
}

/// "TLSv1.3"-style name, as nginx's $ssl_protocol.
pub fn protocol_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "unknown",
    }
}

/// OpenSSL's name of a suite, as nginx's $ssl_cipher ("TLS_AES_128_GCM_SHA256",
/// "ECDHE-RSA-AES128-GCM-SHA256").
pub fn cipher_name(s: rustls::SupportedCipherSuite) -> &'static str {
    use rustls::CipherSuite as C;
    match s.suite() {
        C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => other.as_str().unwrap_or("unknown"),
    }
}
/// The rustls client config for an upstream group: its CA, optional client
/// certificate, TLS 1.2+ with the same suites as the listeners.
pub fn upstream_client_config(
    cfg: &crate::config::UpstreamConfig,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(crypto_provider(&[]));
    let mut roots = RootCertStore::empty();
    if let Some(t) = &cfg.tls {
        for ca in &t.ca {
            roots
                .add(ca.clone())
                .map_err(|e| format!("CA certificate: {e}"))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match cfg.tls.as_ref().and_then(|t| t.client_cert.as_ref()) {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    // ALPN is set by the connector (HTTP/1.1 to upstreams).
    Ok(config)
}
