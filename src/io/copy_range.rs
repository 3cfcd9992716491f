//! Copies between two local files made by the kernel (`copy_file_range(2)`):
//! block clones where the file system shares blocks (XFS, btrfs), an
//! in-kernel copy elsewhere; the bytes never pass through this process.

use std::fs::File;
use std::os::unix::io::AsRawFd;

/// Copies up to `len` bytes from `from` at `from_offset` to `to` at
/// `offset` with `copy_file_range(2)`. Returns the bytes copied (fewer
/// when the source ends first), or the failure with the bytes copied
/// before it.
pub(crate) fn kernel_copy(
    from: &File,
    from_offset: u64,
    to: &File,
    offset: u64,
    len: u64,
) -> std::result::Result<u64, (u64, std::io::Error)> {
    let mut done = 0u64;
    while done < len {
        let too_far = || (done, std::io::Error::from_raw_os_error(libc::EOVERFLOW));
        let mut off_in = libc::loff_t::try_from(from_offset + done).map_err(|_| too_far())?;
        let mut off_out = libc::loff_t::try_from(offset + done).map_err(|_| too_far())?;
        // At most 1 GiB a call, so a signal is seen between calls.
        let n = (len - done).min(1 << 30) as usize;
        // SAFETY: both descriptors are open files we own for the call; the
        // offsets are locals the kernel updates; no buffer is passed.
        let r = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                &mut off_out,
                n,
                0,
            )
        };
        match r {
            0 => break,
            r if r > 0 => done += r as u64,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err((done, e));
                }
            }
        }
    }
    Ok(done)
}

/// Whether a `copy_file_range` failure says this pair of files cannot be
/// copied that way (another file system, no support, a special file),
/// rather than that the copy failed.
pub(crate) fn cannot_copy_range(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL | libc::EBADF)
    )
}
