//! From an option tree to typed nodes: which driver, which options it
//! takes, and QEMU's messages for everything else (unknown driver, missing
//! file name, an option the driver does not take).

use super::tree::Tree;
use super::{BackingChoice, FileNode, FormatNode, HttpNode, ImageSpec, NbdNode, Window};
use crate::error::{Error, Result};
use crate::format::{registry, FormatKind};
use crate::io::nbd::NbdAddress;
use crate::size::parse_size;
use serde_json::Value;
use std::path::PathBuf;

/// Options every block node takes; qimg accepts them and has no use for them.
const NODE_OPTIONS: &[&str] = &[
    "node-name",
    "discard",
    "cache",
    "read-only",
    "auto-read-only",
    "detect-zeroes",
    "force-share",
];

/// Options of the `file` protocol that only tune how QEMU does its I/O.
const FILE_TUNING: &[&str] = &[
    "aio",
    "aio-max-batch",
    "locking",
    "pr-manager",
    "drop-cache",
    "x-check-cache-dropped",
];

/// Protocol and filter drivers QEMU has and qimg does not open.
const FOREIGN_DRIVERS: &[&str] = &[
    "host_cdrom",
    "ftp",
    "ftps",
    "ssh",
    "iscsi",
    "iser",
    "rbd",
    "gluster",
    "nfs",
    "nvme",
    "blkio",
    "io_uring",
    "virtio-blk-vhost-user",
    "virtio-blk-vhost-vdpa",
    "null-co",
    "null-aio",
    "blkdebug",
    "blkverify",
    "blklogwrites",
    "throttle",
    "copy-on-read",
    "compress",
    "preallocate",
    "quorum",
    "replication",
    "snapshot-access",
    "copy-before-write",
];

/// What the key `key` of `tree` holds, if anything.
fn get<'a>(tree: &'a Tree, key: &str) -> Option<&'a Value> {
    tree.get(key)
}

/// A string option (QEMU's message when it is something else).
fn string(tree: &Tree, key: &str) -> Result<Option<String>> {
    match get(tree, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::argument(format!(
            "Invalid parameter type for '{key}', expected: string"
        ))),
    }
}

/// A size option: a non-negative integer, or a string with qemu-img's
/// size suffixes.
fn size(tree: &Tree, key: &str) -> Result<Option<u64>> {
    let bad = || {
        Error::argument(format!(
            "Parameter '{key}' expects a non-negative number below 2^64"
        ))
    };
    match get(tree, key) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if let Some(i) = n.as_i64() {
                Err(Error::argument(format!(
                    "Value '{i}' is out of range for parameter '{key}'"
                )))
            } else {
                match n.as_f64() {
                    Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 => Ok(Some(f as u64)),
                    _ => Err(bad()),
                }
            }
        }
        Some(Value::String(s)) => parse_size(s).map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// Refuses the keys of `tree` that are not in `allowed` (nor common to
/// every node), naming the first as QEMU does.
fn only(tree: &Tree, allowed: &[&str], what: &str, driver: &str) -> Result<()> {
    for key in tree.keys() {
        if key == "driver"
            || allowed.contains(&key.as_str())
            || NODE_OPTIONS.contains(&key.as_str())
        {
            continue;
        }
        let key = match tree.get(key) {
            Some(Value::Object(inner)) => match inner.keys().next() {
                Some(first) => format!("{key}.{first}"),
                None => key.clone(),
            },
            _ => key.clone(),
        };
        return Err(Error::argument(if what == "format" {
            format!("Block format '{driver}' does not support the option '{key}'")
        } else {
            format!("Block protocol '{driver}' doesn't support the option '{key}'")
        }));
    }
    Ok(())
}

/// The typed spec of a whole option tree (its top node).
pub fn image(tree: &Tree) -> Result<ImageSpec> {
    let driver = string(tree, "driver")?;
    match driver.as_deref() {
        None if !tree.contains_key("file") => {
            Err(Error::argument("Must specify either driver or file"))
        }
        None => Ok(ImageSpec::Format(format_node(tree, None)?)),
        Some(name) => match format_kind(name)? {
            Some(kind) => Ok(ImageSpec::Format(format_node(tree, Some(kind))?)),
            None => Ok(ImageSpec::Protocol(protocol_node(tree, name)?)),
        },
    }
}

