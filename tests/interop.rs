//! The interop matrix: images made by qemu-img and qemu-io, read by qimg.
//! For every fixture, `map` and `info` print what qemu-img prints, and the
//! guest content read through qimg's View equals `qemu-img convert -O raw`.

mod common;

use common::{stderr, stdout, Fixture};
use qimg::chain::Chain;

/// Runs the same command with qemu-img and qimg and demands identical
/// stdout and the same success or failure.
fn assert_same_output(fx: &Fixture, args: &[&str]) {
    let q = fx.qemu_img(args);
    let m = fx.qimg(args);
    assert_eq!(
        stdout(&m),
        stdout(&q),
        "`{}` differs from qemu-img (qimg stderr: {})",
        args.join(" "),
        stderr(&m)
    );
    assert_eq!(
        m.status.success(),
        q.status.success(),
        "`{}`: qemu-img {:?} ({}), qimg {:?} ({})",
        args.join(" "),
        q.status,
        stderr(&q),
        m.status,
        stderr(&m)
    );
}

/// Reads the whole guest content through qimg's View and compares it with
/// `qemu-img convert -O raw`.
fn assert_same_content(fx: &Fixture, image: &str) {
    let out = fx.qemu_img(&["convert", "-O", "raw", image, "content.raw"]);
    assert!(out.status.success(), "qemu-img convert: {}", stderr(&out));
    let expected = fx.read("content.raw");
    let chain = Chain::open(&fx.path(image), None).expect("qimg opens the chain");
    let view = chain.view();
    assert_eq!(
        view.virtual_size(),
        expected.len() as u64,
        "{image}: virtual size"
    );
    let mut buf = vec![0u8; 1 << 20];
    for (i, want) in expected.chunks(buf.len()).enumerate() {
        let got = &mut buf[..want.len()];
        view.read((i << 20) as u64, got).expect("qimg reads");
        assert!(got == want, "{image}: content differs in MiB {i}");
    }
    std::fs::remove_file(fx.path("content.raw")).expect("remove content.raw");
}

/// Every comparison of the matrix for one image.
fn assert_matches_qemu(fx: &Fixture, image: &str) {
    for args in [
        &["map", "--output=json", image][..],
        &["map", image],
        &["info", "--output=json", image],
        &["info", image],
        &["info", "--output=json", "--backing-chain", image],
        &["info", "--backing-chain", image],
    ] {
        assert_same_output(fx, args);
    }
    assert_same_content(fx, image);
}

/// A 4 MiB qcow2 image with data, zeroes and unmapped zeroes, made with `opts`.
fn qcow2_with_mixed_clusters(fx: &Fixture, opts: &str) {
    fx.sh(&format!(
        "qemu-img create -q -f qcow2 -o {opts} img.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' -c 'write -z 2M 64k' -c 'write -z -u 3M 64k' \
                 -c 'write -P 0x5a 3584k 4k' img.qcow2 >/dev/null"
    ));
}

#[test]
fn qcow2_v3_default() {
    let fx = Fixture::new();
    qcow2_with_mixed_clusters(&fx, "compat=1.1");
    assert_matches_qemu(&fx, "img.qcow2");
}

#[test]
fn qcow2_v2() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o compat=0.10 img.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 4k' img.qcow2 >/dev/null");
    assert_matches_qemu(&fx, "img.qcow2");
}

#[test]
fn qcow2_512_byte_clusters() {
    let fx = Fixture::new();
    qcow2_with_mixed_clusters(&fx, "cluster_size=512");
    assert_matches_qemu(&fx, "img.qcow2");
}

#[test]
fn qcow2_2m_clusters() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 -o cluster_size=2M img.qcow2 8M
         qemu-io -c 'write -P 0x11 0 1M' -c 'write -z 4M 2M' -c 'write -P 7 7M 4k' img.qcow2 >/dev/null",
    );
    assert_matches_qemu(&fx, "img.qcow2");
}

#[test]
fn qcow2_refcount_widths_1_and_64() {
    for bits in ["1", "64"] {
        let fx = Fixture::new();
        qcow2_with_mixed_clusters(&fx, &format!("refcount_bits={bits}"));
        assert_matches_qemu(&fx, "img.qcow2");
    }
}

