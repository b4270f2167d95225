//! `portcullis`: the command line. Parses arguments, sets up logging,
//! installs signal handlers and hands over to the library crates. The only
//! place that uses `anyhow` and decides exit codes (0 ok, 1 failure, 2 bad
//! config or usage).
#![forbid(unsafe_code)]

mod agent;
mod apikey_cli;
mod audit_cli;
mod pki_cli;
mod quickstart;
mod serve;
mod sign_cli;
mod status_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: fewer and cheaper allocations than the system allocator on the request path (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An API security gateway in one binary: TLS, mutual TLS, its own PKI, authentication, rate limits."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// First run: make a development CA, certificates and config in ./portcullis-data, then serve.
    Quickstart {
        /// Where to keep the generated files.
        #[arg(long, default_value = "portcullis-data")]
        dir: PathBuf,
    },
    /// Serve with a config file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and everything it names; exit 2 on errors.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The internal CA: create it, show it.
    #[command(subcommand)]
    Ca(pki_cli::CaCommand),
    /// Client and server certificates: issue, list, show, revoke.
    #[command(subcommand)]
    Cert(pki_cli::CertCommand),
    /// One-time enrollment tokens.
    #[command(subcommand)]
    Token(pki_cli::TokenCommand),
    /// Sign a fresh CRL.
    Crl(pki_cli::CrlArgs),
    /// Sign an HTTP request (RFC 9421) and print the headers to send.
    Sign(sign_cli::SignArgs),
    /// API keys for consumers: create (shown once), hash.
    #[command(subcommand)]
    Apikey(apikey_cli::ApikeyCommand),
    /// Keep a client certificate valid: enroll with a token, renew over mutual TLS.
    Agent(agent::AgentArgs),
    /// The tamper-evident audit log: verify its hash chain.
    #[command(subcommand)]
    Audit(audit_cli::AuditCommand),
    /// One screen about a running gateway, from its admin API.
    Status(status_cli::StatusArgs),
    /// Run only the built-in echo upstream (answers with the request it saw, as JSON).
    Echo {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Quickstart { dir } => quickstart::run(&dir),
        Command::Serve { config } => serve::serve(&config),
        Command::Check { config } => serve::check(&config),
        Command::Echo { listen } => serve::echo_only(listen),
        Command::Ca(c) => report(pki_cli::run_ca(c)),
        Command::Cert(c) => report(pki_cli::run_cert(c)),
        Command::Token(c) => report(pki_cli::run_token(c)),
        Command::Crl(a) => report(pki_cli::run_crl(a)),
        Command::Apikey(c) => report(apikey_cli::run(c)),
        Command::Sign(a) => report(sign_cli::run_sign(a)),
        Command::Agent(a) => agent::run(a),
        Command::Audit(c) => audit_cli::run(c),
        Command::Status(a) => status_cli::run(a),
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
