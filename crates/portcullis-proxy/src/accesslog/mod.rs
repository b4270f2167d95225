//! PLACEHOLDER access log (replaced by the real module).
use http::HeaderMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
    Off,
}

#[derive(Debug, Clone)]
pub enum LogFormat {
    Json,
    Text(String),
}

#[derive(Debug)]
pub struct FormatError(String);
impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl LogFormat {
    pub fn parse(s: &str) -> Result<LogFormat, FormatError> {
        Ok(LogFormat::Text(s.to_string()))
    }
    pub fn combined() -> LogFormat {
        LogFormat::Text("combined".into())
    }
    pub fn api_log() -> LogFormat {
        LogFormat::Text("api_log".into())
    }
    pub fn pick_request_headers(&self, h: &HeaderMap) -> HeaderMap {
        h.clone()
    }
}

#[derive(Clone, Debug)]
pub struct AccessLog {
    target: LogTarget,
}
impl AccessLog {
    pub fn open(target: LogTarget) -> std::io::Result<AccessLog> {
        Ok(AccessLog { target })
    }
    pub fn enabled(&self) -> bool {
        self.target != LogTarget::Off
    }
    pub fn log(&self, line: Vec<u8>) {
        use std::io::Write;
        let _ = std::io::stdout().write_all(&line);
    }
    pub fn flush_blocking(&self) {}
    pub fn reopen(&self) {}
}
