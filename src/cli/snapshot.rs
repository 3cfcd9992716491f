//! `qimg snapshot`.

use super::args::{FormatArg, FormatParser};
use clap::{ArgGroup, Args};
use qimg::error::{Error, Result};
use qimg::ops::snapshot::{snapshot, SnapshotAction, SnapshotRequest};
use qimg::output::info::render_snapshot_list;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg snapshot`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("action").args(["list", "create", "apply", "delete"]).multiple(false)),
    after_help = "Examples:\n  qimg snapshot -c before-upgrade disk.qcow2\n  qimg snapshot -l disk.qcow2\n  qimg snapshot -a before-upgrade disk.qcow2\n  qimg snapshot -d before-upgrade disk.qcow2"
)]
pub struct SnapshotArgs {
    /// List the internal snapshots (the default).
    #[arg(short = 'l')]
    list: bool,
    /// Take a snapshot of the disk with this name (names need not be unique).
    #[arg(short = 'c', value_name = "NAME")]
    create: Option<String>,
    /// Make the snapshot with this ID or name the disk (what was written
    /// since is lost).
    #[arg(short = 'a', value_name = "NAME")]
    apply: Option<String>,
    /// Delete the (first) snapshot with this name; IDs are not looked up,
    /// as with qemu-img.
    #[arg(short = 'd', value_name = "NAME")]
    delete: Option<String>,
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Quiet (accepted as by qemu-img; the list is still printed).
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Open the image in shared mode (it may be in use by a VM); only for listing.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// The image.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl SnapshotArgs {
    /// Runs `snapshot`.
    pub fn run(self) -> Result<ExitCode> {
        let action = match (self.create, self.apply, self.delete) {
            (Some(n), _, _) => SnapshotAction::Create(n),
            (_, Some(n), _) => SnapshotAction::Apply(n),
            (_, _, Some(n)) => SnapshotAction::Delete(n),
            _ => SnapshotAction::List,
        };
        if self.force_share && action != SnapshotAction::List {
            return Err(Error::argument(format!(
                "Could not open '{}': force-share=on can only be used with read-only images",
                self.file.display()
            )));
        }
        let storage = super::args::storage_options(None, self.force_share)?;
        let listed = action == SnapshotAction::List;
        let snapshots = snapshot(&SnapshotRequest {
            file: self.file,
            format: self.format.map(|f| f.0),
            action,
            storage,
        })?;
        // -q silences nothing here: qemu-img prints the list with it too,
        // and the other actions print nothing anyway.
        let _ = self.quiet;
        if listed {
            std::io::stdout()
                .write_all(render_snapshot_list(&snapshots).as_bytes())
                .map_err(|e| Error::io("could not write output", e))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
