//! VMDK: interop both ways with qemu-img for every subformat, the command
//! lines of image pipelines, streamOptimized output to a pipe, extents
//! outside the descriptor's directory, and crash safety of sparse writes.

mod common;

use common::{stderr, stdout, Fixture, Rng};
use qimg::format::vmdk::Vmdk;
use qimg::format::Format;
use qimg::io::FaultStorage;

const SUBFORMATS: [&str; 5] = [
    "monolithicSparse",
    "monolithicFlat",
    "twoGbMaxExtentSparse",
    "twoGbMaxExtentFlat",
    "streamOptimized",
];

/// The output of `tool args` (qimg or qemu-img), asserted successful.
fn ok(fx: &Fixture, tool: &str, args: &[&str]) -> String {
    let out = if tool == "qimg" {
        fx.qimg(args)
    } else {
        fx.qemu_img(args)
    };
    assert!(
        out.status.success(),
        "{tool} {}: {}",
        args.join(" "),
        stderr(&out)
    );
    stdout(&out)
}

/// Asserts that qimg reads `image` as qemu-img does: info and map, JSON
/// and human, with and without `-f vmdk`, and the guest content.
fn assert_reads_like_qemu(fx: &Fixture, image: &str) {
    for args in [
        vec!["info", "--output=json", image],
        vec!["info", "--output=json", "-f", "vmdk", image],
        vec!["info", image],
        vec!["map", "--output=json", image],
        vec!["map", "--output=json", "-f", "vmdk", image],
    ] {
        assert_eq!(
            ok(fx, "qimg", &args),
            ok(fx, "qemu-img", &args),
            "{}",
            args.join(" ")
        );
    }
    // The human map: compressed grains have no offset, and both refuse
    // after the same heading.
    let (a, b) = (fx.qimg(&["map", image]), fx.qemu_img(&["map", image]));
    assert_eq!(a.status.code(), b.status.code(), "map {image}");
    assert_eq!(stdout(&a), stdout(&b), "map {image}");
    let out = fx.qimg(&["convert", "-O", "raw", image, "content-i.raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vmdk", "content-i.raw", image]);
    assert_eq!(
        cmp.status.code(),
        Some(0),
        "content of {image}: {}",
        stdout(&cmp)
    );
    let check = fx.qimg(&["check", image]);
    assert!(check.status.success(), "check {image}: {}", stderr(&check));
    assert_eq!(
        stdout(&check),
        stdout(&fx.qemu_img(&["check", image])),
        "check {image}"
    );
}

#[test]
fn images_of_every_subformat_made_by_qemu_img_read_identically() {
    let fx = Fixture::new();
    for s in SUBFORMATS {
        let (size, pattern) = match s {
            // Whole grains in increasing order: what a stream takes.
            "streamOptimized" => ("5M", "-c 'write -P 0x11 0 64k' -c 'write -P 0x33 1M 128k'"),
            // Three extents, data in each and across the first boundary.
            "twoGbMaxExtentSparse" | "twoGbMaxExtentFlat" => (
                "5G",
                "-c 'write -P 0x11 0 64k' -c 'write -P 0x22 2047M 2M' -c 'write -P 0x33 4G 64k' -c 'write -P 0x44 5119M 1M'",
            ),
            _ => (
                "5M",
                "-c 'write -P 0x11 0 64k' -c 'write -P 0x22 3M 4k' -c 'write -P 0x33 4100k 1000'",
            ),
        };
        fx.sh(&format!(
            "qemu-img create -q -f vmdk -o subformat={s} e-{s}.vmdk {size} && \
             qemu-img create -q -f vmdk -o subformat={s} {s}.vmdk {size} && \
             qemu-io -f vmdk {pattern} {s}.vmdk >/dev/null"
        ));
        assert_reads_like_qemu(&fx, &format!("e-{s}.vmdk"));
        assert_reads_like_qemu(&fx, &format!("{s}.vmdk"));
    }
    // Zeroed grains: a whole-grain zero write with zeroed_grain=on.
    fx.sh(
        "qemu-img create -q -f vmdk -o zeroed_grain=on,adapter_type=lsilogic,hwversion=7 z.vmdk 3M && \
         qemu-io -f vmdk -c 'write -P 0x11 0 1M' -c 'write -z 64k 128k' -c 'write -z 2M 64k' z.vmdk >/dev/null",
    );
    assert_reads_like_qemu(&fx, "z.vmdk");
    // A stream converted by qemu-img (its own layout: tables in front).
    fx.sh("qemu-img convert -f vmdk -O vmdk -o subformat=streamOptimized monolithicSparse.vmdk qs.vmdk");
    assert_reads_like_qemu(&fx, "qs.vmdk");
}

