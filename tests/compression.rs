//! Compressed writes (`convert -c`, `rebase -c`) on the inputs that broke
//! them: data that starts inside a target cluster after a hole, and long
//! runs of incompressible clusters, at every cluster size and with both
//! codecs. Each result is read back by qemu-img (`check`, `compare`).

mod common;

use common::{stderr, Fixture, Rng};
use proptest::prelude::*;

const CLUSTER_SIZES: [&str; 4] = ["512", "4k", "64k", "2M"];
const CODECS: [&str; 2] = ["zlib", "zstd"];

/// Bytes that deflate cannot shrink.
fn noise(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Bytes that shrink well, but not to nothing.
fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let words = ["qcow2 ", "cluster ", "refcount ", "guest ", "L2 ", "table "];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(words[rng.below(words.len() as u64) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

/// Converts `src` (raw) compressed with every cluster size and codec and
/// asserts each result checks clean and reads as `src`.
fn convert_compressed_everywhere(fx: &Fixture, src: &str) {
    for cluster in CLUSTER_SIZES {
        for codec in CODECS {
            let opts = format!("cluster_size={cluster},compression_type={codec}");
            let out = fx.qimg(&[
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-c",
                "-o",
                &opts,
                src,
                "out.qcow2",
            ]);
            assert!(
                out.status.success(),
                "convert -c -o {opts} {src}: {}",
                stderr(&out)
            );
            fx.assert_clean("out.qcow2");
            let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "qcow2", src, "out.qcow2"]);
            assert!(cmp.status.success(), "{opts}: {}", common::stdout(&cmp));
        }
    }
}

#[test]
fn convert_c_of_data_after_a_hole_in_a_cluster() {
    // Issue: "a compressed write must be one aligned cluster that shrank".
    let fx = Fixture::new();
    fx.sh("truncate -s 1M s.raw; qemu-io -f raw -c 'write -P 0xf4 4k 4k' s.raw >/dev/null");
    convert_compressed_everywhere(&fx, "s.raw");
    // The 64 KiB cluster that holds the data went compressed, whole.
    fx.qimg(&[
        "convert", "-f", "raw", "-O", "qcow2", "-c", "s.raw", "o.qcow2",
    ]);
    let map = fx.qemu_img(&["map", "--output=json", "o.qcow2"]);
    let map = common::stdout(&map);
    assert!(
        map.contains(r#""start": 0, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true, "compressed": true"#),
        "{map}"
    );
}

#[test]
fn convert_c_of_long_incompressible_runs() {
    // Issue: zlib-rs panicked after about 15 incompressible clusters in a row.
    let fx = Fixture::new();
    let mut rng = Rng(0x5eed_0001);
    fx.write("r.raw", &noise(&mut rng, 6 << 20));
    convert_compressed_everywhere(&fx, "r.raw");
}

#[test]
fn convert_c_of_alternating_runs_not_starting_at_a_cluster() {
    // Noise, text, holes and zeroes in 4 KiB pieces: most 64 KiB clusters
    // mix them, and some start or end inside one.
    let fx = Fixture::new();
    let mut rng = Rng(0x5eed_0002);
    let mut disk = vec![0u8; 4 << 20];
    for piece in disk.chunks_mut(4096) {
        match rng.below(4) {
            0 => piece.copy_from_slice(&noise(&mut rng, 4096)),
            1 => piece.copy_from_slice(&text(&mut rng, 4096)),
            _ => {}
        }
    }
    fx.write("m.raw", &disk);
    // Punch real holes where the zeroes are, as a sparse raw file has.
    fx.sh("fallocate --dig-holes m.raw");
    convert_compressed_everywhere(&fx, "m.raw");
}

#[test]
fn convert_c_into_a_backing_file_keeps_partial_clusters_plain() {
    // With -B, the rest of a cluster the top only partly covers comes from
    // the new backing file: those pieces are written plainly.
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 1M
         qemu-io -c 'write -P 0x11 0 1M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x22 4k 4k' -c 'write -P 0x33 128k 64k' top.qcow2 >/dev/null");
    let out = fx.qimg(&[
        "convert",
        "-c",
        "-O",
        "qcow2",
        "-B",
        "base.qcow2",
        "-F",
        "qcow2",
        "top.qcow2",
        "new.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_clean("new.qcow2");
    fx.assert_same("top.qcow2", "new.qcow2");
}

#[test]
fn rebase_c_of_long_incompressible_runs() {
    let fx = Fixture::new();
    let mut rng = Rng(0x5eed_0003);
    fx.write("base.raw", &noise(&mut rng, 4 << 20));
    for cluster in CLUSTER_SIZES {
        for codec in CODECS {
            fx.sh(&format!(
                "rm -f top.qcow2
                 qemu-img create -q -f qcow2 -o cluster_size={cluster},compression_type={codec} \
                     -b base.raw -F raw top.qcow2
                 qemu-io -c 'write -P 0x55 1M 8k' top.qcow2 >/dev/null
                 qemu-img convert -O raw top.qcow2 before.raw"
            ));
            let out = fx.qimg(&["rebase", "-c", "-b", "", "top.qcow2"]);
            assert!(
                out.status.success(),
                "rebase -c ({cluster}, {codec}): {}",
                stderr(&out)
            );
            fx.assert_clean("top.qcow2");
            fx.assert_same("before.raw", "top.qcow2");
        }
    }
}

/// One piece of a generated disk.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Hole,
    Zeroes,
    Text,
    Noise,
}

fn piece() -> impl Strategy<Value = (Piece, u64)> {
    (
        prop_oneof![
            Just(Piece::Hole),
            Just(Piece::Zeroes),
            Just(Piece::Text),
            Just(Piece::Noise)
        ],
        // Lengths in 512-byte sectors, up to 160 KiB.
        1u64..320,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, .. ProptestConfig::default() })]

    /// Random mixes of holes, written zeroes, compressible and
    /// incompressible runs, at a random cluster size and codec: `convert -c`
    /// and then `rebase -c` (of an overlay over that mix) give images that
    /// qemu-img checks clean and reads as the source.
    #[test]
    fn compressed_copies_of_random_mixes(
        pieces in proptest::collection::vec(piece(), 1..24),
        cluster in 0usize..CLUSTER_SIZES.len(),
        codec in 0usize..CODECS.len(),
        seed in any::<u64>(),
    ) {
        let fx = Fixture::new();
        let mut rng = Rng(seed | 1);
        let mut disk = Vec::new();
        let mut holes = Vec::new();
        for (kind, sectors) in &pieces {
            let len = (*sectors * 512) as usize;
            match kind {
                Piece::Hole => {
                    holes.push((disk.len(), len));
                    disk.resize(disk.len() + len, 0);
                }
                Piece::Zeroes => disk.resize(disk.len() + len, 0),
                Piece::Text => disk.extend(text(&mut rng, len)),
                Piece::Noise => disk.extend(noise(&mut rng, len)),
            }
        }
        fx.write("src.raw", &disk);
        for (at, len) in holes {
            fx.sh(&format!("fallocate -p -o {at} -l {len} src.raw"));
        }
        let (cluster, codec) = (CLUSTER_SIZES[cluster], CODECS[codec]);
        let opts = format!("cluster_size={cluster},compression_type={codec}");
        let out = fx.qimg(&["convert", "-f", "raw", "-O", "qcow2", "-c", "-o", &opts, "src.raw", "c.qcow2"]);
        prop_assert!(out.status.success(), "convert -c: {}", stderr(&out));
        fx.assert_clean("c.qcow2");
        fx.sh("qemu-img compare -q -f raw -F qcow2 src.raw c.qcow2");

        // The same mix as the backing file of an overlay that holds a
        // little of its own, flattened compressed.
        fx.sh(&format!(
            "qemu-img create -q -f qcow2 -o {opts} -b src.raw -F raw top.qcow2
             qemu-io -c 'write -P 0x66 {} 3k' top.qcow2 >/dev/null
             qemu-img convert -O raw top.qcow2 before.raw",
            disk.len() / 2 / 512 * 512
        ));
        let out = fx.qimg(&["rebase", "-c", "-b", "", "top.qcow2"]);
        prop_assert!(out.status.success(), "rebase -c: {}", stderr(&out));
        fx.assert_clean("top.qcow2");
        fx.sh("qemu-img compare -q -f raw -F qcow2 before.raw top.qcow2");
    }
}
