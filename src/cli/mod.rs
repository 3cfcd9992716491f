//! The command line: one module per subcommand, each with its arguments and
//! its `run`. Nothing here knows about tables or clusters.

mod amend;
mod args;
mod attached;
mod backup;
mod bitmap;
mod check;
mod checksum;
mod commit;
mod compare;
mod convert;
mod create;
mod dd;
#[cfg(test)]
mod docs;
pub mod exit;
mod info;
mod invocation;
mod job;
mod map;
mod measure;
mod mirror;
pub mod program;
mod progress;
mod rebase;
mod resize;
mod signals;
mod snapshot;
mod stream;

use clap::{CommandFactory, Parser, Subcommand};
pub use invocation::{parse, report};
use program::Program;
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
    /// Tell how large an image converted into a format would be.
    Measure(measure::MeasureArgs),
    /// Check an image's metadata for corruptions and leaks.
    Check(check::CheckArgs),
    /// Copy one or more images into a new image, converting the format.
    Convert(convert::ConvertArgs),
    /// Copy a range of blocks of an image into a new image, as dd does.
    Dd(dd::DdArgs),
    /// Pull data from backing files into an image, then drop or move its backing pointer.
    Stream(stream::StreamArgs),
    /// Copy an image's data down into its backing file.
    Commit(commit::CommitArgs),
    /// Check whether two images show the guest the same content.
    Compare(compare::CompareArgs),
    /// Print a digest of each image's guest content (blksum's blkhash), whatever its format.
    Checksum(checksum::ChecksumArgs),
    /// Change an image's backing file, copying what differs.
    Rebase(rebase::RebaseArgs),
    /// Change an image's virtual size (grow, or shrink with --shrink).
    Resize(resize::ResizeArgs),
    /// List, take, apply or delete a qcow2 image's internal snapshots.
    Snapshot(snapshot::SnapshotArgs),
    /// Change the options of an existing image (qcow2 compat level, lazy refcounts, size).
    Amend(amend::AmendArgs),
    /// Add, remove, clear, enable, disable or merge a qcow2 image's persistent dirty bitmaps (bitmap ACTION... [-g SIZE] [-b SRC_FILE [-F FMT]] filename bitmap).
    Bitmap(bitmap::BitmapArgs),
    /// Control the block jobs of a running VM (list, pause, resume, cancel, complete, set-speed, wait).
    Job(job::JobArgs),
    /// Copy a running VM's disk to a new image while the guest writes, then switch the VM to it.
    Mirror(mirror::MirrorArgs),
    /// Back up a running VM's disk (full, or incremental with a dirty bitmap).
    Backup(backup::BackupArgs),
}

/// The clap command as `program` shows it (its name in usage lines), with
/// getopt's habits on every subcommand.
pub fn command(program: Program) -> clap::Command {
    Cli::command()
        .name(program.name())
        .bin_name(program.name())
        .mut_subcommands(|sub| sub.args_override_self(true).infer_long_args(true))
}

/// Runs the parsed command and returns the process exit code; `program`
/// names the messages it prints.
pub fn run(cli: Cli, program: Program) -> Result<ExitCode> {
    match cli.command {
        Command::Create(a) => a.run(),
        Command::Info(a) => a.run(),
        Command::Map(a) => a.run(),
        Command::Measure(a) => a.run(),
        Command::Check(a) => a.run(program),
        Command::Convert(a) => a.run(program),
        Command::Dd(a) => a.run(program),
        Command::Stream(a) => a.run(program),
        Command::Commit(a) => a.run(program),
        Command::Compare(a) => a.run(program),
        Command::Checksum(a) => a.run(program),
        Command::Rebase(a) => a.run(program),
        Command::Resize(a) => a.run(program),
        Command::Snapshot(a) => a.run(),
        Command::Amend(a) => a.run(),
        Command::Bitmap(a) => a.run(),
        Command::Job(a) => a.run(),
        Command::Mirror(a) => a.run(),
        Command::Backup(a) => a.run(),
    }
}
