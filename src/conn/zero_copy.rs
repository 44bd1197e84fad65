//! Files sent with `sendfile(2)` on plain HTTP/1 connections.
//!
//! hyper writes only bytes it is given, so a file body would be read into
//! memory and written back out: two copies through user space. Instead, a
//! file body on a connection that can take it yields *stand-ins*: slices of
//! a static region that is never written or read, each slot of which the
//! body registers with the connection as "these bytes are this part of this
//! file". hyper queues the stand-ins like any body bytes and hands them, in
//! order and unchanged, to the connection's socket wrapper (`conn::socket`),
//! which sends the registered part of the file with `sendfile(2)` in their
//! place. Partial writes work as for bytes: hyper advances the slice, and
//! the offset into the slot is the offset into the file part.
//!
//! Only where nothing between the body and the socket reads the bytes:
//! plain HTTP/1 served by hyper's HTTP/1 connection with vectored writes
//! set on its builder (body bytes queued, never flattened into a buffer),
//! no compression, no TLS. A slot is freed once its part is sent whole. A stand-in
//! reaching a socket that cannot send files is an error, never zeros sent.

use std::cell::UnsafeCell;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The largest part of a file one stand-in stands for.
pub const SLOT_LEN: usize = 256 * 1024;

/// hyper queues body bytes only while less than its buffer limit (64 KiB)
/// waits to be written, so at most two stand-ins are queued at once; eight
/// slots leave room.
const SLOTS: usize = 8;

/// Never written, never read: its addresses name slots. Interior
/// mutability only places it among zero-initialised data (.bss), so it
/// takes no room in the binary and, never touched, none in memory.
struct Region(UnsafeCell<[u8; SLOTS * SLOT_LEN]>);

// SAFETY: nothing ever writes through the cell.
unsafe impl Sync for Region {}

static REGION_CELL: Region = Region(UnsafeCell::new([0; SLOTS * SLOT_LEN]));

fn region() -> &'static [u8; SLOTS * SLOT_LEN] {
    // SAFETY: nothing ever writes through the cell, so shared references
    // to it never alias a write.
    unsafe { &*REGION_CELL.0.get() }
}

/// Which slot and which offset in it `bytes` starts at, if it is a stand-in.
fn locate(bytes: &[u8]) -> Option<(usize, usize)> {
    let region = region();
    let start = region.as_ptr() as usize;
    let at = bytes.as_ptr() as usize;
    (at >= start && at < start + region.len()).then(|| {
        let offset = at - start;
        (offset / SLOT_LEN, offset % SLOT_LEN)
    })
}

/// Whether any of `bufs` is a stand-in, and where the first one is.
pub fn first_stand_in(bufs: &[io::IoSlice<'_>]) -> Option<usize> {
    bufs.iter().position(|b| is_stand_in(b))
}

pub fn is_stand_in(buf: &[u8]) -> bool {
    !buf.is_empty() && locate(buf).is_some()
}

/// A part of a file a slot stands for.
#[derive(Clone)]
struct Part {
    file: Arc<File>,
    offset: u64,
    len: usize,
}

/// A connection's registered slots. Empty (no allocation) until the
/// connection sends its first file: every plain connection has one. Slots
/// belong to the connection, not to one response: a response's last parts
/// may still wait to be written when the next response's body starts, so
/// numbering goes on across responses and a slot is only reused once the
/// part it stood for was sent.
#[derive(Default)]
pub struct Slots {
    inner: Mutex<Registered>,
}

#[derive(Default)]
struct Registered {
    parts: Vec<Option<Part>>,
    next: usize,
}

/// Where a stand-in's bytes are in its file.
struct Resolved {
    file: Arc<File>,
    offset: u64,
    len: usize,
    slot: usize,
    /// Sending all `len` bytes finishes the part: the slot can be freed.
    ends_part: bool,
}

impl Slots {
    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, Registered>> {
        self.inner
            .lock()
            .map_err(|_| io::Error::other("file slots poisoned"))
    }

    /// Registers `part` in the connection's next slot; its number. A slot
    /// whose part is still unsent is never taken over.
    fn register(&self, part: Part) -> io::Result<usize> {
        let mut registered = self.lock()?;
        let slot = registered.next;
        if registered.parts.len() <= slot {
            registered.parts.resize(slot + 1, None);
        }
        if registered.parts[slot].is_some() {
            return Err(io::Error::other("every file slot holds an unsent part"));
        }
        registered.parts[slot] = Some(part);
        registered.next = (slot + 1) % SLOTS;
        Ok(slot)
    }

    /// The file part `buf` (a stand-in) stands for.
    fn resolve(&self, buf: &[u8]) -> io::Result<Resolved> {
        let missing = || io::Error::other("file stand-in without a registered part");
        let (slot, within) = locate(buf).ok_or_else(missing)?;
        let registered = self.lock()?;
        let part = registered
            .parts
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or_else(missing)?;
        if within + buf.len() > part.len {
            return Err(missing());
        }
        Ok(Resolved {
            file: part.file.clone(),
            offset: part.offset + within as u64,
            len: buf.len(),
            slot,
            ends_part: within + buf.len() == part.len,
        })
    }

    /// Frees a slot whose part has been sent whole, letting go of its file
    /// (closed once the response's body is done with it too).
    fn release(&self, slot: usize) {
        if let Ok(mut registered) = self.lock() {
            if let Some(part) = registered.parts.get_mut(slot) {
                *part = None;
            }
        }
    }
}

/// What a file body uses to send itself as stand-ins.
pub struct FileParts {
    slots: Arc<Slots>,
    file: Arc<File>,
    offset: u64,
}

impl FileParts {
    pub fn new(slots: Arc<Slots>, file: File, offset: u64) -> Self {
        FileParts {
            slots,
            file: Arc::new(file),
            offset,
        }
    }

    /// The stand-in for the next `len` (≤ SLOT_LEN) bytes of the file.
    pub fn next(&mut self, len: usize) -> io::Result<Bytes> {
        let len = len.min(SLOT_LEN);
        let slot = self.slots.register(Part {
            file: self.file.clone(),
            offset: self.offset,
            len,
        })?;
        self.offset += len as u64;
        let start = slot * SLOT_LEN;
        Ok(Bytes::from_static(&region()[start..start + len]))
    }
}

/// A socket that can send file parts for stand-ins.
pub trait SendFile {
    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        slots: &Slots,
        stand_in: &[u8],
    ) -> Poll<io::Result<usize>>;
}

