//! How image files name other files (backing files, external data files).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The device and inode of the file at `path`, which name it whatever the
/// path it is reached by; `None` when it cannot be examined.
pub fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether a stored name is used as is: an absolute path, or a
/// `protocol:` / `json:` specification.
pub fn is_absolute_spec(name: &str) -> bool {
    if name.starts_with('/') || name.starts_with("json:") {
        return true;
    }
    // "nbd://...", "nbd+unix://...", "file:..." — a protocol prefix before any slash.
    match name.find(':') {
        Some(colon) => {
            let prefix = &name[..colon];
            !prefix.is_empty()
                && !prefix.contains('/')
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        }
        None => false,
    }
}

/// Resolves `name`, stored in the image opened as `image_path`, the way QEMU
/// does: relative names are joined to the directory part of `image_path`,
/// as text, without resolving symlinks.
///
/// ```
/// use qimg::paths::resolve_relative_to;
/// use std::path::{Path, PathBuf};
/// assert_eq!(resolve_relative_to(Path::new("vm/top.qcow2"), "base.qcow2"), PathBuf::from("vm/base.qcow2"));
/// assert_eq!(resolve_relative_to(Path::new("vm/top.qcow2"), "/srv/base.qcow2"), PathBuf::from("/srv/base.qcow2"));
/// ```
pub fn resolve_relative_to(image_path: &Path, name: &str) -> PathBuf {
    if is_absolute_spec(name) {
        return PathBuf::from(name);
    }
    match image_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name),
        _ => PathBuf::from(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_join_the_image_directory() {
        assert_eq!(
            resolve_relative_to(Path::new("top.qcow2"), "mid.qcow2"),
            PathBuf::from("mid.qcow2")
        );
        assert_eq!(
            resolve_relative_to(Path::new("qf/top.qcow2"), "mid.qcow2"),
            PathBuf::from("qf/mid.qcow2")
        );
        assert_eq!(
            resolve_relative_to(Path::new("/a/b/top"), "../m"),
            PathBuf::from("/a/b/../m")
        );
        assert_eq!(
            resolve_relative_to(Path::new("qf/top"), "/abs/m"),
            PathBuf::from("/abs/m")
        );
        assert_eq!(
            resolve_relative_to(Path::new("qf/top"), "nbd://h/e"),
            PathBuf::from("nbd://h/e")
        );
    }
}
