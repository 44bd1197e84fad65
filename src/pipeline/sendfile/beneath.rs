//! Opening a file below a directory without ever leaving it, in the open
//! itself: a check of the path followed by an open by name leaves a moment
//! in which a directory on the way can be swapped for a symlink that leads
//! out. `openat2(2)` with `RESOLVE_BENEATH` (Linux 5.6) resolves the whole
//! path below the directory, following only symlinks that stay below it;
//! where it is missing (an older kernel, or a seccomp profile that refuses
//! it), the path is walked a component at a time with `O_NOFOLLOW`, so no
//! symlink is followed at all.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

/// Flags of every open: a FIFO must not block the worker thread waiting
/// for a writer, a terminal must not become the controlling one.
const FILE_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;

/// Set once openat2 has answered ENOSYS or EPERM: walk from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// The file `relative` names below the directory `root`, opened for reading.
/// `relative` must be made of plain names (no `..`, no root); an error when
/// it is not, when a symlink on the way leads out of `root`, or when the
/// file is missing.
pub fn open(root: &Path, relative: &Path) -> io::Result<File> {
    let names: Vec<&OsStr> = relative
        .components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        })
        .collect::<io::Result<_>>()?;
    if names.is_empty() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let root = open_at(
        libc::AT_FDCWD,
        root.as_os_str(),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )?;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match openat2_beneath(&root, relative) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            opened => return opened,
        }
    }
    walk(root, &names)
}

fn openat2_beneath(root: &OwnedFd, relative: &Path) -> io::Result<File> {
    let path = c_path(relative.as_os_str())?;
    // SAFETY: open_how is plain data; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = FILE_FLAGS as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the path is NUL-terminated, `how` lives through the call and
    // its size is passed; the returned descriptor is owned by the File.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just returned, owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd as RawFd) })
}

/// Each directory on the way, then the file, opened below the last with
/// `O_NOFOLLOW`: a symlink anywhere fails the open.
fn walk(root: OwnedFd, names: &[&OsStr]) -> io::Result<File> {
    let (file, dirs) = names.split_last().ok_or(io::ErrorKind::InvalidInput)?;
    let mut dir = root;
    for name in dirs {
        dir = open_at(
            dir.as_raw_fd(),
            name,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )?;
    }
    let fd = open_at(dir.as_raw_fd(), file, FILE_FLAGS | libc::O_NOFOLLOW)?;
    Ok(File::from(fd))
}

fn open_at(dir: RawFd, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = c_path(name)?;
    // SAFETY: a NUL-terminated path; the returned descriptor is owned.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just returned, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn c_path(path: &OsStr) -> io::Result<CString> {
    CString::new(path.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn read(file: io::Result<File>) -> Option<String> {
        let mut text = String::new();
        file.ok()?.read_to_string(&mut text).ok()?;
        Some(text)
    }

    #[test]
    fn files_below_open_and_nothing_leads_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        std::fs::create_dir(dir.join("assets")).unwrap();
        std::fs::write(dir.join("assets/app.css"), "css").unwrap();
        symlink(outside.path(), dir.join("out")).unwrap();
        symlink(outside.path().join("secret"), dir.join("assets/leak")).unwrap();
        for walk_only in [false, true] {
            NO_OPENAT2.store(walk_only, Ordering::Relaxed);
            let open = |p: &str| read(open(dir, Path::new(p)));
            assert_eq!(open("assets/app.css").as_deref(), Some("css"));
            assert_eq!(open("out/secret"), None, "walk only: {walk_only}");
            assert_eq!(open("assets/leak"), None, "walk only: {walk_only}");
            assert_eq!(open("assets/../assets/app.css"), None);
            assert_eq!(open("/etc/passwd"), None);
            assert_eq!(open("missing"), None);
        }
        NO_OPENAT2.store(false, Ordering::Relaxed);
    }
}
