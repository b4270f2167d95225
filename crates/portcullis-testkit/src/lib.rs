//! Dev-only helpers for Portcullis' tests: a test PKI made by code, free
//! ports, a gateway process on those ports, and thin wrappers around real
//! clients (curl, openssl). Nothing here is used by the shipped binary.
#![forbid(unsafe_code)]

pub mod pki;
pub mod process;

pub use pki::{TestCa, TestCert};
pub use process::{free_port, run, wait_for_port, GatewayProcess};
