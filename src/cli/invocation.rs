//! From the command line to a parsed [`Cli`], and refusals and errors back
//! to stderr: clap's text as `qimg`; as `qemu-img`, qemu-img's own lines
//! (getopt's wording for unknown options and missing values, qemu-img's
//! sentences for missing file names and bad choices, the pointer to the
//! help), so callers that match them see what qemu-img prints.

use super::program::Program;
use super::{command, exit, Cli};
use clap::FromArgMatches;
use std::ffi::OsString;
use std::process::ExitCode;

/// Parses the command line `args` (argv[0] first) of `program`. `Err` is
/// the exit code when nothing is left to run: help or the version was
/// printed, or the arguments were refused (the message is printed, in
/// qemu-img's shape when started as `qemu-img`).
pub fn parse(program: Program, args: Vec<OsString>) -> std::result::Result<Cli, ExitCode> {
    let args = without_trace_options(args);
    let first = args.get(1).and_then(|a| a.to_str());
    if matches!(first, Some("-V" | "--version")) {
        print!("{}", program.version_banner());
        return Err(ExitCode::SUCCESS);
    }
    let cmd = command(program);
    if program == Program::QemuImg {
        let known = |name: &str| cmd.get_subcommands().any(|s| s.get_name() == name);
        match first {
            None => return Err(usage_error(program, None, "Not enough arguments")),
            Some("-h" | "--help") => {
                let commands: Vec<(String, String)> = cmd
                    .get_subcommands()
                    .map(|s| {
                        let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
                        (s.get_name().to_string(), about)
                    })
                    .collect();
                print!("{}", program.qemu_img_help(&commands));
                return Err(ExitCode::SUCCESS);
            }
            Some(name) if !name.starts_with('-') && !known(name) => {
                return Err(usage_error(
                    program,
                    None,
                    &format!("Command not found: {name}"),
                ))
            }
            _ => {}
        }
    }
    let matches = match cmd.try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => return Err(clap_error(program, e, &args)),
    };
    Cli::from_arg_matches(&matches).map_err(|e| clap_error(program, e, &args))
}

/// `args` without qemu-img's standard `-T TRACE`/`--trace TRACE` options
/// before the command: accepted as qemu-img accepts them; qimg has no
/// trace events, so they enable nothing.
fn without_trace_options(args: Vec<OsString>) -> Vec<OsString> {
    let mut rest = args.into_iter();
    let mut kept: Vec<OsString> = rest.next().into_iter().collect();
    while let Some(arg) = rest.next() {
        match arg.to_str() {
            Some("-T" | "--trace") => {
                rest.next();
            }
            Some(a) if a.starts_with("--trace=") || (a.starts_with("-T") && a.len() > 2) => {}
            _ => {
                kept.push(arg);
                break;
            }
        }
    }
    kept.extend(rest);
    kept
}

/// Prints a refused command line `args`: clap's text for `qimg`; for
/// `qemu-img` qemu-img's two lines (`qemu-img: WHAT`, or getopt's
/// `qemu-img CMD: invalid option -- 'x'`, and where to find help).
fn clap_error(program: Program, e: clap::Error, args: &[OsString]) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::from(exit::SUCCESS);
    }
    if program == Program::Qimg {
        let _ = e.print();
        return ExitCode::from(exit::FAILURE);
    }
    let sub = args
        .get(1)
        .and_then(|a| a.to_str())
        .filter(|a| !a.starts_with('-'));
    if let Some(sub) = sub {
        if let Some((words, with_help)) = file_count_words(&e, sub) {
            let name = program.name();
            eprintln!("{name}: {words}");
            if with_help {
                eprintln!("Try '{name} {sub} --help' for more info");
            }
            return ExitCode::from(exit::FAILURE);
        }
    }
    if let (Some(sub), Some(words)) = (sub, getopt_words(&e, args)) {
        let name = program.name();
        eprintln!("{name} {sub}: {words}\nTry '{name} {sub} --help' for more info");
        return ExitCode::from(exit::FAILURE);
    }
    let what = choice_words(&e).unwrap_or_else(|| {
        let text = e.render().to_string();
        text.lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string()
    });
    usage_error(program, sub, &what)
}

