//! LUKS1 (QEMU's `luks`): a LUKS header and its key slots at the start of
//! the file, then the payload, the guest disk encrypted sector by sector
//! (AES-XTS, IV = payload sector number). The header code is shared with
//! qcow2 images encrypted with `encrypt.format=luks`, whose LUKS area lies
//! in clusters of their own ([`Area`]).
//!
//! Without a key an image opens only for `info` (which reads no guest
//! data), and even then every read, write and block status refuses with
//! qemu-img's words: ciphertext is never taken for data.

pub mod crypto;
mod driver;
pub mod header;
pub mod keys;
pub mod options;
pub mod storage;

pub use driver::DRIVER;
pub use storage::CryptStorage;

use super::{clip_request, Description, Extent, Fact, Format, FormatKind, Status};
use crate::error::{Error, Result};
use crate::io::{Storage, StorageOptions};
use crypto::SectorCipher;
use header::{Header, HEADER_LEN};
use std::sync::Arc;

/// A LUKS area read from some storage: its header, and the payload
/// cipher once unlocked.
#[derive(Debug)]
pub struct Area {
    /// The parsed header.
    pub header: Header,
    /// The master key's cipher, when a secret was given and opened a slot.
    pub cipher: Option<Arc<SectorCipher>>,
}

impl Area {
    /// Reads the area at `start` of `storage` (`len` bytes long; the
    /// payload must lie inside it when `payload_inside`), and unlocks it
    /// with `password` when one is given.
    pub fn read(
        storage: &dyn Storage,
        start: u64,
        len: u64,
        payload_inside: bool,
        password: Option<&[u8]>,
    ) -> Result<Area> {
        let mut head = vec![0u8; HEADER_LEN.min(len as usize)];
        storage.read_at(&mut head, start)?;
        let header = Header::parse(&head, len, payload_inside).map_err(|e| e.at_offset(start))?;
        let cipher = match password {
            None => None,
            Some(pw) => {
                let read = |off: u64, buf: &mut [u8]| storage.read_at(buf, start + off);
                Some(Arc::new(keys::unlock(&header, pw, &read)?))
            }
        };
        Ok(Area { header, cipher })
    }

    /// The facts `info` shows (the `luks` object; qcow2 adds `format`
    /// after `uuid`).
    pub fn facts(&self, format_key: bool) -> Vec<(&'static str, Fact)> {
        let h = &self.header;
        let mut data = vec![
            ("ivgen-alg", Fact::Str(h.cipher.ivgen.name().into())),
            ("detached-header", Fact::Bool(false)),
            ("hash-alg", Fact::Str(h.hash.name().into())),
            ("cipher-alg", Fact::Str(h.cipher.alg_name())),
            ("uuid", Fact::Str(h.uuid.clone())),
        ];
        if format_key {
            data.push(("format", Fact::Str("luks".into())));
        }
        data.push(("cipher-mode", Fact::Str("xts".into())));
        let slots = h
            .slots
            .iter()
            .map(|s| {
                let mut o = vec![("active", Fact::Bool(s.active))];
                if s.active {
                    o.push(("iters", Fact::Int(s.iterations as u64)));
                }
                o.push(("key-offset", Fact::Int(s.key_offset as u64 * 512)));
                if s.active {
                    o.push(("stripes", Fact::Int(s.stripes as u64)));
                }
                Fact::Object(o)
            })
            .collect();
        data.push(("slots", Fact::List(slots)));
        data.push(("payload-offset", Fact::Int(h.payload_bytes())));
        data.push(("master-key-iters", Fact::Int(h.mk_iterations as u64)));
        data
    }
}

/// qemu-img's refusal to read or write an encrypted image opened without
/// its secret (`option` is the option that names it).
pub fn key_required(option: &str) -> Error {
    Error::argument(format!("Parameter '{option}' is required for cipher"))
}

/// An open `luks` image.
#[derive(Debug)]
pub struct Luks {
    storage: Arc<dyn Storage>,
    area: Area,
    /// The payload through its cipher, when unlocked.
    payload: Option<CryptStorage>,
    size: u64,
}

