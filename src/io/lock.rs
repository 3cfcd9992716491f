//! QEMU's image locks, so qimg never writes an image a VM is using, and a
//! VM cannot start writing one qimg is working on.
//!
//! QEMU takes shared open-file-description locks on single bytes of the
//! image file: byte 100 + i while it holds permission i, byte 200 + i
//! while it does not let others take permission i. Before locking it asks
//! (`F_OFD_GETLK`) whether anyone else holds a byte that conflicts. qimg
//! does the same, with one lock descriptor per file for the whole process:
//! every open of that file adds its needs to that descriptor's locks, so
//! qimg's own opens never conflict with each other (a chain may open a file
//! once read-only and once for writing).

use super::lock_holder::{self, Holder};
use crate::error::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// QEMU's permissions, by bit number (byte 100 + bit, 200 + bit).
const PERMISSIONS: [(u32, &str); 4] = [
    (0, "consistent read"),
    (1, "write"),
    (2, "write unchanged"),
    (3, "resize"),
];
const CONSISTENT_READ: u8 = 1 << 0;
const WRITE: u8 = 1 << 1;
const RESIZE: u8 = 1 << 3;

/// How an open uses the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading; nobody else may write or resize meanwhile (QEMU's read-only open).
    Read,
    /// Reading while sharing everything (`-U`/`--force-share`): never conflicts.
    SharedRead,
    /// Reading and writing; nobody else may write or resize.
    Write,
}

impl Access {
    /// (permissions held, permissions not shared), as bit sets.
    fn needs(self) -> (u8, u8) {
        match self {
            Access::Read => (CONSISTENT_READ, WRITE | RESIZE),
            Access::SharedRead => (CONSISTENT_READ, 0),
            Access::Write => (CONSISTENT_READ | WRITE | RESIZE, WRITE | RESIZE),
        }
    }
}

impl Access {
    /// The access a read-only open takes: sharing everything with `-U`.
    pub fn for_read(force_share: bool) -> Access {
        if force_share {
            Access::SharedRead
        } else {
            Access::Read
        }
    }
}

/// One file's lock descriptor and who in this process relies on it.
#[derive(Debug)]
struct Locked {
    fd: File,
    users: Vec<(u64, Access)>,
    /// Bytes currently locked.
    bytes: Vec<u16>,
}

#[derive(Debug, Default)]
struct Registry {
    files: HashMap<(u64, u64), Locked>,
    next_id: u64,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Keeps an open's locks; they are dropped with it (and with the process).
#[derive(Debug)]
pub struct ImageLock {
    key: (u64, u64),
    id: u64,
}

fn flock(kind: libc::c_short, byte: u16) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Whether another open file description holds a lock on `byte`.
fn taken_by_others(fd: &File, byte: u16) -> std::io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK as libc::c_short, byte);
    // SAFETY: F_OFD_GETLK on our descriptor fills our flock struct.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

