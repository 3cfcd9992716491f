//! qimg's exit statuses, in one place: the commands return these, and the
//! top-level help, the man pages' EXIT STATUS sections and the README's
//! table are checked against [`STATUSES`].

/// Success.
pub const SUCCESS: u8 = 0;
/// An error: one line `qimg: FILE: what is wrong` on stderr.
pub const FAILURE: u8 = 1;
/// `check`: the image has corruptions (the library's `CheckReport::exit_code`).
#[allow(dead_code)] // returned by the library; a test holds the two equal
pub const CHECK_CORRUPTIONS: u8 = 2;
/// `check`: the image has leaked clusters only (as above).
#[allow(dead_code)]
pub const CHECK_LEAKS: u8 = 3;
/// `check --safety`: the image is not safe to accept from a stranger.
pub const CHECK_UNSAFE: u8 = 4;
/// `check`: the format has no check.
pub const CHECK_UNSUPPORTED: u8 = 63;
/// Stopped early by `--time-limit`/`--deadline`; run the command again to continue.
pub const STOPPED_EARLY: u8 = 75;
/// Interrupted by SIGINT (128 + 2).
pub const INTERRUPTED: u8 = 130;
/// Interrupted by SIGTERM (128 + 15).
pub const TERMINATED: u8 = 143;

/// The status for a command that failed with `e`: 130/143 when a signal
/// ended a wait (the images are left as for a clean stop), else 1.
pub fn for_error(e: &qimg::error::Error) -> u8 {
    if e.kind() == qimg::error::ErrorKind::Interrupted {
        super::signals::exit_code()
    } else {
        FAILURE
    }
}

/// Every status and what it means.
pub const STATUSES: &[(u8, &str)] = &[
    (SUCCESS, "success"),
    (FAILURE, "error: one line `qimg: FILE: what is wrong` on stderr (argument errors too, as with qemu-img)"),
    (CHECK_CORRUPTIONS, "`check`: the image has corruptions"),
    (CHECK_LEAKS, "`check`: the image has leaked clusters only"),
    (CHECK_UNSAFE, "`check --safety`: the image is not safe to accept from a stranger"),
    (CHECK_UNSUPPORTED, "`check`: the format has no check"),
    (STOPPED_EARLY, "`stream` stopped by `--time-limit`/`--deadline`; run it again to continue"),
    (INTERRUPTED, "interrupted by SIGINT: the images are consistent and the job is incomplete (an attached job is cancelled)"),
    (TERMINATED, "interrupted by SIGTERM, as for SIGINT"),
];

/// The table as text, for `qimg --help` (the long help).
pub fn table() -> String {
    let rows: Vec<String> = STATUSES
        .iter()
        .map(|(code, meaning)| format!("  {code:>3}  {}", meaning.replace('`', "")))
        .collect();
    format!("Exit status:\n{}", rows.join("\n"))
}

/// The one-paragraph form for `qimg -h`.
pub const SUMMARY: &str = "Exit status: 0 success, 1 error, 2/3/4/63 check found corruptions/leaks only/an unsafe image (--safety)/no check for the format, \
75 stream stopped by --time-limit/--deadline (run it again), 130/143 interrupted by SIGINT/SIGTERM.";

#[cfg(test)]
mod tests {
    use super::{STATUSES, SUMMARY};

    #[test]
    fn the_summary_names_every_status() {
        for (code, _) in STATUSES {
            assert!(SUMMARY.contains(&code.to_string()), "{code} missing");
        }
    }

    #[test]
    fn checks_end_with_these_codes() {
        use qimg::format::check::CheckReport;
        let report = |corruptions, leaks| CheckReport {
            corruptions,
            leaks,
            ..Default::default()
        };
        assert_eq!(report(1, 1).exit_code(), super::CHECK_CORRUPTIONS);
        assert_eq!(report(0, 1).exit_code(), super::CHECK_LEAKS);
        assert_eq!(report(0, 0).exit_code(), super::SUCCESS);
    }

    #[test]
    fn the_readme_table_is_this_table() {
        let readme = include_str!("../../README.md");
        for (code, meaning) in STATUSES {
            let row = format!("| {code} | {meaning} |");
            assert!(readme.contains(&row), "README lacks the row: {row}");
        }
    }
}
