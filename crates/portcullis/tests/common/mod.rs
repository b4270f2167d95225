//! Shared by the integration tests: where the binary is, and a fresh world.
#![allow(dead_code)]

pub use portcullis_testkit::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A fresh temp dir + PKI + free HTTPS port for this test.
pub fn env() -> TestEnv {
    TestEnv::new(BIN)
}

/// A config with one echo upstream on a free port and one catch-all route to it,
/// plus `rest` (more tables).
pub fn echo_config(env: &TestEnv, rest: &str) -> String {
    let echo = free_port();
    env.config_with(&format!(
        "[[echo]]\naddress = \"127.0.0.1:{echo}\"\n\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n{rest}"
    ))
}
