//! The shell completions in `completions/` and the man pages in `man/` are
//! generated from the clap definitions. These tests regenerate them and
//! fail when the committed files are stale; `QIMG_BLESS=1 cargo test --bin
//! qimg docs` rewrites them. They also check that every subcommand's help
//! names every flag it accepts.

use super::exit::STATUSES;
use super::Cli;
use clap::{Command, CommandFactory};
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// Every generated file: its path in the repository and its bytes.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for (shell, name) in [
        (Shell::Bash, "qimg.bash"),
        (Shell::Zsh, "_qimg"),
        (Shell::Fish, "qimg.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "qimg", &mut out);
        files.push((Path::new("completions").join(name), out));
    }
    let top = Cli::command();
    files.push((
        Path::new("man").join("qimg.1"),
        man_page(&top, "qimg", "qimg"),
    ));
    for sub in top.get_subcommands() {
        let name = format!("qimg-{}", sub.get_name());
        let shown = format!("qimg {}", sub.get_name());
        let page = man_page(sub, &name, &shown);
        files.push((Path::new("man").join(format!("{name}.1")), page));
    }
    files
}

/// Escapes text for a roff line.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// One man page: clap_mangen's sections, then EXAMPLES (from the help's
/// "Examples:" lines) and EXIT STATUS (from the exit table).
fn man_page(cmd: &Command, name: &str, shown: &str) -> Vec<u8> {
    let cmd = cmd
        .clone()
        .name(name.to_string())
        .bin_name(shown.to_string());
    let man = clap_mangen::Man::new(cmd.clone())
        .section("1")
        .source(format!("qimg {}", env!("CARGO_PKG_VERSION")))
        .manual("qimg manual");
    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(out)?;
        man.render_name_section(out)?;
        man.render_synopsis_section(out)?;
        man.render_description_section(out)?;
        man.render_options_section(out)?;
        if cmd.has_subcommands() {
            man.render_subcommands_section(out)?;
        }
        Ok(())
    };
    render(&mut out).expect("rendering into memory");
    let after = cmd
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let examples: Vec<&str> = after
        .split("Examples:")
        .nth(1)
        .map(|e| e.lines().filter(|l| !l.trim().is_empty()).collect())
        .unwrap_or_default();
    if !examples.is_empty() {
        out.extend(b".SH EXAMPLES\n.nf\n");
        for line in examples {
            out.extend(format!("{}\n", roff(line.trim())).bytes());
        }
        out.extend(b".fi\n");
    }
    out.extend(b".SH \"EXIT STATUS\"\n");
    for (code, meaning) in STATUSES {
        out.extend(format!(".TP\n{code}\n{}\n", roff(&meaning.replace('`', ""))).bytes());
    }
    out
}

#[test]
fn completions_and_man_pages_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var_os("QIMG_BLESS").is_some();
    let mut stale = Vec::new();
    for (path, bytes) in generated() {
        let full = root.join(&path);
        if std::fs::read(&full).ok().as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        if bless {
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, &bytes).unwrap();
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files: {}\nregenerate them with: QIMG_BLESS=1 cargo test --bin qimg docs \
         (then commit completions/ and man/)",
        stale.join(", ")
    );
}

/// Each subcommand (nested ones too) with its path, e.g. "job set-speed".
fn commands(cmd: &Command, path: String, out: &mut Vec<(String, Command)>) {
    for sub in cmd.get_subcommands() {
        let p = format!("{path} {}", sub.get_name()).trim().to_string();
        out.push((p.clone(), sub.clone()));
        commands(sub, p, out);
    }
}

#[test]
fn every_help_names_every_flag() {
    let mut all = Vec::new();
    commands(&Cli::command(), String::new(), &mut all);
    assert!(all.len() >= 9, "{} subcommands", all.len());
    for (path, mut cmd) in all {
        let help = cmd.render_long_help().to_string();
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.is_positional() {
                continue;
            }
            let named = arg
                .get_long()
                .is_some_and(|l| help.contains(&format!("--{l}")))
                || arg
                    .get_short()
                    .is_some_and(|s| help.contains(&format!("-{s}")));
            assert!(named, "qimg {path} --help does not name {:?}", arg.get_id());
        }
    }
}

#[test]
fn every_subcommand_help_ends_with_examples() {
    for sub in Cli::command().get_subcommands() {
        let after = sub
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        let examples = after.split("Examples:").nth(1).unwrap_or_default();
        let count = examples
            .lines()
            .filter(|l| l.trim_start().starts_with("qimg "))
            .count();
        assert!(
            count >= 2,
            "qimg {} --help has {count} examples",
            sub.get_name()
        );
    }
}
