//! `amend`: change the options of an existing image, as `qemu-img amend`.
//!
//! The `-o` list is read as qemu-img reads it (names it does not know, and
//! creation-only ones, refused with its messages), the image is opened for
//! writing, and its format applies the changes crash-safely (a new size
//! through its resize, in qemu-img's order).

use crate::chain::Chain;
use crate::error::{Error, Result};
use crate::format::{AmendOption, AmendOptions, FormatKind};
use crate::io::StorageOptions;
use crate::ops::create::split_options;
use crate::size::parse_size;
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct AmendRequest {
    /// The image.
    pub file: PathBuf,
    /// Its format (probed when `None`).
    pub format: Option<FormatKind>,
    /// The `-o` texts as given (each a comma separated list).
    pub options: Vec<String>,
    /// How files are opened (cache mode, `-U`, a test's fault injector).
    pub storage: StorageOptions,
}

/// The options `amend -o help` lists for `format` (none for formats that
/// have no amend).
pub fn amend_option_help(format: FormatKind) -> &'static [AmendOption] {
    format.amend_options
}

/// qemu-img's refusal for a format without amend.
pub fn not_supported(format_name: &str) -> Error {
    Error::unsupported(format!(
        "Format driver '{format_name}' does not support option amendment"
    ))
}

/// Whether one of the `-o` items asks for the option list.
pub fn wants_help(options: &[String]) -> bool {
    options
        .iter()
        .flat_map(|o| split_options(o))
        .any(|(name, _)| name == "help" || name == "?")
}

/// Reads the `-o` texts into [`AmendOptions`] for a format whose amend
/// takes `known`, with qemu-img's messages: unknown names, creation-only
/// names, values of the wrong type, an unknown compat level, a backing
/// file change (that is rebase's job), and options that cannot be set on
/// an existing image. A later value of a name wins.
pub fn parse_amend_options(
    format: FormatKind,
    known: &[AmendOption],
    texts: &[String],
) -> Result<AmendOptions> {
    let mut pairs = Vec::new();
    for text in texts {
        if split_options(text).is_empty() {
            return Err(Error::argument(format!("Invalid option list: {text}")));
        }
        pairs.extend(split_options(text));
    }
    let mut last: Vec<(String, String)> = Vec::new();
    for (name, value) in pairs {
        if !known.iter().any(|o| o.name == name) && !name.starts_with("encrypt.") {
            let mut message = format!("Invalid parameter '{name}'");
            if format.create_options.iter().any(|o| o.name == name) {
                message.push_str("\nThis option is only supported for image creation");
            }
            return Err(Error::argument(message));
        }
        last.retain(|(n, _)| *n != name);
        last.push((name, value));
    }
    let mut opts = AmendOptions::default();
    for (name, value) in &last {
        match name.as_str() {
            "lazy_refcounts" => opts.lazy_refcounts = Some(parse_bool(name, value)?),
            "refcount_bits" => {
                let bits: u64 = value
                    .parse()
                    .map_err(|_| Error::argument(format!("Parameter '{name}' expects a number")))?;
                opts.refcount_bits = Some(bits.min(u32::MAX as u64) as u32);
            }
            "size" => {
                let size = parse_size(value).map_err(|_| {
                    Error::argument(
                        "Parameter 'size' expects a non-negative number below 2^64\n\
                         Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
                         and exabytes, respectively.",
                    )
                })?;
                // 0 means "unchanged", as with qemu-img.
                opts.size = (size != 0).then_some(size);
            }
            "data_file_raw" => {
                parse_bool(name, value)?;
            }
            _ => {}
        }
    }
    // The checks the format driver makes, in qemu-img's order.
    for (name, value) in &last {
        match name.as_str() {
            "compat" => {
                opts.version = Some(match value.as_str() {
                    "0.10" | "v2" => 2,
                    "1.1" | "v3" => 3,
                    other => {
                        return Err(Error::argument(format!(
                            "Unknown compatibility level {other}"
                        )))
                    }
                })
            }
            "backing_file" | "backing_fmt" => {
                return Err(Error::unsupported(
                    "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.",
                ))
            }
            n if n.starts_with("encrypt.") => {
                return Err(Error::unsupported(
                    "Can't amend encryption options - encryption not present",
                ))
            }
            "refcount_bits" => {
                let bits = opts.refcount_bits.unwrap_or(16);
                if bits == 0 || bits > 64 || !bits.is_power_of_two() {
                    return Err(Error::argument(
                        "Refcount width must be a power of two and may not exceed 64 bits",
                    ));
                }
            }
            "data_file" => opts.data_file = Some(value.clone()),
            "data_file_raw" => {
                return Err(Error::unsupported(
                    "data-file-raw cannot be set on existing images",
                ))
            }
            _ => {}
        }
    }
    Ok(opts)
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(Error::argument(format!(
            "Parameter '{name}' expects 'on' or 'off'"
        ))),
    }
}

/// Amends as `req` says. The image is opened for writing (an image in use
/// is refused) with its backing chain for reading; a format without amend
/// is refused before its options are looked at, as qemu-img does. The
/// format's refusals keep qemu-img's wording exactly (no file name: there
/// is only one file). `progress` hears the format's steps (done, in all).
pub fn amend(req: &AmendRequest, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let chain = Chain::open_writable_with(&req.file, req.format, &req.storage)?;
    let image = chain.top().image.as_ref();
    let format = image.driver();
    if !format.caps.amend {
        return Err(not_supported(format.name));
    }
    let opts = parse_amend_options(format, format.amend_options, &req.options)?;
    let amender = image.amender().ok_or_else(|| not_supported(format.name))?;
    amender.amend(&opts, progress)?;
    // Reported here, not lost when the image is dropped.
    image.flush()?;
    Ok(())
}
