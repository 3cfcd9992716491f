//! Backing chains: open an image and every image below it, and read through
//! them as one guest-visible [`View`].

pub mod spec;

use crate::error::{Error, ErrorKind, Result};
use crate::format::probe::{open_as, probe_storage, Probed};
use crate::format::{Format, FormatKind, GuestRead, OpenHow, Status};
use crate::io::{
    http::is_http_url, nbd::is_nbd_uri, Admission, HostExtent, RefusedKind, StorageOptions,
};
use crate::paths::is_absolute_spec;
pub use spec::{open_image, open_image_with, open_image_writable, open_image_writable_with};
use spec::{BackingChoice, ImageSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which backing layer [`Chain::open_writable_to_base`] opens for writing.
#[derive(Debug, Clone, Copy)]
enum Base<'a> {
    /// The first backing file.
    First,
    /// The one this name stands for (as [`Chain::depth_of`] finds it).
    Named(&'a str),
}

/// Most images a chain may hold, the top image included.
pub const MAX_CHAIN_DEPTH: usize = 64;

/// Memory the metadata caches of all the images of one chain share.
pub const CHAIN_CACHE_BYTES: u64 = 16 << 20;

/// One image of a chain.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The path it was opened by (backing names resolved as QEMU does).
    pub path: PathBuf,
    /// The open image.
    pub image: Arc<dyn Format>,
}

/// An image and its backing files, top first.
#[derive(Debug)]
pub struct Chain {
    layers: Vec<Layer>,
    /// The backing layer opened for writing too (see
    /// [`Chain::open_writable_to_base`]).
    writable_below: Option<usize>,
}

/// The status of a guest range as seen through the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    /// Length of the run in bytes.
    pub len: u64,
    /// How many layers below the top decided it (0 = the top itself).
    pub depth: usize,
    /// Some layer allocates the range (false when it reads as zeros because
    /// no layer has it, or because it lies past the end of a backing file).
    pub present: bool,
    /// Known to read as zeros.
    pub zero: bool,
    /// Data is stored.
    pub data: bool,
    /// The data is compressed.
    pub compressed: bool,
    /// Host offset of the first byte in the deciding layer's data file.
    pub host: Option<crate::format::HostOffset>,
}

fn chain_error(message: String) -> Error {
    Error::new(ErrorKind::BackingChain, message)
}

impl Chain {
    /// Opens `path` (as `format`, or probed) and its whole backing chain.
    /// `path` is any name an image goes by (see [`spec`]).
    pub fn open(path: &Path, format: Option<FormatKind>) -> Result<Chain> {
        Self::open_with(path, format, &StorageOptions::default())
    }

    /// As [`Chain::open`], with `options` for every layer's storage.
    pub fn open_with(
        path: &Path,
        format: Option<FormatKind>,
        options: &StorageOptions,
    ) -> Result<Chain> {
        Self::open_below(
            path,
            Arc::from(open_image_with(path, format, options)?),
            true,
            options,
        )
    }

    /// As [`Chain::open`], but the backing files are the ones the images
    /// record, whatever a `json:` name says about them (`"backing": null`):
    /// the chain `info --backing-chain` shows, as qemu-img shows it.
    /// `options` go to every layer's storage.
    pub fn open_recorded(
        path: &Path,
        format: Option<FormatKind>,
        options: &StorageOptions,
    ) -> Result<Chain> {
        Self::open_below(
            path,
            Arc::from(open_image_with(path, format, options)?),
            false,
            options,
        )
    }

    /// Opens the internal snapshot `snapshot` of the image at `path` (a
    /// format with snapshots), with the image's backing chain.
    /// `options` go to every layer's storage.
    pub fn open_snapshot(
        path: &Path,
        format: Option<FormatKind>,
        snapshot: &str,
        options: &StorageOptions,
    ) -> Result<Chain> {
        let storage = spec::open_storage_with(path, false, options)?;
        let format = format.or(ImageSpec::parse_path(path)?.driver());
        let image = open_as(storage, path, format, &OpenHow::Snapshot(snapshot))
            .map_err(|e| e.with_path(path))?;
        Self::open_below(path, Arc::from(image), true, options)
    }

    /// Opens `path` for writing and its backing chain read-only, and gives
    /// the top image a reader of the chain below it (for partial writes).
    pub fn open_writable(path: &Path, format: Option<FormatKind>) -> Result<Chain> {
        Self::open_writable_with(path, format, &StorageOptions::default())
    }