/// The descriptor text of a VMDK (embedded or a file of its own), with
/// the CID line dropped and `name` (the image's base name without
/// `.vmdk`) replaced by `NAME`.
fn descriptor(fx: &Fixture, file: &str, name: &str) -> String {
    let b = fx.read(file);
    let text = if b.starts_with(b"KDMV") {
        &b[512..512 + 20 * 512]
    } else {
        &b[..]
    };
    let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
    String::from_utf8_lossy(&text[..end])
        .lines()
        .filter(|l| !l.starts_with("CID="))
        .map(|l| l.replace(name, "NAME"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `qemu-img info --output=json` says of `file` as an image (format,
/// sizes, cluster size, the format-specific block) with the CID dropped
/// and `name` masked; the files' own lengths and allocations left out.
fn info_masked(fx: &Fixture, file: &str, name: &str) -> String {
    let text = ok(fx, "qemu-img", &["info", "--output=json", file]);
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("info JSON");
    let o = v.as_object_mut().unwrap();
    o.remove("children");
    o.remove("actual-size");
    o["format-specific"]["data"]
        .as_object_mut()
        .unwrap()
        .remove("cid");
    serde_json::to_string_pretty(&v)
        .unwrap()
        .replace(name, "NAME")
}

/// The files of the fixture whose names start with `prefix`, with `prefix`
/// masked, and their lengths.
fn files(fx: &Fixture, prefix: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(fx.dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(prefix)
                .map(|rest| (rest.to_string(), e.metadata().unwrap().len()))
        })
        .collect();
    v.sort();
    v
}

/// A 3 GiB sparse raw source: data at the start, across the first 2 GiB
/// boundary, in the middle of a grain and at the very end.
fn source_raw(fx: &Fixture) {
    fx.sh("truncate -s 3G src.raw && \
         qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 2047M 2M' \
         -c 'write -P 0x33 2500M 1000' -c 'write -P 0x44 3071M 1M' src.raw >/dev/null && \
         head -c 200000 /dev/urandom | dd of=src.raw bs=1k seek=1024 conv=notrunc status=none");
}

#[test]
fn images_made_by_qimg_pass_qemu_img_check_and_match_qemu_img_s_own() {
    let fx = Fixture::new();
    source_raw(&fx);
    let cases = [
        "",
        "subformat=monolithicFlat",
        "subformat=twoGbMaxExtentSparse",
        "subformat=twoGbMaxExtentFlat",
        "subformat=streamOptimized",
        "adapter_type=lsilogic,hwversion=11,toolsversion=10240",
        "zeroed_grain=on",
        "compat6=on,adapter_type=buslogic",
        "subformat=streamOptimized,adapter_type=legacyESX,compat6=on",
        "subformat=twoGbMaxExtentFlat,adapter_type=lsilogic,preallocation=full",
    ];
    for (k, opts) in cases.iter().enumerate() {
        let (i, q) = (format!("qimg{k}"), format!("qemu{k}"));
        for (tool, name) in [("qimg", &i), ("qemu-img", &q)] {
            let dst = format!("{name}.vmdk");
            let mut args = vec!["convert", "-f", "raw", "-O", "vmdk"];
            if !opts.is_empty() {
                args.extend(["-o", opts]);
            }
            args.extend(["src.raw", &dst]);
            ok(&fx, tool, &args);
        }
        let ii = format!("{i}.vmdk");
        assert_eq!(
            ok(&fx, "qemu-img", &["check", &ii]),
            "No errors were found on the image.\n",
            "{opts}"
        );
        let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vmdk", "src.raw", &ii]);
        assert_eq!(cmp.status.code(), Some(0), "{opts}: {}", stdout(&cmp));
        assert_eq!(
            descriptor(&fx, &ii, &i),
            descriptor(&fx, &format!("{q}.vmdk"), &q),
            "descriptor, {opts}"
        );
        assert_eq!(
            info_masked(&fx, &ii, &i),
            info_masked(&fx, &format!("{q}.vmdk"), &q),
            "qemu-img info, {opts}"
        );
        let stream = opts.contains("streamOptimized");
        if !stream {
            // The same file set, the same extent sizes, grains at the
            // same places (qemu-img rewrites a descriptor file with a new
            // CID on its first write, padding it to 512 bytes; qimg keeps
            // the CID it created).
            let extents = |p: &str| -> Vec<(String, u64)> {
                files(&fx, p)
                    .into_iter()
                    .map(|(n, len)| if n == ".vmdk" { (n, 0) } else { (n, len) })
                    .collect()
            };
            assert_eq!(extents(&i), extents(&q), "files, {opts}");
            let mask = |s: String, n: &str| s.replace(n, "NAME");
            assert_eq!(
                mask(ok(&fx, "qemu-img", &["map", "--output=json", &ii]), &i),
                mask(
                    ok(
                        &fx,
                        "qemu-img",
                        &["map", "--output=json", &format!("{q}.vmdk")]
                    ),
                    &q
                ),
                "map, {opts}"
            );
        }
        assert_reads_like_qemu(&fx, &ii);
    }
}

#[test]
fn create_prints_qemu_img_s_formatting_line_and_refusals() {
    let fx = Fixture::new();
    for opts in [
        "",
        "subformat=monolithicFlat",
        "subformat=streamOptimized",
        "adapter_type=scsi",
        "subformat=foo",
        "compat6=on,hwversion=7",
        "subformat=monolithicFlat,zeroed_grain=on",
        "subformat=twoGbMaxExtentFlat,zeroed_grain=on",
        "preallocation=metadata",
        "preallocation=falloc",
        "adapter_type=lsilogic,hwversion=11,toolsversion=1,zeroed_grain=on,compat6=off",
        "nocow=on,extent_size_hint=1M",
    ] {
        let mut outs = Vec::new();
        for (tool, name) in [("qimg", "imgI.vmdk"), ("qemu-img", "imgQ.vmdk")] {
            let mut args = vec!["create", "-f", "vmdk"];
            if !opts.is_empty() {
                args.extend(["-o", opts]);
            }
            args.extend([name, "100M"]);
            let out = if tool == "qimg" {
                fx.qimg(&args)
            } else {
                fx.qemu_img(&args)
            };
            let text = format!(
                "{}{}",
                stdout(&out).replace(name, "NAME"),
                stderr(&out)
                    .replace(name, "NAME")
                    .replacen(&format!("{tool}: "), "", 1)
            );
            outs.push((out.status.code(), text));
        }
        assert_eq!(outs[0], outs[1], "-o {opts}");
        if outs[0].0 == Some(0) {
            assert_eq!(
                descriptor(&fx, "imgI.vmdk", "imgI"),
                descriptor(&fx, "imgQ.vmdk", "imgQ"),
                "{opts}"
            );
            assert_reads_like_qemu(&fx, "imgI.vmdk");
        }
    }
    // -o help lists qemu-img's options.
    let help = ok(&fx, "qimg", &["create", "-f", "vmdk", "-o", "help"]);
    for o in [
        "adapter_type",
        "backing_file",
        "compat6",
        "hwversion",
        "subformat",
        "toolsversion",
        "zeroed_grain",
    ] {
        assert!(help.contains(o), "{help}");
    }
}

#[test]
fn diskimage_builder_converts_to_vmdk_as_with_qemu_img() {
    let fx = Fixture::new();
    fx.sh("truncate -s 64M image.raw && \
         qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 40M 3M' image.raw >/dev/null && \
         mkdir bin");
    std::os::unix::fs::symlink(
        assert_cmd::cargo::cargo_bin("qimg"),
        fx.path("bin/qemu-img"),
    )
    .unwrap();
    // openstack/diskimage-builder, diskimage_builder/lib/img-functions,
    // compress_and_save_image (COMPRESS_IMAGE is emptied for every type but
    // qcow2; EXTRA_OPTIONS is empty without --qemu-img-options), the line
    // verbatim:
    let line = "qemu-img convert ${COMPRESS_IMAGE:+-c} -f raw -O $IMAGE_TYPE $EXTRA_OPTIONS $TMP_IMAGE_PATH $1-new";
    for (tool_path, out) in [("$PWD/bin:$PATH", "imgI.vmdk"), ("$PATH", "imgQ.vmdk")] {
        fx.sh(&format!(
            "export PATH={tool_path}; IMAGE_TYPE=vmdk; COMPRESS_IMAGE=''; EXTRA_OPTIONS=''; \
             TMP_IMAGE_PATH=image.raw; set -- {out}; {line} >/dev/null && mv $1-new $1"
        ));
    }
    assert_eq!(
        ok(&fx, "qemu-img", &["check", "imgI.vmdk"]),
        "No errors were found on the image.\n"
    );
    let cmp = fx.qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "vmdk",
        "image.raw",
        "imgI.vmdk",
    ]);
    assert_eq!(cmp.status.code(), Some(0), "{}", stdout(&cmp));
    // What dib's image readers see: format and create type, as qemu-img's.
    assert_eq!(
        info_masked(&fx, "imgI.vmdk", "imgI"),
        info_masked(&fx, "imgQ.vmdk", "imgQ")
    );
    assert_eq!(files(&fx, "imgI."), files(&fx, "imgQ."));
    assert_reads_like_qemu(&fx, "imgI.vmdk");
}

#[test]
fn coreos_assembler_and_osbuild_stream_optimized_lines() {
    let fx = Fixture::new();
    fx.sh(
        "truncate -s 40M disk.img && \
         qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 20M 64k' -c 'write -P 0x7c 33M 100k' disk.img >/dev/null && \
         head -c 300000 /dev/urandom | dd of=disk.img bs=1k seek=8192 conv=notrunc status=none && \
         qemu-img convert -f raw -O qcow2 disk.img tmp.qcow2",
    );
    // coreos/coreos-assembler, src/cosalib/qemuvariants.py (the aws and
    // vmware variants): ['qemu-img', 'convert', '-f', 'qcow2', '-O', 'vmdk',
    // tmp_image, '-o', 'adapter_type=lsilogic,subformat=streamOptimized,compat6', work_img]
    let cosa = [
        "convert",
        "-f",
        "qcow2",
        "-O",
        "vmdk",
        "tmp.qcow2",
        "-o",
        "adapter_type=lsilogic,subformat=streamOptimized,compat6",
    ];
    // osbuild/osbuild, stages/org.osbuild.qemu, vmdk_arguments with the
    // aws options (compat6, adapter_type lsilogic, subformat
    // streamOptimized; compression on by default): qemu-img convert -O vmdk
    // -c -o adapter_type=lsilogic,compat6,subformat=streamOptimized src dst
    let osbuild = [
        "convert",
        "-O",
        "vmdk",
        "-c",
        "-o",
        "adapter_type=lsilogic,compat6,subformat=streamOptimized",
        "disk.img",
    ];
    for (line, name) in [(&cosa[..], "cosa"), (&osbuild[..], "osb")] {
        for tool in ["qimg", "qemu-img"] {
            let dst = format!("{name}-{tool}.vmdk");
            let mut args = line.to_vec();
            args.push(&dst);
            ok(&fx, tool, &args);
        }
        let i = format!("{name}-qimg.vmdk");
        assert_eq!(
            ok(&fx, "qemu-img", &["check", &i]),
            "No errors were found on the image.\n"
        );
        let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vmdk", "disk.img", &i]);
        assert_eq!(cmp.status.code(), Some(0), "{}", stdout(&cmp));
        // cosa checks the format of what it made; VMware reads the
        // descriptor's create type, adapter and hardware version.
        let (qi, qq) = (format!("{name}-qimg"), format!("{name}-qemu-img"));
        assert_eq!(
            info_masked(&fx, &i, &qi),
            info_masked(&fx, &format!("{qq}.vmdk"), &qq)
        );
        let d = descriptor(&fx, &i, &format!("{name}-qimg"));
        for want in [
            "createType=\"streamOptimized\"",
            "ddb.adapterType = \"lsilogic\"",
            "ddb.virtualHWVersion = \"6\"",
        ] {
            assert!(d.contains(want), "{d}");
        }
        // The stream ends as the VMware format says: footer marker,
        // footer (the header with the real directory offset), and an
        // end-of-stream marker; the header says GD_AT_END.
        let b = fx.read(&i);
        assert_eq!(&b[56..64], &[0xff; 8], "gdOffset");
        let n = b.len();
        assert_eq!(&b[n - 1536 + 12..n - 1536 + 16], &3u32.to_le_bytes());
        assert_eq!(&b[n - 1024..n - 1020], b"KDMV");
        assert!(b[n - 512..].iter().all(|&x| x == 0));
        assert_reads_like_qemu(&fx, &i);
    }
}

#[test]
fn a_stream_optimized_vmdk_goes_to_a_pipe_and_a_fifo() {
    let fx = Fixture::new();
    fx.sh(
        "truncate -s 20M src.raw && \
         qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 10M 64k' -c 'write -P 0x7c 19M 100k' src.raw >/dev/null && \
         head -c 300000 /dev/urandom | dd of=src.raw bs=1k seek=4096 conv=notrunc status=none",
    );
    let bin = assert_cmd::cargo::cargo_bin("qimg");
    let bin = bin.display();
    fx.sh(&format!(
        "{bin} convert -f raw -O vmdk -o subformat=streamOptimized src.raw /dev/stdout | cat > piped.vmdk"
    ));
    fx.sh(&format!(
        "mkfifo fifo && (cat fifo > fifo.vmdk & reader=$!; \
         {bin} convert -p -f raw -O vmdk -o subformat=streamOptimized src.raw fifo >/dev/null; \
         wait $reader)"
    ));
    for f in ["piped.vmdk", "fifo.vmdk"] {
        assert_eq!(
            ok(&fx, "qemu-img", &["check", f]),
            "No errors were found on the image.\n",
            "{f}"
        );
        let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vmdk", "src.raw", f]);
        assert_eq!(cmp.status.code(), Some(0), "{f}: {}", stdout(&cmp));
    }
    // A format that is not written front to back is refused on a pipe
    // with one line, not a broken image.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{bin} convert -f raw -O vmdk src.raw /dev/stdout | cat > /dev/null; exit ${{PIPESTATUS[0]}}"
        ))
        .current_dir(fx.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("pipe"), "{err}");
}

