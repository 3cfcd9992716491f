//! The one error type of the library: a small, stable [`ErrorKind`] that
//! programs can branch on, plus the context a human needs (file, offset) and
//! the underlying I/O error when there is one.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, in a form stable enough for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file is not a valid image of the expected format (bad magic, bad header).
    InvalidFormat,
    /// The image uses something qimg does not support (encryption, unknown feature bits).
    Unsupported,
    /// The metadata contradicts itself (tables past the end, misaligned offsets).
    Corrupt,
    /// The operating system reported an I/O error.
    Io,
    /// A request lies outside the image.
    OutOfBounds,
    /// The backing chain cannot be opened (missing file, loop, too deep).
    BackingChain,
    /// The user asked for something invalid (bad option, bad size).
    InvalidArgument,
    /// Another process (a VM) holds a conflicting lock on the image.
    InUse,
    /// A wait (on a network server) was ended by a signal or the caller's
    /// cancel flag; what was written before is consistent.
    Interrupted,
}

/// A library error: kind, optional file and offset, a message and an optional source.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    path: Option<PathBuf>,
    offset: Option<u64>,
    message: String,
    #[source]
    source: Option<io::Error>,
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message and no context yet.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            path: None,
            offset: None,
            message: message.into(),
            source: None,
        }
    }

    /// Shorthand for an [`ErrorKind::InvalidFormat`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidFormat, message)
    }

    /// Shorthand for an [`ErrorKind::Corrupt`] error.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// Shorthand for an [`ErrorKind::Unsupported`] error.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Shorthand for an [`ErrorKind::InvalidArgument`] error.
    pub fn argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// An I/O error with the operation that failed (e.g. "read at 0x10000").
    pub fn io(message: impl Into<String>, source: io::Error) -> Self {
        Error {
            source: Some(source),
            ..Self::new(ErrorKind::Io, message)
        }
    }

    /// Attaches the file this error concerns, unless one is already set.
    pub fn with_path(mut self, path: impl AsRef<Path>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.as_ref().to_path_buf());
        }
        self
    }

    /// Attaches the byte offset this error concerns, unless one is already set.
    pub fn at_offset(mut self, offset: u64) -> Self {
        if self.offset.is_none() {
            self.offset = Some(offset);
        }
        self
    }

    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file this error concerns, if known.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The byte offset this error concerns, if known.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// Whether this is a failed write to a closed pipe (e.g. `qimg map | head`).
    pub fn is_broken_pipe(&self) -> bool {
        self.source
            .as_ref()
            .is_some_and(|s| s.kind() == io::ErrorKind::BrokenPipe)
    }

    /// The message without path or source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message and its cause, without the path: for nesting one error
    /// inside another's message.
    pub fn detail(&self) -> String {
        match &self.source {
            Some(src) => format!("{}: {}", self.message, describe_io(src)),
            None => self.message.clone(),
        }
    }

    /// The innermost cause: the operating system's words for an I/O error
    /// ("No such file or directory"), otherwise the message.
    pub fn reason(&self) -> String {
        match &self.source {
            Some(src) => describe_io(src),
            None => self.message.clone(),
        }
    }
}

/// An I/O error as people read it: "No such file or directory", without
/// Rust's "(os error 2)" suffix.
fn describe_io(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        f.write_str(&self.detail())
    }
}

/// Adds a path to the error of a `Result` (handy after pure parsing).
pub trait ResultExt<T> {
    /// Attaches `path` to the error, if any.
    fn path_context(self, path: &Path) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn path_context(self, path: &Path) -> Result<T> {
        self.map_err(|e| e.with_path(path))
    }
}
