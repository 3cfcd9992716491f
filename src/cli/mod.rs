//! The command line: one module per subcommand, each with its arguments and
//! its `run`. Nothing here knows about tables or clusters.

mod args;
mod attached;
mod check;
mod commit;
mod convert;
mod create;
#[cfg(test)]
mod docs;
pub mod exit;
mod info;
mod job;
mod map;
pub mod program;
mod progress;
mod rebase;
mod signals;
mod stream;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use program::Program;
use qimg::error::Result;
use std::ffi::OsString;
use std::process::ExitCode;

/// qimg: create, inspect, convert and manage qcow2, QED and raw disk images.
#[derive(Debug, Parser)]
#[command(
    name = "qimg",
    version,
    about = "Create, inspect, convert and manage qcow2, QED and raw virtual-disk images",
    long_about = "qimg works on qcow2 (v2 and v3), QED and raw images in the style of qemu-img: \
the same subcommands, flags and output formats, so scripts written for qemu-img need only the \
program name changed.",
    after_help = exit::SUMMARY,
    after_long_help = exit::table(),
    // As qemu-img (getopt): a repeated option's last value wins, and a
    // long option may be shortened to any unambiguous prefix.
    args_override_self = true,
    infer_long_args = true
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new image.
    Create(create::CreateArgs),
    /// Show facts about an image (and its backing chain).
    Info(info::InfoArgs),
    /// Show how guest ranges map to files (allocation, zeroes, backing depth).
    Map(map::MapArgs),
    /// Check an image's metadata for corruptions and leaks.
    Check(check::CheckArgs),
    /// Copy one or more images into a new image, converting the format.
    Convert(convert::ConvertArgs),
    /// Pull data from backing files into an image, then drop or move its backing pointer.
    Stream(stream::StreamArgs),
    /// Copy an image's data down into its backing file.
    Commit(commit::CommitArgs),
    /// Change an image's backing file, copying what differs.
    Rebase(rebase::RebaseArgs),
    /// Control the block jobs of a running VM (list, pause, resume, cancel, complete, set-speed, wait).
    Job(job::JobArgs),
}

/// The clap command as `program` shows it (its name in usage lines), with
/// getopt's habits on every subcommand.
pub fn command(program: Program) -> clap::Command {
    Cli::command()
        .name(program.name())
        .bin_name(program.name())
        .mut_subcommands(|sub| sub.args_override_self(true).infer_long_args(true))
}

/// Parses the command line `args` (argv[0] first) of `program`. `Err` is
/// the exit code when nothing is left to run: help or the version was
/// printed, or the arguments were refused (the message is printed, in
/// qemu-img's shape when started as `qemu-img`).
pub fn parse(program: Program, args: Vec<OsString>) -> std::result::Result<Cli, ExitCode> {
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
    let matches = match cmd.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => return Err(clap_error(program, e)),
    };
    Cli::from_arg_matches(&matches).map_err(|e| clap_error(program, e))
}

/// Prints a refused command line: clap's text for `qimg`; for `qemu-img`
/// qemu-img's two lines (`qemu-img: WHAT` and where to find help).
fn clap_error(program: Program, e: clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::from(exit::SUCCESS);
    }
    if program == Program::Qimg {
        let _ = e.print();
        return ExitCode::from(exit::FAILURE);
    }
    let text = e.render().to_string();
    let what = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    let sub = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    usage_error(program, sub.as_deref(), &what)
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

/// Runs the parsed command and returns the process exit code; `program`
/// names the messages it prints.
pub fn run(cli: Cli, program: Program) -> Result<ExitCode> {
    match cli.command {
        Command::Create(a) => a.run(),
        Command::Info(a) => a.run(),
        Command::Map(a) => a.run(),
        Command::Check(a) => a.run(program),
        Command::Convert(a) => a.run(program),
        Command::Stream(a) => a.run(program),
        Command::Commit(a) => a.run(program),
        Command::Rebase(a) => a.run(program),
        Command::Job(a) => a.run(),
    }
}
