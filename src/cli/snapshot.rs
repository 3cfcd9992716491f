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
    group(ArgGroup::new("action").args(["list", "create", "apply", "delete", "external"]).multiple(false)),
    after_help = "Examples:\n  qimg snapshot -c before-upgrade disk.qcow2\n  qimg snapshot -l disk.qcow2\n  qimg snapshot -a before-upgrade disk.qcow2\n  qimg snapshot -d before-upgrade disk.qcow2\n  qimg snapshot --attach /run/vm/qmp.sock --device drive0 --external overlay.qcow2"
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
    /// Take an external snapshot of a disk of the running VM (or
    /// qemu-storage-daemon) behind this QMP socket: with --external.
    #[arg(long, value_name = "SOCKET", requires_all = ["device", "external"], conflicts_with = "file")]
    attach: Option<String>,
    /// With --attach: the device or node name of the disk.
    #[arg(long, value_name = "NAME", requires = "attach")]
    device: Option<String>,
    /// With --attach: create OVERLAY (as -f FMT, default qcow2) over the
    /// disk's active layer, and make the VM write into it from now on (the
    /// old layer stays as it is: a stable image to copy offline).
    #[arg(long, value_name = "OVERLAY", requires = "attach")]
    external: Option<PathBuf>,
    /// With --external: the node name the VMM gives the overlay (for
    /// commands that name nodes, e.g. `commit --attach --device NAME` on
    /// qemu-storage-daemon; default: QEMU's generated name).
    #[arg(long = "node-name", value_name = "NAME", requires = "external")]
    node_name: Option<String>,
    /// --untrusted.
    #[command(flatten)]
    trust: super::args::TrustArgs,
    /// The image.
    #[arg(value_name = "FILE", required_unless_present = "attach")]
    file: Option<PathBuf>,
}

impl SnapshotArgs {
    /// Runs `snapshot`.
    pub fn run(self) -> Result<ExitCode> {
        if let (Some(socket), Some(device), Some(overlay)) =
            (&self.attach, &self.device, &self.external)
        {
            return external_snapshot(
                socket,
                device,
                overlay,
                self.node_name.as_deref(),
                self.format.as_ref(),
            );
        }
        let file = self.file.expect("clap requires FILE without --attach");
        let action = match (self.create, self.apply, self.delete) {
            (Some(n), _, _) => SnapshotAction::Create(n),
            (_, Some(n), _) => SnapshotAction::Apply(n),
            (_, _, Some(n)) => SnapshotAction::Delete(n),
            _ => SnapshotAction::List,
        };
        if self.force_share && action != SnapshotAction::List {
            return Err(Error::argument(format!(
                "Could not open '{}': force-share=on can only be used with read-only images",
                file.display()
            )));
        }
        let storage = self
            .trust
            .apply(super::args::storage_options(None, self.force_share)?);
        let listed = action == SnapshotAction::List;
        let snapshots = snapshot(&SnapshotRequest {
            file,
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

/// `blockdev-snapshot-sync`: the VMM creates `overlay` over the active
/// layer of `device` and switches the disk to it in one step.
fn external_snapshot(
    socket: &str,
    device: &str,
    overlay: &std::path::Path,
    node_name: Option<&str>,
    format: Option<&FormatArg>,
) -> Result<ExitCode> {
    let mut qmp = super::attached::connect(socket)?;
    let top = qimg::attach::nodes::chain_of(&mut qmp, device)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::argument(format!("the VMM has no image for '{device}'")))?;
    let mut args = serde_json::json!({
        "node-name": top.name,
        "snapshot-file": super::attached::path_for_vmm(overlay)?,
        "mode": "absolute-paths",
    });
    // Without a format QEMU makes the overlay a qcow2 image.
    if let Some(f) = format {
        args["format"] = f.0.name().into();
    }
    if let Some(name) = node_name {
        args["snapshot-node-name"] = name.into();
    }
    qmp.execute("blockdev-snapshot-sync", Some(args))?;
    Ok(ExitCode::SUCCESS)
}
