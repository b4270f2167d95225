//! A thin wrapper around the real `curl`: builds the command line, runs it,
//! and returns status, headers and body of the final response.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

/// What curl received (the last response when it followed or saw 1xx).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// "1.1" or "2".
    pub version: String,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let n = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// For a response of the built-in echo upstream: the value of a request
    /// header it saw (name case-insensitive), all values joined by ", ".
    pub fn echoed_header(&self, name: &str) -> Option<String> {
        let j = self.json();
        let n = name.to_ascii_lowercase();
        let vals: Vec<String> = j["headers"]
            .as_array()?
            .iter()
            .filter(|p| p[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(&n)))
            .filter_map(|p| p[1].as_str().map(str::to_owned))
            .collect();
        (!vals.is_empty()).then(|| vals.join(", "))
    }
}

/// Why curl did not produce a response.
#[derive(Debug, Clone)]
pub struct CurlError {
    /// curl's exit code (35: TLS handshake failed, 52: empty reply, 56: recv failure, 7: refused).
    pub code: i32,
    pub stderr: String,
}

/// A curl invocation being built.
#[derive(Debug, Clone)]
pub struct Curl {
    url: String,
    args: Vec<OsString>,
}

impl Curl {
    /// `url` as given; add `.resolve()` to pin a name to 127.0.0.1.
    pub fn new(url: impl Into<String>) -> Curl {
        Curl {
            url: url.into(),
            args: Vec::new(),
        }
    }

    /// `https://localhost:{port}{path}` with localhost resolved to 127.0.0.1 and the CA trusted.
    pub fn https(port: u16, path: &str, ca: &Path) -> Curl {
        Curl::https_host("localhost", port, path, ca)
    }

    /// `https://{host}:{port}{path}`, `host` resolved to 127.0.0.1, the CA trusted.
    pub fn https_host(host: &str, port: u16, path: &str, ca: &Path) -> Curl {
        Curl::new(format!("https://{host}:{port}{path}"))
            .resolve(host, port)
            .cacert(ca)
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Curl {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, a: I) -> Curl
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn resolve(self, host: &str, port: u16) -> Curl {
        self.arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
    }

    pub fn cacert(self, ca: &Path) -> Curl {
        self.arg("--cacert").arg(ca)
    }

    pub fn client_cert(self, cert: &Path, key: &Path) -> Curl {
        self.arg("--cert").arg(cert).arg("--key").arg(key)
    }

    pub fn header(self, h: &str) -> Curl {
        self.arg("-H").arg(h)
    }

    pub fn method(self, m: &str) -> Curl {
        self.arg("-X").arg(m)
    }

    pub fn http1(self) -> Curl {
        self.arg("--http1.1")
    }

    pub fn http2(self) -> Curl {
        self.arg("--http2")
    }

    /// Sends `data` as the body (from a file, so any size works).
    pub fn body(self, data: &[u8], dir: &Path) -> Curl {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = dir.join(format!("curl-body-{n}-{}", data.len()));
        std::fs::write(&p, data).expect("write body file");
        let mut at = OsString::from("@");
        at.push(&p);
        self.arg("--data-binary").arg(at)
    }

    /// Runs curl; a response of any status is `Ok`.
    pub fn try_run(&self) -> Result<HttpResponse, CurlError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let head = dir.path().join("head");
        let body = dir.path().join("body");
        let out = Command::new("curl")
            .arg("-sS")
            .arg("--max-time")
            .arg("60")
            .arg("-D")
            .arg(&head)
            .arg("-o")
            .arg(&body)
            .args(&self.args)
            .arg(&self.url)
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        let code = out.status.code().unwrap_or(-1);
        let head_text = std::fs::read_to_string(&head).unwrap_or_default();
        let body = std::fs::read(&body).unwrap_or_default();
        if code != 0 && head_text.is_empty() {
            return Err(CurlError {
                code,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        parse_head(&head_text, body).ok_or(CurlError {
            code,
            stderr: format!(
                "unparsable response head {head_text:?}; {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }

    /// Runs curl and panics if no response came back.
    pub fn run(&self) -> HttpResponse {
        self.try_run()
            .unwrap_or_else(|e| panic!("curl {} {} failed: {e:?}", self.url, self.args_short()))
    }

    /// The arguments for messages, each cut to 120 characters.
    pub fn args_short(&self) -> String {
        self.args
            .iter()
            .map(|a| {
                let s = a.to_string_lossy();
                if s.len() > 120 {
                    format!("{}…({} bytes)", &s[..120], s.len())
                } else {
                    s.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn parse_head(text: &str, body: Vec<u8>) -> Option<HttpResponse> {
    // curl writes every response head (1xx, redirects) one after the other; keep the last.
    let blocks: Vec<&str> = text
        .split("\r\n\r\n")
        .map(str::trim)
        .filter(|b| b.starts_with("HTTP/"))
        .collect();
    let last = blocks.last()?;
    let mut lines = last.lines();
    let status_line = lines.next()?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next()?.trim_start_matches("HTTP/").to_string();
    let status = parts.next()?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(HttpResponse {
        status,
        version,
        headers,
        body,
    })
}
