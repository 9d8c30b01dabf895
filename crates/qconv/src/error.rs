//! The library's one error type.

use std::fmt;

/// Everything that can go wrong in qconv. Every variant is a user error (bad input, or a layer an
/// engine refuses), never an internal failure: the CLI maps all of them to exit code 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is invalid: `field` names it (`input.scale`, `conv.stride`, ...).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },

    /// The engine refuses this layer, as the real engine does (or as its model must).
    #[error("engine {engine} refuses this layer: {reason}")]
    Refused { engine: String, reason: String },

    /// qconv does not model what the engine computes for this layer (an ONNX node that ONNX
    /// Runtime runs as a float convolution).
    #[error("qconv does not model what {engine} computes for this layer: {reason}")]
    NotModelled { engine: String, reason: String },

    /// A file could not be parsed; `location` is a line, a field path, or empty.
    #[error("{path}{}: {message}", Location(location))]
    Parse {
        path: String,
        location: String,
        message: String,
    },

    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
}

struct Location<'a>(&'a str);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, ": {}", self.0)
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An invalid parameter.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An engine's refusal.
    pub fn refused(engine: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Refused {
            engine: engine.into(),
            reason: reason.into(),
        }
    }

    /// A parse error in `path` at `location` (a line or a field path; may be empty).
    pub fn parse(
        path: impl Into<String>,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Parse {
            path: path.into(),
            location: location.into(),
            message: message.into(),
        }
    }

    /// Attributes an error to the file it came from. `Invalid` errors become `Parse` errors that
    /// name the file and the field; errors that already name a file are kept as they are.
    pub fn in_file(self, path: &str) -> Self {
        match self {
            Error::Invalid { field, message } => Error::Parse {
                path: path.to_string(),
                location: format!("field `{field}`"),
                message,
            },
            other => other,
        }
    }

    /// Prefixes the field path of an `Invalid` error (`scale` inside `input` -> `input.scale`).
    pub fn within(self, parent: &str) -> Self {
        match self {
            Error::Invalid { field, message } => Error::Invalid {
                field: if field.is_empty() {
                    parent.to_string()
                } else {
                    format!("{parent}.{field}")
                },
                message,
            },
            other => other,
        }
    }
}