fn set_lock(fd: &File, byte: u16, on: bool) -> std::io::Result<()> {
    let kind = if on { libc::F_RDLCK } else { libc::F_UNLCK };
    let fl = flock(kind as libc::c_short, byte);
    // SAFETY: F_OFD_SETLK on our descriptor reads our flock struct.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The bytes a set of users needs locked.
fn bytes_for(users: &[(u64, Access)]) -> Vec<u16> {
    let (mut held, mut unshared) = (0u8, 0u8);
    for (_, a) in users {
        let (h, u) = a.needs();
        held |= h;
        unshared |= u;
    }
    let mut bytes = Vec::new();
    for (bit, _) in PERMISSIONS {
        if held & (1 << bit) != 0 {
            bytes.push(100 + bit as u16);
        }
    }
    for (bit, _) in PERMISSIONS {
        if unshared & (1 << bit) != 0 {
            bytes.push(200 + bit as u16);
        }
    }
    bytes
}

/// A lock another process holds against us: qemu-img's words for it and
/// the byte where it was found.
#[derive(Debug)]
struct Conflict {
    /// `Failed to get "write" lock` or `Failed to get shared "write" lock`.
    words: String,
    /// The byte another process holds.
    byte: u16,
}

/// Why `access` cannot be had: the first conflict with another process, in
/// QEMU's order. First a permission we want that another process does not
/// share (`Failed to get "NAME" lock`), then one we do not share that
/// another process holds (`Failed to get shared "NAME" lock`).
fn conflict(fd: &File, access: Access) -> std::io::Result<Option<Conflict>> {
    let (held, unshared) = access.needs();
    for (bit, name) in PERMISSIONS {
        let byte = 200 + bit as u16;
        if held & (1 << bit) != 0 && taken_by_others(fd, byte)? {
            return Ok(Some(Conflict {
                words: format!("Failed to get \"{name}\" lock"),
                byte,
            }));
        }
    }
    for (bit, name) in PERMISSIONS {
        let byte = 100 + bit as u16;
        if unshared & (1 << bit) != 0 && taken_by_others(fd, byte)? {
            return Ok(Some(Conflict {
                words: format!("Failed to get shared \"{name}\" lock"),
                byte,
            }));
        }
    }
    Ok(None)
}

/// The error for an image in use: qemu-img's sentences (what scripts grep
/// for, and Packer retries on), the processes holding the lock where
/// `/proc` tells, and what to do about it.
fn in_use(path: &Path, conflict: &Conflict, holders: &[Holder], access: Access) -> Error {
    let hint = match access {
        Access::Write => {
            "use --attach SOCKET to run this through the running VM, or -U for read-only commands"
        }
        _ => "use -U to read it anyway (what it shows may be stale)",
    };
    let held_by = match holders {
        [] => String::new(),
        [one] => format!(" Process {one} holds it;"),
        many => format!(
            " Processes {} hold it;",
            many.iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Error::new(
        ErrorKind::InUse,
        format!(
            "{}. Is another process using the image [{}]?{held_by} {hint}",
            conflict.words,
            path.display()
        ),
    )
    .with_path(path)
}

impl ImageLock {
    /// Takes the locks `access` needs on the open `file` at `path`, after
    /// checking that no other process holds a conflicting one.
    pub fn acquire(file: &File, path: &Path, access: Access) -> Result<ImageLock> {
        let io = |e: std::io::Error| Error::io("could not lock the image", e).with_path(path);
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            // Devices and pipes are not locked (QEMU locks them only in part).
            return Ok(ImageLock {
                key: (meta.dev(), meta.ino()),
                id: u64::MAX,
            });
        }
        let key = (meta.dev(), meta.ino());
        let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        let registry = guard.get_or_insert_with(Registry::default);
        registry.next_id += 1;
        let id = registry.next_id;
        let entry = match registry.files.get_mut(&key) {
            Some(e) => e,
            None => {
                let fd = File::open(lock_path(path, file)).map_err(io)?;
                registry.files.insert(
                    key,
                    Locked {
                        fd,
                        users: Vec::new(),
                        bytes: Vec::new(),
                    },
                );
                registry.files.get_mut(&key).expect("just inserted")
            }
        };
        if let Some(found) = conflict(&entry.fd, access).map_err(io)? {
            if entry.users.is_empty() {
                registry.files.remove(&key);
            }
            let holders = lock_holder::holders(key.0, key.1, u64::from(found.byte));
            return Err(in_use(path, &found, &holders, access));
        }
        let mut users = entry.users.clone();
        users.push((id, access));
        let wanted = bytes_for(&users);
        for &b in wanted.iter().filter(|b| !entry.bytes.contains(b)) {
            set_lock(&entry.fd, b, true).map_err(io)?;
        }
        entry.bytes = wanted;
        entry.users = users;
        Ok(ImageLock { key, id })
    }
}

/// The file to open for the lock descriptor: the same file (by its
/// `/proc/self/fd` link, so a renamed or relative path cannot miss it).
fn lock_path(path: &Path, file: &File) -> PathBuf {
    let link = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    if link.exists() {
        link
    } else {
        path.to_path_buf()
    }
}

impl Drop for ImageLock {
    fn drop(&mut self) {
        if self.id == u64::MAX {
            return;
        }
        let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        let Some(registry) = guard.as_mut() else {
            return;
        };
        let Some(entry) = registry.files.get_mut(&self.key) else {
            return;
        };
        entry.users.retain(|(id, _)| *id != self.id);
        if entry.users.is_empty() {
            // Closing the descriptor drops its locks.
            registry.files.remove(&self.key);
            return;
        }
        let wanted = bytes_for(&entry.users);
        for &b in entry.bytes.iter().filter(|b| !wanted.contains(b)) {
            let _ = set_lock(&entry.fd, b, false);
        }
        entry.bytes = wanted;
    }
}
