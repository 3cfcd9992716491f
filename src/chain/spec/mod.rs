//! Image specifications: what a name on the command line (or a backing
//! file name stored in an image) says to open, beyond a plain file name.
//!
//! QEMU accepts, wherever a file name goes:
//! - a plain path, or the same with the `file:` protocol prefix;
//! - an NBD URI (`nbd://HOST[:PORT]/EXPORT`, `nbd+unix:///EXPORT?socket=PATH`);
//! - an `http://` or `https://` URL (read-only);
//! - `json:{...}`: a tree of block-node options, nested or with dotted
//!   keys (`{"file.filename": "x"}`);
//! - with `--image-opts`, the same tree as an option string
//!   (`driver=qcow2,file.driver=file,file.filename=x`, `,,` for a comma).
//!
//! [`ImageSpec`] is the typed result: the format node (qcow2, qed, raw with
//! an optional `offset`/`size` window, or probed), the nodes below it down
//! to a protocol (a local file or an NBD export), and what to do about the
//! backing file. Chain opening consumes it; nothing below the chain sees
//! the spelling.

mod name;
mod node;
pub mod object;
mod open;
mod tree;

pub use object::Object;

use crate::error::{Error, Result};
use crate::format::FormatKind;
use crate::io::http::{is_http_url, HttpOptions};
use crate::io::nbd::{is_nbd_uri, NbdAddress, NbdUri};
use crate::io::StorageOptions;
use crate::paths::resolve_relative_to;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A raw node's window onto the node below it (QEMU's `offset` and `size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Where the window starts in the node below.
    pub offset: u64,
    /// Its length; to the end of the node below when `None`.
    pub size: Option<u64>,
}

/// An NBD export named by options (or by a URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdNode {
    /// Where the server listens.
    pub address: NbdAddress,
    /// The export name; `None` when the options name none (the default export).
    pub export: Option<String>,
    /// The URI it was named by, when it was named by one.
    pub uri: Option<String>,
    /// The older `host`/`port`/`path` keys as given, when the node was
    /// named by them (QEMU repeats them, not `server.*`, in a `json:` name).
    pub legacy: Vec<(String, Value)>,
}

impl NbdNode {
    /// The URI qimg's NBD client opens.
    pub fn open_uri(&self) -> String {
        if let Some(u) = &self.uri {
            return u.clone();
        }
        let export = self.export.as_deref().unwrap_or("");
        match &self.address {
            NbdAddress::Tcp { host, port } if host.contains(':') => {
                format!("nbd://[{host}]:{port}/{export}")
            }
            NbdAddress::Tcp { host, port } => format!("nbd://{host}:{port}/{export}"),
            NbdAddress::Unix(path) => {
                format!("nbd+unix:///{export}?socket={}", path.display())
            }
        }
    }

    /// The name QEMU gives the export (`nbd://HOST:PORT[/EXPORT]`,
    /// `nbd+unix://[/EXPORT]?socket=PATH`).
    pub fn display(&self) -> String {
        if let Some(u) = &self.uri {
            return u.clone();
        }
        match (&self.address, &self.export) {
            (NbdAddress::Tcp { host, port }, None) => format!("nbd://{host}:{port}"),
            (NbdAddress::Tcp { host, port }, Some(e)) => format!("nbd://{host}:{port}/{e}"),
            (NbdAddress::Unix(p), None) => format!("nbd+unix://?socket={}", p.display()),
            (NbdAddress::Unix(p), Some(e)) => {
                format!("nbd+unix:///{e}?socket={}", p.display())
            }
        }
    }

    /// The options QEMU lists for the node in a `json:` name (flattened).
    fn options(&self) -> Vec<(String, Value)> {
        let mut o = Vec::new();
        if !self.legacy.is_empty() {
            o.extend(self.legacy.iter().cloned());
            o.push(("driver".to_string(), json!("nbd")));
            if let Some(e) = &self.export {
                o.push(("export".to_string(), json!(e)));
            }
            return o;
        }
        match &self.address {
            NbdAddress::Tcp { host, port } => {
                o.push(("server.host".to_string(), json!(host)));
                o.push(("server.port".to_string(), json!(port.to_string())));
                o.push(("driver".to_string(), json!("nbd")));
                o.push(("server.type".to_string(), json!("inet")));
            }
            NbdAddress::Unix(p) => {
                o.push(("server.path".to_string(), json!(p.display().to_string())));
                o.push(("driver".to_string(), json!("nbd")));
                o.push(("server.type".to_string(), json!("unix")));
            }
        }
        if let Some(e) = &self.export {
            o.push(("export".to_string(), json!(e)));
        }
        o
    }
}

