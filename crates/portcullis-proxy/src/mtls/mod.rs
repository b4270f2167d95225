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
