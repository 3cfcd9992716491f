//! The qcow2 entry of the driver table: probing, opening, the `-o`
//! options of `create`, `measure`, and the facts `info` shows.

use super::create::CreateOptions;
use super::header::{self, CompressionType, INCOMPAT_CORRUPT, INCOMPAT_DIRTY};
use super::measure::{bitmaps_size, fully_allocated_size};
use super::Qcow2;
use crate::error::{Error, Result};
use crate::format::check::Repair;
use crate::format::driver::common_options::{
    BACKING_FILE, BACKING_FMT, EXTENT_SIZE_HINT, NOCOW, SIZE,
};
use crate::format::driver::{
    Caps, Confidence, CreateOption, CreateParams, FormatDriver, FormattingField, Magic,
    MeasureInput, Measurement, NewImage, NodeOptions, OpenHow, OptionValues,
};
use crate::format::{
    Amend, AmendOptions, BackingSpec, BitmapInfo, Description, Fact, Format, FormatSpecific,
    InternalSnapshots, NewSnapshot, Preallocation, SnapshotInfo,
};
use crate::io::{create_storage_with, FileStorage, Storage, StorageOptions, Trust};
use crate::paths::resolve_relative_to;
use std::path::Path;
use std::sync::Arc;

/// qcow2, versions 2 and 3.
pub static DRIVER: FormatDriver = FormatDriver {
    name: "qcow2",
    probe,
    probe_tail: None,
    magic: Some(Magic {
        bytes: b"QFI\xfb",
        refusal: "Image is not in qcow2 format",
    }),
    open,
    create,
    create_options: CREATE_OPTIONS,
    formatting: FORMATTING,
    amend_options: super::amend::AMEND_OPTIONS,
    measure: Some(measure),
    node_options: NodeOptions {
        accepted: &[
            "lazy-refcounts",
            "pass-discard-request",
            "pass-discard-snapshot",
            "pass-discard-other",
            "discard-no-unref",
            "overlap-check",
            "cache-size",
            "l2-cache-size",
            "l2-cache-entry-size",
            "refcount-cache-size",
            "cache-clean-interval",
        ],
        refused: &[(
            "data-file",
            "the qcow2 'data-file' option is not supported (qimg opens the data file the image names)",
        )],
        encrypt: true,
        secret: None,
    },
    caps: Caps {
        writable: true,
        backing: true,
        snapshots: true,
        compression: true,
        bitmaps: true,
        check: true,
        resize: true,
        amend: true,
        external_data: true,
        preallocate_metadata: true,
        repair_dirty_on_open: true,
        host_is_file: false,
        fallback: false,
        window: false,
    },
};

/// The magic and a version qimg reads (2 or 3; 0 and 1 are other formats).
fn probe(head: &[u8]) -> Option<Confidence> {
    if head.len() < 8 || &head[..4] != b"QFI\xfb" {
        return None;
    }
    let version = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
    (version >= 2).then_some(Confidence::Magic)
}

fn open(
    storage: Box<dyn Storage>,
    path: &Path,
    how: &OpenHow<'_>,
    options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    // Shared, so that an encrypted image's cipher can sit over the file.
    let shared: Arc<dyn Storage> = Arc::from(storage);
    let storage: Box<dyn Storage> = Box::new(shared.clone());
    let trust = &options.trust;
    let mut image = match how {
        OpenHow::ReadOnly => Qcow2::open_trusting(storage, path, false, false, trust)?,
        OpenHow::Repair => Qcow2::open_trusting(storage, path, false, true, trust)?,
        OpenHow::Snapshot(id_or_name) => {
            Qcow2::open_trusting(storage, path, false, false, trust)?.at_snapshot(id_or_name)?
        }
        OpenHow::Writable => open_writable(storage, path, trust)?,
    };
    image.open_encryption(shared, options)?;
    Ok(Box::new(image))
}

/// Opens for writing. An image left dirty by a crashed lazy-refcount
/// writer has stale refcounts: they are rebuilt first, as QEMU does,
/// through the same open file.
fn open_writable(storage: Box<dyn Storage>, path: &Path, trust: &Trust) -> Result<Qcow2> {
    let shared: Arc<dyn Storage> = Arc::from(storage);
    let image = Qcow2::open_trusting(Box::new(shared.clone()), path, false, false, trust)?;
    if image.header().incompatible_features & INCOMPAT_DIRTY != 0 {
        let report = image.repair(Repair::All, &mut |_| {})?.unwrap_or_default();
        image.flush()?;
        if report.corruptions > 0 || report.check_errors > 0 {
            return Err(Error::corrupt(
                "image was not closed cleanly and its refcounts could not be repaired; run 'qimg check -r all'",
            ));
        }
    }
    drop(image);
    Qcow2::open_trusting(Box::new(shared), path, true, false, trust)
}

