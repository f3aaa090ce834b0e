//! Configuration errors: what was wrong, where, and how to fix it.

use std::fmt;

/// A policy or trust specification that cannot be used.
///
/// Its message names the offending input and where it came from
/// (`invalid CIDR "10.0.0.0/33" in client_ip.trusted[2]`), with a hint when one helps.
/// The input is quoted as written, not escaped: whoever shows the message escapes it
/// once, for where it goes ([`shown`](crate::shown): log mode for a log line, terminal
/// mode for a terminal). It is one line: a line break in it is a quoted value's, shown as
/// `\n` (terminal mode keeps a message's own line breaks, and cannot tell them apart).
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
        one_line(f, &self.message)?;
        if let Some(location) = &self.location {
            f.write_str(" in ")?;
            one_line(f, location)?;
        }
        if let Some(hint) = &self.hint {
            f.write_str(" (hint: ")?;
            one_line(f, hint)?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Writes `text` with each line break as `\n`. No message, location or hint breaks a line
/// itself, so a break is a value's: a config file someone else wrote (`trueip check`) or a
/// downloaded JSON list (`trueip ranges update`, a `\n` escape in a string) would otherwise
/// print, through terminal mode, a line of its choosing under trueip's name.
fn one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    let mut lines = text.split('\n');
    f.write_str(lines.next().unwrap_or_default())?;
    lines.try_for_each(|line| {
        f.write_str("\\n")?;
        f.write_str(line)
    })
}

impl std::error::Error for ConfigError {}
