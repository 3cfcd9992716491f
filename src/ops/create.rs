//! `create`: parse qemu-img's `-o` options for a format, check the backing
//! file, print the `Formatting ...` line and write the new image.

use crate::chain::open_image_with;
use crate::chain::spec::creation_path;
use crate::error::{Error, Result};
use crate::format::driver::{CreateOption, CreateParams, NewImage, OptionValues, Shown};
use crate::format::{BackingSpec, FormatKind, Preallocation};
use crate::io::StorageOptions;
use crate::paths::resolve_relative_to;
use std::path::{Path, PathBuf};

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The file to create.
    pub file: PathBuf,
    /// The format (raw when `None`, as qemu-img).
    pub format: Option<FormatKind>,
    /// `-o` strings, in order (later values win).
    pub options: Vec<String>,
    /// `-b`.
    pub backing: Option<String>,
    /// `-F`.
    pub backing_format: Option<String>,
    /// `-u`: do not open the backing file.
    pub backing_unsafe: bool,
    /// The positional size.
    pub size: Option<u64>,
    /// How files are opened (the backing file) and created.
    pub storage: StorageOptions,
}

/// The option names `format` takes on create (qemu-img's, in its `-o
/// help` order, the ones it does not list included).
pub fn option_names(format: FormatKind) -> impl Iterator<Item = &'static str> {
    format.create_options.iter().map(|o| o.name)
}

/// One creation option as `-o help` lists it.
pub type OptionHelp = CreateOption;

/// The options `-o help` lists for `format`, sorted by name as qemu-img
/// sorts them (options it does not list are left out).
pub fn option_help(format: FormatKind) -> Vec<OptionHelp> {
    let mut list: Vec<OptionHelp> = format
        .create_options
        .iter()
        .filter(|o| !o.hidden)
        .copied()
        .collect();
    list.sort_by_key(|o| o.name);
    list
}

/// Splits one `-o` text into (name, value) pairs as qemu-img does: items
/// are separated by `,`, a doubled `,,` stands for a comma inside a value,
/// and a name without `=` means `name=on`.
///
/// ```
/// use qimg::ops::create::split_options;
/// let pairs = split_options("backing_file=a,,b.qcow2,lazy_refcounts");
/// assert_eq!(pairs, [("backing_file".into(), "a,b.qcow2".into()), ("lazy_refcounts".into(), "on".into())]);
/// ```
pub fn split_options(spec: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                current.push(',');
            } else {
                items.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    items.push(current);
    items
        .into_iter()
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (item, "on".to_string()),
        })
        .collect()
}

/// The id of the secret `-o` texts name to encrypt the new image with
/// (`key-secret` or `encrypt.key-secret`; the last one given).
pub fn key_secret(specs: &[String]) -> Option<String> {
    specs
        .iter()
        .flat_map(|s| split_options(s))
        .collect::<Vec<_>>()
        .into_iter()
        .filter(|(k, _)| k == "key-secret" || k == "encrypt.key-secret")
        .map(|(_, v)| v)
        .next_back()
}

/// Reads `-o` texts for `format`, refusing names the format does not
/// take with qemu-img's message.
fn parse_options(format: FormatKind, specs: &[String]) -> Result<OptionValues> {
    let mut o = OptionValues::default();
    for spec in specs {
        for (key, value) in split_options(spec) {
            let (key, value) = (key.as_str(), value.as_str());
            if !option_names(format).any(|n| n == key) {
                return Err(Error::argument(format!("Invalid parameter '{key}'")));
            }
            o.set(key, value);
        }
    }
    Ok(o)
}

/// A checked request, ready to write.
#[derive(Debug)]
pub struct CreatePlan {
    file: PathBuf,
    /// The target, or the error its option values gave: like qemu-img, the
    /// formatting line is printed before bad values are reported.
    target: Result<Box<dyn NewImage>>,
    formatting: String,
    storage: StorageOptions,
}

impl CreatePlan {
    /// The line qemu-img prints before creating: `Formatting 'f', fmt=...`.
    pub fn formatting_line(&self) -> &str {
        &self.formatting
    }

    /// Checks the options of the target format (qemu-img checks them after
    /// printing the formatting line).
    pub fn validate(&self) -> Result<&dyn NewImage> {
        let target = self
            .target
            .as_ref()
            .map_err(|e| Error::new(e.kind(), e.message()).with_path(&self.file))?;
        target.validate().map_err(|e| e.with_path(&self.file))?;
        Ok(target.as_ref())
    }

    /// Writes the new image (overwriting an existing file), with the
    /// request's storage options, and closes it: every error, a failed
    /// final flush included, is reported.
    pub fn execute(&self) -> Result<()> {
        self.execute_open().map(drop)
    }

    /// As [`CreatePlan::execute`], but the new image's file stays open for
    /// writing and is returned with its name (for a command that goes on
    /// to write into the image: it opens the file once).
    pub fn execute_open(&self) -> Result<(Box<dyn crate::io::Storage>, &Path)> {
        let target = self.validate()?;
        let storage = target
            .write(&self.file, &self.storage)
            .map_err(|e| e.with_path(&self.file))?;
        Ok((storage, &self.file))
    }
}