#[test]
fn extents_outside_the_descriptor_s_directory_are_refused() {
    let fx = Fixture::new();
    fx.sh(
        "mkdir d && truncate -s 1M outside.raw d/inside.raw && \
         printf '# Disk DescriptorFile\\nversion=1\\nCID=1\\nparentCID=ffffffff\\ncreateType=\"monolithicFlat\"\\nRW 2048 FLAT \"../outside.raw\" 0\\n' > d/up.vmdk && \
         printf '# Disk DescriptorFile\\nversion=1\\nCID=1\\nparentCID=ffffffff\\ncreateType=\"monolithicFlat\"\\nRW 2048 FLAT \"'$PWD'/outside.raw\" 0\\n' > d/abs.vmdk && \
         printf '# Disk DescriptorFile\\nversion=1\\nCID=1\\nparentCID=ffffffff\\ncreateType=\"monolithicFlat\"\\nRW 2048 FLAT \"inside.raw\" 0\\n' > d/ok.vmdk",
    );
    for f in ["d/up.vmdk", "d/abs.vmdk"] {
        for args in [
            vec!["info", f],
            vec!["map", f],
            vec!["convert", "-O", "raw", f, "x.raw"],
        ] {
            let out = fx.qimg(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.contains(f) && err.contains("outside the directory"),
                "{err}"
            );
        }
        assert!(!fx.path("x.raw").exists());
        // qemu-img opens them: the reason qimg refuses.
        ok(&fx, "qemu-img", &["info", f]);
        // The user may allow it, and then qimg reads what qemu-img reads.
        let allowed = std::process::Command::new(assert_cmd::cargo::cargo_bin("qimg"))
            .args(["info", "--output=json", f])
            .env("QIMG_ALLOW_OUTSIDE_EXTENTS", "1")
            .current_dir(fx.dir())
            .output()
            .unwrap();
        assert!(allowed.status.success(), "{}", stderr(&allowed));
        assert_eq!(
            stdout(&allowed),
            ok(&fx, "qemu-img", &["info", "--output=json", f])
        );
    }
    // Beside the descriptor is fine, wherever qimg runs from.
    assert_eq!(
        ok(&fx, "qimg", &["info", "--output=json", "d/ok.vmdk"]),
        ok(&fx, "qemu-img", &["info", "--output=json", "d/ok.vmdk"])
    );
}