/// `Some(kind)` for a format driver qimg reads, `None` for a protocol
/// driver it opens, an error for the rest.
fn format_kind(name: &str) -> Result<Option<FormatKind>> {
    if let Some(kind) = FormatKind::named(name) {
        return Ok(Some(kind));
    }
    match name {
        "file" | "host_device" | "nbd" | "http" | "https" => Ok(None),
        f if registry::is_foreign(f) => Err(Error::unsupported(format!(
            "format '{f}' is not supported (qimg reads {})",
            registry::names_sentence()
        ))),
        d if FOREIGN_DRIVERS.contains(&d) => Err(Error::unsupported(format!(
            "the '{d}' block driver is not supported (qimg opens files, NBD exports and HTTP(S) URLs)"
        ))),
        other => Err(Error::argument(format!("Unknown driver '{other}'"))),
    }
}

/// A format node (`kind` `None`: probed), with its `file` child.
fn format_node(tree: &Tree, kind: Option<FormatKind>) -> Result<FormatNode> {
    let mut strong = Vec::new();
    let window = match kind {
        Some(kind) => {
            let node = &kind.node_options;
            let mut allowed = vec!["file"];
            if kind.caps.backing {
                allowed.push("backing");
            }
            if kind.caps.window {
                allowed.extend(["offset", "size"]);
            }
            if node.encrypt {
                allowed.push("encrypt");
            }
            if let Some(k) = node.secret {
                allowed.push(k);
                if let Some(v) = string(tree, k)? {
                    strong.push((k.to_string(), Value::String(v)));
                }
            }
            allowed.extend_from_slice(node.accepted);
            if let Some((_, why)) = node.refused.iter().find(|(k, _)| tree.contains_key(*k)) {
                return Err(Error::unsupported(*why));
            }
            only(tree, &allowed, "format", kind.name)?;
            if node.encrypt {
                if let Some(Value::Object(enc)) = get(tree, "encrypt") {
                    // `encrypt.key-secret` names the secret that unlocks it.
                    for (k, v) in enc {
                        strong.push((format!("encrypt.{k}"), v.clone()));
                    }
                } else if get(tree, "encrypt").is_some() {
                    return Err(Error::argument(
                        "Invalid parameter type for 'encrypt', expected: dict",
                    ));
                }
            }
            if kind.caps.window {
                window(tree)?
            } else {
                None
            }
        }
        None => {
            // A probed format takes what any of them takes (but a window,
            // which only a format named as such has); the driver found
            // decides later which apply.
            let mut allowed = vec!["file"];
            for d in registry::DRIVERS {
                if d.caps.backing {
                    allowed.push("backing");
                }
                if d.node_options.encrypt {
                    allowed.push("encrypt");
                }
                allowed.extend(d.node_options.secret);
                allowed.extend_from_slice(d.node_options.accepted);
            }
            only(tree, &allowed, "format", FormatKind::fallback().name())?;
            if let Some(v) = string(tree, "key-secret")? {
                strong.push(("key-secret".to_string(), Value::String(v)));
            }
            if let Some(Value::Object(enc)) = get(tree, "encrypt") {
                for (k, v) in enc {
                    strong.push((format!("encrypt.{k}"), v.clone()));
                }
            }
            None
        }
    };
    let backing = match get(tree, "backing") {
        None => BackingChoice::AsRecorded,
        Some(Value::Null) => BackingChoice::None,
        Some(Value::String(s)) if s.is_empty() => BackingChoice::None,
        Some(Value::String(s)) => {
            return Err(Error::argument(format!(
                "Cannot find device='{s}' nor node-name='{s}'"
            )))
        }
        Some(Value::Object(b)) => BackingChoice::Spec(Box::new(image(b)?)),
        Some(_) => {
            return Err(Error::argument(
                "Invalid parameter type for 'backing', expected: dict",
            ))
        }
    };
    Ok(FormatNode {
        driver: kind,
        window,
        file: child(tree)?,
        backing,
        strong,
    })
}

/// The `offset`/`size` window of a raw node, if it has one.
fn window(tree: &Tree) -> Result<Option<Window>> {
    let offset = size(tree, "offset")?;
    let len = size(tree, "size")?;
    if offset.is_none() && len.is_none() {
        return Ok(None);
    }
    Ok(Some(Window {
        offset: offset.unwrap_or(0),
        size: len,
    }))
}

