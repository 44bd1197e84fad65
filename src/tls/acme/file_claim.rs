//! A claim on a name that copies of thrust sharing a directory agree on,
//! made of the operations NFS performs atomically on its server: a hard
//! link that fails when its name is taken, a rename, an unlink. A claim is
//! a file naming its holder and when it expires (wall-clock time: the
//! copies' clocks are assumed to agree within seconds, as NTP keeps them).
//! Its holder renews it while it orders; one whose holder died is broken
//! once it has expired, by moving it aside first, so that two copies
//! breaking it at once cannot both go on to take it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::storage::Claim;

/// A claim as its file holds it.
#[derive(Debug, PartialEq, Eq)]
struct Found {
    holder: String,
    /// Milliseconds since the Unix epoch.
    expires: u128,
}

/// How long a copy breaking an expired claim holds the breaker.
const BREAKER_TTL: Duration = Duration::from_secs(10);

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.claim"))
}

/// The claim file's text for `holder`, alive for `ttl` from now.
fn text(holder: &str, ttl: Duration) -> String {
    format!("{holder}\n{}\n", now_ms() + ttl.as_millis())
}

fn read(path: &Path) -> io::Result<Option<Found>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut lines = text.lines();
    let holder = lines.next().unwrap_or_default().to_string();
    // A file that does not parse is expired: nothing alive writes one.
    let expires = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    Ok(Some(Found { holder, expires }))
}

/// Writes `text` to `path`, creating it (0600); on a full disk nothing is
/// left of it.
fn write_new(path: &Path, text: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

pub fn try_claim(dir: &Path, name: &str, holder: &str, ttl: Duration) -> io::Result<Claim> {
    let claim = path(dir, name);
    // A few turns: a claim broken or released by another copy between two
    // steps is looked at again.
    for _ in 0..3 {
        if link_new(dir, &claim, holder, ttl)? {
            return Ok(Claim::Held);
        }
        let Some(found) = read(&claim)? else {
            continue;
        };
        if found.holder == holder {
            write_replacing(dir, &claim, holder, ttl)?;
            return Ok(Claim::Held);
        }
        if found.expires > now_ms() {
            return Ok(Claim::Busy);
        }
        // Expired: broken by one copy at a time, which holds the claim's
        // breaker (a claim of its own, alive for seconds) while it looks
        // again and removes only the claim it judged expired.
        let breaker = dir.join(format!("{name}.breaker"));
        if !link_new(dir, &breaker, holder, BREAKER_TTL)? {
            // Another copy is breaking it (or died doing so: its breaker
            // expires too).
            if read(&breaker)?.is_some_and(|b| b.expires <= now_ms()) {
                let _ = fs::remove_file(&breaker);
            }
            return Ok(Claim::Busy);
        }
        let broken = read(&claim)?.as_ref() == Some(&found);
        if broken {
            remove_if_there(&claim)?;
        }
        remove_if_there(&breaker)?;
        if broken {
            tracing::warn!(name, holder = %found.holder, "An expired ACME claim was broken: the copy holding it stopped renewing it");
        }
    }
    Ok(Claim::Busy)
}

/// Takes the claim when no claim file exists: written whole under a name
/// of this copy's own and linked into place, so the link fails when the
/// name is taken and no reader ever sees half a claim.
fn link_new(dir: &Path, claim: &Path, holder: &str, ttl: Duration) -> io::Result<bool> {
    let own = own_file(dir, claim, holder);
    write_new(&own, &text(holder, ttl))?;
    let held = match fs::hard_link(&own, claim) {
        Ok(()) => true,
        // Over NFS the reply to a link can be lost and the link retried,
        // failing on the link it made itself: the file's link count tells.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs::metadata(&own)?.nlink() == 2,
        Err(e) => {
            let _ = fs::remove_file(&own);
            return Err(e);
        }
    };
    fs::remove_file(&own)?;
    Ok(held)
}

fn own_file(dir: &Path, claim: &Path, holder: &str) -> PathBuf {
    let base = claim
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("claim");
    dir.join(format!(".{base}.{holder}"))
}

/// Replaces the claim file with `holder`'s, alive for `ttl` more.
fn write_replacing(dir: &Path, claim: &Path, holder: &str, ttl: Duration) -> io::Result<()> {
    let own = own_file(dir, claim, holder);
    write_new(&own, &text(holder, ttl))?;
    let renamed = fs::rename(&own, claim);
    if renamed.is_err() {
        let _ = fs::remove_file(&own);
    }
    renamed
}

pub fn renew(dir: &Path, name: &str, holder: &str, ttl: Duration) -> io::Result<bool> {
    let claim = path(dir, name);
    match read(&claim)? {
        Some(found) if found.holder == holder => {
            write_replacing(dir, &claim, holder, ttl)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

pub fn release(dir: &Path, name: &str, holder: &str) -> io::Result<()> {
    let claim = path(dir, name);
    match read(&claim)? {
        Some(found) if found.holder == holder => remove_if_there(&claim),
        _ => Ok(()),
    }
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn one_holder_at_a_time_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let claim = |name: &str, holder: &str| try_claim(dir.path(), name, holder, TTL).unwrap();
        assert_eq!(claim("a.test", "one"), Claim::Held);
        assert_eq!(claim("a.test", "two"), Claim::Busy);
        // Another name is free; the holder may take its own again.
        assert_eq!(claim("b.test", "two"), Claim::Held);
        assert_eq!(claim("a.test", "one"), Claim::Held);
        assert!(renew(dir.path(), "a.test", "one", TTL).unwrap());
        assert!(!renew(dir.path(), "a.test", "two", TTL).unwrap());
        // Only the holder's release counts.
        release(dir.path(), "a.test", "two").unwrap();
        assert_eq!(claim("a.test", "two"), Claim::Busy);
        release(dir.path(), "a.test", "one").unwrap();
        assert_eq!(claim("a.test", "two"), Claim::Held);
        // Nothing is left behind but the claims themselves.
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.test.claim", "b.test.claim"]);
    }

    #[test]
    fn an_expired_claim_is_taken_over_and_its_holder_knows() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            try_claim(dir.path(), "a.test", "dead", Duration::ZERO).unwrap(),
            Claim::Held
        );
        assert_eq!(
            try_claim(dir.path(), "a.test", "alive", TTL).unwrap(),
            Claim::Held
        );
        assert!(!renew(dir.path(), "a.test", "dead", TTL).unwrap());
        assert_eq!(
            try_claim(dir.path(), "a.test", "dead", TTL).unwrap(),
            Claim::Busy
        );
    }

    #[test]
    fn copies_racing_for_a_free_or_expired_claim_get_it_once() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20 {
            // Free in even rounds, expired in odd ones.
            if round % 2 == 1 {
                try_claim(dir.path(), "a.test", "dead", Duration::ZERO).unwrap();
            }
            let held: usize = std::thread::scope(|scope| {
                let racers: Vec<_> = (0..8)
                    .map(|i| {
                        let dir = dir.path();
                        scope.spawn(move || {
                            try_claim(dir, "a.test", &format!("copy{i}"), TTL).unwrap()
                                == Claim::Held
                        })
                    })
                    .collect();
                racers
                    .into_iter()
                    .map(|r| usize::from(r.join().unwrap()))
                    .sum()
            });
            assert_eq!(held, 1, "round {round}");
            fs::remove_file(path(dir.path(), "a.test")).unwrap();
        }
    }
}
