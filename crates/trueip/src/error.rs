//! Configuration errors: what was wrong, where, and how to fix it.

use std::fmt;

/// A policy or trust specification that cannot be used.
///
/// Its message names the offending input and where it came from
/// (`invalid CIDR "10.0.0.0/33" in client_ip.trusted[2]`), with a hint when one helps.
/// The input is quoted as written, not escaped: whoever shows the message escapes it
/// once, for where it goes ([`shown`](crate::shown): log mode for a log line, terminal
/// mode for a terminal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
    location: Option<String>,
    hint: Option<String>,
}

impl ConfigError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError { message: message.into(), location: None, hint: None }
    }

    /// Adds advice on how to fix it.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Says where the bad input was (a config key, a flag). The innermost location is kept.
    pub fn at(mut self, location: impl Into<String>) -> Self {
        if self.location.is_none() {
            self.location = Some(location.into());
        }
        self
    }

    /// The message without location or hint.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(location) = &self.location {
            write!(f, " in {location}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