/// The `-o` options, in qemu-img's order.
const CREATE_OPTIONS: &[CreateOption] = &[
    CreateOption::format(
        "compat",
        "str",
        "Version of the format: v2 (0.10) or v3 (1.1)",
    ),
    BACKING_FILE,
    BACKING_FMT,
    CreateOption::format("data_file", "str", "External file holding the guest data"),
    CreateOption::format(
        "data_file_raw",
        "bool (on/off)",
        "Keep the external data file a valid raw image",
    ),
    CreateOption::hidden("encryption"),
    CreateOption::format(
        "encrypt.format",
        "str",
        "Encrypt the image, format choices: 'luks'",
    ),
    CreateOption::format(
        "encrypt.key-secret",
        "str",
        "ID of the secret providing the LUKS passphrase",
    ),
    CreateOption::format(
        "encrypt.cipher-alg",
        "str",
        "Name of encryption cipher algorithm",
    ),
    CreateOption::format(
        "encrypt.cipher-mode",
        "str",
        "Name of encryption cipher mode",
    ),
    CreateOption::format("encrypt.ivgen-alg", "str", "Name of IV generator algorithm"),
    CreateOption::format(
        "encrypt.ivgen-hash-alg",
        "str",
        "Name of IV generator hash algorithm",
    ),
    CreateOption::format(
        "encrypt.hash-alg",
        "str",
        "Name of encryption hash algorithm",
    ),
    CreateOption::format(
        "encrypt.iter-time",
        "num",
        "Time to spend in PBKDF in milliseconds",
    ),
    CreateOption::format(
        "cluster_size",
        "size",
        "Cluster size in bytes (512 to 2M, a power of two)",
    ),
    CreateOption::format(
        "extended_l2",
        "bool (on/off)",
        "L2 entries with 32 subclusters",
    ),
    CreateOption::format(
        "preallocation",
        "str",
        "Preallocation: off, metadata, falloc or full",
    ),
    CreateOption::format(
        "lazy_refcounts",
        "bool (on/off)",
        "Update refcounts lazily (needs a check after a crash)",
    ),
    CreateOption::format(
        "refcount_bits",
        "num",
        "Bits of one refcount entry (1 to 64, a power of two)",
    ),
    CreateOption::format(
        "compression_type",
        "str",
        "Compression of compressed clusters: zlib or zstd",
    ),
    NOCOW,
    EXTENT_SIZE_HINT,
    SIZE,
];

/// qemu-img's `Formatting` fields for qcow2.
const FORMATTING: &[FormattingField] = &[
    FormattingField::given("encrypt.format"),
    FormattingField::given("encrypt.key-secret"),
    FormattingField::given("encrypt.cipher-alg"),
    FormattingField::given("encrypt.cipher-mode"),
    FormattingField::given("encrypt.ivgen-alg"),
    FormattingField::given("encrypt.ivgen-hash-alg"),
    FormattingField::given("encrypt.hash-alg"),
    FormattingField::given("encrypt.iter-time"),
    FormattingField::size_or("cluster_size", "65536"),
    FormattingField::or("extended_l2", "off"),
    FormattingField::given("preallocation"),
    FormattingField::or("compression_type", "zlib"),
    FormattingField::given("size"),
    FormattingField::given("compat"),
    FormattingField::given("backing_file"),
    FormattingField::given("backing_fmt"),
    FormattingField::given("data_file"),
    FormattingField::given("data_file_raw"),
    FormattingField::or("lazy_refcounts", "off"),
    FormattingField::or("refcount_bits", "16"),
    FormattingField::given("nocow"),
    FormattingField::size("extent_size_hint"),
];

/// A planned qcow2 image.
#[derive(Debug)]
struct NewQcow2(CreateOptions);

impl NewImage for NewQcow2 {
    fn validate(&self) -> Result<()> {
        self.0.validate()
    }

    fn write(&self, file: &Path, options: &StorageOptions) -> Result<Box<dyn Storage>> {
        let data = match &self.0.data_file {
            Some(name) => Some(FileStorage::create_with(
                &resolve_relative_to(file, name),
                options,
            )?),
            None => None,
        };
        self.0.validate()?;
        let area = match &self.0.encrypt {
            Some(choice) => {
                let keyed = options.with_key_secret(self.0.key_secret.clone());
                let password = keyed
                    .key()?
                    .ok_or_else(|| crate::format::luks::key_required("encrypt.key-secret"))?;
                Some(crate::format::luks::keys::make_area(choice, password)?)
            }
            None => None,
        };
        let storage = create_storage_with(file, options)?;
        super::create::create(
            storage.as_ref(),
            data.as_ref().map(|d| d as &dyn Storage),
            &self.0,
            area.as_ref().map(|a| a.bytes.as_slice()),
        )?;
        Ok(storage)
    }
}

