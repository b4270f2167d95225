//! Revocation data fetched from the network: CRL distribution points,
//! OCSP answers about client certificates, and OCSP staples for our own
//! server certificates.
//!
//! Owns the caches (shared by every runtime snapshot, so a reload keeps
//! them) and the background refresh loop. CRLs are kept until their
//! nextUpdate, refreshed ahead of it, and the last good copy stays when a
//! fetch fails; a new CRL rebuilds the runtime (new handshakes see it) and
//! closes live connections it revokes. OCSP answers are cached per
//! certificate until their nextUpdate (at most an hour without one).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateRevocationListDer;

use super::ocsp::{Fetcher, OcspStatus};

/// How a listener treats OCSP for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspMode {
    Off,
    /// Refuse revoked; accept when the responder cannot be reached.
    Soft,
    /// Refuse revoked and unverifiable.
    Hard,
}

#[derive(Debug, Clone)]
struct FetchedCrl {
    der: Vec<u8>,
    next_update: SystemTime,
    fetched: SystemTime,
}

#[derive(Debug, Clone)]
struct Staple {
    der: Vec<u8>,
    refresh_at: SystemTime,
}

/// A served certificate to staple: (leaf DER, issuer DER, responder URL).
pub type StapleTarget = (Vec<u8>, Vec<u8>, String);

/// What the fetcher knows; shared by all runtime snapshots.
#[derive(Default)]
pub struct RevocationFetcher {
    fetcher: Fetcher,
    crls: Mutex<HashMap<String, FetchedCrl>>,
    /// CRL URLs seen in client certificates and not fetched yet.
    wanted: Mutex<HashSet<String>>,
    /// OCSP verdicts by certificate fingerprint: (status, good until).
    ocsp: Mutex<HashMap<String, (OcspStatus, SystemTime)>>,
    /// Server certificate OCSP staples by leaf fingerprint.
    staples: Mutex<HashMap<String, Staple>>,
    /// (leaf DER, issuer DER, responder URL) of served certificates to staple.
    staple_targets: Mutex<Vec<StapleTarget>>,
    wake: tokio::sync::Notify,
}