/// The `file` child of a format node.
fn child(tree: &Tree) -> Result<FileNode> {
    match get(tree, "file") {
        None => Err(Error::argument(
            "A block device must be specified for \"file\"",
        )),
        Some(Value::String(s)) => Err(Error::argument(format!(
            "Cannot find device='{s}' nor node-name='{s}'"
        ))),
        Some(Value::Object(t)) => file_node(t),
        Some(_) => Err(Error::argument(
            "Invalid parameter type for 'file', expected: dict",
        )),
    }
}

/// A node below a format node: a protocol, or a raw window onto one.
fn file_node(tree: &Tree) -> Result<FileNode> {
    match string(tree, "driver")?.as_deref() {
        // No driver: a file name, opened by the file protocol as given.
        None if tree.contains_key("filename") => protocol_node(tree, "file"),
        None => Err(Error::argument(
            "A block device must be specified for \"file\"",
        )),
        Some(name) => match format_kind(name)? {
            None => protocol_node(tree, name),
            Some(kind) if kind.caps.window => {
                only(tree, &["file", "offset", "size"], "format", kind.name)?;
                Ok(FileNode::Window {
                    window: window(tree)?.unwrap_or(Window {
                        offset: 0,
                        size: None,
                    }),
                    file: Box::new(child(tree)?),
                })
            }
            Some(kind) => Err(Error::unsupported(format!(
                "a {kind} node below another format node is not supported (only raw nodes, with offset and size, may lie between)"
            ))),
        },
    }
}

/// A protocol node: `file`/`host_device` with a `filename`, or `nbd`.
fn protocol_node(tree: &Tree, driver: &str) -> Result<FileNode> {
    match driver {
        "nbd" => nbd_node(tree).map(FileNode::Nbd),
        "http" | "https" => http_node(tree, driver).map(FileNode::Http),
        _ => {
            only(
                tree,
                &[&["filename"], FILE_TUNING].concat(),
                "protocol",
                driver,
            )?;
            let filename = string(tree, "filename")?.ok_or_else(|| {
                Error::argument(format!("The '{driver}' block driver requires a file name"))
            })?;
            Ok(FileNode::File {
                filename: PathBuf::from(filename),
                host_device: driver == "host_device",
            })
        }
    }
}

