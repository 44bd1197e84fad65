//! Reading an HTTP/1 request head before hyper is given the connection.
//!
//! hyper allocates 8 KiB to read into and 8 KiB to write from as soon as it
//! starts on a connection, and grows its read buffer in 8 KiB steps. A
//! connection that has sent nothing yet, or whose head trickles in, needs
//! none of that: thrust reads the head itself into a buffer that starts at
//! `FIRST_BUFFER` and doubles only when the head fills it (as nginx does),
//! and starts hyper once the head is whole, handing it those bytes. The
//! buffers of all heads being read share the crowd's budget
//! (`Seat::hold_head_bytes`): a head that needs more than is left closes
//! the oldest head for room (the crowd counts and reports it).
//!
//! The reads go through `ConnIo`, so its timeouts apply as they do to
//! hyper's reads: HTTP_IDLE_TIMEOUT until a head starts, then
//! HTTP_READ_TIMEOUT.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::conn::crowd::{HeadRoom, Seat};
use crate::conn::socket::ConnIo;
use crate::http::head_scan::MAX_HEAD_BYTES;

/// The buffer a head is first read into: a browser's head, cookies and all,
/// mostly fits.
pub const FIRST_BUFFER: usize = 2048;

/// How reading the next head ended.
pub enum NextHead {
    /// The head, whole (and whatever followed it in the same reads), to be
    /// read again by hyper; or the bytes so far, once they reach
    /// `MAX_HEAD_BYTES` or at the client's end, for hyper to answer.
    Read(Bytes),
    /// The client closed, or the connection is to close (an error, closed
    /// for room, thrust stopping with no head begun).
    Closed(io::Result<()>),
}

/// Bytes of buffer counted against the heads' budget while a head is read.
struct Held<'s> {
    seat: &'s Seat,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.seat.release_head_bytes();
    }
}

/// Reads the connection's next request head. `first`: bytes already read
/// (to tell the protocol), the head's start.
pub async fn next_head<S: AsyncRead + Unpin>(
    io: &mut ConnIo<S>,
    first: Bytes,
    seat: &Seat,
    stop: &mut watch::Receiver<bool>,
) -> NextHead {
    let heads_before = io.heads_read();
    io.scan(&first);
    let held = Held { seat };
    let mut buf = BytesMut::new();
    if !first.is_empty() {
        if let Err(full) = grow(&mut buf, &held) {
            return full;
        }
        buf.extend_from_slice(&first);
    }
    // Until a head is read whole (it may be in `first` already).
    while io.heads_read() == heads_before && buf.len() < MAX_HEAD_BYTES {
        if buf.len() == buf.capacity() {
            if let Err(full) = grow(&mut buf, &held) {
                return full;
            }
        }
        let read = tokio::select! {
            // The read first: a woken connection's bytes are there, and the
            // other two then cost nothing (polled, each would register).
            biased;
            read = io.read_buf(&mut buf) => read,
            _ = seat.shed() => return NextHead::Closed(Ok(())),
            // A head under way is read and answered; none begun: closed.
            _ = stop.changed(), if buf.is_empty() => return NextHead::Closed(Ok(())),
        };
        match read {
            Ok(0) if buf.is_empty() => return NextHead::Closed(Ok(())),
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return NextHead::Closed(Err(e)),
        }
    }
    NextHead::Read(buf.freeze())
}

/// Doubles the buffer (`FIRST_BUFFER` to begin with), within the heads'
/// budget.
fn grow(buf: &mut BytesMut, held: &Held) -> Result<(), NextHead> {
    let more = buf.capacity().max(FIRST_BUFFER);
    if held.seat.hold_head_bytes(more) == HeadRoom::Full {
        return Err(NextHead::Closed(Err(io::Error::other(
            "no memory left for request heads",
        ))));
    }
    buf.reserve(more);
    Ok(())
}