/// Found by the `vmdk` fuzz target: a descriptor whose extent is a URL
/// made qimg fetch it (and wait out DNS retries). Extents named by URL or
/// `json:` are refused at once, before any connection, as outside ones.
#[test]
fn extents_named_by_url_or_json_are_refused_without_a_connection() {
    let fx = Fixture::new();
    // Nothing listens on these; a connection attempt would be an error
    // of another kind (and an HTTP one would retry for seconds).
    for (name, extent) in [
        ("http.vmdk", "http://127.0.0.1:9/flat.raw"),
        ("https.vmdk", "https://127.0.0.1:9/flat.raw"),
        ("nbd.vmdk", "nbd://127.0.0.1:9/flat"),
        ("nbdunix.vmdk", "nbd:unix:/nonexistent.sock"),
        ("json.vmdk", "json:{}"),
    ] {
        fx.sh(&format!(
            "printf '# Disk DescriptorFile\\nversion=1\\nCID=1\\nparentCID=ffffffff\\ncreateType=\"monolithicFlat\"\\nRW 2048 FLAT \"{extent}\" 0\\n' > {name}"
        ));
        let started = std::time::Instant::now();
        let out = fx.qimg(&["info", name]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.contains("network or json: name"), "{name}: {err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{name}"
        );
    }
}