/// qemu-img's sentence for a missing or extra file name of `sub`, and
/// whether qemu-img follows it with the pointer to the help.
fn file_count_words(e: &clap::Error, sub: &str) -> Option<(String, bool)> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match (e.kind(), e.get(ContextKind::InvalidArg)) {
        (ErrorKind::MissingRequiredArgument, Some(ContextValue::Strings(missing)))
            if missing.iter().any(|m| m.starts_with("<FILE>")) =>
        {
            Some(match sub {
                "convert" => ("Must specify image file name".to_string(), false),
                "create" => ("Expecting image file name".to_string(), true),
                _ => ("Expecting one image file name".to_string(), true),
            })
        }
        (ErrorKind::UnknownArgument, Some(ContextValue::String(extra)))
            if !extra.starts_with('-') =>
        {
            Some(match sub {
                "create" => (format!("Unexpected argument: {extra}"), true),
                _ => ("Expecting one image file name".to_string(), true),
            })
        }
        _ => None,
    }
}

/// qemu-img's sentence for a bad `--output` or `-r` value.
fn choice_words(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    if arg.starts_with("--output ") {
        Some(format!("--output expects 'human' or 'json' not '{value}'"))
    } else if arg.starts_with("--repair ") {
        Some(format!(
            "--repair (-r) expects 'leaks' or 'all' not '{value}'"
        ))
    } else {
        None
    }
}

/// getopt's words for an unknown option or a missing option value, as
/// qemu-img prints them; `None` for other refusals.
fn getopt_words(e: &clap::Error, args: &[OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    match e.kind() {
        ErrorKind::UnknownArgument => match arg.strip_prefix("--") {
            Some(long) => Some(format!(
                "unrecognized option '--{}'",
                long.split('=').next().unwrap_or(long)
            )),
            None => arg
                .chars()
                .nth(1)
                .map(|c| format!("invalid option -- '{c}'")),
        },
        ErrorKind::InvalidValue if matches!(e.get(ContextKind::InvalidValue), Some(ContextValue::String(v)) if v.is_empty()) =>
        {
            // clap names the option by its long name; say it as it was typed.
            let long = arg.split([' ', '=']).next()?;
            let typed = args.last().and_then(|a| a.to_str()).unwrap_or_default();
            if typed.starts_with("--") || typed.len() != 2 {
                Some(format!("option '{long}' requires an argument"))
            } else {
                Some(format!("option requires an argument -- '{}'", &typed[1..]))
            }
        }
        _ => None,
    }
}

/// Command-line mistakes found after parsing, which qemu-img follows with
/// the pointer to the command's help.
const USAGE_SENTENCES: [&str; 2] = [
    "Expecting image file name",
    "Must specify backing file (-b) or use unsafe mode (-u)",
];

/// Prints the error a command returned: `PROGRAM: ERROR`, and for a
/// command-line mistake under the name `qemu-img` qemu-img's pointer to
/// the help of the command (the first word of `args` after argv[0]).
pub fn report(program: Program, args: &[OsString], e: &qimg::error::Error) {
    eprintln!("{}{e}", program.prefix());
    let usage = e.kind() == qimg::error::ErrorKind::InvalidArgument
        && USAGE_SENTENCES.contains(&e.message());
    if program == Program::QemuImg && usage {
        if let Some(sub) = args.get(1).and_then(|a| a.to_str()) {
            eprintln!("Try '{} {sub} --help' for more info", program.name());
        }
    }
}

/// Prints `PROGRAM: WHAT` and qemu-img's pointer to the help; returns 1.
fn usage_error(program: Program, sub: Option<&str>, what: &str) -> ExitCode {
    let name = program.name();
    let help = match sub {
        Some(sub) => format!("{name} {sub} --help"),
        None => format!("{name} --help"),
    };
    eprintln!("{name}: {what}\nTry '{help}' for more info");
    ExitCode::from(exit::FAILURE)
}
