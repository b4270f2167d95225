//! `portcullis sign`: sign a request with an HTTP Message Signature
//! (RFC 9421) from the command line, for client authors and for debugging a
//! route's signature policy.
//!
//! Owns only argument handling and printing; the signature base, digests and
//! keys are `portcullis_proxy::auth::signature`'s. Never prints key material.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use clap::Args;
use portcullis_proxy::auth::signature::{
    content_digest, random_nonce, sign, RequestTarget, SigAlgorithm, SignOptions, SigningKey,
};

/// Sign a request: prints the Content-Digest, Signature-Input and Signature
/// headers to add (and, with --curl, a ready curl command).
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Private key: a PEM file (PKCS#8, SEC1 or PKCS#1), or for hmac-sha256 a
    /// file holding the shared secret in base64.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// hmac-sha256, ecdsa-p256-sha256, ed25519 or rsa-pss-sha512 (default:
    /// from the key; required to read a key file as an HMAC secret).
    #[arg(long)]
    pub alg: Option<String>,
    /// The keyid the gateway knows this key by.
    #[arg(long, value_name = "ID")]
    pub keyid: String,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Absolute URL, as the client sends it (https://host/path?query).
    #[arg(long)]
    pub url: String,
    /// A request header to send (and possibly cover): 'Name: value'. Repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The request body; adds Content-Digest (sha-256).
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// Covered components, space separated, e.g. '"@method" "@target-uri"
    /// "content-digest"' (default: @method @target-uri @authority, plus
    /// content-digest with --body).
    #[arg(long)]
    pub components: Option<String>,
    /// Add a random nonce (routes with replay protection may require one).
    #[arg(long)]
    pub nonce: bool,
    /// Add an expires parameter this many seconds after created.
    #[arg(long, value_name = "SECONDS")]
    pub expires_in: Option<u64>,
    /// Signature label.
    #[arg(long, default_value = "sig1")]
    pub label: String,
    /// Leave the alg parameter out of Signature-Input.
    #[arg(long)]
    pub no_alg: bool,
    /// Also print a curl command that sends the signed request.
    #[arg(long)]
    pub curl: bool,
}

pub fn run_sign(args: SignArgs) -> anyhow::Result<()> {
    let key_text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading key {}", args.key.display()))?;
    let alg = args
        .alg
        .as_deref()
        .map(|a| a.parse::<SigAlgorithm>())
        .transpose()
        .map_err(|_| {
            anyhow::anyhow!("--alg: use hmac-sha256, ecdsa-p256-sha256, ed25519 or rsa-pss-sha512")
        })?;
    let key = if alg == Some(SigAlgorithm::HmacSha256) || !key_text.contains("-----BEGIN") {
        SigningKey::hmac_from_base64(&key_text)
            .with_context(|| format!("{}: expected a base64 HMAC secret", args.key.display()))?
    } else {
        SigningKey::from_pem(&key_text).with_context(|| format!("{}", args.key.display()))?
    };
    if let Some(alg) = alg {
        if alg != key.algorithm() {
            bail!("--alg {alg} but the key is a {} key", key.algorithm());
        }
    }

    let target = RequestTarget::parse(&args.url).context("--url")?;
    let method: http::Method = args.method.parse().context("--method")?;
    let mut headers = http::HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?}: expected 'Name: value'"))?;
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("--header {h:?}: bad name"))?,
            http::HeaderValue::from_str(value.trim())
                .with_context(|| format!("--header {h:?}: bad value"))?,
        );
    }
    let body = match &args.body {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading body {}", p.display()))?),
        None => None,
    };
    let digest = body.as_deref().map(content_digest);
    if let Some(d) = &digest {
        headers.insert("content-digest", http::HeaderValue::from_str(d)?);
    }

    let components: Vec<String> = match &args.components {
        Some(list) => split_components(list)?,
        None => {
            let mut c = vec![
                "@method".to_string(),
                "@target-uri".into(),
                "@authority".into(),
            ];
            if body.is_some() {
                c.push("content-digest".into());
            }
            c
        }
    };
    let components: Vec<&str> = components.iter().map(String::as_str).collect();

    let nonce = args.nonce.then(random_nonce);
    let created = SystemTime::now();
    let mut opts = SignOptions::new(&args.keyid, created);
    opts.nonce = nonce.as_deref();
    opts.label = &args.label;
    opts.include_alg = !args.no_alg;
    opts.expires = args.expires_in.map(|s| created + Duration::from_secs(s));
    let (input, signature) =
        sign(&target.parts(&method, &headers), &components, &key, &opts).context("signing")?;

    if let Some(d) = &digest {
        println!("Content-Digest: {d}");
    }
    println!("Signature-Input: {input}");
    println!("Signature: {signature}");

    if args.curl {
        let mut cmd = format!("curl -X {} {}", method, shell_quote(&args.url));
        for h in &args.headers {
            cmd.push_str(&format!(" \\\n  -H {}", shell_quote(h)));
        }
        if let Some(d) = &digest {
            cmd.push_str(&format!(
                " \\\n  -H {}",
                shell_quote(&format!("Content-Digest: {d}"))
            ));
        }
        cmd.push_str(&format!(
            " \\\n  -H {}",
            shell_quote(&format!("Signature-Input: {input}"))
        ));
        cmd.push_str(&format!(
            " \\\n  -H {}",
            shell_quote(&format!("Signature: {signature}"))
        ));
        if let Some(p) = &args.body {
            cmd.push_str(&format!(
                " \\\n  --data-binary {}",
                shell_quote(&format!("@{}", p.display()))
            ));
        }
        println!("\n{cmd}");
    }
    Ok(())
}

/// `"@method" "@query-param";name="a b" date` → one string per component
/// (spaces inside quotes kept).
fn split_components(list: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for ch in list.chars() {
        if escaped {
            cur.push(ch);
            escaped = false;
            continue;
        }
        match ch {
            '\\' if quoted => {
                cur.push(ch);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        bail!("--components: unbalanced quote in {list:?}");
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_split_on_unquoted_spaces() {
        assert_eq!(
            split_components(r#""@method" "@query-param";name="a b"  date"#).unwrap(),
            vec![r#""@method""#, r#""@query-param";name="a b""#, "date"]
        );
        assert!(split_components(r#""@method"#).is_err());
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