/// Opens `bytes` (a monolithicSparse VMDK) writable, crashing after `n`
/// changes.
fn faulty(fx: &Fixture, bytes: &[u8], n: u64) -> (std::sync::Arc<FaultStorage>, Vmdk) {
    let path = fx.path("c.vmdk");
    let fault = std::sync::Arc::new(FaultStorage::new(path.clone(), bytes.to_vec(), n));
    let image = Vmdk::open(Box::new(fault.clone()), &path, true).expect("open");
    (fault, image)
}

/// The guest content qemu-img reads from `image`.
fn guest(fx: &Fixture, image: &str) -> Vec<u8> {
    ok(
        fx,
        "qemu-img",
        &["convert", "-O", "raw", image, "guest.raw"],
    );
    fx.read("guest.raw")
}

/// A crash test's operations: a write of a byte value or of zeroes at
/// (offset, length), or a flush (`None`).
type Op = Option<(u64, u64, Option<u8>)>;

/// Applies `ops` to `image` until one fails (the injected crash); returns
/// how many were durable (up to the last flush that returned).
fn apply_ops(image: &Vmdk, ops: &[Op]) -> usize {
    let mut flushed = 0;
    for (i, op) in ops.iter().enumerate() {
        let r = match op {
            Some((off, len, Some(b))) => image.write(*off, &vec![*b; *len as usize]),
            Some((off, len, None)) => image.write_zeroes(*off, *len, false),
            None => image.flush(),
        };
        if r.is_err() {
            break;
        }
        if op.is_none() {
            flushed = i + 1;
        }
    }
    flushed
}

/// The guest content after `ops` over `initial`.
fn model_after(initial: &[u8], ops: &[Op]) -> Vec<u8> {
    let mut m = initial.to_vec();
    for (off, len, v) in ops.iter().flatten() {
        m[*off as usize..(*off + *len) as usize].fill(v.unwrap_or(0));
    }
    m
}

