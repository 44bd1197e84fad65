//! Where log lines go: a bounded buffer in memory, written to stdout by a
//! thread of its own, so a slow reader of stdout (a full pipe) never stalls
//! the threads serving requests.
//!
//! - Appending copies the line under a mutex; no system call on the way.
//! - The writer takes everything waiting in one go and writes it in pieces of
//!   at most `PIPE_BUF` bytes that end at a line break: writes that small are
//!   atomic on a pipe, so the app's own output (same stdout) never lands in
//!   the middle of a thrust line.
//! - When `LIMIT` bytes are waiting or being written, new lines are dropped
//!   and counted; the writer then logs how many, so a reader can tell.
//! - stdout is written without Rust's buffering. A non-blocking stdout (an
//!   app may set O_NONBLOCK on the pipe it shares with thrust) is waited on
//!   as a blocking one would be; lines a failed write loses are counted and
//!   reported with the next lines that can be written.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Bytes of lines that may wait for stdout (or be on their way) before new
/// ones are dropped.
const LIMIT: usize = 4 << 20;
/// The writer's batch keeps at most this much room between batches.
const BATCH_KEPT: usize = 64 << 10;
/// The largest write a pipe takes whole (POSIX PIPE_BUF on Linux).
const PIPE_BUF: usize = 4096;
/// The writer lets lines gather this long after a write, so that under load
/// one write carries many lines.
const GATHER: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    waiting: Vec<u8>,
    /// Bytes the writer took and has not finished writing.
    in_flight: usize,
    dropped: u64,
    /// Lines a failed write lost, with its error; reported with the next
    /// batch (a stdout that keeps failing must not keep the writer busy).
    lost: Option<(u64, String)>,
    /// The writer is parked on `ready` (so appending must wake it).
    parked: bool,
    /// The writer holds lines it has not finished writing.
    writing: bool,
}

impl State {
    /// Queues `lines` if they fit within LIMIT together with what waits and
    /// what is being written; the queue's memory never grows past that.
    fn admit(&mut self, lines: &[u8]) -> bool {
        let room = LIMIT.saturating_sub(self.in_flight);
        let needed = self.waiting.len() + lines.len();
        if needed > room {
            return false;
        }
        if self.waiting.capacity() < needed {
            // Grown by doubling, but never past the room left.
            let target = (self.waiting.capacity() * 2).clamp(needed, room);
            let len = self.waiting.len();
            self.waiting.reserve_exact(target - len);
        }
        self.waiting.extend_from_slice(lines);
        true
    }
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
        let _ = write_lines(&mut Stdout, lines);
        return;
    }
    let mut state = sink.lock();
    if !state.admit(lines) {
        state.dropped += 1;
        return;
    }
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

/// Writes `lines` in pieces that end at line breaks and fit a pipe write
/// whole (a longer line goes alone). On a failed write, the error and the
/// number of lines not written.
fn write_lines(out: &mut impl Write, mut lines: &[u8]) -> Result<(), (std::io::Error, u64)> {
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
        if let Err(e) = out.write_all(&lines[..end]) {
            let lost = lines.iter().filter(|&&b| b == b'\n').count() as u64;
            return Err((e, lost));
        }
        lines = &lines[end..];
    }
    Ok(())
}

/// File descriptor 1, unbuffered.
struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let stdout = std::io::stdout();
        loop {
            match nix::unistd::write(&stdout, buf) {
                Ok(written) => return Ok(written),
                Err(Errno::EAGAIN) => {
                    // Non-blocking and full: wait until it takes more.
                    let mut ready = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut ready, PollTimeout::from(1000u16));
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_forever() {
    let sink = sink();
    let mut batch = Vec::new();
    loop {
        let (dropped, lost) = {
            let mut state = sink.lock();
            state.writing = false;
            state.in_flight = 0;
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
            state.in_flight = batch.len();
            (std::mem::take(&mut state.dropped), state.lost.take())
        };
        if dropped > 0 {
            super::json::dropped_line(&mut batch, dropped);
        }
        if let Some((lines, error)) = lost {
            super::json::lost_line(&mut batch, lines, &error);
        }
        if let Err((error, lines)) = write_lines(&mut Stdout, &batch) {
            let mut state = sink.lock();
            let earlier = state.lost.take().map_or(0, |(n, _)| n);
            state.lost = Some((earlier + lines, error.to_string()));
        }
        batch.clear();
        batch.shrink_to(BATCH_KEPT);
        std::thread::sleep(GATHER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_and_in_flight_lines_share_one_limit() {
        let line = [b'x'; 1000];
        let mut state = State {
            in_flight: LIMIT - 10_000,
            ..State::default()
        };
        let admitted = (0..100).filter(|_| state.admit(&line)).count();
        assert_eq!(admitted, 10);
        assert!(state.waiting.capacity() <= 10_000);
        // With nothing on its way, the whole limit, and no more memory.
        let mut state = State::default();
        while state.admit(&line) {}
        assert!(state.waiting.len() <= LIMIT && state.waiting.capacity() <= LIMIT);
    }

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
        write_lines(&mut out, &lines).unwrap();
        assert_eq!(out.0.concat(), lines);
        for piece in &out.0 {
            assert_eq!(piece.last(), Some(&b'\n'));
            assert!(piece.len() <= PIPE_BUF || piece.iter().filter(|&&b| b == b'\n').count() == 1);
        }
        let sizes: Vec<usize> = out.0.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![301 + 3001, 901, 5001, 11]);
    }
}