/// An image over HTTP(S), named by its URL or by an `http`/`https` node
/// with QEMU's curl options (and qimg's own).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpNode {
    /// The URL.
    pub url: String,
    /// The options given beside the URL that QEMU counts as changing
    /// what is read (`sslverify`, `cookie`, `username`): they make the
    /// node's name a `json:` name.
    pub given: Vec<(String, Value)>,
    /// `sslverify` (default on).
    pub verify: Option<bool>,
    /// `cookie`: the `Cookie` header.
    pub cookie: Option<String>,
    /// `timeout` in seconds.
    pub timeout: Option<u64>,
    /// `readahead` in bytes.
    pub readahead: Option<u64>,
    /// `username`.
    pub username: Option<String>,
    /// `connections` (qimg's): requests in flight at once.
    pub connections: Option<usize>,
    /// `retries` (qimg's): tries of a range after its first failure.
    pub retries: Option<u32>,
    /// `ca-file` (qimg's): PEM CA certificates trusted beside the system's.
    pub ca_file: Option<PathBuf>,
    /// `password-secret`: the id of the secret holding the password of
    /// `username`.
    pub password_secret: Option<String>,
    /// `cookie-secret`: the id of the secret holding the `Cookie` header.
    pub cookie_secret: Option<String>,
}

impl HttpNode {
    /// Whether the node has no option beside its URL (opening it is
    /// opening the URL).
    pub fn is_plain(&self) -> bool {
        *self
            == HttpNode {
                url: self.url.clone(),
                ..HttpNode::default()
            }
    }

    /// The options its storage is opened with: the node's over `base`'s,
    /// the secrets it names looked up in `base`'s (qemu-img's message
    /// when one is missing).
    pub fn http_options(&self, base: &StorageOptions) -> Result<HttpOptions> {
        let mut o = base.http();
        if let Some(v) = self.verify {
            o.verify = v;
        }
        if let Some(c) = &self.cookie {
            o.cookie = Some(c.clone());
        }
        if let Some(t) = self.timeout {
            o.timeout = std::time::Duration::from_secs(t.max(1));
        }
        if let Some(r) = self.readahead {
            o.readahead = Some(r);
        }
        if let Some(u) = &self.username {
            o.credentials = Some((u.clone(), String::new()));
        }
        if let Some(n) = self.connections {
            o.connections = n.max(1);
        }
        if let Some(r) = self.retries {
            o.retries = r;
        }
        if let Some(f) = &self.ca_file {
            o.ca_file = Some(f.clone());
        }
        let text = |id: &str| -> Result<String> {
            let bytes = base.secrets.get(id)?;
            String::from_utf8(bytes.to_vec())
                .map_err(|_| Error::argument(format!("Data from secret {id} is not valid UTF-8")))
        };
        if let Some(id) = &self.password_secret {
            let user = self.username.clone().unwrap_or_default();
            o.credentials = Some((user, text(id)?));
        }
        if let Some(id) = &self.cookie_secret {
            o.cookie = Some(text(id)?);
        }
        Ok(o)
    }

    /// The driver QEMU names for it: `http` or `https`, by the scheme.
    pub fn driver(&self) -> &'static str {
        if self
            .url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("https:"))
        {
            "https"
        } else {
            "http"
        }
    }

    fn options(&self) -> Vec<(String, Value)> {
        let mut o = self.given.clone();
        o.push(("driver".to_string(), json!(self.driver())));
        o.push(("url".to_string(), json!(self.url)));
        o
    }
}

/// A node below the format node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileNode {
    /// A local file (`host_device`: a block or character device).
    File {
        /// The file name, as given (relative to the working directory).
        filename: PathBuf,
        /// Named by the `host_device` driver.
        host_device: bool,
    },
    /// An NBD export.
    Nbd(NbdNode),
    /// An image over HTTP(S).
    Http(HttpNode),
    /// A raw node showing a window of the node below it.
    Window {
        /// The window.
        window: Window,
        /// The node below.
        file: Box<FileNode>,
    },
}