#[test]
fn qcow2_extended_l2_with_4k_writes() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 -o extended_l2=on img.qcow2 2M
         qemu-io -c 'write -P 1 4k 4k' -c 'write -P 2 20k 8k' -c 'write -z 64k 8k' \
                 -c 'write -P 3 128k 64k' -c 'write -z 192k 64k' -c 'discard 256k 64k' img.qcow2 >/dev/null",
    );
    assert_matches_qemu(&fx, "img.qcow2");
}

#[test]
fn qcow2_extended_l2_over_a_backing_file() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 base.qcow2 1M
         qemu-io -c 'write -P 0xaa 0 1M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k -b base.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 1 0 2k' -c 'write -P 2 6k 4k' -c 'write -z 64k 8k' -c 'discard 256k 64k' top.qcow2 >/dev/null",
    );
    assert_matches_qemu(&fx, "top.qcow2");
}

#[test]
fn qcow2_compressed_zlib_and_zstd() {
    for ctype in ["zlib", "zstd"] {
        let fx = Fixture::new();
        fx.sh(&format!(
            "qemu-img create -q -f raw src.raw 4M
             qemu-io -f raw -c 'write -P 0x41 0 1M' -c 'write -P 0 2M 64k' -c 'write -P 0x7 3M 12k' src.raw >/dev/null
             head -c 262144 /dev/urandom | dd of=src.raw bs=64k seek=24 conv=notrunc status=none
             qemu-img convert -c -O qcow2 -o compression_type={ctype} src.raw img.qcow2"
        ));
        assert_matches_qemu(&fx, "img.qcow2");
    }
}

#[test]
fn qcow2_compressed_small_clusters() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw src.raw 1M
         qemu-io -f raw -c 'write -P 0x41 0 512k' src.raw >/dev/null
         qemu-img convert -c -O qcow2 -o cluster_size=4k src.raw img.qcow2");
    assert_matches_qemu(&fx, "img.qcow2");
}

#[test]
fn qcow2_external_data_file_both_modes() {
    for raw in ["on", "off"] {
        let fx = Fixture::new();
        fx.sh(&format!(
            "qemu-img create -q -f qcow2 -o data_file=data.raw,data_file_raw={raw} img.qcow2 2M
             qemu-io -c 'write -P 0x33 64k 128k' -c 'write -z 1M 64k' img.qcow2 >/dev/null"
        ));
        assert_matches_qemu(&fx, "img.qcow2");
    }
}

#[test]
fn qcow2_internal_snapshot_and_bitmap() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 img.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' img.qcow2 >/dev/null
         qemu-img snapshot -c first img.qcow2
         qemu-io -c 'write -P 0x22 512k 64k' img.qcow2 >/dev/null
         qemu-img snapshot -c second img.qcow2
         qemu-img bitmap --add img.qcow2 bm0
         qemu-img bitmap --add -g 128k --disable img.qcow2 bm1");
    assert_matches_qemu(&fx, "img.qcow2");
}

#[test]
fn qcow2_snapshot_table_at_the_end_of_the_file() {
    // QEMU leaves the last snapshot entry unpadded at the end of the file.
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 img.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' img.qcow2 >/dev/null
         qemu-img snapshot -c snap img.qcow2");
    assert_ne!(
        fx.read("img.qcow2").len() % 8,
        0,
        "the table should end the file unpadded"
    );
    assert_matches_qemu(&fx, "img.qcow2");
}

#[test]
fn qcow2_metadata_preallocation_and_falloc() {
    for mode in ["metadata", "falloc"] {
        let fx = Fixture::new();
        fx.sh(&format!(
            "qemu-img create -q -f qcow2 -o preallocation={mode} img.qcow2 4M
             qemu-io -c 'write -P 0x11 64k 64k' img.qcow2 >/dev/null"
        ));
        assert_matches_qemu(&fx, "img.qcow2");
    }
}

