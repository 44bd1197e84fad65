//! Where log lines go: a bounded buffer in memory, written to stdout by a
//! thread of its own, so a slow reader of stdout (a full pipe) never stalls
//! the threads serving requests.
//!
//! - Appending copies the line under a mutex; no system call on the way.
//! - The writer takes everything waiting in one go and writes it in pieces of
//!   at most `PIPE_BUF` bytes that end at a line break: writes that small are
//!   atomic on a pipe, so the app's own output (same stdout) never lands in
//!   the middle of a thrust line.
//! - When `LIMIT` bytes are waiting, new lines are dropped and counted; the
//!   writer then logs how many, so a reader can tell.

use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Bytes of lines that may wait for stdout before new ones are dropped.
const LIMIT: usize = 4 << 20;
/// The largest write a pipe takes whole (POSIX PIPE_BUF on Linux).
const PIPE_BUF: usize = 4096;
/// The writer lets lines gather this long after a write, so that under load
/// one write carries many lines.
const GATHER: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    waiting: Vec<u8>,
    dropped: u64,
    /// The writer is parked on `ready` (so appending must wake it).
    parked: bool,
    /// The writer holds lines it has not finished writing.
    writing: bool,
}

#[derive(Default)]
struct Sink {
    state: Mutex<State>,
    ready: Condvar,
    drained: Condvar,
    /// No writer thread could be started: lines are written in place.
    direct: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

fn sink() -> &'static Sink {
    SINK.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("thrust-log".into())
            .spawn(write_forever)
            .is_ok();
        Sink {
            direct: !spawned,
            ..Sink::default()
        }
    })
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Queues one or more complete lines.
pub fn append(lines: &[u8]) {
    let sink = sink();
    if sink.direct {
        return write_lines(&mut std::io::stdout().lock(), lines);
    }
    let mut state = sink.lock();
    if state.waiting.len() + lines.len() > LIMIT {
        state.dropped += 1;
        return;
    }
    state.waiting.extend_from_slice(lines);
    if state.parked {
        state.parked = false;
        sink.ready.notify_one();
    }
}

/// Waits (up to `limit`) until every line queued so far has been written.
pub fn flush(limit: Duration) {
    let sink = sink();
    if sink.direct {
        return;
    }
    let state = sink.lock();
    let _ = sink.drained.wait_timeout_while(state, limit, |s| {
        !s.waiting.is_empty() || s.writing || s.dropped > 0
    });
}

/// Writes `lines` to stdout in pieces that end at line breaks and fit a pipe
/// write whole (a longer line goes alone).
fn write_lines(out: &mut impl Write, mut lines: &[u8]) {
    while !lines.is_empty() {
        let window = &lines[..lines.len().min(PIPE_BUF)];
        let end = if window.len() == lines.len() {
            lines.len()
        } else {
            match window.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                // One line longer than a pipe write: it goes alone.
                None => lines
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(lines.len(), |i| i + 1),
            }
        };
        if out.write_all(&lines[..end]).is_err() {
            return;
        }
        lines = &lines[end..];
    }
}

fn write_forever() {
    let sink = sink();
    let mut batch = Vec::new();
    loop {
        let dropped = {
            let mut state = sink.lock();
            state.writing = false;
            while state.waiting.is_empty() && state.dropped == 0 {
                sink.drained.notify_all();
                state.parked = true;
                state = sink
                    .ready
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            std::mem::swap(&mut batch, &mut state.waiting);
            state.writing = true;
            std::mem::take(&mut state.dropped)
        };
        if dropped > 0 {
            super::json::dropped_line(&mut batch, dropped);
        }
        write_lines(&mut std::io::stdout().lock(), &batch);
        batch.clear();
        std::thread::sleep(GATHER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_end_at_line_breaks_and_fit_a_pipe_write() {
        let line = |n: usize| {
            let mut l = vec![b'x'; n];
            l.push(b'\n');
            l
        };
        let mut lines = Vec::new();
        for n in [300, 3000, 900, 5000, 10] {
            lines.extend(line(n));
        }
        struct Pieces(Vec<Vec<u8>>);
        impl Write for Pieces {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut out = Pieces(Vec::new());
        write_lines(&mut out, &lines);
        assert_eq!(out.0.concat(), lines);
        for piece in &out.0 {
            assert_eq!(piece.last(), Some(&b'\n'));
            assert!(piece.len() <= PIPE_BUF || piece.iter().filter(|&&b| b == b'\n').count() == 1);
        }
        let sizes: Vec<usize> = out.0.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![301 + 3001, 901, 5001, 11]);
    }
}