impl FileNode {
    /// The protocol node at the bottom.
    pub fn protocol(&self) -> &FileNode {
        match self {
            FileNode::Window { file, .. } => file.protocol(),
            other => other,
        }
    }

    /// The name QEMU gives this node: its file name or URI, or a `json:`
    /// name for a window.
    pub fn display(&self) -> String {
        match self {
            FileNode::File { filename, .. } => filename.display().to_string(),
            FileNode::Nbd(n) => n.display(),
            FileNode::Http(n) if n.given.is_empty() => n.url.clone(),
            FileNode::Http(_) => format!("json:{}", name::qdict_json(&self.options())),
            FileNode::Window {
                window:
                    Window {
                        offset: 0,
                        size: None,
                    },
                file,
            } => file.display(),
            FileNode::Window { .. } => format!("json:{}", name::qdict_json(&self.options())),
        }
    }

    /// The node's options as QEMU lists them in a `json:` name.
    fn options(&self) -> Vec<(String, Value)> {
        match self {
            FileNode::File {
                filename,
                host_device,
            } => vec![
                (
                    "driver".to_string(),
                    json!(if *host_device { "host_device" } else { "file" }),
                ),
                (
                    "filename".to_string(),
                    json!(filename.display().to_string()),
                ),
            ],
            FileNode::Nbd(n) => n.options(),
            FileNode::Http(n) => n.options(),
            FileNode::Window { window, file } => {
                // A window is a node of the fallback (raw) driver.
                let mut o = vec![("driver".to_string(), json!(FormatKind::fallback().name()))];
                o.extend(window.options());
                o.push(("file".to_string(), options_object(&file.options())));
                o
            }
        }
    }
}

impl Window {
    fn options(&self) -> Vec<(String, Value)> {
        let mut o = vec![("offset".to_string(), json!(self.offset))];
        if let Some(s) = self.size {
            o.push(("size".to_string(), json!(s)));
        }
        o
    }
}

/// `pairs` as a JSON object (in their order; the renderer orders keys).
fn options_object(pairs: &[(String, Value)]) -> Value {
    Value::Object(pairs.iter().cloned().collect())
}

/// What to do about the backing file of the top image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackingChoice {
    /// Open the backing file the image names (the default).
    AsRecorded,
    /// Open no backing file (`"backing": null`).
    None,
    /// Open this instead of the one the image names.
    Spec(Box<ImageSpec>),
}

/// A format node over the nodes that hold its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatNode {
    /// The format; probed when `None`.
    pub driver: Option<FormatKind>,
    /// A raw image's window onto its file.
    pub window: Option<Window>,
    /// Where its bytes are.
    pub file: FileNode,
    /// Its backing file.
    pub backing: BackingChoice,
    /// Options qimg accepts without using them that QEMU counts as
    /// changing the node (`encrypt.key-secret`): they make its name a
    /// `json:` name, as in QEMU.
    pub strong: Vec<(String, Value)>,
}

impl FormatNode {
    /// The id of the secret that unlocks the image (`key-secret`, or
    /// `encrypt.key-secret`), if the node names one.
    pub fn key_secret(&self) -> Option<String> {
        self.strong
            .iter()
            .find(|(k, _)| k == "key-secret" || k == "encrypt.key-secret")
            .and_then(|(_, v)| v.as_str().map(str::to_string))
    }
}

/// What a name says to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSpec {
    /// An image of some format (the usual case).
    Format(FormatNode),
    /// A protocol node itself (`driver=file`, `driver=nbd`): its bytes,
    /// read as raw, and named by the protocol in `info`.
    Protocol(FileNode),
}

/// Where a spec error is reported: the name as given.
fn at(name: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| e.with_path(name)
}