    /// As [`Chain::open_writable`], with `options` for every layer's storage.
    pub fn open_writable_with(
        path: &Path,
        format: Option<FormatKind>,
        options: &StorageOptions,
    ) -> Result<Chain> {
        let top = open_image_writable_with(path, format, options)?;
        let chain = Self::open_below(path, Arc::from(top), true, options)?;
        if chain.layers.len() > 1 {
            chain.layers[0].image.attach_backing(chain.reader_from(1));
        }
        Ok(chain)
    }

    /// As [`Chain::open_writable_with`], and the backing layer `base` names
    /// (the first backing file for `None`) is opened for writing as well,
    /// instead of read-only: what `commit` writes into, each file opened
    /// once. Returns the chain and the depth of that layer.
    pub fn open_writable_to_base(
        path: &Path,
        format: Option<FormatKind>,
        base: Option<&str>,
        options: &StorageOptions,
    ) -> Result<(Chain, usize)> {
        let top = open_image_writable_with(path, format, options)?;
        let which = match base {
            Some(name) => Base::Named(name),
            None => Base::First,
        };
        let chain = Self::open_below_to(path, Arc::from(top), true, options, Some(&which))?;
        let depth = match (base, chain.writable_below) {
            (_, Some(d)) => d,
            (Some(name), None) => return Err(chain.not_in_chain(name)),
            (None, None) => 1,
        };
        if chain.layers.len() > 1 {
            chain.layers[0].image.attach_backing(chain.reader_from(1));
        }
        Ok((chain, depth))
    }

    /// The depth of the backing layer that is the plain local file `path`
    /// (opened as `format`, when given): a chain of that file would be the
    /// chain below it, so it can be read from here instead of opening the
    /// files again. `None` for names with a prefix or options.
    pub fn depth_of_file(&self, path: &Path, format: Option<FormatKind>) -> Option<usize> {
        let plain = |p: &Path| {
            let s = p.to_string_lossy();
            !s.starts_with("json:")
                && !s.starts_with("file:")
                && !is_nbd_uri(&s)
                && !is_http_url(&s)
        };
        if !plain(path) {
            return None;
        }
        let id = spec::identity(path)?;
        self.layers.iter().enumerate().skip(1).find_map(|(d, l)| {
            let same = plain(&l.path)
                && spec::identity(&l.path) == Some(id)
                && format.is_none_or(|f| f == l.image.driver());
            same.then_some(d)
        })
    }

    /// The chain of `top`, an image just opened for writing (as `path`),
    /// with its backing files opened below it read-only and attached to it
    /// (for partial writes), as [`Chain::open_writable_with`] leaves it.
    pub fn with_writable_top(
        path: &Path,
        top: Arc<dyn Format>,
        options: &StorageOptions,
    ) -> Result<Chain> {
        let chain = Self::open_below(path, top, true, options)?;
        if chain.layers.len() > 1 {
            chain.layers[0].image.attach_backing(chain.reader_from(1));
        }
        Ok(chain)
    }

    /// Whether the layer at `depth` was opened for writing.
    pub fn is_writable(&self, depth: usize) -> bool {
        depth == 0 || self.writable_below == Some(depth)
    }

    /// The chain of `top`, an image already open (as `path`), with its
    /// backing files opened below it read-only, with `options`.
    pub fn with_top(path: &Path, top: Arc<dyn Format>, options: &StorageOptions) -> Result<Chain> {
        Self::open_below(path, top, true, options)
    }

    /// A chain whose top image is already open. A `json:` name may say
    /// which backing file to open instead of the recorded one, or none
    /// (heeded when `overrides` is set); `options` go to every layer's
    /// storage.
    fn open_below(
        path: &Path,
        top: Arc<dyn Format>,
        overrides: bool,
        options: &StorageOptions,
    ) -> Result<Chain> {
        Self::open_below_to(path, top, overrides, options, None)
    }