impl Luks {
    /// Opens the LUKS image in `storage`, unlocked with the secret the
    /// options name (if any).
    pub fn open(storage: Box<dyn Storage>, options: &StorageOptions) -> Result<Luks> {
        let storage: Arc<dyn Storage> = Arc::from(storage);
        let len = storage.len()?;
        // As qemu-img's info, one that reads no data unlocks nothing.
        let password = if options.no_io { None } else { options.key()? };
        let area = Area::read(storage.as_ref(), 0, len, true, password)?;
        if password.is_none() && !options.no_io {
            return Err(key_required("key-secret"));
        }
        let base = area.header.payload_bytes();
        let payload = area
            .cipher
            .clone()
            .map(|c| CryptStorage::new(storage.clone(), c, base));
        Ok(Luks {
            size: len - base,
            storage,
            area,
            payload,
        })
    }

    fn payload(&self) -> Result<&CryptStorage> {
        self.payload
            .as_ref()
            .ok_or_else(|| key_required("key-secret"))
    }

    fn base(&self) -> u64 {
        self.area.header.payload_bytes()
    }
}

impl Format for Luks {
    fn driver(&self) -> FormatKind {
        FormatKind::of(&DRIVER)
    }

    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn granularity(&self) -> u64 {
        crypto::SECTOR as u64
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        self.payload()?;
        Ok(Extent {
            len: clip_request(offset, len, self.size)?,
            status: Status::Data {
                host: None,
                compressed: false,
            },
        })
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let inside = self.size.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(inside);
        if !head.is_empty() {
            self.payload()?.read_at(head, self.base() + offset)?;
        }
        tail.fill(0);
        Ok(())
    }

    fn backing(&self) -> Option<super::BackingSpec> {
        None
    }

    fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    fn data_storage(&self) -> &dyn Storage {
        match &self.payload {
            Some(p) => p,
            None => self.storage.as_ref(),
        }
    }

    fn zero_initialized(&self) -> bool {
        false
    }

    fn describe(&self) -> Description {
        Description {
            cluster_size: None,
            dirty: false,
            need_check: false,
            snapshots: Vec::new(),
            bitmaps: Vec::new(),
            specific: Some(super::FormatSpecific {
                kind: "luks",
                data: self.area.facts(false),
            }),
            encrypted: true,
        }
    }

    fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        super::check_write_range(offset, buf.len() as u64, self.size)?;
        self.payload()?.write_at(buf, self.base() + offset)
    }

    fn plan_write(&self, guest: super::GuestOffset, len: u64) -> Result<Vec<super::Placement>> {
        super::check_write_range(guest.0, len, self.size)?;
        self.payload()?;
        // Whole sectors go to the workers, which encrypt them through the
        // data storage; a partial sector is completed here.
        let s = crypto::SECTOR as u64;
        if guest.0 % s == 0 && len % s == 0 {
            Ok(vec![super::Placement::Host {
                guest,
                host: super::HostOffset(self.base() + guest.0),
                len,
            }])
        } else {
            Ok(vec![super::Placement::Serial { guest, len }])
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> Result<()> {
        super::check_write_range(offset, len, self.size)?;
        self.payload()?.zero_range(self.base() + offset, len)
    }

    fn flush(&self) -> Result<()> {
        self.storage.flush()
    }

    fn resize(&self, new_size: u64, prealloc: super::Preallocation) -> Result<()> {
        // As qemu-img: the secret is needed, and the payload is the file
        // past the header (grown sectors read as noise, as unwritten ones).
        let payload = self.payload()?;
        if new_size % crypto::SECTOR as u64 != 0 {
            return Err(Error::argument("The new size must be a multiple of 512"));
        }
        let base = self.base();
        let end = base
            .checked_add(new_size)
            .ok_or_else(|| Error::argument("The new size is too large"))?;
        self.storage.set_len(end)?;
        if new_size > self.size {
            let grown = new_size - self.size;
            match prealloc {
                super::Preallocation::Off => {}
                super::Preallocation::Falloc => self.storage.allocate(base + self.size, grown)?,
                super::Preallocation::Full => payload.zero_range(base + self.size, grown)?,
                super::Preallocation::Metadata => {
                    return Err(Error::argument("Unsupported preallocation mode: metadata"))
                }
            }
        }
        self.storage.flush()
    }
}
