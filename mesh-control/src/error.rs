//! Errors of the control plane: bad `mesh.yaml` input ([`ConfigError`]) and serving
//! failures ([`ServeError`]).

use std::path::PathBuf;

/// Why a mesh configuration (or a raw resource file) was rejected.
///
/// Messages name the offending field, e.g.
/// `services[1].routes[0].split[1].subset: no subset "v3" in service greeter.default`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a well-formed mesh configuration (YAML syntax, unknown field, wrong
    /// type). The message carries the field path and line from the parser.
    #[error("cannot parse mesh config: {0}")]
    Parse(String),
    /// The configuration parsed but a field holds an invalid value.
    #[error("{field}: {message}")]
    Invalid {
        /// Path of the offending field, e.g. `services[0].endpoints[2].address`.
        field: String,
        /// What is wrong with it and, where it helps, what would be accepted.
        message: String,
    },
    /// A raw resource file (`serve --raw`) is malformed.
    #[error("raw resources: {0}")]
    Raw(String),
}

impl ConfigError {
    /// Builds an [`ConfigError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The offending field path, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Why the ADS server could not be started or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding or inspecting the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was requested.
        addr: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("ADS server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The configuration to serve is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server task panicked or was cancelled.
    #[error("ADS server task ended abnormally: {0}")]
    Task(String),
}