    /// As [`Chain::open_below`]; the backing layer `base` selects is opened
    /// for writing (and only once).
    fn open_below_to(
        path: &Path,
        top: Arc<dyn Format>,
        overrides: bool,
        options: &StorageOptions,
        base: Option<&Base<'_>>,
    ) -> Result<Chain> {
        let mut writable_below = None;
        let wanted = match base {
            Some(Base::Named(name)) => [
                spec::identity(&spec::resolve_backing(path, name)),
                spec::identity(Path::new(name)),
            ],
            _ => [None, None],
        };
        let mut layers = vec![Layer {
            path: path.to_path_buf(),
            image: top,
        }];
        let mut seen = vec![spec::identity(path)];
        let mut choice = match ImageSpec::parse_path(path) {
            Ok(s) if overrides => s.backing().clone(),
            _ => BackingChoice::AsRecorded,
        };
        loop {
            let top = layers.last().expect("at least one layer");
            let overlay = top.path.clone();
            let (name, format) = match std::mem::replace(&mut choice, BackingChoice::AsRecorded) {
                BackingChoice::None => break,
                // A backing node the user's own `json:` name gives.
                BackingChoice::Spec(s) => (s.to_name(), s.driver().map(|k| k.name().to_string())),
                BackingChoice::AsRecorded => match top.image.backing() {
                    Some(b) => {
                        // The image names it: an untrusted image's names are
                        // not followed.
                        let admitted =
                            options
                                .trust
                                .admit(RefusedKind::BackingFile, &b.name, &overlay)?;
                        if admitted == Admission::Skip {
                            break;
                        }
                        (b.name, b.format)
                    }
                    None => break,
                },
            };
            let resolved = spec::resolve_backing(&overlay, &name);
            let names = || {
                layers
                    .iter()
                    .map(|l| l.path.display().to_string())
                    .chain(std::iter::once(resolved.display().to_string()))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            };
            if is_absolute_spec(&name)
                && !name.starts_with('/')
                && !is_nbd_uri(&name)
                && !is_http_url(&name)
                && !name.starts_with("file:")
                && !name.starts_with("json:")
            {
                return Err(chain_error(format!(
                    "backing file '{name}' uses a protocol qimg cannot open"
                ))
                .with_path(&overlay));
            }
            let backing_spec = ImageSpec::parse_path(&resolved).map_err(|e| {
                chain_error(format!(
                    "could not open backing file '{name}': {}",
                    e.message()
                ))
                .with_path(&overlay)
            })?;
            let id = spec::identity(&resolved);
            if id.is_some() && seen.contains(&id) {
                return Err(chain_error(format!("backing chain loop: {}", names())));
            }
            if layers.len() >= MAX_CHAIN_DEPTH {
                return Err(chain_error(format!(
                    "backing chain is deeper than {MAX_CHAIN_DEPTH} images (stopped at '{}')",
                    resolved.display()
                ))
                .with_path(path));
            }
            let format = match (backing_spec.driver(), &format) {
                (Some(k), _) => k,
                (None, Some(f)) => f.parse::<FormatKind>().map_err(|e| e.with_path(&overlay))?,
                (None, None) => {
                    probe_backing(&resolved, &name, options).map_err(|e| e.with_path(&overlay))?
                }
            };
            let is_base = writable_below.is_none()
                && match base {
                    None => false,
                    Some(Base::First) => layers.len() == 1,
                    Some(Base::Named(wanted_name)) => {
                        *wanted_name == name || (id.is_some() && wanted.contains(&id))
                    }
                };
            let opened = if is_base {
                writable_below = Some(layers.len());
                open_image_writable_with(&resolved, Some(format), options)
            } else {
                open_image_with(&resolved, Some(format), options)
            };
            let image = opened.map_err(|e| {
                if e.kind() == ErrorKind::Interrupted {
                    return e;
                }
                chain_error(format!(
                    "could not open backing file '{name}'{}: {}",
                    looked_at(&name, &resolved),
                    e.reason()
                ))
                .with_path(&overlay)
            })?;
            if overrides {
                choice = backing_spec.backing().clone();
            }
            seen.push(id);
            layers.push(Layer {
                path: resolved,
                image: Arc::from(image),
            });
        }
        for pair in layers.windows(2) {
            pair[0].image.note_backing(pair[1].image.as_ref());
        }
        if layers.len() > 1 {
            let budget = crate::format::table_cache::CacheBudget::new(CHAIN_CACHE_BYTES);
            for layer in &layers {
                layer.image.share_cache_budget(&budget);
            }
        }
        Ok(Chain {
            layers,
            writable_below,
        })
    }

    /// The layers, top first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The top image.
    pub fn top(&self) -> &Layer {
        &self.layers[0]
    }

