//! On-demand TLS's bounds: which names may reach the app's ask URL at all,
//! and how many certificates the names the app allows may cause.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::is_dns_label;

/// Whether `name` (an SNI or Host, lowercased) may be asked about: a DNS
/// name of at most 253 bytes and two labels or more, each of letters,
/// digits and inner hyphens (internationalised names arrive as punycode).
/// No IP address, wildcard or underscore ever reaches the app.
pub fn acceptable(name: &str) -> bool {
    if name.len() > 253 || name.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    // A last label of digits is an address's (`10.0.0.300`), never a TLD.
    let numeric_tld = labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    // Lowercase only: names are lowered before they get here, and the
    // answer kept for a name must be the one asked about.
    labels.len() >= 2
        && labels.iter().all(|label| is_dns_label(label))
        && !name.bytes().any(|b| b.is_ascii_uppercase())
        && !numeric_tld
}

/// Names kept with certificates: at most `most` at once, and at most
/// `per_minute` of them new orders in any minute. A name whose certificate
/// was already stored (a restart, another copy's order) counts only
/// towards `most`.
pub struct Budget {
    per_minute: u32,
    most: usize,
    state: Mutex<State>,
}

struct State {
    names: HashSet<String>,
    minute_began: Instant,
    ordered_this_minute: u32,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Budget {
    pub fn new(per_minute: u32, most: usize) -> Self {
        Budget {
            per_minute,
            most,
            state: Mutex::new(State {
                names: HashSet::new(),
                minute_began: Instant::now(),
                ordered_this_minute: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn keeps(&self, name: &str) -> bool {
        self.state().names.contains(name)
    }

    /// Keeps `name`, refused past `most` names or, when it is to be
    /// `ordered` now (no stored certificate), past this minute's orders;
    /// true when this call took it (so exactly one of the handshakes racing
    /// for a name starts keeping it).
    pub fn keep(&self, name: &str, ordered: bool) -> Result<bool, &'static str> {
        let mut state = self.state();
        if state.names.contains(name) {
            return Ok(false);
        }
        if state.names.len() >= self.most {
            return Err("THRUST_ON_DEMAND_TLS_MAX_NAMES names have certificates");
        }
        if !ordered {
            return Ok(state.names.insert(name.to_string()));
        }
        if state.minute_began.elapsed() >= MINUTE {
            state.minute_began = Instant::now();
            state.ordered_this_minute = 0;
        }
        if state.ordered_this_minute >= self.per_minute {
            return Err("THRUST_ON_DEMAND_TLS_PER_MINUTE new names were ordered this minute");
        }
        state.ordered_this_minute += 1;
        Ok(state.names.insert(name.to_string()))
    }

    /// The app no longer allows `name`: its place is free.
    pub fn forget(&self, name: &str) {
        self.state().names.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_dns_names_are_asked_about() {
        for good in [
            "shop.example.com",
            "a.b",
            "xn--bcher-kva.example",
            "1st.example.com",
        ] {
            assert!(acceptable(good), "{good}");
        }
        let long = format!("{}.com", "a.".repeat(125));
        for bad in [
            "localhost",
            "127.0.0.1",
            "10.0.0.300",
            "::1",
            "*.example.com",
            "under_score.example.com",
            "-dash.example.com",
            "dash-.example.com",
            "double..dot.com",
            "trailing.dot.com.",
            "UPPER.example.com",
            &long,
            "",
        ] {
            assert!(!acceptable(bad), "{bad}");
        }
    }

    #[test]
    fn new_names_are_bounded_per_minute_and_in_all() {
        let budget = Budget::new(2, 3);
        assert_eq!(budget.keep("a.test", true), Ok(true));
        assert_eq!(budget.keep("b.test", true), Ok(true));
        assert!(
            budget.keep("c.test", true).is_err(),
            "a third new name this minute"
        );
        // A stored certificate is not an order; a kept name is taken once.
        assert_eq!(budget.keep("c.test", false), Ok(true));
        assert_eq!(budget.keep("a.test", true), Ok(false));
        assert_eq!(budget.keep("a.test", false), Ok(false));
        assert!(budget.keep("d.test", false).is_err(), "three names at most");
        budget.forget("a.test");
        assert!(!budget.keeps("a.test"));
        assert_eq!(budget.keep("d.test", false), Ok(true));
    }
}
