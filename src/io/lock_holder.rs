//! Who holds a lock byte of an image: the processes whose open file
//! descriptions of that file hold a lock covering the byte, read from
//! `/proc/PID/fdinfo` (OFD locks, the kind QEMU takes, show no PID in
//! `/proc/locks`; POSIX locks do, and are read from there). Whatever is not
//! readable (other users' processes) is skipped: the answer may be empty.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;

/// A process holding a lock on the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`), when readable.
    pub command: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.command {
            Some(c) => write!(f, "{} ({c})", self.pid),
            None => write!(f, "{}", self.pid),
        }
    }
}

/// Whether a `/proc/locks`-style line (`N: KIND ADVISORY MODE PID
/// MAJ:MIN:INODE START END`) locks a range covering `byte` of inode `ino`;
/// returns the PID column (-1 for OFD locks) when it does.
fn covers(line: &str, ino: u64, byte: u64) -> Option<i64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // The kind may be followed by "->" for a blocked waiter; skip those.
    if fields.contains(&"->") || fields.len() < 8 {
        return None;
    }
    let n = fields.len();
    let (pid, id, start, end) = (fields[n - 4], fields[n - 3], fields[n - 2], fields[n - 1]);
    let inode: u64 = id.rsplit(':').next()?.parse().ok()?;
    let start: u64 = start.parse().ok()?;
    let end = if end == "EOF" {
        u64::MAX
    } else {
        end.parse().ok()?
    };
    (inode == ino && start <= byte && byte <= end).then(|| pid.parse().ok())?
}

fn command_of(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

/// The processes other than this one holding a lock on `byte` of the
/// file with device `dev` and inode `ino`.
pub fn holders(dev: u64, ino: u64, byte: u64) -> Vec<Holder> {
    let me = std::process::id();
    let mut pids = BTreeSet::new();
    if let Ok(text) = fs::read_to_string("/proc/locks") {
        for line in text.lines() {
            if let Some(pid) = covers(line, ino, byte) {
                if pid > 0 && pid as u32 != me {
                    pids.insert(pid as u32);
                }
            }
        }
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || pids.contains(&pid) {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let same = fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino);
            if !same {
                continue;
            }
            let info = entry.path().join("fdinfo").join(fd.file_name());
            let locked = fs::read_to_string(info).is_ok_and(|t| {
                t.lines()
                    .filter_map(|l| l.strip_prefix("lock:"))
                    .any(|l| covers(l, ino, byte).is_some())
            });
            if locked {
                pids.insert(pid);
                break;
            }
        }
    }
    pids.into_iter()
        .map(|pid| Holder {
            pid,
            command: command_of(pid),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn lock_lines_are_read_as_the_kernel_writes_them() {
        let ofd = "4: OFDLCK ADVISORY  READ -1 fe:00:10010883 100 101";
        assert_eq!(covers(ofd, 10010883, 101), Some(-1));
        assert_eq!(covers(ofd, 10010883, 102), None);
        assert_eq!(covers(ofd, 42, 101), None);
        let posix = "1: POSIX  ADVISORY  WRITE 4242 08:01:77 0 EOF";
        assert_eq!(covers(posix, 77, 201), Some(4242));
        let waiter = "1: -> POSIX  ADVISORY  WRITE 4243 08:01:77 0 EOF";
        assert_eq!(covers(waiter, 77, 201), None);
    }
}