/// Parses and checks a request: options, backing file, size.
pub fn plan(req: &CreateRequest) -> Result<CreatePlan> {
    let format = req.format.unwrap_or_else(FormatKind::fallback);
    let at_file = |e: Error| e.with_path(&req.file);
    if crate::io::nbd_uri(&req.file).is_some() {
        return Err(at_file(Error::unsupported(
            "Protocol driver 'nbd' does not support image creation \
             (write into an existing export with convert -n)",
        )));
    }
    if crate::io::http_url(&req.file).is_some() {
        return Err(at_file(Error::unsupported(
            "images over HTTP(S) are read-only: they cannot be created",
        )));
    }
    let mut o = parse_options(format, &req.options).map_err(at_file)?;
    if req.backing.is_some() && !format.caps.backing {
        return Err(at_file(Error::argument(format!(
            "Backing file not supported for file format '{format}'"
        ))));
    }
    if let Some(b) = &req.backing {
        o.set("backing_file", b);
    }
    if let Some(f) = &req.backing_format {
        o.set("backing_fmt", f);
    }
    // A bad size value is reported before a second size, as qemu-img does.
    o.size("size").map_err(at_file)?;
    if req.size.is_some() && o.get("size").is_some() {
        return Err(at_file(Error::argument(
            "The image size must be specified only once",
        )));
    }
    // A `file:` prefix names the file; a `json:` name cannot be created.
    let file = creation_path(&req.file)?;
    let backing = backing_spec(&file, &o, &req.storage).map_err(at_file)?;
    // Without -u the backing file must open; its size is the default size.
    let backing_virtual_size = match &backing {
        Some(b) if !req.backing_unsafe => Some(backing_size(&file, b, &req.storage)?),
        _ => None,
    };
    let size = req
        .size
        .or(o.size("size").map_err(at_file)?)
        .or(backing_virtual_size)
        .ok_or_else(|| at_file(Error::argument("Image creation needs a size parameter")))?;
    o.set("size", &size.to_string());
    let target = target(format, &o, size, backing);
    Ok(CreatePlan {
        formatting: formatting_line(&req.file, format, &o),
        file,
        target,
        storage: req.storage.clone(),
    })
}

/// Checks `-o` options for `format` as `create` does (for `measure`),
/// and returns their values.
pub fn check_options(format: FormatKind, specs: &[String]) -> Result<OptionValues> {
    parse_options(format, specs)
}

/// The format's new image, from the values given.
fn target(
    format: FormatKind,
    o: &OptionValues,
    size: u64,
    backing: Option<BackingSpec>,
) -> Result<Box<dyn NewImage>> {
    let preallocation = o.preallocation()?;
    // Only some formats reserve metadata; for the others qemu-img refuses it.
    if preallocation == Preallocation::Metadata && !format.caps.preallocate_metadata {
        return Err(Error::argument("Unsupported preallocation mode: metadata"));
    }
    (format.create)(&CreateParams {
        options: o,
        size,
        preallocation,
        backing,
    })
}

fn backing_spec(
    file: &Path,
    o: &OptionValues,
    storage: &StorageOptions,
) -> Result<Option<BackingSpec>> {
    let Some(name) = o.get("backing_file") else {
        return Ok(None);
    };
    let format = match o.get("backing_fmt") {
        Some(f) => f.parse::<FormatKind>()?.name().to_string(),
        None => {
            let detected = open_image_with(&resolve_relative_to(file, name), None, storage)
                .map(|i| format!(" (detected {0}; add -F {0})", i.format_name()))
                .unwrap_or_default();
            return Err(Error::argument(format!(
                "Backing file specified without backing format{detected}"
            )));
        }
    };
    Ok(Some(BackingSpec {
        name: name.to_string(),
        format: Some(format),
    }))
}

/// Opens the backing file (relative to the new image) and returns its size.
fn backing_size(file: &Path, b: &BackingSpec, storage: &StorageOptions) -> Result<u64> {
    let format = b
        .format
        .as_deref()
        .map(str::parse::<FormatKind>)
        .transpose()?;
    let path = resolve_relative_to(file, &b.name);
    let image = open_image_with(&path, format, storage).map_err(|e| {
        Error::argument(format!(
            "Could not open backing image '{}': {}",
            b.name,
            e.reason()
        ))
        .with_path(file)
    })?;
    Ok(image.virtual_size())
}

/// The `Formatting 'FILE', fmt=...` line, with qemu-img's field order:
/// options it always shows get their defaults, the others appear when given.
fn formatting_line(file: &Path, format: FormatKind, o: &OptionValues) -> String {
    let mut line = format!("Formatting '{}', fmt={}", file.display(), format.name());
    for f in format.formatting {
        let value = match f.shown {
            Shown::Given => o.get(f.key).map(str::to_string),
            Shown::Or(default) => Some(o.get(f.key).unwrap_or(default).to_string()),
            Shown::Size(default) => o
                .size(f.key)
                .ok()
                .flatten()
                .map(|v| v.to_string())
                .or(default.map(str::to_string)),
        };
        if let Some(v) = value {
            line.push_str(&format!(" {}={v}", f.key));
        }
    }
    line
}