    /// The depth of the backing file `name` in the chain: `name` resolved
    /// relative to the top image or as given, or the name a layer stores
    /// for the one below it. qemu-img's error when it is not there.
    pub fn depth_of(&self, name: &str) -> Result<usize> {
        let file = &self.layers[0].path;
        let wanted = [
            spec::identity(&spec::resolve_backing(file, name)),
            spec::identity(Path::new(name)),
        ];
        for (depth, layer) in self.layers.iter().enumerate().skip(1) {
            let stored = self.layers[depth - 1]
                .image
                .backing()
                .is_some_and(|b| b.name == name);
            let id = spec::identity(&layer.path);
            if stored || (id.is_some() && wanted.contains(&id)) {
                return Ok(depth);
            }
        }
        Err(self.not_in_chain(name))
    }

    fn not_in_chain(&self, name: &str) -> Error {
        chain_error(format!(
            "Did not find '{name}' in the backing chain of '{}'",
            self.layers[0].path.display()
        ))
    }

    /// The whole chain as an owned reader (what an image above it reads).
    pub fn reader(&self) -> Arc<dyn GuestRead> {
        self.reader_from(0)
    }

    /// The layers from `depth` down as an owned reader (zeros past their
    /// end, and everywhere when there are no such layers).
    pub fn reader_from(&self, depth: usize) -> Arc<dyn GuestRead> {
        match self.layers.get(depth..).filter(|l| !l.is_empty()) {
            Some(layers) => Arc::new(LayersReader {
                layers: layers.to_vec(),
            }),
            None => Arc::new(Zeros),
        }
    }

    /// A view of the layers from `depth` down (0: the whole chain).
    pub fn view_from(&self, depth: usize) -> View<'_> {
        View {
            layers: &self.layers[depth..],
        }
    }

    /// A view of the whole chain.
    pub fn view(&self) -> View<'_> {
        View {
            layers: &self.layers,
        }
    }
}

/// The most requests any of `layers` wants in flight.
fn requests_in_flight(layers: &[Layer]) -> usize {
    layers
        .iter()
        .map(|l| l.image.storage().requests_in_flight())
        .max()
        .unwrap_or(1)
}

/// " (looked for DIR/NAME)" when the resolved path differs from the stored name.
fn looked_at(name: &str, resolved: &Path) -> String {
    if Path::new(name) == resolved {
        String::new()
    } else {
        format!(" (looked for {})", resolved.display())
    }
}

/// Probes a backing file whose format is not recorded. Probing one as raw is
/// refused: a guest could have written any header into it.
fn probe_backing(resolved: &Path, name: &str, options: &StorageOptions) -> Result<FormatKind> {
    let storage =
        spec::open_storage_with(resolved, false, options).map_err(|e| match e.kind() {
            ErrorKind::Interrupted => e,
            _ => chain_error(format!("could not open backing file '{name}': {e}")),
        })?;
    match probe_storage(storage.as_ref())? {
        Probed::Guessed(k) => Err(chain_error(format!(
            "the format of backing file '{name}' is not recorded and probing it would guess {k}, \
             which is unsafe; record it with: qimg rebase -u -b '{name}' -F {k} IMAGE"
        ))),
        Probed::Known(k) => Ok(k),
        Probed::Foreign(f) => Err(chain_error(format!(
            "backing file '{name}' is in format '{f}', which qimg does not read"
        ))),
    }
}

/// A guest-visible view through some layers of a chain, top first.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    layers: &'a [Layer],
}

impl<'a> View<'a> {
    /// The guest size (the top layer's virtual size).
    pub fn virtual_size(&self) -> u64 {
        self.layers[0].image.virtual_size()
    }

    /// How many reads to keep in flight through this view: the most any
    /// of its layers wants (a network export wants several).
    pub fn requests_in_flight(&self) -> usize {
        requests_in_flight(self.layers)
    }

