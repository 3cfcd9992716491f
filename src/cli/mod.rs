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
mod progress;
mod rebase;
mod resize;
mod signals;
mod snapshot;
mod stream;

use clap::{Parser, Subcommand};
use qimg::error::Result;
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
    after_long_help = exit::table()
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
    /// Change an image's virtual size (grow, or shrink with --shrink).
    Resize(resize::ResizeArgs),
    /// List, take, apply or delete a qcow2 image's internal snapshots.
    Snapshot(snapshot::SnapshotArgs),
    /// Control the block jobs of a running VM (list, pause, resume, cancel, complete, set-speed, wait).
    Job(job::JobArgs),
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Create(a) => a.run(),
        Command::Info(a) => a.run(),
        Command::Map(a) => a.run(),
        Command::Check(a) => a.run(),
        Command::Convert(a) => a.run(),
        Command::Stream(a) => a.run(),
        Command::Commit(a) => a.run(),
        Command::Rebase(a) => a.run(),
        Command::Resize(a) => a.run(),
        Command::Snapshot(a) => a.run(),
        Command::Job(a) => a.run(),
    }
}
