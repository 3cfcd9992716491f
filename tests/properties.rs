//! Property tests: the pure parsers never panic on arbitrary bytes, entry
//! encoding round-trips, and a whole image with random bytes flipped is read
//! (open, status, read) without a panic.

mod common;

use proptest::prelude::*;
use qimg::format::qcow2::entry::{CompressedDescriptor, Geometry, L2Entry};
use qimg::format::qcow2::header::Header;
use qimg::format::qcow2::snapshot::{parse_bitmap_directory, parse_snapshot};
use qimg::format::qed::QedHeader;
use qimg::format::{open_storage, FormatKind};
use qimg::io::MemStorage;
use std::path::Path;
use std::sync::OnceLock;

fn qcow2() -> FormatKind {
    FormatKind::named("qcow2").expect("qcow2 is registered")
}

proptest! {
    #[test]
    fn qcow2_header_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), len in any::<u64>()) {
        if let Ok(h) = Header::parse(&bytes) {
            let _ = h.validate(len);
            let _ = h.compression_type();
        }
    }

    #[test]
    fn qcow2_header_parsing_never_panics_with_valid_magic(
        mut bytes in proptest::collection::vec(any::<u8>(), 104..1024),
        version in 2u32..=3,
        bits in 9u32..=21,
        hl in 0u32..1024,
    ) {
        bytes[0..4].copy_from_slice(b"QFI\xfb");
        bytes[4..8].copy_from_slice(&version.to_be_bytes());
        bytes[20..24].copy_from_slice(&bits.to_be_bytes());
        bytes[100..104].copy_from_slice(&hl.to_be_bytes());
        if let Ok(h) = Header::parse(&bytes) {
            let _ = h.validate(bytes.len() as u64);
        }
    }

    #[test]
    fn qed_header_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = QedHeader::parse(&bytes);
        let mut with_magic = bytes.clone();
        if with_magic.len() >= 4 {
            with_magic[0..4].copy_from_slice(b"QED\0");
            let _ = QedHeader::parse(&with_magic);
        }
    }

    #[test]
    fn snapshot_and_bitmap_parsing_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), count in 0u32..8) {
        let _ = parse_snapshot(&bytes);
        let _ = parse_bitmap_directory(&bytes, count);
    }

    #[test]
    fn l2_entries_round_trip(word in any::<u64>(), bitmap in any::<u64>(), extended in any::<bool>()) {
        let entry = L2Entry { word, bitmap: if extended { bitmap } else { 0 } };
        let mut bytes = vec![0u8; if extended { 16 } else { 8 }];
        entry.encode(&mut bytes);
        prop_assert_eq!(L2Entry::decode(&bytes), entry);
    }

    #[test]
    fn l2_classification_never_panics(word in any::<u64>(), bitmap in any::<u64>(), bits in 14u32..=21, sc in 0u32..32, ext in any::<bool>(), data in any::<bool>()) {
        let geo = Geometry { cluster_bits: bits, extended_l2: ext, external_data: data };
        let sc = if ext { sc } else { 0 };
        let _ = L2Entry { word, bitmap }.subcluster_type(&geo, sc);
    }

    #[test]
    fn compressed_descriptors_round_trip(bits in 9u32..=21, offset in any::<u64>(), sectors in any::<u64>()) {
        let x = 62 - (bits - 8);
        let desc = CompressedDescriptor {
            offset: offset & ((1u64 << x) - 1),
            extra_sectors: sectors & ((1u64 << (bits - 8)) - 1),
        };
        let word = desc.encode(bits);
        prop_assert_eq!(CompressedDescriptor::decode(word, bits), desc);
        prop_assert!(word & (1 << 62) != 0);
    }

    #[test]
    fn compressed_descriptor_for_data_covers_it(bits in 9u32..=16, offset in 0u64..(1 << 40), len in 1u64..512) {
        let len = len.min((1u64 << bits) - 1);
        let desc = CompressedDescriptor::for_data(offset, len);
        prop_assert!(desc.read_len() >= len);
        prop_assert_eq!(CompressedDescriptor::decode(desc.encode(bits), bits), desc);
    }
}

/// Seed images made once with qemu-img: small clusters so the metadata is dense.
fn seeds() -> &'static Vec<(FormatKind, Vec<u8>)> {
    static SEEDS: OnceLock<Vec<(FormatKind, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let fx = common::Fixture::new();
        fx.sh(
            "qemu-img create -q -f qcow2 -o cluster_size=512 a.qcow2 256k
             qemu-io -c 'write -P 1 0 8k' -c 'write -z 64k 4k' a.qcow2 >/dev/null
             qemu-img snapshot -c s a.qcow2
             qemu-img create -q -f raw r.raw 64k
             qemu-io -f raw -c 'write -P 2 0 32k' r.raw >/dev/null
             qemu-img convert -c -O qcow2 -o cluster_size=4k r.raw c.qcow2
             qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k x.qcow2 256k
             qemu-io -c 'write -P 3 2k 2k' x.qcow2 >/dev/null
             qemu-img create -q -f qed -o cluster_size=4k,table_size=2 q.qed 256k
             qemu-io -f qed -c 'write -P 4 0 8k' q.qed >/dev/null
             qemu-img create -q -f vdi v.vdi 4M
             qemu-io -f vdi -c 'write -P 5 1M 8k' -c 'write -P 6 0 512' v.vdi >/dev/null",
        );
        vec![
            (qcow2(), fx.read("a.qcow2")),
            (qcow2(), fx.read("c.qcow2")),
            (qcow2(), fx.read("x.qcow2")),
            (FormatKind::named("qed").expect("qed"), fx.read("q.qed")),
            (FormatKind::named("vdi").expect("vdi"), fx.read("v.vdi")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn damaged_images_never_panic(
        seed in 0usize..5,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
    ) {
        let (kind, image) = &seeds()[seed];
        let mut bytes = image.clone();
        // Most flips land in the metadata at the front of the file.
        for (i, v) in flips {
            let limit = bytes.len().min(16384);
            let pos = i.index(limit);
            bytes[pos] = v;
        }
        let storage = Box::new(MemStorage::new("fuzz.img", bytes));
        if let Ok(img) = open_storage(storage, Path::new("fuzz.img"), Some(*kind)) {
            let size = img.virtual_size().min(1 << 20);
            let mut off = 0;
            let mut steps = 0;
            while off < size && steps < 10_000 {
                match img.block_status(off, size - off) {
                    Ok(e) => {
                        prop_assert!(e.len > 0 && e.len <= size - off);
                        off += e.len;
                    }
                    Err(_) => break,
                }
                steps += 1;
            }
            let mut buf = vec![0u8; size as usize];
            let _ = img.read(0, &mut buf);
            let _ = img.describe();
        }
    }
}