    /// The layers of this view, top first.
    pub fn layers(&self) -> &'a [Layer] {
        self.layers
    }

    /// The status of the run at `offset` (at most `len` bytes), walking down
    /// the chain as qemu-img does: the first layer that allocates the range,
    /// or that has no backing below it, decides. `offset` must be inside the image.
    pub fn block_status(&self, offset: u64, len: u64) -> Result<ChainStatus> {
        self.resolve(offset, len, true)
    }

    fn resolve(&self, offset: u64, mut len: u64, want_host_zero: bool) -> Result<ChainStatus> {
        for (depth, layer) in self.layers.iter().enumerate() {
            let img = layer.image.as_ref();
            let ext = img
                .block_status(offset, len)
                .map_err(|e| e.with_path(&layer.path).at_offset(offset))?;
            len = ext.len;
            let mut st = ChainStatus {
                len,
                depth,
                present: true,
                zero: false,
                data: false,
                compressed: false,
                host: ext.status.host(),
            };
            match ext.status {
                Status::Data { host, compressed } => {
                    st.data = true;
                    st.compressed = compressed;
                    if let (Some(h), true) = (host, want_host_zero) {
                        if img.data_may_be_host_holes()? {
                            match img.data_storage().extent_at(h.0)? {
                                HostExtent::Data(n) => st.len = st.len.min(n),
                                HostExtent::Hole(n) => {
                                    st.zero = true;
                                    st.len = st.len.min(n);
                                }
                                HostExtent::TrailingHole => st.zero = true,
                            }
                        }
                    }
                    return Ok(st);
                }
                Status::Zero { .. } => {
                    st.zero = true;
                    return Ok(st);
                }
                Status::Unallocated { .. } => {
                    let below = self.layers.get(depth + 1);
                    if below.is_none_or(|b| offset >= b.image.virtual_size()) {
                        st.present = false;
                        st.zero = true;
                        return Ok(st);
                    }
                }
            }
        }
        unreachable!("the bottom layer always decides")
    }

    /// Where the guest bytes of `[offset, offset + len)` are stored, run
    /// by run, for a copy the kernel makes: plain data as the layer's data
    /// file and the offset in it, ranges that read as zeros, and compressed
    /// data (or data with no host offset) as runs to read. Runs that
    /// continue each other in one file are merged. The range must be
    /// inside the image.
    pub fn locate(&self, offset: u64, len: u64) -> Result<Vec<crate::engine::Located<'a>>> {
        use crate::engine::Located;
        let end = offset + len;
        let mut runs: Vec<Located<'a>> = Vec::new();
        let mut pos = offset;
        while pos < end {
            let st = self.resolve(pos, end - pos, true)?;
            let run = match (st.zero || !st.data, st.compressed, st.host) {
                (true, _, _) => Located::Zero(st.len),
                (false, false, Some(host)) => Located::Stored {
                    storage: self.layers[st.depth].image.data_storage(),
                    host: host.0,
                    len: st.len,
                },
                _ => Located::Read(st.len),
            };
            match (runs.last_mut(), run) {
                (Some(Located::Zero(n)), Located::Zero(m))
                | (Some(Located::Read(n)), Located::Read(m)) => *n += m,
                (
                    Some(Located::Stored { storage, host, len }),
                    Located::Stored {
                        storage: s,
                        host: h,
                        len: l,
                    },
                ) if std::ptr::addr_eq(*storage, s) && *host + *len == h => *len += l,
                (_, run) => runs.push(run),
            }
            pos += st.len;
        }
        Ok(runs)
    }

    /// Reads guest bytes at `offset` through the chain.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let size = self.virtual_size();
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::OutOfBounds,
                    format!(
                        "read of {} bytes at {offset} is past the virtual size {size}",
                        buf.len()
                    ),
                )
            })?;
        let mut pos = offset;
        while pos < end {
            let st = self.resolve(pos, end - pos, false)?;
            let start = (pos - offset) as usize;
            let chunk = &mut buf[start..start + st.len as usize];
            if st.data {
                let layer = &self.layers[st.depth];
                let read = match (st.host, st.compressed) {
                    // Plain data: read it where the status says it is.
                    (Some(host), false) => layer.image.data_storage().read_at(chunk, host.0),
                    _ => layer.image.read(pos, chunk),
                };
                read.map_err(|e| e.with_path(&layer.path).at_offset(pos))?;
            } else {
                chunk.fill(0);
            }
            pos += st.len;
        }
        Ok(())
    }
}

/// The guest view of some layers, owned, as a [`GuestRead`]: what a writable
/// image reads below itself. Reads past its size return zeros.
#[derive(Debug)]
pub struct LayersReader {
    layers: Vec<Layer>,
}

impl GuestRead for LayersReader {
    fn virtual_size(&self) -> u64 {
        self.layers[0].image.virtual_size()
    }

    fn requests_in_flight(&self) -> usize {
        requests_in_flight(&self.layers)
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let size = self.virtual_size();
        let inside = size.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(inside);
        if !head.is_empty() {
            View {
                layers: &self.layers,
            }
            .read(offset, head)?;
        }
        tail.fill(0);
        Ok(())
    }
}

/// A guest view that reads zeros everywhere (no backing file).
#[derive(Debug)]
struct Zeros;

impl GuestRead for Zeros {
    fn virtual_size(&self) -> u64 {
        0
    }

    fn read(&self, _offset: u64, buf: &mut [u8]) -> Result<()> {
        buf.fill(0);
        Ok(())
    }
}