/// An `nbd` node: `server` (inet or unix), or the older `host`/`port`/
/// `path` keys, and `export`.
fn nbd_node(tree: &Tree) -> Result<NbdNode> {
    only(
        tree,
        &[
            "server",
            "export",
            "host",
            "port",
            "path",
            "tls-creds",
            "tls-hostname",
            "reconnect-delay",
            "open-timeout",
            "x-dirty-bitmap",
        ],
        "protocol",
        "nbd",
    )?;
    if tree.contains_key("tls-creds") {
        return Err(Error::unsupported(
            "NBD over TLS (tls-creds) is not supported",
        ));
    }
    if tree.contains_key("x-dirty-bitmap") {
        return Err(Error::unsupported(
            "the NBD 'x-dirty-bitmap' option is not supported",
        ));
    }
    let export = string(tree, "export")?;
    let port = |t: &Tree| -> Result<Option<u16>> {
        match get(t, "port") {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .map(Some)
                .ok_or_else(|| Error::argument(format!("Invalid port '{n}'"))),
            Some(Value::String(s)) => s
                .parse::<u16>()
                .map(Some)
                .map_err(|_| Error::argument(format!("Invalid port '{s}'"))),
            Some(_) => Err(Error::argument(
                "Invalid parameter type for 'port', expected: string",
            )),
        }
    };
    let address = match get(tree, "server") {
        Some(Value::Object(server)) => {
            let missing = |k: &str| Error::argument(format!("Parameter '{k}' is missing"));
            match string(server, "type")?.as_deref() {
                None => return Err(missing("type")),
                Some("inet") => NbdAddress::Tcp {
                    host: string(server, "host")?.ok_or_else(|| missing("host"))?,
                    port: port(server)?.ok_or_else(|| missing("port"))?,
                },
                Some("unix") => NbdAddress::Unix(PathBuf::from(
                    string(server, "path")?.ok_or_else(|| missing("path"))?,
                )),
                Some(t @ ("vsock" | "fd")) => {
                    return Err(Error::unsupported(format!(
                        "NBD servers on '{t}' sockets are not supported (inet and unix are)"
                    )))
                }
                Some(other) => {
                    return Err(Error::argument(format!(
                        "Parameter 'type' does not accept value '{other}'"
                    )))
                }
            }
        }
        Some(_) => {
            return Err(Error::argument(
                "Invalid parameter type for 'server', expected: dict",
            ))
        }
        None => match (string(tree, "path")?, string(tree, "host")?) {
            (Some(path), None) => NbdAddress::Unix(PathBuf::from(path)),
            (None, Some(host)) => NbdAddress::Tcp {
                host,
                port: port(tree)?.unwrap_or(10809),
            },
            (Some(_), Some(_)) => {
                return Err(Error::argument(
                    "Cannot use both 'path' and 'host' for the NBD server",
                ))
            }
            (None, None) => return Err(Error::argument("NBD server address missing")),
        },
    };
    let legacy = if tree.contains_key("server") {
        Vec::new()
    } else {
        ["port", "host", "path"]
            .iter()
            .filter_map(|k| tree.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect()
    };
    Ok(NbdNode {
        address,
        export,
        uri: None,
        legacy,
    })
}

/// An `http`/`https` node: `url` and QEMU's curl options, with qimg's
/// `connections`, `retries` and `ca-file`.
fn http_node(tree: &Tree, driver: &str) -> Result<HttpNode> {
    only(
        tree,
        &[
            "url",
            "sslverify",
            "cookie",
            "cookie-secret",
            "timeout",
            "readahead",
            "username",
            "password-secret",
            "proxy-username",
            "proxy-password-secret",
            "connections",
            "retries",
            "ca-file",
        ],
        "protocol",
        driver,
    )?;
    for (key, what) in [
        ("proxy-username", "qimg connects to the server directly"),
        (
            "proxy-password-secret",
            "qimg connects to the server directly",
        ),
    ] {
        if tree.contains_key(key) {
            return Err(Error::unsupported(format!(
                "the '{driver}' option '{key}' is not supported: {what}"
            )));
        }
    }
    let url = string(tree, "url")?.ok_or_else(|| Error::argument("Parameter 'url' is missing"))?;
    let scheme_ok = url
        .split_once("://")
        .is_some_and(|(s, _)| s.eq_ignore_ascii_case(driver));
    if !scheme_ok {
        return Err(Error::argument(format!(
            "the '{driver}' driver takes {driver}:// URLs, not '{url}'"
        )));
    }
    let flag = |key: &str| -> Result<Option<bool>> {
        match get(tree, key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "on" || s == "true" => Ok(Some(true)),
            Some(Value::String(s)) if s == "off" || s == "false" => Ok(Some(false)),
            Some(_) => Err(Error::argument(format!(
                "Parameter '{key}' expects 'on' or 'off'"
            ))),
        }
    };
    let number = |key: &str| -> Result<Option<u64>> {
        match get(tree, key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| Error::argument(format!("Parameter '{key}' expects a number"))),
            Some(Value::String(s)) => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| Error::argument(format!("Parameter '{key}' expects a number"))),
            Some(_) => Err(Error::argument(format!(
                "Parameter '{key}' expects a number"
            ))),
        }
    };
    let readahead = match get(tree, "readahead") {
        None => None,
        Some(Value::String(s)) => Some(
            parse_size(s).map_err(|_| Error::argument("Parameter 'readahead' expects a size"))?,
        ),
        Some(_) => number("readahead")?,
    };
    let given = tree
        .iter()
        .filter(|(k, _)| {
            [
                "sslverify",
                "cookie",
                "username",
                "password-secret",
                "cookie-secret",
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(HttpNode {
        url,
        given,
        verify: flag("sslverify")?,
        cookie: string(tree, "cookie")?,
        timeout: number("timeout")?,
        readahead,
        username: string(tree, "username")?,
        connections: number("connections")?.map(|n| n.clamp(1, 64) as usize),
        retries: number("retries")?.map(|n| n.min(100) as u32),
        ca_file: string(tree, "ca-file")?.map(PathBuf::from),
        password_secret: string(tree, "password-secret")?,
        cookie_secret: string(tree, "cookie-secret")?,
    })
}
