//! Portcullis' request path: listeners, TLS, the HTTP stack, routing,
//! upstreams and logs. The binary crate drives it; nothing here reads the
//! command line or installs signal handlers.
#![forbid(unsafe_code)]

pub mod accesslog;
mod accesslog_glue;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod config;
pub mod connlimit;
pub mod echo;
pub mod expiry;
pub mod forward;
pub mod graphql;
pub mod metrics;
pub mod mtls;
pub mod observe;
pub mod pki_service;
pub mod redirect;
pub mod rescue;
pub mod route;
pub mod runtime;
pub mod server;
pub mod sniff;
pub mod stack;
pub mod tls;
pub mod tunnel;
pub mod upstream;
pub mod validate;
pub mod websocket;
pub mod workers;

pub use config::{load as load_config, Config, Diagnostics};
pub use server::{BoundAddrs, Gateway, Reloader, StartError};
pub mod ratelimit;