impl SendFile for TcpStream {
    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        slots: &Slots,
        stand_in: &[u8],
    ) -> Poll<io::Result<usize>> {
        let part = slots.resolve(stand_in)?;
        loop {
            std::task::ready!(self.poll_write_ready(cx))?;
            let sent = self.try_io(Interest::WRITABLE, || {
                let mut at = part.offset as i64;
                nix::sys::sendfile::sendfile64(
                    self.as_fd(),
                    part.file.as_fd(),
                    Some(&mut at),
                    part.len,
                )
                .map_err(io::Error::from)
            });
            match sent {
                // The file ended before its part: it shrank under us, and the
                // client must not take a short body for a whole one.
                Ok(0) => {
                    tracing::warn!("Response cut short: a file being sent shrank on disk, the connection is closed");
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(n) => {
                    if n == part.len && part.ends_part {
                        slots.release(part.slot);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<S> SendFile for tokio_rustls::server::TlsStream<S> {
    fn poll_send_file(&self, _: &mut Context<'_>, _: &Slots, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::Error::other(
            "a file stand-in reached a TLS stream",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn stand_ins_resolve_to_their_file_parts() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7u8; 600 * 1024]).unwrap();
        let slots = Arc::new(Slots::default());
        let mut parts = FileParts::new(slots.clone(), file, 1000);
        let first = parts.next(SLOT_LEN).unwrap();
        let second = parts.next(5000).unwrap();
        assert!(is_stand_in(&first) && is_stand_in(&second));
        assert!(!is_stand_in(b"real bytes"));
        let part = slots.resolve(&first[100..]).unwrap();
        assert_eq!(
            (part.offset, part.len, part.ends_part),
            (1100, SLOT_LEN - 100, true)
        );
        let part = slots.resolve(&second[..10]).unwrap();
        assert_eq!(
            (part.offset, part.len, part.ends_part),
            (1000 + SLOT_LEN as u64, 10, false)
        );
        // A stand-in no part was registered for is refused.
        let unregistered = Bytes::from_static(&region()[3 * SLOT_LEN..3 * SLOT_LEN + 10]);
        assert!(slots.resolve(&unregistered).is_err());
    }

    #[test]
    fn slots_go_on_across_responses_and_are_reused_only_once_sent() {
        let slots = Arc::new(Slots::default());
        let file = || tempfile::tempfile().unwrap();
        let mut one = FileParts::new(slots.clone(), file(), 0);
        let queued: Vec<Bytes> = (0..SLOTS - 1).map(|_| one.next(10).unwrap()).collect();
        // The next response on the connection takes the next slot...
        let mut two = FileParts::new(slots.clone(), file(), 0);
        let last_free = two.next(10).unwrap();
        assert_ne!(locate(&last_free).unwrap().0, locate(&queued[0]).unwrap().0);
        // ...and never one whose part waits to be sent.
        assert!(two.next(10).is_err());
        let (slot, _) = locate(&queued[0]).unwrap();
        slots.release(slot);
        assert_eq!(locate(&two.next(10).unwrap()).unwrap().0, slot);
    }
}