impl ImageSpec {
    /// The spec a name stands for: `json:{...}`, `file:PATH`, an NBD URI,
    /// or a plain path (probed format, `file` protocol). Errors carry the
    /// name and QEMU's sentence for the problem.
    pub fn parse(name: &str) -> Result<ImageSpec> {
        if let Some(text) = name.strip_prefix("json:") {
            return tree::from_json(text)
                .and_then(|t| node::image(&t))
                .map_err(at(name));
        }
        let file = if is_http_url(name) {
            FileNode::Http(HttpNode {
                url: name.to_string(),
                ..HttpNode::default()
            })
        } else if is_nbd_uri(name) {
            let uri = NbdUri::parse(name).map_err(at(name))?;
            FileNode::Nbd(NbdNode {
                address: uri.address,
                export: Some(uri.export),
                uri: Some(name.to_string()),
                legacy: Vec::new(),
            })
        } else {
            FileNode::File {
                filename: PathBuf::from(name.strip_prefix("file:").unwrap_or(name)),
                host_device: false,
            }
        };
        Ok(ImageSpec::Format(FormatNode {
            driver: None,
            window: None,
            file,
            backing: BackingChoice::AsRecorded,
            strong: Vec::new(),
        }))
    }

    /// As [`ImageSpec::parse`], for a name held as a path.
    pub fn parse_path(name: &Path) -> Result<ImageSpec> {
        Self::parse(&name.to_string_lossy())
    }

    /// The spec of an `--image-opts` option string
    /// (`driver=raw,file.filename=disk.img`).
    pub fn from_image_opts(text: &str) -> Result<ImageSpec> {
        if !text.is_empty() && !text.contains('=') && !text.contains(',') {
            // A lone word names a node of a running QEMU, which qemu-img has none of.
            return Err(Error::argument(format!(
                "Cannot find device='{text}' nor node-name='{text}'"
            ))
            .with_path(text));
        }
        tree::from_options(text)
            .and_then(|t| node::image(&t))
            .map_err(at(text))
    }

    /// A name that [`ImageSpec::parse`] turns back into this spec: how an
    /// `--image-opts` string travels on to the operations.
    pub fn to_name(&self) -> String {
        format!(
            "json:{}",
            Value::Object(self.options(None).into_iter().collect())
        )
    }

    /// The name of an `--image-opts` string, checked: qemu-img refuses a
    /// format (`-f`) beside it.
    pub fn image_opts_name(text: &str, format_given: bool) -> Result<PathBuf> {
        if format_given {
            return Err(Error::argument(
                "--image-opts and --format are mutually exclusive",
            ));
        }
        Ok(PathBuf::from(Self::from_image_opts(text)?.to_name()))
    }

    /// The name an image argument of the command line stands for: `file`
    /// as given, or, with `--image-opts`, the spec of that option string.
    pub fn argument_name(file: &Path, image_opts: bool, format_given: bool) -> Result<PathBuf> {
        if image_opts {
            Self::image_opts_name(&file.to_string_lossy(), format_given)
        } else {
            Ok(file.to_path_buf())
        }
    }

    /// The format of the image `name` stands for: the one its spec names,
    /// else the one probing finds.
    pub fn format_of(name: &Path) -> Result<FormatKind> {
        match Self::parse_path(name)?.driver() {
            Some(k) => Ok(k),
            None => Ok(open_image(name, None)?.driver()),
        }
    }

    /// The format the spec names, if it names one.
    pub fn driver(&self) -> Option<FormatKind> {
        match self {
            ImageSpec::Format(f) => f.driver,
            ImageSpec::Protocol(_) => None,
        }
    }

    /// The nodes that hold the image's bytes.
    pub fn file(&self) -> &FileNode {
        match self {
            ImageSpec::Format(f) => &f.file,
            ImageSpec::Protocol(p) => p,
        }
    }

