//! Revocation that reaches live connections.
//!
//! Owns `RevokedSet` (issuer name + serial of every certificate the current
//! CRLs revoke) and `ConnRegistry` (every open connection that presented a
//! client certificate, with the identifiers of its chain and a kill switch).
//! When a new set is published, every registered connection whose leaf or
//! intermediate is in it is told to close at once: HTTP/1.1 keep-alive,
//! HTTP/2 and upgraded tunnels alike.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rustls_pki_types::CertificateRevocationListDer;
use tokio::sync::watch;

use super::ClientIdentity;

/// (issuer name DER, serial bytes without leading zeros).
pub type CertId = (Vec<u8>, Vec<u8>);

fn trim_serial(s: &[u8]) -> Vec<u8> {
    let first = s
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(s.len().saturating_sub(1));
    s[first..].to_vec()
}

/// Every certificate the loaded CRLs revoke.
#[derive(Debug, Default, Clone)]
pub struct RevokedSet {
    ids: HashSet<CertId>,
    /// Check only the leaf (a listener's `crl_scope = "leaf"`).
    pub leaf_only: bool,
}

impl RevokedSet {
    /// Builds the set from DER CRLs (unparseable ones are skipped: config
    /// validation reports them).
    pub fn from_crls(crls: &[CertificateRevocationListDer<'_>]) -> RevokedSet {
        use x509_parser::prelude::*;
        let mut ids = HashSet::new();
        for c in crls {
            if let Ok((_, crl)) = CertificateRevocationList::from_der(c.as_ref()) {
                let issuer = crl.issuer().as_raw().to_vec();
                for r in crl.iter_revoked_certificates() {
                    ids.insert((issuer.clone(), trim_serial(r.raw_serial())));
                }
            }
        }
        RevokedSet {
            ids,
            leaf_only: false,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Is the leaf or any presented intermediate of this identity revoked?
    pub fn revokes(&self, id: &ClientIdentity) -> bool {
        if self.ids.is_empty() {
            return false;
        }
        self.ids
            .contains(&(id.issuer_der.clone(), trim_serial(&id.serial_bytes)))
            || !self.leaf_only
                && id.chain_ids.iter().any(|(serial, issuer)| {
                    self.ids.contains(&(issuer.clone(), trim_serial(serial)))
                })
    }
}

struct Entry {
    identity: std::sync::Arc<ClientIdentity>,
    listener: usize,
    kill: watch::Sender<bool>,
}

/// Open connections that authenticated with a client certificate.
#[derive(Default)]
pub struct ConnRegistry {
    conns: Mutex<HashMap<u64, Entry>>,
}

/// Removes its connection from the registry when dropped.
pub struct Registration<'a> {
    registry: &'a ConnRegistry,
    id: u64,
    kill: watch::Sender<bool>,
}

impl Registration<'_> {
    /// Resolves when no receiver of the connection's kill switch is left: the
    /// HTTP connection and every upgraded tunnel (WebSocket) it handed its
    /// socket to have ended. Until then the connection must stay registered,
    /// or a revocation could not reach the tunnels.
    pub async fn until_unused(&self) {
        self.kill.closed().await
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.registry.conns.lock() {
            m.remove(&self.id);
        }
    }
}

impl ConnRegistry {
    /// Registers a connection; the returned receiver turns `true` when it must close.
    pub fn register(
        &self,
        id: u64,
        listener: usize,
        identity: std::sync::Arc<ClientIdentity>,
    ) -> (Registration<'_>, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        let keep = tx.clone();
        if let Ok(mut m) = self.conns.lock() {
            m.insert(
                id,
                Entry {
                    identity,
                    listener,
                    kill: tx,
                },
            );
        }
        (
            Registration {
                registry: self,
                id,
                kill: keep,
            },
            rx,
        )
    }

    /// Tells every connection whose certificate its listener's set (`sets[listener]`)
    /// revokes to close; returns how many.
    pub fn close_revoked(&self, sets: &[&RevokedSet]) -> usize {
        if sets.iter().all(|s| s.is_empty()) {
            return 0;
        }
        let Ok(m) = self.conns.lock() else { return 0 };
        let mut n = 0;
        for (id, e) in m.iter() {
            if sets
                .get(e.listener)
                .is_some_and(|set| set.revokes(&e.identity))
            {
                tracing::warn!(conn = id, subject = %e.identity.subject_dn, serial = %e.identity.serial_hex, "client certificate revoked: closing its connection");
                let _ = e.kill.send(true);
                n += 1;
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.conns.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
