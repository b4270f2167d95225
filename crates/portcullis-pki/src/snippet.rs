//! Ready-to-run client examples (curl, Python requests, Node.js https) with the real
//! paths of an issued bundle, printed by `cert issue`.
//! Must not: read or write files.

use std::path::Path;

/// Where a client's files are, and what it talks to.
#[derive(Clone, Debug)]
pub struct SnippetPaths<'a> {
    /// Leaf + intermediate.
    pub cert: &'a Path,
    pub key: &'a Path,
    /// The CA that signed the gateway's server certificate.
    pub ca: &'a Path,
    /// e.g. `https://api.example.com/`.
    pub url: &'a str,
}

fn quote_sh(p: &str) -> String {
    if p.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:+=@,".contains(c))
    {
        p.to_string()
    } else {
        format!("'{}'", p.replace('\'', r"'\''"))
    }
}

fn quote_str(p: &str) -> String {
    serde_json::to_string(p).unwrap_or_else(|_| format!("{p:?}"))
}

/// curl, Python requests and Node.js https examples, one block each.
pub fn client_snippets(p: &SnippetPaths<'_>) -> String {
    let cert = p.cert.display().to_string();
    let key = p.key.display().to_string();
    let ca = p.ca.display().to_string();
    let url = p.url;
    format!(
        "# curl\n\
         curl --cert {cert_sh} --key {key_sh} --cacert {ca_sh} {url_sh}\n\
         \n\
         # Python (requests)\n\
         import requests\n\
         r = requests.get({url_s}, cert=({cert_s}, {key_s}), verify={ca_s})\n\
         print(r.status_code, r.text)\n\
         \n\
         // Node.js (https)\n\
         const fs = require('fs');\n\
         const https = require('https');\n\
         const req = https.request({url_s}, {{\n\
         \x20 cert: fs.readFileSync({cert_s}),\n\
         \x20 key: fs.readFileSync({key_s}),\n\
         \x20 ca: fs.readFileSync({ca_s}),\n\
         }}, (res) => {{ console.log(res.statusCode); res.pipe(process.stdout); }});\n\
         req.end();\n",
        cert_sh = quote_sh(&cert),
        key_sh = quote_sh(&key),
        ca_sh = quote_sh(&ca),
        url_sh = quote_sh(url),
        url_s = quote_str(url),
        cert_s = quote_str(&cert),
        key_s = quote_str(&key),
        ca_s = quote_str(&ca),
    )
}
