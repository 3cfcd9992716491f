//! VHDX (Hyper-V): a file type identifier, two checksummed headers, a
//! region table naming the block allocation table and the metadata, a
//! log of metadata writes that must be replayed before the file is read,
//! and payload blocks of 1 to 256 MiB anywhere in the file.
//!
//! As QEMU, qimg reads and writes non-differencing images with 512-byte
//! logical sectors, reports every range as data without a host offset
//! (QEMU's driver has no block status, so `map` shows one extent), and
//! appends new blocks at the end of the file, MiB aligned.

pub mod bat;
mod create;
mod driver;
pub mod header;
pub mod log;
pub mod metadata;
mod write;

pub use create::{create, VhdxCreateOptions};
pub use driver::DRIVER;

use super::{clip_request, BackingSpec, Description, Extent, Format, FormatKind, Status};
use crate::error::{Error, Result};
use crate::io::Storage;
use bat::Geometry;
use header::{Header, Regions, HEADER_LEN, HEADER_OFFSETS, MIB, REGION_LEN, REGION_OFFSETS};
use metadata::Metadata;
use std::sync::{Mutex, MutexGuard};

/// An open VHDX image.
#[derive(Debug)]
pub struct Vhdx {
    storage: Box<dyn Storage>,
    meta: Metadata,
    geometry: Geometry,
    regions: Regions,
    /// The log's writes, applied on every read of the file, when a
    /// read-only open found a log to replay.
    overlay: Vec<log::Op>,
    /// The log entries replayed by this open (0: the log was empty).
    replayed: usize,
    writable: bool,
    state: Mutex<State>,
}

/// What writes change.
#[derive(Debug)]
struct State {
    /// The BAT, payload and sector-bitmap entries.
    bat: Vec<u64>,
    /// The current header and its slot.
    header: Header,
    slot: usize,
    /// The headers carry this session's write GUIDs.
    session_started: bool,
    /// Where the next new block goes (MiB aligned, past everything).
    next_free: u64,
    /// The range of BAT indices changed in memory and not yet written.
    unpublished: Option<(usize, usize)>,
}

impl Drop for Vhdx {
    fn drop(&mut self) {
        if self.writable {
            let _ = self.flush_all();
        }
    }
}

fn range_in_file(what: &str, offset: u64, len: u64, file_len: u64) -> Result<()> {
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(Error::corrupt(format!(
            "the VHDX {what} at {offset:#x} ({len} bytes) lies past the end of the file ({file_len} bytes)"
        ))
        .at_offset(offset));
    }
    Ok(())
}

impl Vhdx {
    /// Opens a VHDX read-only; a log to replay is replayed in memory.
    pub fn open(storage: Box<dyn Storage>) -> Result<Self> {
        Self::open_with(storage, false)
    }

    /// Opens a VHDX for writing (`storage` must be writable); a log to
    /// replay is replayed into the file first.
    pub fn open_writable(storage: Box<dyn Storage>) -> Result<Self> {
        Self::open_with(storage, true)
    }

    fn open_with(storage: Box<dyn Storage>, writable: bool) -> Result<Self> {
        let mut file_len = storage.len()?;
        let mut sig = [0u8; 8];
        storage.read_at(&mut sig, 0)?;
        if &sig != header::FILE_SIGNATURE {
            return Err(Error::invalid("Image not in VHDX format"));
        }
        if file_len < (REGION_OFFSETS[1] + REGION_LEN as u64) {
            return Err(Error::corrupt(format!(
                "the VHDX file is {file_len} bytes long, too short for its headers and region tables"
            )));
        }
        let mut slots = [None, None];
        for (slot, &at) in slots.iter_mut().zip(&HEADER_OFFSETS) {
            let mut raw = vec![0u8; HEADER_LEN];
            storage.read_at(&mut raw, at)?;
            *slot = Header::parse(&raw);
        }
        let (head, slot) = header::current(slots)?;
        if head.version != 1 || head.log_version != 0 {
            return Err(Error::unsupported(format!(
                "VHDX version {} with log version {} is not supported",
                head.version, head.log_version
            )));
        }
        if head.log_length != 0
            && (head.log_offset % MIB != 0
                || head.log_length as u64 % MIB != 0
                || head.log_offset < MIB)
        {
            return Err(Error::invalid(format!(
                "the VHDX log at {:#x} ({} bytes) is not a whole number of MiB on a MiB boundary",
                head.log_offset, head.log_length
            )));
        }
        let mut image = Vhdx {
            storage,
            meta: Metadata {
                block_size: 0,
                leave_blocks_allocated: false,
                virtual_size: 0,
                page83: [0; 16],
                logical_sector: 512,
                physical_sector: 512,
            },
            geometry: Geometry::new(0, 1 << 20, 512),
            regions: Regions {
                bat: header::Region {
                    guid: header::BAT_REGION,
                    offset: 0,
                    length: 0,
                    required: false,
                },
                metadata: header::Region {
                    guid: header::METADATA_REGION,
                    offset: 0,
                    length: 0,
                    required: false,
                },
            },
            overlay: Vec::new(),
            replayed: 0,
            writable: false,
            state: Mutex::new(State {
                bat: Vec::new(),
                header: head,
                slot,
                session_started: false,
                next_free: 0,
                unpublished: None,
            }),
        };
        if head.log_guid != header::ZERO_GUID {
            file_len = image.replay_log(&head, file_len, writable)?;
        }
        image.load(file_len)?;
        image.writable = writable;
        Ok(image)
    }