    /// The protocol QEMU names the image by when the spec is a protocol
    /// node itself (`file`, `host_device`, `nbd`).
    pub fn protocol_top(&self) -> Option<&'static str> {
        match self {
            ImageSpec::Protocol(FileNode::Nbd(_)) => Some("nbd"),
            ImageSpec::Protocol(FileNode::Http(n)) => Some(n.driver()),
            ImageSpec::Protocol(FileNode::File {
                host_device: true, ..
            }) => Some("host_device"),
            ImageSpec::Protocol(_) => Some("file"),
            ImageSpec::Format(_) => None,
        }
    }

    /// Whether the top node is a raw image with its own window.
    pub fn has_top_window(&self) -> bool {
        matches!(self, ImageSpec::Format(f) if f.window.is_some())
    }

    /// What to do about the backing file.
    pub fn backing(&self) -> &BackingChoice {
        match self {
            ImageSpec::Format(f) => &f.backing,
            ImageSpec::Protocol(_) => &BackingChoice::AsRecorded,
        }
    }

    /// The local file at the bottom, if the bytes are in one.
    pub fn base_file(&self) -> Option<&Path> {
        match self.file().protocol() {
            FileNode::File { filename, .. } => Some(filename),
            _ => None,
        }
    }

    /// Whether the spec is a plain file or export: no window, no options;
    /// opening it is opening that name.
    fn is_plain(&self) -> bool {
        match self {
            ImageSpec::Format(f) => {
                f.window.is_none()
                    && f.strong.is_empty()
                    && !matches!(f.file, FileNode::Window { .. })
            }
            ImageSpec::Protocol(_) => true,
        }
    }

    /// The name QEMU gives the opened image (`format` is the format it
    /// was opened as): the file name when the nodes add nothing to it,
    /// else a `json:{...}` name with QEMU's key order.
    pub fn filename(&self, format: &str) -> String {
        match self {
            ImageSpec::Protocol(p) => p.display(),
            ImageSpec::Format(f) if f.window.is_none() && f.strong.is_empty() => match &f.file {
                FileNode::Window { .. } => {
                    format!("json:{}", name::qdict_json(&self.options(Some(format))))
                }
                FileNode::Http(n) if !n.given.is_empty() => {
                    format!("json:{}", name::qdict_json(&self.options(Some(format))))
                }
                plain => plain.display(),
            },
            ImageSpec::Format(_) => {
                format!("json:{}", name::qdict_json(&self.options(Some(format))))
            }
        }
    }

    /// The options of the top node (`format`: the format found by probing,
    /// when the spec names none).
    fn options(&self, format: Option<&str>) -> Vec<(String, Value)> {
        match self {
            ImageSpec::Protocol(p) => p.options(),
            ImageSpec::Format(f) => {
                let mut o = Vec::new();
                if let Some(d) = f.driver.map(FormatKind::name).or(format) {
                    o.push(("driver".to_string(), json!(d)));
                }
                if let Some(w) = &f.window {
                    o.extend(w.options());
                }
                o.extend(f.strong.iter().cloned());
                match &f.backing {
                    BackingChoice::AsRecorded => {}
                    BackingChoice::None => o.push(("backing".to_string(), Value::Null)),
                    BackingChoice::Spec(b) => {
                        o.push(("backing".to_string(), options_object(&b.options(None))))
                    }
                }
                o.push(("file".to_string(), options_object(&f.file.options())));
                o
            }
        }
    }
}

/// The spec `name` stands for, when it parses.
fn spec_of(name: &Path) -> Option<ImageSpec> {
    ImageSpec::parse_path(name).ok()
}

/// The local file holding the image a name stands for (the name itself
/// for a plain path; `None` for an NBD export).
pub fn base_file(name: &Path) -> Option<PathBuf> {
    spec_of(name).and_then(|s| s.base_file().map(Path::to_path_buf))
}

/// The device and inode of the file holding the image `name` stands for.
pub fn identity(name: &Path) -> Option<(u64, u64)> {
    base_file(name).and_then(|p| crate::paths::file_identity(&p))
}

/// Resolves the backing name `backing`, stored in the image opened as
/// `overlay`, as QEMU does: names with a protocol prefix (`file:`,
/// `json:`, `nbd://`) and absolute paths are used as they are, others are
/// relative to the directory of the file that holds the overlay.
pub fn resolve_backing(overlay: &Path, backing: &str) -> PathBuf {
    match spec_of(overlay).filter(|s| !s.is_plain() || overlay_has_prefix(overlay)) {
        Some(spec) => match spec.base_file() {
            Some(file) => resolve_relative_to(file, backing),
            None => resolve_relative_to(overlay, backing),
        },
        None => resolve_relative_to(overlay, backing),
    }
}

fn overlay_has_prefix(name: &Path) -> bool {
    let s = name.to_string_lossy();
    s.starts_with("file:") || s.starts_with("json:")
}

/// The file a new image named `name` is created in: `name`, without a
/// `file:` prefix. A `json:` name cannot be created (as in qemu-img).
pub fn creation_path(name: &Path) -> Result<PathBuf> {
    let s = name.to_string_lossy();
    if s.starts_with("json:") {
        return Err(Error::argument("Unknown protocol 'json'").with_path(name));
    }
    Ok(match s.strip_prefix("file:") {
        Some(rest) => PathBuf::from(rest),
        None => name.to_path_buf(),
    })
}

