//! Config diagnostics: every problem names file, line, field and the fix.
//!
//! Owns the error and warning types of config loading and their rendering.
//! It never decides what is wrong; `validate.rs` does.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a config file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based line and column; 0 when the problem has no place in the file.
    pub line: usize,
    pub column: usize,
    /// Dotted path of the field, e.g. `route[2].upstream` or `listener "public".certificate[0].key`.
    pub field: String,
    pub message: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {sev}: ")?;
        if !self.field.is_empty() {
            write!(f, "`{}`: ", self.field)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

/// All problems found in one load; `errors` non-empty means the load failed.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        let (e, w) = (self.errors().count(), self.warnings().count());
        write!(f, "{e} error(s), {w} warning(s)")
    }
}

impl std::error::Error for Diagnostics {}

/// Maps byte offsets of one source text to lines and columns, and collects diagnostics.
pub struct Reporter<'a> {
    file: &'a Path,
    src: &'a str,
    pub diags: Diagnostics,
}

impl<'a> Reporter<'a> {
    pub fn new(file: &'a Path, src: &'a str) -> Self {
        Reporter {
            file,
            src,
            diags: Diagnostics::default(),
        }
    }

    pub fn file(&self) -> &Path {
        self.file
    }

    /// 1-based (line, column) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let before = &self.src.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = self.src[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn push(
        &mut self,
        severity: Severity,
        span: Option<Range<usize>>,
        field: &str,
        msg: String,
        fix: Option<String>,
    ) {
        let (line, column) = span.map_or((0, 0), |s| self.position(s.start));
        self.diags.items.push(Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message: msg,
            fix,
        });
    }

    pub fn error(
        &mut self,
        span: Option<Range<usize>>,
        field: &str,
        msg: impl Into<String>,
        fix: impl Into<Option<String>>,
    ) {
        self.push(Severity::Error, span, field, msg.into(), fix.into());
    }

    pub fn warn(
        &mut self,
        span: Option<Range<usize>>,
        field: &str,
        msg: impl Into<String>,
        fix: impl Into<Option<String>>,
    ) {
        self.push(Severity::Warning, span, field, msg.into(), fix.into());
    }
}

/// Turns a toml/serde error into a diagnostic with a fix where we can guess one.
pub fn from_toml_error(file: &Path, src: &str, err: &toml::de::Error) -> Diagnostic {
    let mut r = Reporter::new(file, src);
    let msg = err.message().trim().to_string();
    let fix = if msg.contains("unknown field") {
        Some(
            "remove the field or correct its spelling (the message lists the accepted fields)"
                .to_string(),
        )
    } else if msg.contains("missing field") {
        Some("add the field to this table".to_string())
    } else if msg.contains("invalid type") {
        Some(
            "check the value's type: strings need quotes, durations are strings like \"10s\""
                .to_string(),
        )
    } else {
        Some("see the config reference in README.md".to_string())
    };
    let field: String = err
        .span()
        .map(|s| {
            let start = s.start.min(src.len());
            let end = s.end.min(src.len());
            src.get(start..end)
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .chars()
                .take(60)
                .collect::<String>()
        })
        .unwrap_or_default();
    r.error(err.span(), &field, msg, fix);
    r.diags.items.pop().expect("just pushed")
}
