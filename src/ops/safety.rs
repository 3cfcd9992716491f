//! `check --safety`: whether an image is safe to accept from a stranger,
//! decided from the file alone (nothing it names is opened).
//!
//! An image is safe when its bytes say one format (the claimed one, when a
//! format is claimed), qimg reads it as data only without refusing
//! anything it names, its driver has no concern about it as an upload,
//! and a partition table in a raw disk is one a partitioning tool would
//! write. The checks and their names follow OpenStack's
//! `format_inspector.safety_check`, so the verdicts agree with it.

use crate::error::{ErrorKind, Result};
use crate::format::probe::open_as_with;
use crate::format::safety::{partition_table_findings, signatures, Finding, SIGNATURE_BYTES};
use crate::format::{registry, FormatKind, OpenHow};
use crate::io::{open_read_storage_with, Refusals, RefusedKind, StorageOptions, Trust};
use std::path::Path;

/// The verdict on one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The file name as given.
    pub filename: String,
    /// The format the file was read as: the claimed one, else the one its
    /// magic says, else the fallback (raw).
    pub format: &'static str,
    /// Every format and layout its first bytes carry (`qcow2`, `gpt`, ...).
    pub detected: Vec<&'static str>,
    /// Why it is not safe; empty when it is.
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// Whether the image is safe to accept.
    pub fn safe(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The check name OpenStack's inspector gives each kind of refusal.
fn check_name(kind: RefusedKind) -> &'static str {
    match kind {
        RefusedKind::BackingFile => "backing_file",
        RefusedKind::DataFile => "data_file",
        RefusedKind::ExtentFile => "descriptor",
        RefusedKind::Format => "banned",
    }
}

/// Checks the image at `path`, claimed to be `claimed` when given.
/// Errors are for a file that cannot be read at all; everything wrong
/// with its content is a finding.
pub fn safety_check(
    path: &Path,
    claimed: Option<FormatKind>,
    options: &StorageOptions,
) -> Result<Verdict> {
    let storage = open_read_storage_with(path, options)?;
    let len = storage.len()?;
    let mut head = vec![0u8; len.min(SIGNATURE_BYTES as u64) as usize];
    storage.read_at(&mut head, 0)?;
    let formats = registry::recognise_all(&head[..head.len().min(512)]);
    let layouts = signatures(&head);
    let mut detected = formats.clone();
    detected.extend(layouts.iter().map(|s| s.name()));
    let mut findings = Vec::new();
    if detected.len() > 1 {
        findings.push(Finding::new(
            "format",
            format!(
                "the file carries the signatures of several formats ({}): one hides in another",
                detected.join(", ")
            ),
        ));
    }
    let fallback = FormatKind::fallback();
    let format = match claimed {
        Some(k) => k,
        None => match formats.first() {
            Some(name) => match FormatKind::named(name) {
                Some(k) => k,
                None => {
                    findings.push(Finding::new(
                        "format",
                        format!("{name} images are not read by qimg"),
                    ));
                    return Ok(verdict(path, name, detected, findings));
                }
            },
            None => fallback,
        },
    };
    if claimed.is_some() && !formats.contains(&format.name()) {
        if format == fallback {
            if let Some(other) = formats.first() {
                findings.push(Finding::new(
                    "format",
                    format!("the file is claimed to be {format} but is a {other} image"),
                ));
            }
        } else {
            findings.push(Finding::new(
                "format",
                format!("the file is not a {format} image"),
            ));
        }
    }
    if !findings.is_empty() && claimed.is_some() {
        // Not the claimed format: reading it as that says nothing more.
        return Ok(verdict(path, format.name(), detected, findings));
    }
    let refusals = Refusals::default();
    // Metadata only: an encrypted image is judged without its secret.
    let untrusted = StorageOptions {
        trust: Trust::Reporting(refusals.clone()),
        no_io: true,
        ..options.clone()
    };
    match open_as_with(storage, path, Some(format), &OpenHow::ReadOnly, &untrusted) {
        Ok(image) => {
            if let Some(b) = image.backing() {
                untrusted
                    .trust
                    .admit(RefusedKind::BackingFile, &b.name, path)?;
            }
            findings.extend(
                refusals
                    .list()
                    .iter()
                    .map(|r| Finding::new(check_name(r.kind), r.reason())),
            );
            findings.extend(image.upload_concerns());
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => return Err(e),
        Err(e) => findings.push(Finding::new("open", e.reason())),
    }
    if format == fallback && layouts.iter().any(|s| s.name() == "gpt") {
        findings.extend(partition_table_findings(&head));
    }
    Ok(verdict(path, format.name(), detected, findings))
}

fn verdict(
    path: &Path,
    format: &'static str,
    detected: Vec<&'static str>,
    findings: Vec<Finding>,
) -> Verdict {
    Verdict {
        filename: path.display().to_string(),
        format,
        detected,
        findings,
    }
}
