//! The images a VMM has open (`query-named-block-nodes`), and finding the
//! one a user means by a file name: QEMU only matches a name exactly as it
//! opened the file, users give it relative or absolute, from anywhere.

use super::qmp::Qmp;
use crate::error::{Error, ErrorKind, Result};
use crate::paths::file_identity;
use serde_json::{json, Value};
use std::path::Path;

/// Drivers that are protocols or filters, not image formats.
const NOT_FORMATS: [&str; 12] = [
    "file",
    "host_device",
    "host_cdrom",
    "nbd",
    "ssh",
    "http",
    "https",
    "null-co",
    "null-aio",
    "throttle",
    "copy-on-read",
    "blkdebug",
];

/// One format node of the VMM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node name.
    pub name: String,
    /// The format driver (qcow2, qed, raw, ...).
    pub driver: String,
    /// The file name as QEMU opened it.
    pub file: String,
    /// The backing file name its header records.
    pub backing_file: Option<String>,
    /// Opened read-only.
    pub read_only: bool,
}

impl Node {
    fn from_json(v: &Value) -> Option<Node> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Node {
            name: text("node-name")?,
            driver: text("drv")?,
            file: text("file").unwrap_or_default(),
            backing_file: text("backing_file"),
            read_only: v.get("ro").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    /// The node as JSON for `info --attach --output=json`.
    pub fn to_json(&self) -> Value {
        json!({
            "node-name": self.name,
            "format": self.driver,
            "filename": self.file,
            "backing-filename": self.backing_file,
            "read-only": self.read_only,
        })
    }
}

/// The VMM's format nodes (protocol and filter nodes left out).
pub fn format_nodes(qmp: &mut Qmp) -> Result<Vec<Node>> {
    let reply = qmp.execute("query-named-block-nodes", Some(json!({"flat": true})))?;
    Ok(reply
        .as_array()
        .map(|a| a.iter().filter_map(Node::from_json).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| !NOT_FORMATS.contains(&n.driver.as_str()))
        .collect())
}

/// The chain of the node `device` (a node name, or a device whose
/// inserted medium is that node), top first, following backing file names.
pub fn chain_of(qmp: &mut Qmp, device: &str) -> Result<Vec<Node>> {
    let nodes = format_nodes(qmp)?;
    let top_name = match nodes.iter().find(|n| n.name == device) {
        Some(n) => n.name.clone(),
        None => device_node(qmp, device)?,
    };
    let mut chain: Vec<Node> = Vec::new();
    let mut next = nodes.iter().find(|n| n.name == top_name).cloned();
    while let Some(node) = next {
        if chain.iter().any(|n| n.name == node.name) || chain.len() > 64 {
            break;
        }
        next = node.backing_file.as_ref().and_then(|b| {
            let dir = Path::new(&node.file).parent().unwrap_or(Path::new(""));
            let joined = dir.join(b).display().to_string();
            nodes
                .iter()
                .find(|n| n.file == joined || n.file == *b)
                .cloned()
        });
        chain.push(node);
    }
    Ok(chain)
}

/// The node name behind a device name (`query-block`, on a VM).
fn device_node(qmp: &mut Qmp, device: &str) -> Result<String> {
    let not_found = || {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("Cannot find device='{device}' nor node-name='{device}'"),
        )
    };
    let Ok(Ok(reply)) = qmp.try_execute("query-block", None) else {
        return Err(not_found());
    };
    reply
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d.get("device").and_then(Value::as_str) == Some(device))
        .and_then(|d| d.pointer("/inserted/node-name"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(not_found)
}

/// The node among `nodes` that the user means by `wanted`: the same file
/// (by identity, QEMU's relative names taken from `vmm_cwd` when known),
/// or the same name as QEMU opened it, or the only one with that file name.
pub fn resolve(nodes: &[Node], wanted: &str, vmm_cwd: Option<&Path>) -> Result<String> {
    let id = file_identity(Path::new(wanted));
    let theirs = |n: &Node| match vmm_cwd {
        Some(cwd) => file_identity(&cwd.join(&n.file)),
        None => file_identity(Path::new(&n.file)),
    };
    if let Some(n) = nodes.iter().find(|n| id.is_some() && theirs(n) == id) {
        return Ok(n.name.clone());
    }
    if let Some(n) = nodes.iter().find(|n| n.file == wanted) {
        return Ok(n.name.clone());
    }
    let base = Path::new(wanted).file_name();
    let same_name: Vec<&Node> = nodes
        .iter()
        .filter(|n| base.is_some() && Path::new(&n.file).file_name() == base)
        .collect();
    let files = || {
        nodes
            .iter()
            .map(|n| format!("{} ({})", n.file, n.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match same_name.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "Can't find '{wanted}' in the backing chain (the VMM has: {})",
                files()
            ),
        )),
        _ => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "'{wanted}' matches several images of the VMM ({}); name the node instead",
                files()
            ),
        )),
    }
}

/// The node name of the image `file` (a name as the user knows it) in the
/// chain of `device`.
pub fn node_in_chain(qmp: &mut Qmp, device: &str, file: &str) -> Result<String> {
    let chain = chain_of(qmp, device)?;
    let cwd = qmp.peer_cwd();
    resolve(&chain, file, cwd.as_deref())
}
