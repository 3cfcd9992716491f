//! `qimg bitmap`.

use super::args::{FormatArg, FormatParser};
use clap::{ArgAction, ArgMatches, Args, FromArgMatches};
use qimg::error::{Error, Result};
use qimg::ops::bitmap::{bitmap, BitmapAction, BitmapRequest};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// The flags of `qimg bitmap`, as clap reads them.
#[derive(Debug, Args)]
#[command(
    after_help = "The actions run in the order given; the first one refused stops the list, and those before it are kept.\n\nExamples:\n  qimg bitmap --add disk.qcow2 backup-0\n  qimg bitmap --add -g 128k --disable disk.qcow2 backup-1\n  qimg bitmap --merge backup-0 -b old.qcow2 -F qcow2 disk.qcow2 backup-1\n  qimg bitmap --remove disk.qcow2 backup-0"
)]
pub struct BitmapFlags {
    /// Create BITMAP (enabled: it records future writes).
    #[arg(long = "add", action = ArgAction::Append, num_args = 0, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    add: Vec<bool>,
    /// Delete BITMAP (an inconsistent one too).
    #[arg(long = "remove", action = ArgAction::Append, num_args = 0, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    remove: Vec<bool>,
    /// Mark every bit of BITMAP clean.
    #[arg(long = "clear", action = ArgAction::Append, num_args = 0, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    clear: Vec<bool>,
    /// Make BITMAP record future writes.
    #[arg(long = "enable", action = ArgAction::Append, num_args = 0, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    enable: Vec<bool>,
    /// Stop BITMAP recording writes.
    #[arg(long = "disable", action = ArgAction::Append, num_args = 0, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    disable: Vec<bool>,
    /// Add what bitmap SOURCE marks dirty (in FILE, or in -b's file) to BITMAP.
    #[arg(long = "merge", value_name = "SOURCE", action = ArgAction::Append)]
    merge: Vec<String>,
    /// The granularity of the bitmap --add creates (bytes per bit, a
    /// power of two from 512; default: the cluster size, within 4k..64k).
    #[arg(
        short = 'g',
        long = "granularity",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    granularity: Option<String>,
    /// The image the --merge sources are read from (default: FILE).
    #[arg(short = 'b', long = "source-file", value_name = "SRC_FILE")]
    source_file: Option<PathBuf>,
    /// Format of SRC_FILE (probed when omitted).
    #[arg(short = 'F', long = "source-format", value_name = "FMT", value_parser = FormatParser)]
    source_format: Option<FormatArg>,
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// Change the bitmaps of a disk of the running VM (or
    /// qemu-storage-daemon) behind this QMP socket instead of a file; the
    /// only name then is BITMAP.
    #[arg(long, value_name = "SOCKET", requires = "device")]
    attach: Option<String>,
    /// With --attach: the device or node name whose bitmap it is.
    #[arg(long, value_name = "NAME", requires = "attach")]
    device: Option<String>,
    /// The image.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// The bitmap the actions are about.
    #[arg(value_name = "BITMAP")]
    bitmap: Option<String>,
    /// More names, which qemu-img refuses.
    #[arg(hide = true)]
    extra: Vec<OsString>,
}

/// `-g SIZE` as qemu-img reads it: a size with suffixes, then cut to 32
/// bits as QEMU passes it on (so `-g 4G` is refused as a granularity of
/// 0, and `-g 0` asks for the default).
fn parse_granularity(s: &str) -> Result<u64> {
    qimg::size::parse_size(s).map_err(|e| {
        // A negative number is out of range, as QEMU's parser says.
        let negative = s.trim_start().starts_with('-')
            && s.trim_start()[1..].starts_with(|c: char| c.is_ascii_digit());
        Error::argument(if negative || e.message().contains("Must be between") {
            "Invalid granularity specified. Must be between 0 and 9223372036854775807.".to_string()
        } else {
            format!("Invalid granularity specified: '{s}'.")
        })
    })
}

/// Arguments of `qimg bitmap`: the flags and the order of the actions on
/// the command line (qemu-img runs them in that order).
#[derive(Debug)]
pub struct BitmapArgs {
    flags: BitmapFlags,
    actions: Vec<BitmapAction>,
}

