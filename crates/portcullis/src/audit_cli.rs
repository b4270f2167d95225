//! `portcullis audit verify FILE`: walks an audit log's hash chain.
//!
//! Owns the command's output and exit codes: 0 and "OK: N records, chain
//! intact" when every line chains to the one before; 1 and the first line
//! where the chain breaks (edited, deleted, inserted, reordered, truncated);
//! 2 when the file cannot be read. The chain itself is
//! `portcullis_proxy::audit`.

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check that every line of an audit log chains to the one before; say where it breaks.
    Verify {
        /// The audit log file ([audit] path).
        file: PathBuf,
    },
}

pub fn run(cmd: AuditCommand) -> ExitCode {
    match cmd {
        AuditCommand::Verify { file } => verify(&file),
    }
}

fn verify(path: &std::path::Path) -> ExitCode {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match portcullis_proxy::audit::verify(BufReader::new(f)) {
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            ExitCode::from(2)
        }
        // A closed stdout (`| head -1`) is not an error of the chain: writes are not unwrapped.
        Ok(Ok(v)) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "OK: {} records, chain intact", v.records);
            let _ = writeln!(out, "last: seq {}, sha256 {}", v.head.seq, v.head.hash);
            ExitCode::SUCCESS
        }
        Ok(Err(b)) => {
            let _ = writeln!(std::io::stdout(), "BROKEN: {}: {b}", path.display());
            ExitCode::FAILURE
        }
    }
}