#[test]
fn a_crash_at_any_write_leaves_a_monolithic_sparse_vmdk_with_old_or_new_grains() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f vmdk c0.vmdk 4M && \
         qemu-io -f vmdk -c 'write -P 0x77 0 256k' -c 'write -P 0x66 3M 64k' c0.vmdk >/dev/null");
    let bytes = fx.read("c0.vmdk");
    let initial = guest(&fx, "c0.vmdk");
    let slot = 64u64 << 10;
    let slots = initial.len() as u64 / slot;
    let mut rng = Rng(11);
    // Writes (whole slots, partial ones, zeroes) with flushes between.
    let mut ops: Vec<Op> = Vec::new();
    for _ in 0..30 {
        let s = rng.below(slots);
        let (off, len) = match rng.below(3) {
            0 => (s * slot + 4096, 8192),
            _ => (s * slot, slot),
        };
        ops.push(Some((
            off,
            len,
            (rng.below(5) != 0).then(|| 1 + rng.below(250) as u8),
        )));
        if rng.below(4) == 0 {
            ops.push(None);
        }
    }
    ops.push(None);
    let apply = |image: &Vmdk| apply_ops(image, &ops);
    let model = |k: usize| model_after(&initial, &ops[..k]);
    let total = {
        let (fault, image) = faulty(&fx, &bytes, u64::MAX);
        apply(&image);
        drop(image);
        fault.writes()
    };
    assert!(total > 20, "only {total} writes");
    for n in 0..=total {
        let (fault, image) = faulty(&fx, &bytes, n);
        let flushed = apply(&image);
        drop(image);
        let durable = model(flushed);
        for (k, state) in fault.crash_states(n).into_iter().enumerate() {
            fx.write("crash.vmdk", &state);
            let check = fx.qemu_img(&["check", "crash.vmdk"]);
            assert!(
                check.status.success(),
                "crash after {n}/{total} (state {k}): qemu-img check: {}{}",
                stdout(&check),
                stderr(&check)
            );
            let got = guest(&fx, "crash.vmdk");
            // Every 4 KiB block reads as it was durably, or as some later
            // op left it (never anything else).
            for b in 0..got.len() / 4096 {
                let r = b * 4096..(b + 1) * 4096;
                let fine = got[r.clone()] == durable[r.clone()]
                    || (flushed..=ops.len()).any(|j| got[r.clone()] == model(j)[r.clone()]);
                assert!(
                    fine,
                    "crash after {n}/{total} (state {k}): block {b} is garbage"
                );
            }
        }
    }
    // qimg reads the finished image as qemu-img does.
    let (fault, image) = faulty(&fx, &bytes, u64::MAX);
    apply(&image);
    drop(image);
    fx.write("done.vmdk", &fault.after_crash(|_| true));
    assert!(guest(&fx, "done.vmdk") == model(ops.len()));
    assert_reads_like_qemu(&fx, "done.vmdk");
}

#[test]
fn zero_writes_become_zeroed_grains_as_with_qemu_io() {
    let fx = Fixture::new();
    let ops =
        "-c 'write -P 0x11 0 1M' -c 'write -z 64k 128k' -c 'write -z 2M 64k' -c 'write -z 300k 8k'";
    fx.sh(&format!(
        "qemu-img create -q -f vmdk -o zeroed_grain=on q.vmdk 3M && cp q.vmdk i.vmdk && \
         qemu-io -f vmdk {ops} q.vmdk >/dev/null"
    ));
    let path = fx.path("i.vmdk");
    let storage = qimg::io::FileStorage::open_rw(&path).unwrap();
    let image = Vmdk::open(Box::new(storage), &path, true).unwrap();
    image.write(0, &vec![0x11; 1 << 20]).unwrap();
    image.write_zeroes(64 << 10, 128 << 10, false).unwrap();
    image.write_zeroes(2 << 20, 64 << 10, false).unwrap();
    image.write_zeroes(300 << 10, 8 << 10, false).unwrap();
    image.flush().unwrap();
    drop(image);
    assert_eq!(
        ok(&fx, "qemu-img", &["map", "--output=json", "i.vmdk"]),
        ok(&fx, "qemu-img", &["map", "--output=json", "q.vmdk"])
    );
    let cmp = fx.qemu_img(&["compare", "i.vmdk", "q.vmdk"]);
    assert_eq!(cmp.status.code(), Some(0), "{}", stdout(&cmp));
    assert_reads_like_qemu(&fx, "i.vmdk");
}

#[test]
fn a_convert_into_a_sparse_vmdk_cut_after_any_change_leaves_old_or_new_data() {
    let fx = Fixture::new();
    fx.sh(
        "truncate -s 6M src.raw && \
         qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 200k' -c 'write -P 0x33 5M 4k' src.raw >/dev/null",
    );
    let src = fx.read("src.raw");
    // One file, and a descriptor with its extent in a file of its own
    // (opened through the same fault injector).
    for (subformat, data_file) in [
        ("monolithicSparse", "dst.vmdk"),
        ("twoGbMaxExtentSparse", "dst-s001.vmdk"),
    ] {
        fx.sh(&format!(
            "rm -f dst*.vmdk && qemu-img create -q -f vmdk -o subformat={subformat} dst.vmdk 6M"
        ));
        let empty = fx.read(data_file);
        let total = common::uncut_convert_with(&fx, "dst.vmdk", "vmdk", |o| o);
        let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vmdk", "src.raw", "dst.vmdk"]);
        assert_eq!(cmp.status.code(), Some(0), "{subformat}: {}", stdout(&cmp));
        assert!(total >= 4, "{subformat}: only {total} changes");
        for n in 0..total {
            let reset = (data_file, empty.as_slice());
            let cut = common::cut_convert_with(&fx, "dst.vmdk", "vmdk", reset, n, total, |o| o);
            assert!(cut.crashed, "{subformat}: no crash at {n}/{total}");
            let pattern = cut.pattern;
            let check = fx.qemu_img(&["check", "dst.vmdk"]);
            assert!(
                check.status.success(),
                "{subformat}: cut after {n}/{total} (pattern {pattern}): {}",
                stderr(&check)
            );
            let got = guest(&fx, "dst.vmdk");
            for g in 0..src.len() / 65536 {
                let r = g * 65536..(g + 1) * 65536;
                assert!(
                    got[r.clone()] == src[r.clone()] || got[r.clone()].iter().all(|&x| x == 0),
                    "{subformat}: cut after {n}/{total} (pattern {pattern}): grain {g} is neither old nor new"
                );
            }
            assert_reads_like_qemu(&fx, "dst.vmdk");
        }
    }
}

