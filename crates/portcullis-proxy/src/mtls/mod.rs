//! Mutual TLS: client identity, verification, per-route policy, identity
//! headers and revocation of live connections.
//!
//! `verifier` decides at the handshake, `identity` parses the chain once per
//! connection, `policy` applies each route's requirements, `headers` encodes
//! the identity for backends, `revocation` tracks live authenticated
//! connections and closes those whose certificate a new CRL revokes.

pub mod fetch;
pub mod headers;
pub mod identity;
pub mod policy;
pub mod revocation;
pub mod verifier;

pub use identity::ClientIdentity;
pub use revocation::{ConnRegistry, RevokedSet};
pub use verifier::{failure_reason, ClientVerifier, CrlExpiredPolicy, CrlScope, VerifierSettings};
pub mod ocsp;

/// Resolves once a connection's client certificate is revoked (its `kill`
/// receiver turns true); never, for a connection without one or whose
/// registry entry is gone. Every live-connection kind selects on it.
pub async fn revoked(kill: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match kill.as_mut() {
        Some(k) => {
            while !*k.borrow() {
                if k.changed().await.is_err() {
                    std::future::pending::<()>().await
                }
            }
        }
        None => std::future::pending::<()>().await,
    }
}