impl RevocationFetcher {
    /// Fetched CRLs, for the next runtime build.
    pub fn crls(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.crls
            .lock()
            .map(|m| {
                m.values()
                    .map(|c| CertificateRevocationListDer::from(c.der.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The current OCSP staple of a served certificate, if any.
    pub fn staple(&self, leaf_der: &[u8]) -> Option<Vec<u8>> {
        let fp = super::identity::hex_lower(&super::identity::sha256(leaf_der));
        self.staples.lock().ok()?.get(&fp).map(|s| s.der.clone())
    }

    /// Served certificates to keep a staple for (set at each runtime build).
    pub fn set_staple_targets(&self, targets: Vec<StapleTarget>) {
        if let Ok(mut t) = self.staple_targets.lock() {
            *t = targets;
        }
        self.wake.notify_one();
    }

    /// Notes the CRL distribution points of a client certificate.
    pub fn want_crls(&self, urls: &[String]) {
        if urls.is_empty() {
            return;
        }
        let known = self
            .crls
            .lock()
            .map(|m| urls.iter().all(|u| m.contains_key(u)))
            .unwrap_or(true);
        if known {
            return;
        }
        if let Ok(mut w) = self.wanted.lock() {
            let before = w.len();
            w.extend(urls.iter().cloned());
            if w.len() != before {
                self.wake.notify_one();
            }
        }
    }

    /// The OCSP verdict for a client certificate: cached, or asked now.
    /// `Ok(true)` = may proceed.
    pub async fn check_client_ocsp(
        &self,
        fingerprint: &str,
        leaf_der: &[u8],
        issuer_der: Option<&[u8]>,
        mode: OcspMode,
    ) -> Result<(), String> {
        if mode == OcspMode::Off {
            return Ok(());
        }
        let now = SystemTime::now();
        if let Some((status, until)) = self
            .ocsp
            .lock()
            .ok()
            .and_then(|m| m.get(fingerprint).cloned())
        {
            if until > now {
                return match status {
                    OcspStatus::Revoked => Err("revoked (OCSP)".into()),
                    OcspStatus::Unknown if mode == OcspMode::Hard => {
                        Err("unknown to the OCSP responder".into())
                    }
                    _ => Ok(()),
                };
            }
        }
        let fail = |e: String| {
            if mode == OcspMode::Hard {
                Err(e)
            } else {
                Ok(())
            }
        };
        let Some(url) = super::ocsp::responder_url(leaf_der) else {
            return fail("the certificate names no OCSP responder".into());
        };
        let Some(issuer) = issuer_der else {
            return fail("the issuer certificate is not known".into());
        };
        match self.fetcher.ocsp(&url, leaf_der, issuer).await {
            Ok((ans, _)) => {
                let until = ans
                    .next_update
                    .unwrap_or(now + Duration::from_secs(3600))
                    .min(now + Duration::from_secs(86400));
                if let Ok(mut m) = self.ocsp.lock() {
                    if m.len() > 100_000 {
                        m.retain(|_, (_, u)| *u > now);
                    }
                    m.insert(fingerprint.to_string(), (ans.status.clone(), until));
                }
                match ans.status {
                    OcspStatus::Revoked => Err("revoked (OCSP)".into()),
                    OcspStatus::Unknown if mode == OcspMode::Hard => {
                        Err("unknown to the OCSP responder".into())
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => fail(format!("OCSP responder {url}: {e}")),
        }
    }

    /// The refresh loop: fetches wanted and due CRLs and staples; calls
    /// `changed` after anything new arrived. Ends with `stop`.
    pub async fn run(
        self: Arc<Self>,
        changed: impl Fn() + Send + 'static,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let mut any = false;
            // CRLs: wanted ones, and known ones within a quarter of their life from nextUpdate.
            let now = SystemTime::now();
            let mut urls: Vec<String> = self
                .wanted
                .lock()
                .map(|mut w| w.drain().collect())
                .unwrap_or_default();
            if let Ok(m) = self.crls.lock() {
                for (u, c) in m.iter() {
                    let life = c.next_update.duration_since(c.fetched).unwrap_or_default();
                    if now + life / 4 >= c.next_update {
                        urls.push(u.clone());
                    }
                }
            }
            urls.sort();
            urls.dedup();
            for url in urls {
                match self
                    .fetcher
                    .fetch(&url, None)
                    .await
                    .and_then(|body| parse_crl(&body))
                {
                    Ok((der, next_update)) => {
                        let same = self
                            .crls
                            .lock()
                            .ok()
                            .and_then(|m| m.get(&url).map(|c| c.der == der))
                            .unwrap_or(false);
                        if let Ok(mut m) = self.crls.lock() {
                            m.insert(
                                url.clone(),
                                FetchedCrl {
                                    der,
                                    next_update,
                                    fetched: now,
                                },
                            );
                        }
                        if !same {
                            tracing::info!(%url, "fetched CRL from distribution point");
                            any = true;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%url, error = %e, "CRL fetch failed; keeping the last good copy")
                    }
                }
            }
            // Staples for served certificates.
            let targets = self
                .staple_targets
                .lock()
                .map(|t| t.clone())
                .unwrap_or_default();
            for (leaf, issuer, url) in targets {
                let fp = super::identity::hex_lower(&super::identity::sha256(&leaf));
                let due = self
                    .staples
                    .lock()
                    .ok()
                    .map(|m| m.get(&fp).is_none_or(|s| s.refresh_at <= now))
                    .unwrap_or(true);
                if !due {
                    continue;
                }
                match self.fetcher.ocsp(&url, &leaf, &issuer).await {
                    Ok((ans, der)) if ans.status == OcspStatus::Good => {
                        let next = ans.next_update.unwrap_or(now + Duration::from_secs(3600));
                        let half = next.duration_since(now).unwrap_or_default() / 2;
                        if let Ok(mut m) = self.staples.lock() {
                            m.insert(
                                fp,
                                Staple {
                                    der,
                                    refresh_at: now + half.max(Duration::from_secs(60)),
                                },
                            );
                        }
                        tracing::info!(%url, "OCSP staple refreshed");
                        any = true;
                    }
                    Ok((ans, _)) => {
                        tracing::error!(%url, status = ?ans.status, "OCSP responder does not vouch for our own certificate; not stapling")
                    }
                    Err(e) => {
                        tracing::warn!(%url, error = %e, "OCSP staple fetch failed; keeping the last one")
                    }
                }
            }
            if any {
                changed();
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

fn parse_crl(body: &[u8]) -> Result<(Vec<u8>, SystemTime), String> {
    use rustls_pki_types::pem::PemObject;
    let der = if body.starts_with(b"-----") {
        CertificateRevocationListDer::from_pem_slice(body)
            .map_err(|e| format!("{e:?}"))?
            .as_ref()
            .to_vec()
    } else {
        body.to_vec()
    };
    let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|e| e.to_string())?;
    let next = crl.next_update().map(|t| t.timestamp()).unwrap_or(0);
    let next = if next > 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(next as u64)
    } else {
        SystemTime::now() + Duration::from_secs(3600)
    };
    Ok((der, next))
}