fn create(p: &CreateParams<'_>) -> Result<Box<dyn NewImage>> {
    Ok(Box::new(NewQcow2(options(
        p.options,
        p.size,
        p.preallocation,
        p.backing.clone(),
    )?)))
}

/// The geometry and features `-o` values describe, with qemu-img's
/// messages for values it refuses while reading them.
pub fn options(
    o: &OptionValues,
    size: u64,
    preallocation: Preallocation,
    backing: Option<BackingSpec>,
) -> Result<CreateOptions> {
    let version = match o.get("compat") {
        None | Some("1.1" | "v3") => 3,
        Some("0.10" | "v2") => 2,
        Some(v) => {
            return Err(Error::argument(format!(
                "Parameter 'version' does not accept value '{v}'"
            )))
        }
    };
    let cluster_size = o.size("cluster_size")?.unwrap_or(65536);
    let cluster_bits = if cluster_size.is_power_of_two() {
        cluster_size.trailing_zeros()
    } else {
        u32::MAX
    };
    let refcount_bits = match o.get("refcount_bits") {
        Some(v) => v.parse::<u64>().unwrap_or(0),
        None => 16,
    };
    let refcount_order = if refcount_bits.is_power_of_two() && refcount_bits <= 64 {
        refcount_bits.trailing_zeros()
    } else {
        u32::MAX
    };
    let compression = match o.get("compression_type") {
        None | Some("zlib") => CompressionType::Zlib,
        Some("zstd") => CompressionType::Zstd,
        Some(v) => {
            return Err(Error::argument(format!(
                "Parameter 'compression-type' does not accept value '{v}'"
            )))
        }
    };
    let encrypt = match (o.get("encrypt.format"), o.flag("encryption")?) {
        (Some("aes"), _) | (None, true) => {
            return Err(Error::unsupported(
                "AES-encrypted qcow2 images are not supported (use encrypt.format=luks)",
            ))
        }
        (Some("luks"), _) => Some(crate::format::luks::options::new_area(o, "encrypt.")?),
        (Some(v), _) => {
            return Err(Error::argument(format!(
                "Parameter 'encrypt.format' does not accept value '{v}'"
            )))
        }
        (None, false) => None,
    };
    Ok(CreateOptions {
        encrypt,
        key_secret: o.get("encrypt.key-secret").map(str::to_string),
        size,
        version,
        cluster_bits,
        refcount_order,
        extended_l2: o.flag("extended_l2")?,
        compression,
        lazy_refcounts: o.flag("lazy_refcounts")?,
        preallocation,
        backing,
        data_file: o.get("data_file").map(str::to_string),
        data_file_raw: o.flag("data_file_raw")?,
    })
}

/// `measure` for a qcow2 target, as qemu-img computes it.
fn measure(m: &MeasureInput<'_>) -> Result<Measurement> {
    let geometry = options(m.options, m.size, m.options.preallocation()?, None)?;
    geometry.validate()?;
    let cluster = 1u64 << geometry.cluster_bits;
    let virtual_size = m.size.div_ceil(cluster) * cluster;
    let data = if matches!(
        geometry.preallocation,
        Preallocation::Full | Preallocation::Falloc
    ) {
        virtual_size
    } else {
        (m.data_bytes)(cluster)?
    };
    let fully_allocated = fully_allocated_size(
        virtual_size,
        cluster,
        geometry.refcount_order,
        geometry.extended_l2,
    );
    let bitmaps = match m.bitmaps {
        Some(list) if geometry.version >= 3 => Some(bitmaps_size(
            virtual_size,
            cluster,
            list.iter().map(|b| (b.granularity, b.name.len())),
        )),
        _ => None,
    };
    Ok(Measurement {
        required: fully_allocated - virtual_size + data,
        fully_allocated,
        bitmaps,
    })
}