#[test]
fn qcow2_dirty_and_corrupt_bits_are_reported() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on img.qcow2 1M");
    // incompatible features live at byte 72..80; set the dirty and corrupt bits.
    let mut bytes = fx.read("img.qcow2");
    bytes[79] |= 0x3;
    fx.write("img.qcow2", &bytes);
    assert_matches_qemu(&fx, "img.qcow2");
    let info = stdout(&fx.qimg(&["info", "img.qcow2"]));
    assert!(
        info.contains("cleanly shut down: no") && info.contains("corrupt: true"),
        "{info}"
    );
}

#[test]
fn virtual_size_not_a_cluster_multiple() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 img.qcow2 1000000
         qemu-io -c 'write -P 0x44 983040 16896' img.qcow2 >/dev/null
         qemu-img create -q -f qed -o cluster_size=4k img.qed 100000
         qemu-io -f qed -c 'write -P 0x45 90112 9728' img.qed >/dev/null
         head -c 99999 /dev/urandom > odd.raw");
    for image in ["img.qcow2", "img.qed", "odd.raw"] {
        assert_matches_qemu(&fx, image);
    }
}

#[test]
fn qed_cluster_and_table_sizes() {
    // table_size=1 is left out: qemu-img 10 creates such images but cannot
    // open them ("QED table offset is invalid").
    for (cluster, table) in [("4k", "2"), ("64k", "4"), ("16k", "16"), ("1M", "2")] {
        let fx = Fixture::new();
        fx.sh(&format!(
            "qemu-img create -q -f qed -o cluster_size={cluster},table_size={table} img.qed 64M
             qemu-io -f qed -c 'write -P 0x11 0 1M' -c 'write -z 8M 1M' -c 'write -P 0x22 40M 4k' img.qed >/dev/null"
        ));
        assert_matches_qemu(&fx, "img.qed");
    }
}

#[test]
fn raw_with_holes() {
    let fx = Fixture::new();
    fx.sh("truncate -s 8M disk.raw
         printf 'hello' | dd of=disk.raw bs=1 seek=1048576 conv=notrunc status=none
         head -c 65536 /dev/urandom | dd of=disk.raw bs=64k seek=64 conv=notrunc status=none");
    assert_matches_qemu(&fx, "disk.raw");
}

#[test]
fn three_qcow2_layers() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
         qemu-io -c 'write -P 0x22 512k 128k' mid.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x33 1M 64k' -c 'write -z 0 64k' -c 'write -z -u 2M 64k' top.qcow2 >/dev/null",
    );
    assert_matches_qemu(&fx, "top.qcow2");
}

#[test]
fn mixed_chain_raw_under_qcow2_under_qed_with_short_backing() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw base.raw 1M
         qemu-io -f raw -c 'write -P 0x11 0 512k' base.raw >/dev/null
         qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 3M
         qemu-io -c 'write -P 0x22 256k 64k' -c 'write -P 0x23 2M 64k' mid.qcow2 >/dev/null
         qemu-img create -q -f qed -b mid.qcow2 -F qcow2 top.qed 6M
         qemu-io -f qed -c 'write -P 0x33 0 64k' -c 'write -P 0x34 5M 64k' top.qed >/dev/null");
    assert_matches_qemu(&fx, "top.qed");
}