    /// Replays a non-empty log: into the file when `writable` (then the
    /// headers forget the log), else into the in-memory overlay. Returns
    /// the file length reads may see.
    fn replay_log(&mut self, head: &Header, file_len: u64, writable: bool) -> Result<u64> {
        let (at, len) = (head.log_offset, head.log_length as u64);
        if len == 0 {
            return Err(Error::corrupt("the VHDX header names a log of length 0"));
        }
        range_in_file("log", at, len, file_len)?;
        let mut raw = vec![0u8; len as usize];
        self.storage.read_at(&mut raw, at)?;
        let Some(replay) = log::find(&raw, &head.log_guid).map_err(|e| e.at_offset(at))? else {
            // No valid entry: nothing was logged that the file lacks.
            return Ok(file_len);
        };
        drop(raw);
        if file_len < replay.flushed_file_offset {
            return Err(Error::corrupt(format!(
                "the VHDX file ({file_len} bytes) is shorter than its log says it was flushed at ({} bytes)",
                replay.flushed_file_offset
            )));
        }
        let new_len = file_len.max(replay.last_file_offset);
        for op in &replay.ops {
            let (o, l) = op.range();
            if o + l > new_len {
                return Err(Error::corrupt(format!(
                    "a VHDX log entry writes {l} bytes at {o:#x}, past the end of the file ({new_len} bytes)"
                )));
            }
            if o < header::REGION_OFFSETS[1] + REGION_LEN as u64 {
                return Err(Error::corrupt(format!(
                    "a VHDX log entry writes at {o:#x}, over the headers or region tables"
                )));
            }
            if o < at + len && at < o + l {
                return Err(Error::corrupt(format!(
                    "a VHDX log entry writes at {o:#x}, over the log itself"
                )));
            }
        }
        self.replayed = replay.entries;
        if !writable {
            self.overlay = replay.ops;
            return Ok(new_len);
        }
        for op in &replay.ops {
            match op {
                log::Op::Data { offset, bytes } => self.storage.write_at(bytes, *offset)?,
                log::Op::Zero { offset, len } => self.storage.zero_range(*offset, *len)?,
            }
        }
        if self.storage.len()? < new_len {
            self.storage.set_len(new_len)?;
        }
        self.storage.flush()?;
        let mut st = lock(&self.state);
        let cleared = Header {
            log_guid: header::ZERO_GUID,
            file_write_guid: header::random_guid(),
            ..st.header
        };
        self.write_headers(&mut st, cleared)?;
        drop(st);
        self.storage.len()
    }

    /// Reads the region table, the metadata and the BAT.
    fn load(&mut self, file_len: u64) -> Result<()> {
        let mut raw = vec![0u8; REGION_LEN];
        self.read_file(&mut raw, REGION_OFFSETS[0])?;
        let regions = header::parse_regions(&raw).map_err(|e| e.at_offset(REGION_OFFSETS[0]))?;
        let head = lock(&self.state).header;
        if head.log_length != 0 {
            let log_end = head.log_offset + head.log_length as u64;
            for r in [regions.bat, regions.metadata] {
                if r.offset < log_end && head.log_offset < r.end() {
                    return Err(Error::invalid(format!(
                        "the VHDX region at {:#x} overlaps the log",
                        r.offset
                    )));
                }
            }
        }
        let m = regions.metadata;
        range_in_file("metadata region", m.offset, m.length as u64, file_len)?;
        let mut raw = vec![0u8; m.length as usize];
        self.read_file(&mut raw, m.offset)?;
        let meta = Metadata::parse(&raw).map_err(|e| e.at_offset(m.offset))?;
        drop(raw);
        let geometry = Geometry::new(meta.virtual_size, meta.block_size, meta.logical_sector);
        let b = regions.bat;
        if geometry.table_bytes() > b.length as u64 {
            return Err(Error::corrupt(format!(
                "the VHDX BAT region ({} bytes) is too small for its {} entries",
                b.length, geometry.entries
            ))
            .at_offset(b.offset));
        }
        range_in_file("BAT", b.offset, geometry.table_bytes(), file_len)?;
        let mut raw = vec![0u8; geometry.table_bytes() as usize];
        self.read_file(&mut raw, b.offset)?;
        let table: Vec<u64> = raw
            .chunks_exact(8)
            .map(|e| u64::from_le_bytes(e.try_into().expect("8 bytes")))
            .collect();
        drop(raw);
        let mut next_free = file_len;
        let reserved = [
            (0, REGION_OFFSETS[1] + REGION_LEN as u64),
            (head.log_offset, head.log_length as u64),
            (b.offset, b.length as u64),
            (m.offset, m.length as u64),
        ];
        for (i, &e) in table.iter().enumerate() {
            if !geometry.is_payload(i as u64) {
                continue;
            }
            let (state, off) = (bat::state(e), bat::offset(e));
            match state {
                bat::NOT_PRESENT | bat::UNDEFINED | bat::ZERO | bat::UNMAPPED => continue,
                bat::FULLY_PRESENT => {}
                bat::PARTIALLY_PRESENT => {
                    return Err(Error::unsupported("differencing VHDX is not supported"))
                }
                s => {
                    return Err(Error::corrupt(format!(
                        "VHDX BAT entry {i} has the invalid state {s}"
                    ))
                    .at_offset(b.offset + i as u64 * 8))
                }
            }
            if off >= file_len {
                return Err(Error::corrupt(format!(
                    "VHDX BAT entry {i} start offset {off} points after end of file ({file_len}). Image has probably been truncated."
                ))
                .at_offset(b.offset + i as u64 * 8));
            }
            let end = off + geometry.block_size;
            if let Some((ro, _)) = reserved
                .iter()
                .find(|&&(ro, rl)| rl > 0 && off < ro + rl && ro < end)
            {
                return Err(Error::corrupt(format!(
                    "VHDX BAT entry {i} names a block at {off:#x} that overlaps the metadata at {ro:#x}"
                ))
                .at_offset(b.offset + i as u64 * 8));
            }
            next_free = next_free.max(end);
        }
        let mut st = lock(&self.state);
        st.bat = table;
        st.next_free = next_free.div_ceil(MIB) * MIB;
        drop(st);
        self.meta = meta;
        self.geometry = geometry;
        self.regions = regions;
        Ok(())
    }