impl FromArgMatches for BitmapArgs {
    fn from_arg_matches(m: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        let flags = BitmapFlags::from_arg_matches(m)?;
        let mut actions: Vec<(usize, BitmapAction)> = Vec::new();
        for (id, action) in [
            ("add", BitmapAction::Add),
            ("remove", BitmapAction::Remove),
            ("clear", BitmapAction::Clear),
            ("enable", BitmapAction::Enable),
            ("disable", BitmapAction::Disable),
        ] {
            if m.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
                continue;
            }
            if let Some(at) = m.indices_of(id) {
                actions.extend(at.map(|i| (i, action.clone())));
            }
        }
        if let Some(at) = m.indices_of("merge") {
            actions.extend(
                at.zip(&flags.merge)
                    .map(|(i, s)| (i, BitmapAction::Merge(s.clone()))),
            );
        }
        actions.sort_by_key(|(i, _)| *i);
        Ok(BitmapArgs {
            flags,
            actions: actions.into_iter().map(|(_, a)| a).collect(),
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for BitmapArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        BitmapFlags::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        BitmapFlags::augment_args_for_update(cmd)
    }
}

impl BitmapArgs {
    /// Runs `bitmap`, checking the command line in qemu-img's order first.
    pub fn run(self) -> Result<ExitCode> {
        let f = self.flags;
        // qemu-img reads -g while it parses the options, before it checks them.
        let granularity = f
            .granularity
            .as_deref()
            .map(parse_granularity)
            .transpose()?;
        if self.actions.is_empty() {
            return Err(Error::argument(
                "Need at least one of --add, --remove, --clear, --enable, --disable, or --merge",
            ));
        }
        let add = self.actions.contains(&BitmapAction::Add);
        let merge = self
            .actions
            .iter()
            .any(|a| matches!(a, BitmapAction::Merge(_)));
        // qemu-img takes -g 0 as "not given".
        let granularity = granularity.filter(|&g| g != 0);
        if granularity.is_some() && !add {
            return Err(Error::argument("granularity only supported with --add"));
        }
        if f.source_format.is_some() && f.source_file.is_none() {
            return Err(Error::argument("-F only supported with -b"));
        }
        if f.source_file.is_some() && !merge {
            return Err(Error::argument(
                "Merge bitmap source file only supported with --merge",
            ));
        }
        if let (Some(socket), Some(device)) = (&f.attach, &f.device) {
            if f.source_file.is_some() {
                return Err(Error::argument(
                    "-b is for files; with --attach, --merge takes bitmaps of the same device",
                ));
            }
            let (Some(name), None, true) = (f.file.as_ref(), &f.bitmap, f.extra.is_empty()) else {
                return Err(Error::argument(
                    "Expecting a bitmap name (the device is given by --device)",
                ));
            };
            let name = name
                .to_str()
                .ok_or_else(|| Error::argument("a bitmap name must be UTF-8"))?;
            return attached_bitmap(socket, device, name, &self.actions, granularity);
        }
        let (Some(file), Some(name), true) = (f.file, f.bitmap, f.extra.is_empty()) else {
            return Err(Error::argument("Expecting filename and bitmap name"));
        };
        let file = f.spec.name(&file, f.format.is_some())?;
        bitmap(&BitmapRequest {
            file,
            format: f.format.map(|x| x.0),
            bitmap: name,
            actions: self.actions,
            // QEMU passes the granularity on as 32 bits.
            granularity: granularity.map(|g| g as u32 as u64),
            source_file: f.source_file,
            source_format: f.source_format.map(|x| x.0),
        })?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Runs `actions` on bitmap `name` of node `device` in the VMM at `socket`,
/// in order, each one QMP command; the first refused stops the list.
/// Bitmaps it adds are persistent (stored in the image, as `qimg bitmap
/// --add` stores them offline) and record the guest's writes at once.
fn attached_bitmap(
    socket: &str,
    device: &str,
    name: &str,
    actions: &[BitmapAction],
    granularity: Option<u64>,
) -> Result<ExitCode> {
    let mut qmp = super::attached::connect(socket)?;
    for action in actions {
        let mut args = serde_json::json!({ "node": device, "name": name });
        let command = match action {
            BitmapAction::Add => {
                args["persistent"] = true.into();
                if let Some(g) = granularity {
                    args["granularity"] = (g as u32).into();
                }
                "block-dirty-bitmap-add"
            }
            BitmapAction::Remove => "block-dirty-bitmap-remove",
            BitmapAction::Clear => "block-dirty-bitmap-clear",
            BitmapAction::Enable => "block-dirty-bitmap-enable",
            BitmapAction::Disable => "block-dirty-bitmap-disable",
            BitmapAction::Merge(source) => {
                args = serde_json::json!({
                    "node": device,
                    "target": name,
                    "bitmaps": [source],
                });
                "block-dirty-bitmap-merge"
            }
        };
        qmp.execute(command, Some(args))?;
    }
    Ok(ExitCode::SUCCESS)
}
