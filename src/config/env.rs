//! Reading one variable from an environment snapshot: the first of its
//! spellings that is set, parsed as its kind, or the error naming it.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::table::{lookup, spellings, Variable, VARIABLES};
use super::Encoding;

/// A configuration value that cannot be used. Its text is the one line the
/// user sees before thrust exits with status 2.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// Raw lookup over an environment snapshot.
pub struct Env<'a> {
    pub vars: &'a HashMap<String, String>,
}

impl Env<'_> {
    /// The first spelling that is set, with the name it was found under.
    /// Empty values count as unset, except where emptiness means something.
    pub fn raw(&self, name: &str) -> Option<(String, String)> {
        let variable = lookup(name);
        let empty_is_a_value = name == "THRUST_HEALTH_PATH";
        spellings(variable).into_iter().find_map(|spelling| {
            let value = self.vars.get(&spelling)?;
            (empty_is_a_value || !value.is_empty()).then(|| (spelling, value.clone()))
        })
    }

    pub fn parsed<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        let Some((spelling, value)) = self.raw(name) else {
            return Ok(None);
        };
        match parse(value.trim()) {
            Some(v) => Ok(Some(v)),
            None => Err(ConfigError {
                variable: spelling,
                value,
                expected: lookup(name).kind.expected().to_string(),
            }),
        }
    }

    pub fn typed<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
        default: T,
    ) -> Result<T, ConfigError> {
        Ok(self.parsed(name, parse)?.unwrap_or(default))
    }

    pub fn port(&self, name: &str) -> Result<Option<u16>, ConfigError> {
        self.parsed(name, |v| v.parse::<u16>().ok().filter(|p| *p != 0))
    }

    pub fn boolean(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        self.typed(name, parse_bool, default)
    }

    pub fn number(&self, name: &str, default: u64) -> Result<u64, ConfigError> {
        self.typed(name, parse_whole, default)
    }

    pub fn seconds(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.number(name, default)?))
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.raw(name).map(|(_, value)| value)
    }

    pub fn invalid(&self, name: &str, expected: &str) -> ConfigError {
        let (variable, value) = self
            .raw(name)
            .unwrap_or_else(|| (name.to_string(), String::new()));
        ConfigError {
            variable,
            value,
            expected: expected.to_string(),
        }
    }
}

pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

pub fn parse_whole(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

pub fn parse_encodings(value: &str) -> Option<Vec<Encoding>> {
    let mut encodings = Vec::new();
    for word in value.split(',').map(str::trim) {
        let encoding = match word.to_ascii_lowercase().as_str() {
            "zstd" => Encoding::Zstd,
            "br" => Encoding::Brotli,
            "gzip" => Encoding::Gzip,
            _ => return None,
        };
        if !encodings.contains(&encoding) {
            encodings.push(encoding);
        }
    }
    Some(encodings)
}

/// Where a variable's value comes from, for `thrust check`.
pub struct Resolved {
    pub variable: &'static Variable,
    /// The value and the spelling it was found under; None: the default.
    pub set: Option<(String, String)>,
}

/// Variables whose values are secrets: `thrust check` shows only that they are set.
const SECRETS: [&str; 1] = ["EAB_HMAC_KEY"];

impl Resolved {
    /// One line: the variable, its value and where the value came from.
    pub fn line(&self) -> String {
        let name = self.variable.name;
        match &self.set {
            None => format!("{name}={}  (default)", self.variable.default),
            Some((spelling, _)) if SECRETS.contains(&name) => {
                format!("{name}=(set, not shown)  (from {spelling})")
            }
            Some((spelling, value)) => format!("{name}={value}  (from {spelling})"),
        }
    }
}

/// Every variable with the value an environment gives it and where from.
pub fn resolved(vars: &HashMap<String, String>) -> Vec<Resolved> {
    let env = Env { vars };
    VARIABLES
        .iter()
        .map(|variable| Resolved {
            variable,
            set: env.raw(variable.name),
        })
        .collect()
}
