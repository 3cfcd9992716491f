//! Which program the user thinks they ran: `qimg`, or `qemu-img` when the
//! binary is started under that name (a symlink), and what follows from it:
//! the prefix of error lines, the version banner, and the top-level usage
//! text in qemu-img's shape.

use std::path::Path;

/// The qemu-img release whose command line and output qimg follows.
pub const QEMU_IMG_VERSION: &str = "10.0.2";

/// The name the binary was started under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `qimg`, or any name but `qemu-img`.
    Qimg,
    /// `qemu-img` (the basename of argv[0]): a drop-in from the first byte.
    QemuImg,
}

impl Program {
    /// The program for `argv0` (the first command-line word).
    pub fn from_argv0(argv0: Option<&std::ffi::OsStr>) -> Program {
        let base = argv0.and_then(|a| Path::new(a).file_name());
        if base.is_some_and(|b| b == "qemu-img") {
            Program::QemuImg
        } else {
            Program::Qimg
        }
    }

    /// The name shown in usage and error lines.
    pub fn name(self) -> &'static str {
        match self {
            Program::Qimg => "qimg",
            Program::QemuImg => "qemu-img",
        }
    }

    /// The `PROGRAM: ` that starts every error line on stderr.
    pub fn prefix(self) -> String {
        format!("{}: ", self.name())
    }

    /// What `--version`/`-V` prints. The first line is qemu-img's own shape
    /// (`qemu-img version X.Y.Z ...`), so version checks such as cinder's
    /// `qemu-img version ([0-9.]*)` read the qemu-img release qimg follows;
    /// qimg's own version is in the parentheses and on the second line.
    pub fn version_banner(self) -> String {
        let own = env!("CARGO_PKG_VERSION");
        format!(
            "qemu-img version {QEMU_IMG_VERSION} (qimg {own})\n\
             qimg {own}: a qemu-img {QEMU_IMG_VERSION} drop-in for qcow2, QED and raw images\n"
        )
    }

    /// The top-level help in qemu-img's shape (banner, usage line, standard
    /// options, the commands with one line each, the formats), listing
    /// qimg's commands; `commands` is (name, one-line description).
    pub fn qemu_img_help(self, commands: &[(String, String)]) -> String {
        let mut text = self.version_banner();
        text.push_str(
            "QEMU disk image utility (qimg).  Usage:\n\n  \
             qemu-img [standard options] COMMAND [--help | command options]\n\n\
             Standard options:\n  -h, --help\n     display this help and exit\n  \
             -V, --version\n     display version info and exit\n  \
             -T, --trace TRACE\n     accepted; qimg has no trace events\n\n\
             Recognized commands (run qemu-img COMMAND --help for command-specific help):\n\n",
        );
        for (name, about) in commands {
            let about = about.trim_end_matches('.');
            let mut chars = about.chars();
            let about = match chars.next() {
                Some(c) => c.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            };
            text.push_str(&format!("  {name} - {about}\n"));
        }
        text.push_str("\nSupported image formats:\n\n  qcow2 qed raw\n");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::Program;
    use std::ffi::OsStr;

    #[test]
    fn the_name_comes_from_the_basename_of_argv0() {
        let of = |s: &str| Program::from_argv0(Some(OsStr::new(s)));
        assert_eq!(of("/usr/local/bin/qemu-img"), Program::QemuImg);
        assert_eq!(of("qemu-img"), Program::QemuImg);
        assert_eq!(of("/usr/bin/qimg"), Program::Qimg);
        assert_eq!(of("qemu-img-wrapper"), Program::Qimg);
        assert_eq!(Program::from_argv0(None), Program::Qimg);
    }

    #[test]
    fn the_version_line_parses_as_qemu_img_s() {
        let banner = Program::Qimg.version_banner();
        let first = banner.lines().next().unwrap();
        let rest = first.strip_prefix("qemu-img version ").unwrap();
        let version: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        assert_eq!(version, super::QEMU_IMG_VERSION);
        assert!(first.contains(env!("CARGO_PKG_VERSION")));
    }
}