pub use open::{
    open_image, open_image_with, open_image_writable, open_image_writable_with, open_storage,
    open_storage_with,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_and_the_file_prefix() {
        let s = ImageSpec::parse("file:/abs/p.qcow2").unwrap();
        assert_eq!(s.base_file(), Some(Path::new("/abs/p.qcow2")));
        assert_eq!(s.filename("qcow2"), "/abs/p.qcow2");
        assert_eq!(s.driver(), None);
        let s = ImageSpec::parse("disk.img").unwrap();
        assert!(s.is_plain());
        assert_eq!(s.filename("raw"), "disk.img");
    }

    #[test]
    fn virt_v2v_window_is_named_as_qemu_names_it() {
        let s = ImageSpec::parse(
            r#"json:{"file":{"driver":"raw","offset":512,"size":512,"file":{"filename":"F"}}}"#,
        )
        .unwrap();
        assert_eq!(s.driver(), None);
        assert_eq!(s.base_file(), Some(Path::new("F")));
        assert_eq!(
            s.filename("raw"),
            r#"json:{"driver": "raw", "file": {"offset": 512, "driver": "raw", "size": 512, "file": {"driver": "file", "filename": "F"}}}"#
        );
        assert_eq!(
            s.file().display(),
            r#"json:{"offset": 512, "driver": "raw", "size": 512, "file": {"driver": "file", "filename": "F"}}"#
        );
    }

    #[test]
    fn image_opts_travel_as_json_and_come_back() {
        let s =
            ImageSpec::from_image_opts("driver=qcow2,file.driver=file,file.filename=a,,b").unwrap();
        assert_eq!(s.driver(), FormatKind::named("qcow2"));
        assert_eq!(s.base_file(), Some(Path::new("a,b")));
        assert_eq!(s.filename("qcow2"), "a,b");
        assert_eq!(ImageSpec::parse(&s.to_name()).unwrap(), s);
        let e = ImageSpec::image_opts_name("driver=raw,file.filename=x", true).unwrap_err();
        assert_eq!(
            e.message(),
            "--image-opts and --format are mutually exclusive"
        );
    }

    #[test]
    fn nbd_nodes_become_uris() {
        let s = ImageSpec::from_image_opts(
            "driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,file.server.port=10999",
        )
        .unwrap();
        assert_eq!(s.filename("raw"), "nbd://127.0.0.1:10999");
        match s.file() {
            FileNode::Nbd(n) => assert_eq!(n.open_uri(), "nbd://127.0.0.1:10999/"),
            other => panic!("{other:?}"),
        }
        let s = ImageSpec::parse(
            r#"json:{"driver":"nbd","server":{"type":"unix","path":"/run/s"},"export":"e"}"#,
        )
        .unwrap();
        assert_eq!(s.protocol_top(), Some("nbd"));
        assert_eq!(s.filename("raw"), "nbd+unix:///e?socket=/run/s");
    }

    #[test]
    fn urls_and_http_nodes_are_named_as_qemu_names_them() {
        let s = ImageSpec::parse("https://store/base.qcow2").unwrap();
        assert_eq!(s.filename("qcow2"), "https://store/base.qcow2");
        assert_eq!(s.base_file(), None);
        match s.file() {
            FileNode::Http(n) => assert!(n.is_plain() && n.driver() == "https"),
            other => panic!("{other:?}"),
        }
        // Options QEMU counts as changing the node make a json: name;
        // tuning ones (timeout, readahead) do not, but are kept.
        let s = ImageSpec::parse(
            r#"json:{"file.driver":"https","file.url":"https://h/d.raw","file.sslverify":"off","file.timeout":10}"#,
        )
        .unwrap();
        assert_eq!(
            s.filename("raw"),
            r#"json:{"driver": "raw", "file": {"url": "https://h/d.raw", "driver": "https", "sslverify": "off"}}"#
        );
        let s = ImageSpec::parse(
            r#"json:{"file.driver":"http","file.url":"http://h/d","file.timeout":10,"file.readahead":"64k","file.retries":2}"#,
        )
        .unwrap();
        assert_eq!(s.filename("raw"), "http://h/d");
        let FileNode::Http(n) = s.file() else {
            panic!("not an http node")
        };
        assert!(!n.is_plain());
        let o = n.http_options(&StorageOptions::default()).unwrap();
        assert_eq!(o.timeout, std::time::Duration::from_secs(10));
        assert_eq!((o.readahead, o.retries), (Some(64 << 10), 2));
        // password-secret and cookie-secret come from the command's secrets.
        let s = ImageSpec::parse(
            r#"json:{"file.driver":"https","file.url":"https://h/d","file.username":"u","file.password-secret":"p","file.cookie-secret":"c"}"#,
        )
        .unwrap();
        let FileNode::Http(n) = s.file() else {
            panic!("not an http node")
        };
        let secrets = crate::io::Secrets::new([
            (
                "p".to_string(),
                zeroize::Zeroizing::new(b"hunter2".to_vec()),
            ),
            ("c".to_string(), zeroize::Zeroizing::new(b"k=v".to_vec())),
        ]);
        let o = n
            .http_options(&StorageOptions::default().with_secrets(secrets))
            .unwrap();
        assert_eq!(o.credentials, Some(("u".into(), "hunter2".into())));
        assert_eq!(o.cookie.as_deref(), Some("k=v"));
        assert_eq!(
            n.http_options(&StorageOptions::default())
                .unwrap_err()
                .message(),
            "No secret with id 'p'"
        );
        let msg = |n: &str| ImageSpec::parse(n).unwrap_err().message().to_string();
        assert_eq!(
            msg(r#"json:{"file.driver":"https"}"#),
            "Parameter 'url' is missing"
        );
        assert!(
            msg(r#"json:{"file.driver":"http","file.url":"http://h/x","file.sslverify":3}"#)
                .contains("'sslverify'")
        );
    }

    #[test]
    fn bad_specs_get_qemus_sentences() {
        let msg = |n: &str| ImageSpec::parse(n).unwrap_err().message().to_string();
        assert_eq!(
            msg(r#"json:{"driver":"foo","file":{"filename":"r"}}"#),
            "Unknown driver 'foo'"
        );
        assert_eq!(
            msg(r#"json:{"driver":"raw"}"#),
            "A block device must be specified for \"file\""
        );
        assert_eq!(
            msg(r#"json:{"driver":"raw","file":{"driver":"file"}}"#),
            "The 'file' block driver requires a file name"
        );
        assert_eq!(
            msg(r#"json:{"driver":"raw","bogus":1,"file":{"filename":"r"}}"#),
            "Block format 'raw' does not support the option 'bogus'"
        );
        assert_eq!(
            msg(r#"json:{"driver":"raw","file":{"filename":"r","bogus":2}}"#),
            "Block protocol 'file' doesn't support the option 'bogus'"
        );
        assert_eq!(msg("json:{}"), "Must specify either driver or file");
        assert_eq!(
            msg(r#"json:{"driver":"nbd"}"#),
            "NBD server address missing"
        );
        assert_eq!(
            msg(r#"json:{"driver":"raw","offset":-1,"file":{"filename":"r"}}"#),
            "Value '-1' is out of range for parameter 'offset'"
        );
        let e = ImageSpec::parse("json:[").unwrap_err();
        assert_eq!(e.path(), Some(Path::new("json:[")));
    }

    #[test]
    fn backing_names_resolve_as_in_qemu() {
        let json = r#"json:{"driver":"qcow2","file":{"filename":"vm/top.qcow2"}}"#;
        assert_eq!(
            resolve_backing(Path::new(json), "base.qcow2"),
            PathBuf::from("vm/base.qcow2")
        );
        assert_eq!(
            resolve_backing(Path::new("file:vm/top.qcow2"), "base.qcow2"),
            PathBuf::from("vm/base.qcow2")
        );
        assert_eq!(
            resolve_backing(Path::new("vm/top.qcow2"), "file:base.qcow2"),
            PathBuf::from("file:base.qcow2")
        );
        assert_eq!(
            creation_path(Path::new("file:p.qcow2")).unwrap(),
            PathBuf::from("p.qcow2")
        );
        assert!(creation_path(Path::new("json:{}")).is_err());
    }
}
