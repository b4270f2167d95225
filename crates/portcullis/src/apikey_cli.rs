//! `portcullis apikey create NAME`: a new API key, printed once, and the
//! line to paste into the consumer's config (only the hash is ever stored).

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum ApikeyCommand {
    /// Make a new key for a consumer; the key is shown once.
    Create(CreateArgs),
    /// Print the stored form (hash) of an existing key read from standard input.
    Hash,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The consumer's name.
    pub name: String,
    /// Expiry as an RFC 3339 date ("2027-01-01T00:00:00Z").
    #[arg(long)]
    pub expires: Option<String>,
}

pub fn run(cmd: ApikeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApikeyCommand::Create(a) => {
            if a.name.trim().is_empty() || a.name.contains('"') {
                anyhow::bail!("the consumer name must be non-empty and without quotes");
            }
            if let Some(e) = &a.expires {
                portcullis_proxy::config::parse_rfc3339(e).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--expires {e:?} is not an RFC 3339 date (like 2027-01-01T00:00:00Z)"
                    )
                })?;
            }
            let (key, stored) = portcullis_proxy::auth::apikey::new_key();
            println!("API key for {} (shown once; give it to the client, store it nowhere else):\n\n  {key}\n", a.name);
            println!("Add to the config (only the hash is kept):\n");
            println!("[[consumer]]\nname = \"{}\"", a.name);
            match &a.expires {
                Some(e) => println!("api_keys = [{{ hash = \"{stored}\", expires = \"{e}\" }}]"),
                None => println!("api_keys = [{{ hash = \"{stored}\" }}]"),
            }
            println!("\nThe client sends it as:  curl -H 'X-API-Key: {key}' https://…");
            Ok(())
        }
        ApikeyCommand::Hash => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let key = line.trim();
            if key.is_empty() {
                anyhow::bail!("give the key on standard input");
            }
            println!(
                "sha256:{}",
                portcullis_proxy::mtls::identity::hex_lower(
                    &portcullis_proxy::auth::apikey::hash_key(key)
                )
            );
            Ok(())
        }
    }
}