/// What `info` shows of an open image.
pub(super) fn describe(image: &Qcow2) -> Description {
    let h = &image.header;
    let bitmaps: Vec<BitmapInfo> = image
        .bitmaps
        .iter()
        .map(|b| BitmapInfo {
            name: b.name.clone(),
            granularity: b.granularity,
            in_use: b.in_use,
            auto: b.auto,
        })
        .collect();
    let external = image.geo.external_data;
    let facts = Facts {
        version: h.version,
        compression_type: image.compression.name(),
        lazy_refcounts: h.compatible_features & header::COMPAT_LAZY_REFCOUNTS != 0,
        refcount_bits: h.refcount_bits(),
        corrupt: h.incompatible_features & INCOMPAT_CORRUPT != 0,
        extended_l2: image.geo.extended_l2,
        data_file: h.data_file.clone().filter(|_| external),
        data_file_raw: external && h.autoclear_features & header::AUTOCLEAR_DATA_FILE_RAW != 0,
        encrypt: image.luks_area().map(|a| a.facts(true)),
    };
    Description {
        cluster_size: Some(h.cluster_size()),
        dirty: h.incompatible_features & INCOMPAT_DIRTY != 0,
        need_check: false,
        snapshots: image.snapshots.iter().map(snapshot_info).collect(),
        specific: Some(facts.specific(&bitmaps)),
        encrypted: image.luks_area().is_some(),
        bitmaps,
    }
}

/// A snapshot as `info` and `snapshot -l` list it.
fn snapshot_info(s: &super::Snapshot) -> SnapshotInfo {
    SnapshotInfo {
        id: s.id.clone(),
        name: s.name.clone(),
        date_sec: s.date_sec,
        date_nsec: s.date_nsec,
        vm_clock_nsec: s.vm_clock_nsec,
        vm_state_size: s.vm_state_size,
        icount: s.icount,
    }
}

/// The header facts qemu-img's `format-specific` object shows.
struct Facts {
    version: u32,
    compression_type: &'static str,
    lazy_refcounts: bool,
    refcount_bits: u32,
    corrupt: bool,
    extended_l2: bool,
    data_file: Option<String>,
    data_file_raw: bool,
    /// The LUKS facts of an encrypted image.
    encrypt: Option<Vec<(&'static str, Fact)>>,
}

impl Facts {
    /// qemu-img's `ImageInfoSpecificQCow2`, in its key order.
    fn specific(&self, bitmaps: &[BitmapInfo]) -> FormatSpecific {
        let mut data = Vec::new();
        if self.version < 3 {
            data.push(("compat", Fact::Str("0.10".into())));
            data.push(("compression-type", Fact::Str(self.compression_type.into())));
            data.push(("refcount-bits", Fact::Int(self.refcount_bits.into())));
            if let Some(e) = &self.encrypt {
                data.push(("encrypt", Fact::Object(e.clone())));
            }
            return FormatSpecific {
                kind: "qcow2",
                data,
            };
        }
        data.push(("compat", Fact::Str("1.1".into())));
        data.push(("compression-type", Fact::Str(self.compression_type.into())));
        data.push(("lazy-refcounts", Fact::Bool(self.lazy_refcounts)));
        if !bitmaps.is_empty() {
            let list = bitmaps
                .iter()
                .map(|b| {
                    let mut flags = Vec::new();
                    if b.in_use {
                        flags.push(Fact::Str("in-use".into()));
                    }
                    if b.auto {
                        flags.push(Fact::Str("auto".into()));
                    }
                    Fact::Object(vec![
                        ("flags", Fact::List(flags)),
                        ("name", Fact::Str(b.name.clone())),
                        ("granularity", Fact::Int(b.granularity)),
                    ])
                })
                .collect();
            data.push(("bitmaps", Fact::List(list)));
        }
        data.push(("refcount-bits", Fact::Int(self.refcount_bits.into())));
        if let Some(e) = &self.encrypt {
            data.push(("encrypt", Fact::Object(e.clone())));
        }
        if let Some(df) = &self.data_file {
            data.push(("data-file", Fact::Str(df.clone())));
            data.push(("data-file-raw", Fact::Bool(self.data_file_raw)));
        }
        data.push(("corrupt", Fact::Bool(self.corrupt)));
        data.push(("extended-l2", Fact::Bool(self.extended_l2)));
        FormatSpecific {
            kind: "qcow2",
            data,
        }
    }
}

impl InternalSnapshots for Qcow2 {
    fn create_snapshot(&self, snapshot: &NewSnapshot) -> Result<()> {
        self.create_snapshot_now(snapshot)
    }

    fn apply_snapshot(&self, id_or_name: &str) -> Result<()> {
        self.apply_snapshot_now(id_or_name)
    }

    fn delete_snapshot(&self, name: &str) -> Result<()> {
        self.delete_snapshot_now(name)
    }
}

impl Amend for Qcow2 {
    fn amend(&self, options: &AmendOptions, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        self.amend_now(options, progress)
    }
}