/// The descriptor text embedded in the monolithicSparse `file`, whole.
fn raw_descriptor(fx: &Fixture, file: &str) -> String {
    let b = fx.read(file);
    let text = &b[512..512 + 20 * 512];
    let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
    String::from_utf8_lossy(&text[..end]).into_owned()
}

/// base.vmdk with data, and top.vmdk over it (made by qemu-img) with
/// writes of its own: whole grains, parts of grains, zeroes.
fn parent_and_child(fx: &Fixture) {
    fx.sh("qemu-img create -q -f vmdk base.vmdk 4M
         qemu-io -f vmdk -c 'write -P 0x11 0 1M' -c 'write -P 0x12 3M 64k' base.vmdk >/dev/null
         qemu-img create -q -f vmdk -b base.vmdk -F vmdk top.vmdk
         qemu-io -f vmdk -c 'write -P 0x21 4k 512' -c 'write -P 0x22 1M 64k' \
             -c 'write -z 3M 4k' -c 'write -P 0x23 2M 100k' top.vmdk >/dev/null");
}

#[test]
fn a_child_made_by_qemu_img_reads_through_its_parent_as_qemu_img_reads_it() {
    let fx = Fixture::new();
    parent_and_child(&fx);
    for args in [
        vec!["info", "--output=json", "--backing-chain", "top.vmdk"],
        vec!["info", "top.vmdk"],
        vec!["map", "--output=json", "top.vmdk"],
    ] {
        assert_eq!(
            ok(&fx, "qimg", &args),
            ok(&fx, "qemu-img", &args),
            "{}",
            args.join(" ")
        );
    }
    ok(&fx, "qimg", &["convert", "-O", "raw", "top.vmdk", "i.raw"]);
    ok(
        &fx,
        "qemu-img",
        &["convert", "-O", "raw", "top.vmdk", "q.raw"],
    );
    assert!(fx.read("i.raw") == fx.read("q.raw"), "content differs");
    // The parent is a VMDK whatever the hint's spelling: QEMU records it so.
    let v: serde_json::Value =
        serde_json::from_str(&ok(&fx, "qimg", &["info", "--output=json", "top.vmdk"])).unwrap();
    assert_eq!(v["backing-filename-format"], "vmdk");
}

#[test]
fn a_child_made_by_qimg_is_the_one_qemu_img_makes() {
    let fx = Fixture::new();
    parent_and_child(&fx);
    let line = ok(
        &fx,
        "qimg",
        &[
            "create",
            "-f",
            "vmdk",
            "-b",
            "base.vmdk",
            "-F",
            "vmdk",
            "mine.vmdk",
        ],
    );
    let theirs = ok(
        &fx,
        "qemu-img",
        &[
            "create",
            "-f",
            "vmdk",
            "-b",
            "base.vmdk",
            "-F",
            "vmdk",
            "q.vmdk",
        ],
    );
    assert_eq!(
        line.replace("mine.vmdk", "X"),
        theirs.replace("q.vmdk", "X")
    );
    // The descriptors differ only in the child's own CID and extent name.
    assert_eq!(
        descriptor(&fx, "mine.vmdk", "mine.vmdk"),
        descriptor(&fx, "q.vmdk", "q.vmdk")
    );
    fx.assert_clean("mine.vmdk");
    let cmp = fx.qemu_img(&["compare", "mine.vmdk", "base.vmdk"]);
    assert_eq!(cmp.status.code(), Some(0), "{}", stdout(&cmp));
    // qemu-img's refusals: a parent in another format, a flat child.
    fx.sh("qemu-img create -q -f qcow2 q.qcow2 4M");
    let out = fx.qimg(&[
        "create", "-f", "vmdk", "-b", "q.qcow2", "-F", "qcow2", "x.vmdk",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("backing_file must be a vmdk image"),
        "{}",
        stderr(&out)
    );
    let out = fx.qimg(&[
        "create",
        "-f",
        "vmdk",
        "-o",
        "subformat=monolithicFlat",
        "-b",
        "base.vmdk",
        "-F",
        "vmdk",
        "y.vmdk",
    ]);
    assert!(
        stderr(&out).contains("Flat image can't have backing file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn writes_into_a_child_keep_what_its_parent_shows_and_renew_its_cid() {
    let fx = Fixture::new();
    parent_and_child(&fx);
    ok(
        &fx,
        "qimg",
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-b",
            "base.vmdk",
            "-F",
            "vmdk",
            "mine.vmdk",
        ],
    );
    let before = raw_descriptor(&fx, "mine.vmdk");
    // Partial grains over the parent's data, a zero write over it, a
    // whole grain: committed from a qcow2 overlay with 512-byte clusters.
    fx.sh(
        "qemu-img create -q -f qcow2 -o cluster_size=512 -b mine.vmdk -F vmdk over.qcow2
         qemu-io -c 'write -P 0x31 4096 512' -c 'write -z 8192 512' -c 'write -P 0x32 3M 1k' \
             -c 'write -P 0x33 2M 64k' over.qcow2 >/dev/null
         qemu-img convert -O raw over.qcow2 expect.raw",
    );
    ok(&fx, "qimg", &["commit", "over.qcow2"]);
    let cmp = fx.qemu_img(&["compare", "-F", "raw", "mine.vmdk", "expect.raw"]);
    assert_eq!(cmp.status.code(), Some(0), "{}", stdout(&cmp));
    fx.assert_clean("mine.vmdk");
    let after = raw_descriptor(&fx, "mine.vmdk");
    let cid = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("CID="))
            .unwrap()
            .to_string()
    };
    assert_ne!(cid(&before), cid(&after), "the first write renews the CID");
    assert_eq!(cid(&before).len(), cid(&after).len(), "with as many digits");
    assert_eq!(
        before.replace(&cid(&before), ""),
        after.replace(&cid(&after), ""),
        "and changes nothing else"
    );
}

#[test]
fn a_parent_changed_since_is_refused_as_qemu_img_refuses_it() {
    let fx = Fixture::new();
    parent_and_child(&fx);
    // A write into the parent renews its CID: the child no longer matches.
    fx.sh("qemu-io -f vmdk -c 'write -P 0x44 3M 512' base.vmdk >/dev/null");
    let q = fx.qemu_img(&["convert", "-O", "raw", "top.vmdk", "q.raw"]);
    assert_ne!(q.status.code(), Some(0), "qemu-img refuses");
    let out = fx.qimg(&["convert", "-O", "raw", "top.vmdk", "i.raw"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("parent 'base.vmdk' changed"), "{err}");
    // The child alone still describes itself.
    ok(&fx, "qimg", &["info", "top.vmdk"]);
}

#[test]
fn a_crash_at_any_write_into_a_child_leaves_old_or_new_data_over_the_parent() {
    use qimg::chain::Chain;
    let fx = Fixture::new();
    parent_and_child(&fx);
    let bytes = fx.read("top.vmdk");
    let initial = guest(&fx, "top.vmdk");
    let parent = Chain::open(&fx.path("base.vmdk"), None).expect("open the parent");
    // Partial grains over unallocated ones (completed from the parent),
    // zeroes over the parent's data, whole grains, with flushes between.
    let ops: Vec<Op> = vec![
        Some((64 << 10 | 512, 1024, Some(0x51))),
        Some((3 << 20 | 4096, 4096, None)),
        None,
        Some((256 << 10, 64 << 10, Some(0x52))),
        Some((3 << 20 | 70000, 3000, Some(0x53))),
        None,
    ];
    let open = |n: u64| {
        let (fault, image) = faulty(&fx, &bytes, n);
        image.attach_backing(parent.reader_from(0));
        (fault, image)
    };
    let apply = |image: &Vmdk| apply_ops(image, &ops);
    let model = |k: usize| model_after(&initial, &ops[..k]);
    let total = {
        let (fault, image) = open(u64::MAX);
        apply(&image);
        drop(image);
        fault.writes()
    };
    assert!(total > 6, "only {total} writes");
    for n in 0..=total {
        let (fault, image) = open(n);
        let flushed = apply(&image);
        drop(image);
        let durable = model(flushed);
        for (k, state) in fault.crash_states(n).into_iter().enumerate() {
            // Beside base.vmdk, so the hint finds the parent.
            fx.write("crash.vmdk", &state);
            let check = fx.qemu_img(&["check", "crash.vmdk"]);
            assert!(
                check.status.success(),
                "crash after {n}/{total} (state {k}): {}{}",
                stdout(&check),
                stderr(&check)
            );
            let got = guest(&fx, "crash.vmdk");
            for b in 0..got.len() / 512 {
                let r = b * 512..(b + 1) * 512;
                let fine = got[r.clone()] == durable[r.clone()]
                    || (flushed..=ops.len()).any(|j| got[r.clone()] == model(j)[r.clone()]);
                assert!(
                    fine,
                    "crash after {n}/{total} (state {k}): sector {b} is garbage"
                );
            }
        }
    }
    let (fault, image) = open(u64::MAX);
    apply(&image);
    drop(image);
    fx.write("done.vmdk", &fault.after_crash(|_| true));
    assert!(guest(&fx, "done.vmdk") == model(ops.len()));
}