    /// Reads file bytes as the replayed log left them.
    fn read_file(&self, buf: &mut [u8], at: u64) -> Result<()> {
        self.storage.read_at(buf, at)?;
        for op in &self.overlay {
            op.patch(buf, at);
        }
        Ok(())
    }

    /// The metadata as opened.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// The log entries this open replayed (0 when the log was empty).
    pub fn replayed_entries(&self) -> usize {
        self.replayed
    }

    /// The BAT entry of payload block `block`.
    pub fn payload_entry(&self, block: u64) -> u64 {
        lock(&self.state).bat[self.geometry.index(block)]
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every change under the lock leaves the state consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Format for Vhdx {
    fn driver(&self) -> FormatKind {
        FormatKind::of(&DRIVER)
    }

    fn virtual_size(&self) -> u64 {
        self.meta.virtual_size
    }

    fn granularity(&self) -> u64 {
        self.geometry.block_size
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        // As QEMU's driver: no block status, every byte is data.
        let len = clip_request(offset, len, self.meta.virtual_size)?;
        Ok(Extent {
            len,
            status: Status::Data {
                host: None,
                compressed: false,
            },
        })
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        // Past the virtual size, zeros.
        let len = (buf.len() as u64).min(self.meta.virtual_size.saturating_sub(offset)) as usize;
        buf[len..].fill(0);
        let bs = self.geometry.block_size;
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let n = ((bs - pos % bs) as usize).min(len - done);
            let e = self.payload_entry(pos / bs);
            let chunk = &mut buf[done..done + n];
            match bat::state(e) {
                bat::FULLY_PRESENT => self.read_file(chunk, bat::offset(e) + pos % bs)?,
                bat::PARTIALLY_PRESENT => {
                    return Err(Error::unsupported("differencing VHDX is not supported"))
                }
                _ => chunk.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    fn backing(&self) -> Option<BackingSpec> {
        None
    }

    fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    fn describe(&self) -> Description {
        Description {
            cluster_size: Some(self.geometry.block_size),
            dirty: false,
            need_check: false,
            encrypted: false,
            snapshots: Vec::new(),
            bitmaps: Vec::new(),
            specific: None,
        }
    }

    fn check(&self, _log: &mut dyn FnMut(String)) -> Result<Option<super::check::CheckReport>> {
        // Open already refused blocks past the end of the file.
        self.flush_all()?;
        Ok(Some(super::check::CheckReport::default()))
    }

    fn repair(
        &self,
        _mode: super::check::Repair,
        _log: &mut dyn FnMut(String),
    ) -> Result<Option<super::check::CheckReport>> {
        // The only repair is the log replay the writable open did.
        self.flush_all()?;
        let fixed = u64::from(self.replayed > 0);
        Ok(Some(super::check::CheckReport {
            corruptions_fixed: fixed,
            ..Default::default()
        }))
    }

    fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.write_guest(offset, buf)
    }

    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> Result<()> {
        self.zero_guest(offset, len)
    }

    fn flush(&self) -> Result<()> {
        self.flush_all()
    }

    fn resize(&self, _new_size: u64, _prealloc: super::Preallocation) -> Result<()> {
        Err(Error::unsupported(
            "Image format driver does not support resize",
        ))
    }
}
