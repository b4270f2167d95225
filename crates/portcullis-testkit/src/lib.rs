//! Dev-only helpers for Portcullis' tests: a test PKI made by code, free
//! ports, a gateway process on those ports, mock upstreams, and thin wrappers
//! around real clients (curl, openssl). Nothing here is used by the shipped
//! binary.
#![forbid(unsafe_code)]

pub mod curl;
pub mod env;
pub mod mock_upstream;
pub mod mtls;
pub mod openssl;
pub mod pki;
pub mod process;
pub mod raw_client;

pub use curl::{Curl, CurlError, HttpResponse};
pub use env::TestEnv;
pub use mock_upstream::{MockUpstream, SeenRequest};
pub use openssl::{s_client, Handshake};
pub use pki::{LeafSpec, TestCa, TestCert};
pub use process::{free_port, python, run, shared_dir, wait_for_port, GatewayProcess, RedisServer};
pub use raw_client::{h2_request, raw_tls_exchange, statuses, H2Response};