#[test]
fn relative_backing_names_across_directories() {
    let fx = Fixture::new();
    fx.sh("mkdir -p a b c
         qemu-img create -q -f qcow2 a/base.qcow2 2M
         qemu-io -c 'write -P 0x11 0 1M' a/base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b ../a/base.qcow2 -F qcow2 b/mid.qcow2
         qemu-io -c 'write -P 0x22 64k 64k' b/mid.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b ../b/mid.qcow2 -F qcow2 c/top.qcow2
         qemu-io -c 'write -P 0x33 128k 64k' c/top.qcow2 >/dev/null");
    assert_matches_qemu(&fx, "c/top.qcow2");
    let abs = fx.path("c/top.qcow2");
    assert_matches_qemu(&fx, abs.to_str().expect("utf-8 path"));
}

#[test]
fn map_start_offset_and_max_length() {
    let fx = Fixture::new();
    qcow2_with_mixed_clusters(&fx, "compat=1.1");
    for (start, len) in [
        ("0", "0"),
        ("100000", "1M"),
        ("1", "3"),
        ("4M", "1"),
        ("5M", "1M"),
        ("2M", "100M"),
    ] {
        for out in ["json", "human"] {
            assert_same_output(
                &fx,
                &[
                    "map",
                    &format!("--output={out}"),
                    "--start-offset",
                    start,
                    "--max-length",
                    len,
                    "img.qcow2",
                ],
            );
        }
    }
}

#[test]
fn format_option_overrides_probing() {
    let fx = Fixture::new();
    qcow2_with_mixed_clusters(&fx, "compat=1.1");
    for args in [
        &["info", "-f", "raw", "--output=json", "img.qcow2"][..],
        &["map", "-f", "raw", "--output=json", "img.qcow2"],
        &["map", "-f", "qcow2", "--output=json", "img.qcow2"],
    ] {
        assert_same_output(&fx, args);
    }
}

#[test]
fn committed_example_chain() {
    let fx = Fixture::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example");
    for name in ["base.qcow2", "top.qcow2"] {
        std::fs::copy(src.join(name), fx.path(name)).expect("copy example");
    }
    assert_matches_qemu(&fx, "top.qcow2");
}

#[test]
fn qed_need_check_is_reported_as_not_cleanly_shut_down() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qed img.qed 1M && qemu-io -f qed -c 'write -P 1 0 64k' img.qed >/dev/null");
    let mut b = fx.read("img.qed");
    b[16] |= 0x2; // NEED_CHECK
    fx.write("img.qed", &b);
    // qemu-img always reports QED as clean; qimg tells the truth. The map is unchanged.
    let ours = stdout(&fx.qimg(&["info", "--output=json", "img.qed"]));
    assert!(ours.contains("\"dirty-flag\": true"), "{ours}");
    assert!(stdout(&fx.qimg(&["info", "img.qed"])).contains("cleanly shut down: no"));
    assert!(stdout(&fx.qemu_img(&["info", "--output=json", "img.qed"]))
        .contains("\"dirty-flag\": false"));
    assert_same_output(&fx, &["map", "--output=json", "img.qed"]);
    assert_same_content(&fx, "img.qed");
}

#[test]
fn external_data_file_resolves_beside_the_image() {
    let fx = Fixture::new();
    fx.sh("mkdir vm && cd vm
         qemu-img create -q -f qcow2 -o data_file=d.raw img.qcow2 1M
         qemu-io -c 'write -P 0x5c 64k 64k' img.qcow2 >/dev/null");
    // qemu-img looks for d.raw in the current directory only, and fails here.
    assert!(!fx.qemu_img(&["map", "vm/img.qcow2"]).status.success());
    let ours = fx.qimg(&["map", "--output=json", "vm/img.qcow2"]);
    assert!(ours.status.success(), "{}", stderr(&ours));
    let from_vm = fx.run(
        "bash",
        &["-c", "cd vm && qemu-img map --output=json img.qcow2"],
    );
    assert_eq!(stdout(&ours), stdout(&from_vm));
    let human = stdout(&fx.qimg(&["map", "vm/img.qcow2"]));
    assert!(human.contains("vm/d.raw"), "{human}");
}

#[test]
fn external_data_file_falls_back_to_the_current_directory() {
    let fx = Fixture::new();
    // The name is stored as given ("vm/d.raw"): relative to the current directory.
    fx.sh("mkdir vm
         qemu-img create -q -f qcow2 -o data_file=vm/d.raw vm/img.qcow2 1M
         qemu-io -c 'write -P 0x5d 128k 64k' vm/img.qcow2 >/dev/null");
    // Only the commands run in the fixture directory can use the fallback
    // (the test process itself runs elsewhere), so no in-process content check.
    for args in [
        &["map", "--output=json", "vm/img.qcow2"][..],
        &["map", "vm/img.qcow2"],
        &["info", "--output=json", "vm/img.qcow2"],
    ] {
        assert_same_output(&fx, args);
    }
}
