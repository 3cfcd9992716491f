//! Image specifications beyond plain file names — `file:` prefixes,
//! `json:{...}` names, `--image-opts` / `--target-image-opts` option
//! strings, `--object secret` — each run with qemu-img and with qimg on the
//! same input: the same `info`/`map`/`check` output, the same converted
//! content (`qemu-img compare`), and qemu-img's sentence (one line, exit 1,
//! nothing written) for specifications that are wrong.

mod common;

use common::{require_tool, stderr, stdout, Fixture};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `args` with qemu-img and with qimg and asserts the same exit code
/// and the same stdout.
fn same_output(fx: &Fixture, args: &[&str]) {
    let theirs = fx.qemu_img(args);
    let ours = fx.qimg(args);
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "{args:?}: exit codes differ; qimg said {}, qemu-img said {}",
        stderr(&ours),
        stderr(&theirs)
    );
    assert_eq!(stdout(&ours), stdout(&theirs), "{args:?}");
}

/// qimg's stderr for a failure: exactly one line, exit status 1.
fn one_error_line(out: &Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    err
}

/// Both tools refuse `args`; qimg's one line carries qemu-img's sentence
/// (the text after qemu-img's "Could not open '...': " when it has one).
fn same_error(fx: &Fixture, args: &[&str]) -> String {
    let theirs = fx.qemu_img(args);
    assert_eq!(theirs.status.code(), Some(1), "qemu-img {args:?} succeeded");
    let first = stderr(&theirs).lines().next().unwrap_or("").to_string();
    let first = first.strip_prefix("qemu-img: ").unwrap_or(&first);
    let sentence = match first.find("': ") {
        Some(i) if first.starts_with("Could not open '") => &first[i + 3..],
        _ => first,
    };
    let err = one_error_line(&fx.qimg(args), &format!("{args:?}"));
    assert!(
        err.contains(sentence),
        "{args:?}: qimg said {err:?}; qemu-img's sentence is {sentence:?}"
    );
    err
}

fn images(fx: &Fixture) {
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x22 512k 64k' -c 'write -z 2M 64k' top.qcow2 >/dev/null
         qemu-img create -q -f qed q.qed 4M
         qemu-io -c 'write -P 0x33 1M 64k' q.qed >/dev/null
         qemu-img create -q -f raw r.raw 4M
         qemu-io -f raw -c 'write -P 0x44 1M 4k' -c 'write -P 0x45 3M 64k' r.raw >/dev/null");
}

/// Issue 12, item 8: the `file:` prefix names the file, on every command.
#[test]
fn file_prefix_names_the_file_everywhere() {
    let fx = Fixture::new();
    images(&fx);
    let abs = format!("file:{}", fx.path("abs.qcow2").display());
    for name in ["file:p.qcow2", abs.as_str()] {
        let out = fx.qimg(&["create", "-q", "-f", "qcow2", name, "1M"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
    assert!(fx.path("p.qcow2").is_file() && fx.path("abs.qcow2").is_file());
    assert!(
        !fx.path("file:p.qcow2").exists(),
        "created the name literally"
    );
    fx.assert_clean("p.qcow2");
    for args in [
        &["info", "--output=json", "file:top.qcow2"][..],
        &["info", "--backing-chain", "file:top.qcow2"],
        &["info", &abs],
        &["map", "--output=json", "file:top.qcow2"],
        &["map", "file:r.raw"],
        &["check", "--output=json", "file:top.qcow2"],
    ] {
        same_output(&fx, args);
    }
    // convert: a file: source and a file: target.
    let out = fx.qimg(&[
        "convert",
        "-O",
        "qcow2",
        "file:top.qcow2",
        "file:flat.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("top.qcow2", "flat.qcow2");
    fx.assert_clean("flat.qcow2");
    // A file: backing name is stored as given and, like any name with a
    // protocol, opened from the working directory (as QEMU does).
    fx.sh("mkdir sub");
    let out = fx.qimg(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "file:base.qcow2",
        "-F",
        "qcow2",
        "sub/o.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    same_output(
        &fx,
        &["info", "--backing-chain", "--output=json", "sub/o.qcow2"],
    );
    // rebase, stream and commit through file: names.
    fx.sh("qemu-io -c 'write -P 0x55 3M 64k' sub/o.qcow2 >/dev/null
           cp base.qcow2 base.orig");
    let out = fx.qimg(&["rebase", "-u", "-b", "", "-f", "qcow2", "file:p.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fx.qimg(&["commit", "-q", "file:sub/o.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.sh(
        "qemu-io -c 'read -P 0x55 3M 64k' base.qcow2 | grep -q 'read 65536'
           cp base.orig base.qcow2",
    );
    fx.sh("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 s.qcow2");
    let out = fx.qimg(&["stream", "file:s.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("s.qcow2", "base.qcow2");
    assert!(!stdout(&fx.qemu_img(&["info", "s.qcow2"])).contains("backing file"));
}

/// Each spelling of the same image gives qemu-img's `info` (both forms)
/// and `map`: nested and dotted json: keys, driver=file, and --image-opts
/// with a ,, escaped comma.
#[test]
fn json_names_and_image_opts_read_as_qemu_img_reads_them() {
    let fx = Fixture::new();
    images(&fx);
    fx.sh("cp top.qcow2 'a,b.qcow2'");
    let specs = [
        r#"json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}}"#,
        r#"json:{"file.driver":"file","file.filename":"top.qcow2"}"#,
        r#"json:{"driver":"qed","file.filename":"q.qed"}"#,
        r#"json:{"driver":"raw","file":{"filename":"r.raw"}}"#,
        r#"json:{"driver":"file","filename":"top.qcow2"}"#,
        r#"json:{"driver":"qcow2","encrypt.key-secret":"s0","file":{"driver":"file","filename":"top.qcow2","locking":"auto"},"cache":{"direct":false},"l2-cache-size":"1M"}"#,
    ];
    for spec in specs {
        for args in [
            &["info", "--output=json", spec][..],
            &["info", spec],
            &["map", "--output=json", spec],
        ] {
            same_output(&fx, args);
        }
    }
    for opts in [
        "driver=qcow2,file.driver=file,file.filename=a,,b.qcow2",
        "driver=raw,file.filename=r.raw",
        "driver=file,filename=q.qed",
    ] {
        for args in [
            &["info", "--output=json", "--image-opts", opts][..],
            &["map", "--image-opts", opts],
            &["check", "--output=json", "--image-opts", opts],
        ] {
            same_output(&fx, args);
        }
    }
    // host_device: a device (here the null and zero devices), named as
    // qemu-img names it; a regular file is refused with its sentence.
    for spec in [
        r#"json:{"driver":"raw","file":{"driver":"host_device","filename":"/dev/null"}}"#,
        r#"json:{"driver":"host_device","filename":"/dev/zero"}"#,
    ] {
        same_output(&fx, &["info", "--output=json", spec]);
        same_output(&fx, &["info", spec]);
    }
    same_error(
        &fx,
        &[
            "info",
            r#"json:{"driver":"raw","file":{"driver":"host_device","filename":"r.raw"}}"#,
        ],
    );
    // The converted content is the same as qemu-img's conversion.
    for (i, spec) in specs.iter().enumerate() {
        let ours = format!("ours{i}.qcow2");
        let theirs = format!("theirs{i}.qcow2");
        let out = fx.qimg(&["convert", "-O", "qcow2", spec, &ours]);
        assert!(out.status.success(), "{spec}: {}", stderr(&out));
        assert!(fx
            .qemu_img(&["convert", "-O", "qcow2", spec, &theirs])
            .status
            .success());
        fx.assert_same(&ours, &theirs);
        fx.assert_clean(&ours);
    }
}

/// virt-v2v asks whether qemu-img takes "offset" and "size" with this
/// probe (libguestfs/virt-v2v lib/utils.ml, qemu_img_supports_offset_and_size:
/// a 1024-byte temporary file, `qemu-img info json:{"file":{"driver":"raw",
/// "offset":512,"size":512,"file":{"filename":TMP}}}`, exit status read),
/// and then opens each disk of an OVA inside the tar the same way
/// (input/input_ova.ml: a "file" child with driver raw, the member's offset
/// and its size rounded up to 512, over driver file and the tar's path).
#[test]
fn virt_v2v_reads_disks_inside_an_ova_through_a_raw_window() {
    let fx = Fixture::new();
    fx.sh("truncate -s 1024 v2vqemuimgtst.img");
    let probe = r#"json:{"file":{"driver":"raw","offset":512,"size":512,"file":{"filename":"v2vqemuimgtst.img"}}}"#;
    let out = fx.qimg(&["info", probe]);
    assert!(out.status.success(), "{}", stderr(&out));
    same_output(&fx, &["info", "--output=json", probe]);
    same_output(&fx, &["info", probe]);

    fx.sh("qemu-img create -q -f qcow2 disk1.qcow2 8M
           qemu-io -c 'write -P 0x66 1M 192k' -c 'write -P 0x67 7M 4k' disk1.qcow2 >/dev/null
           head -c 300000 /dev/urandom > disk2.raw
           tar cf vm.ova disk1.qcow2 disk2.raw");
    let ova = fx.path("vm.ova").display().to_string();
    let member = |name: &str| -> String {
        // tar: each member is a 512-byte header, then its data padded to 512.
        let mut offset = 0u64;
        for (n, len) in [
            (
                "disk1.qcow2",
                std::fs::metadata(fx.path("disk1.qcow2")).unwrap().len(),
            ),
            ("disk2.raw", 300000),
        ] {
            offset += 512;
            if n == name {
                let size = len.div_ceil(512) * 512;
                return format!(
                    r#"json:{{"file":{{"driver":"raw","offset":{offset},"size":{size},"file":{{"driver":"file","filename":"{ova}"}}}}}}"#
                );
            }
            offset += len.div_ceil(512) * 512;
        }
        unreachable!()
    };
    for name in ["disk1.qcow2", "disk2.raw"] {
        let spec = member(name);
        for args in [
            &["info", "--output=json", spec.as_str()][..],
            &["info", &spec],
            &["map", "--output=json", &spec],
            &["map", &spec],
        ] {
            same_output(&fx, args);
        }
        let out = fx.qimg(&["convert", "-O", "raw", &spec, "out.raw"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(fx
            .qemu_img(&["convert", "-O", "raw", &spec, "ref.raw"])
            .status
            .success());
        assert_eq!(fx.read("out.raw"), fx.read("ref.raw"), "{name}");
    }
    same_output(&fx, &["check", &member("disk1.qcow2")]);
}

/// libvirt's second step when it converts a volume to or from an encrypted
/// one (libvirt/libvirt src/storage/storage_util.c,
/// virStorageBackendCreateQemuImgCmdFromVol, VIR_STORAGE_VOL_ENCRYPT_CONVERT):
/// `convert --image-opts -n --target-image-opts --object secret,...
/// driver=raw,file.filename=IN driver=raw,file.filename=OUT`, and with a
/// `driver=luks,...,key-secret=` side. Both convert as with qemu-img.
#[test]
fn libvirt_converts_between_option_strings() {
    let fx = Fixture::new();
    images(&fx);
    fx.sh("printf secret > key.txt
           qemu-img create -q -f raw out.raw 4M
           qemu-img create -q -f raw ref.raw 4M
           qemu-img create -q -f qcow2 outq.qcow2 4M");
    let run = |tool: &str, target: &str| {
        let args = [
            "convert",
            "--image-opts",
            "-n",
            "--target-image-opts",
            "--object",
            "secret,id=vol_encrypt0,file=key.txt",
            "driver=raw,file.filename=r.raw",
            target,
        ];
        if tool == "qimg" {
            fx.qimg(&args)
        } else {
            fx.qemu_img(&args)
        }
    };
    let out = run("qimg", "driver=raw,file.filename=out.raw");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(run("qemu-img", "driver=raw,file.filename=ref.raw")
        .status
        .success());
    assert_eq!(fx.read("out.raw"), fx.read("ref.raw"));
    fx.assert_same("r.raw", "out.raw");
    // A qcow2 target named by its driver.
    let out = run("qimg", "driver=qcow2,file.filename=outq.qcow2");
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("r.raw", "outq.qcow2");
    fx.assert_clean("outq.qcow2");
    // libvirt's encrypted target: driver=luks with key-secret. A file
    // that is not LUKS gets qemu-img's sentence and stays as it was.
    let before = fx.read("out.raw");
    let err = one_error_line(
        &run(
            "qimg",
            "driver=luks,file.filename=out.raw,key-secret=vol_encrypt0",
        ),
        "luks target",
    );
    assert!(err.contains("Volume is not in LUKS format"), "{err}");
    assert_eq!(fx.read("out.raw"), before, "the target changed");
    // A LUKS volume made with the same secret is written as qemu-img does.
    fx.sh(
        "qemu-img create -q -f luks --object secret,id=vol_encrypt0,file=key.txt \
             -o key-secret=vol_encrypt0,iter-time=10 out.luks 4M",
    );
    let out = run(
        "qimg",
        "driver=luks,file.filename=out.luks,key-secret=vol_encrypt0",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cmp = fx.qemu_img(&[
        "compare",
        "--object",
        "secret,id=vol_encrypt0,file=key.txt",
        "r.raw",
        r#"json:{"driver":"luks","key-secret":"vol_encrypt0","file":{"filename":"out.luks"}}"#,
    ]);
    assert!(cmp.status.success(), "{}{}", stdout(&cmp), stderr(&cmp));
    // The mistakes qemu-img refuses in these flags.
    same_error(
        &fx,
        &[
            "convert",
            "--target-image-opts",
            "r.raw",
            "driver=raw,file.filename=out.raw",
        ],
    );
    same_error(
        &fx,
        &[
            "convert",
            "--image-opts",
            "-f",
            "raw",
            "driver=raw,file.filename=r.raw",
            "x.raw",
        ],
    );
    assert!(!fx.path("x.raw").exists());
}

/// cinder names a snapshot's backing file with a json: name
/// (openstack/cinder cinder/volume/drivers/remotefs.py,
/// _create_snapshot_online... `qemu-img create -f qcow2 -o encrypt.format=luks,...
/// -F qcow2 -b json:{...} --object secret,id=s0,file=KEY ... NEW`). Without
/// the encryption the json: backing name is stored as given and the chain
/// opens through it; with cinder's encryption options the creation is
/// created as qemu-img creates it.
#[test]
fn cinder_json_backing_names() {
    let fx = Fixture::new();
    images(&fx);
    fx.sh("printf passphrase > key");
    let base = fx.path("base.qcow2").display().to_string();
    let backing = format!(
        r#"json:{{"driver": "qcow2", "file": {{"driver": "file", "filename": "{base}"}}}}"#
    );
    let out = fx.qimg(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        &backing,
        "snap.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_clean("snap.qcow2");
    for args in [
        &["info", "--backing-chain", "--output=json", "snap.qcow2"][..],
        &["info", "--backing-chain", "snap.qcow2"],
        &["map", "--output=json", "snap.qcow2"],
    ] {
        same_output(&fx, args);
    }
    let out = fx.qimg(&["convert", "-O", "qcow2", "snap.qcow2", "flat.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("base.qcow2", "flat.qcow2");
    // cinder's own command line, encryption included.
    let encrypted = format!(
        r#"json:{{"driver": "qcow2", "encrypt.key-secret": "s0", "backing.encrypt.key-secret": "s0", "backing.file.filename": "{base}", "file": {{"driver": "file", "filename": "{base}"}}}}"#
    );
    let out = fx.qimg(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=s1,encrypt.cipher-alg=aes-256,encrypt.cipher-mode=xts,encrypt.ivgen-alg=plain64",
        "-F",
        "qcow2",
        "-b",
        &encrypted,
        "--object",
        "secret,id=s0,file=key",
        "--object",
        "secret,id=s1,file=key",
        "new_snap.qcow2",
    ]);
    // As qemu-img 10.0.2: created, encrypted, over the named backing file.
    assert!(out.status.success(), "{}", stderr(&out));
    let info = fx.qemu_img(&["info", "--output=json", "new_snap.qcow2"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info JSON");
    assert_eq!(v["encrypted"], true, "{v}");
    assert_eq!(
        v["format-specific"]["data"]["encrypt"]["cipher-alg"],
        "aes-256"
    );
    assert_eq!(v["backing-filename-format"], "qcow2");
    // cinder's next step, on an image that is not encrypted: rebase -u
    // through an option string naming a secret (remotefs.py, the same
    // method). The result is byte for byte qemu-img's.
    fx.sh("qemu-img create -q -f qcow2 ours.qcow2 4M
           cp ours.qcow2 theirs.qcow2");
    let rebase = |image: &str| {
        let opts = format!("encrypt.key-secret=s0,file.filename={image}");
        [
            "rebase".to_string(),
            "--object".into(),
            "secret,id=s0,file=key".into(),
            "--image-opts".into(),
            opts,
            "-u".into(),
            "-b".into(),
            "base.qcow2".into(),
            "-F".into(),
            "qcow2".into(),
        ]
    };
    let ours = rebase("ours.qcow2");
    let out = fx.qimg(&ours.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    let theirs = rebase("theirs.qcow2");
    let out = fx.qemu_img(&theirs.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fx.read("ours.qcow2"), fx.read("theirs.qcow2"));
}

/// vdsm measures a volume with a json: node ({"file": {"driver": "file",
/// "filename": IMAGE}, "driver": "qcow2", "backing": null}; oVirt/vdsm
/// lib/vdsm/storage/qemuimg.py, measure). qimg has no measure; the same
/// node opens in info and convert, and "backing": null copies only the top.
#[test]
fn vdsm_node_with_backing_null() {
    let fx = Fixture::new();
    images(&fx);
    let node = r#"json:{"file": {"driver": "file", "filename": "top.qcow2"}, "driver": "qcow2", "backing": null}"#;
    same_output(&fx, &["info", "--output=json", node]);
    // info --backing-chain lists the chain the images record, as qemu-img does.
    same_output(&fx, &["info", "--backing-chain", "--output=json", node]);
    let out = fx.qimg(&["convert", "-O", "raw", node, "ours.raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fx
        .qemu_img(&["convert", "-O", "raw", node, "ref.raw"])
        .status
        .success());
    assert_eq!(fx.read("ours.raw"), fx.read("ref.raw"));
    // Only the top: the base's data (0x11 at 0) is not there.
    assert_eq!(fx.read("ours.raw")[0], 0);
    // vdsm's sub-chain node: the backing named by a node of its own, whose
    // backing is null; the copy reads top and base only.
    fx.sh("qemu-img create -q -f qcow2 low.qcow2 4M
           qemu-io -c 'write -P 0x99 0 4M' low.qcow2 >/dev/null
           qemu-img create -q -f qcow2 -b low.qcow2 -F qcow2 mid.qcow2
           qemu-io -c 'write -P 0x88 0 1M' mid.qcow2 >/dev/null
           qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 high.qcow2
           qemu-io -c 'write -P 0x77 512k 64k' high.qcow2 >/dev/null");
    let node = r#"json:{"file": {"driver": "file", "filename": "high.qcow2"}, "driver": "qcow2", "backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "mid.qcow2"}, "backing": null}}"#;
    let out = fx.qimg(&["convert", "-O", "raw", node, "sub.raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fx
        .qemu_img(&["convert", "-O", "raw", node, "subref.raw"])
        .status
        .success());
    assert_eq!(fx.read("sub.raw"), fx.read("subref.raw"));
    assert_eq!(
        fx.read("sub.raw")[3 << 20],
        0,
        "read below the null backing"
    );
}

/// A raw window as a convert target (`convert -n --target-image-opts
/// driver=raw,offset=...,size=...`): only the window is written.
#[test]
fn a_raw_window_as_target_writes_only_the_window() {
    let fx = Fixture::new();
    images(&fx);
    fx.sh("qemu-img create -q -f qcow2 small.qcow2 1M
           qemu-io -c 'write -P 0x77 0 1M' small.qcow2 >/dev/null
           head -c 4194304 /dev/urandom > ours.raw
           cp ours.raw ref.raw");
    let target = |f: &str| format!("driver=raw,offset=2M,size=1M,file.filename={f}");
    let out = fx.qimg(&[
        "convert",
        "-n",
        "-f",
        "qcow2",
        "--target-image-opts",
        "small.qcow2",
        &target("ours.raw"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let theirs = fx.qemu_img(&[
        "convert",
        "-n",
        "-f",
        "qcow2",
        "--target-image-opts",
        "small.qcow2",
        &target("ref.raw"),
    ]);
    assert!(theirs.status.success(), "{}", stderr(&theirs));
    assert_eq!(fx.read("ours.raw"), fx.read("ref.raw"));
    // A source larger than the window is refused, the file untouched.
    let before = fx.read("ours.raw");
    let err = one_error_line(
        &fx.qimg(&[
            "convert",
            "-n",
            "-f",
            "qcow2",
            "--target-image-opts",
            "top.qcow2",
            &target("ours.raw"),
        ]),
        "window too small",
    );
    assert!(err.contains("smaller than input"), "{err}");
    assert_eq!(fx.read("ours.raw"), before);
}

/// Specifications that are wrong: one line with qemu-img's sentence, exit
/// 1, nothing written.
#[test]
fn bad_specifications_get_qemu_imgs_sentence() {
    let fx = Fixture::new();
    images(&fx);
    for spec in [
        r#"json:{"driver":"qcow2""#,
        "json:[1]",
        "json:",
        "json:{}",
        r#"json:{"driver":"raw","driver":"qcow2","file":{"filename":"r.raw"}}"#,
        r#"json:{"driver":"foo","file":{"filename":"r.raw"}}"#,
        r#"json:{"driver":"raw"}"#,
        r#"json:{"driver":"qcow2","file":"top.qcow2"}"#,
        r#"json:{"driver":"raw","file":{"driver":"file"}}"#,
        r#"json:{"driver":"raw","offset":8388608,"file":{"filename":"r.raw"}}"#,
        r#"json:{"driver":"raw","offset":512,"size":8388608,"file":{"filename":"r.raw"}}"#,
        r#"json:{"driver":"raw","offset":512,"size":513,"file":{"filename":"r.raw"}}"#,
        r#"json:{"driver":"raw","offset":-1,"file":{"filename":"r.raw"}}"#,
        r#"json:{"driver":"raw","bogus":1,"file":{"filename":"r.raw"}}"#,
        r#"json:{"driver":"raw","file":{"filename":"r.raw","bogus":2}}"#,
        r#"json:{"driver":"nbd"}"#,
        r#"json:{"driver":"nbd","server":{"type":"unix"}}"#,
        r#"json:{"driver":"nbd","server":{"type":"inet","host":"localhost"}}"#,
        r#"json:{"driver":"nbd","server":{"type":"bogus"}}"#,
    ] {
        same_error(&fx, &["info", spec]);
        same_error(&fx, &["convert", "-O", "qcow2", spec, "out.qcow2"]);
        assert!(
            !fx.path("out.qcow2").exists(),
            "{spec}: convert wrote a target"
        );
    }
    for opts in [
        "driver=foo,file.filename=r.raw",
        "driver=raw",
        "driver=raw,file.filename=r.raw,bogus=1",
    ] {
        same_error(&fx, &["info", "--image-opts", opts]);
        same_error(&fx, &["map", "--image-opts", opts]);
        same_error(&fx, &["check", "--image-opts", opts]);
    }
    same_error(
        &fx,
        &[
            "info",
            "--image-opts",
            "-f",
            "raw",
            "driver=raw,file.filename=r.raw",
        ],
    );
    same_error(
        &fx,
        &[
            "create",
            "-f",
            "qcow2",
            r#"json:{"driver":"file","filename":"j.qcow2"}"#,
            "1M",
        ],
    );
    assert!(!fx.path("j.qcow2").exists());
    same_error(&fx, &["info", "--image-opts", "r.raw"]);
    // --object: the definitions qemu-img refuses.
    for object in [
        "secret,id=s0",
        "secret,data=abc",
        "foo,id=s0",
        "secret,id=s0,file=missing.key",
    ] {
        same_error(&fx, &["info", "--object", object, "top.qcow2"]);
    }
    // A format qemu-img reads and qimg does not: a clear refusal (qemu-img
    // opens it).
    fx.sh("qemu-img create -q -f parallels d.hds 1M");
    let err = one_error_line(
        &fx.qimg(&[
            "info",
            r#"json:{"driver":"parallels","file":{"filename":"d.hds"}}"#,
        ]),
        "parallels",
    );
    assert!(err.contains("format 'parallels' is not supported"), "{err}");
    // An encrypted image named through a secret: info needs no key (and
    // unlocks none, as qemu-img's), a wrong one is refused by map.
    fx.sh("qemu-img create -q --object secret,id=s0,data=pw -f qcow2 -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 enc.qcow2 1M");
    same_output(
        &fx,
        &[
            "info",
            "--object",
            "secret,id=s0,data=pw",
            "--image-opts",
            "driver=qcow2,encrypt.key-secret=s0,file.filename=enc.qcow2",
        ],
    );
    let err = one_error_line(
        &fx.qimg(&[
            "map",
            "--object",
            "secret,id=s0,data=px",
            "--image-opts",
            "driver=qcow2,encrypt.key-secret=s0,file.filename=enc.qcow2",
        ]),
        "encrypted",
    );
    assert!(
        err.contains("Invalid password, cannot unlock any keyslot"),
        "{err}"
    );
}

/// A qemu-nbd serving `image` (as `format`) on a unix socket in `fx`'s
/// directory, killed when dropped.
struct QemuNbd {
    child: Child,
    socket: String,
}

impl QemuNbd {
    fn start(fx: &Fixture, image: &str, format: &str, writable: bool) -> QemuNbd {
        require_tool("qemu-nbd");
        let socket = fx.path(&format!("{image}.sock")).display().to_string();
        let mut cmd = Command::new("qemu-nbd");
        cmd.args(["-t", "-x", "exp", "-f", format, "-k", &socket]);
        if !writable {
            cmd.arg("-r");
        }
        let child = cmd
            .arg(image)
            .current_dir(fx.dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu-nbd");
        let server = QemuNbd { child, socket };
        let uri = format!("nbd+unix:///exp?socket={}", server.socket);
        let start = Instant::now();
        while !fx.qemu_img(&["info", &uri]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "qemu-nbd never served"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// NBD exports named by options: `driver=nbd` (the export itself),
/// `file.driver=nbd` under a format, `server.*` and the older `path` key,
/// and a writable export as a --target-image-opts target.
#[test]
fn nbd_exports_named_by_options() {
    let fx = Fixture::new();
    images(&fx);
    let server = QemuNbd::start(&fx, "top.qcow2", "qcow2", false);
    let s = &server.socket;
    let specs = [
        format!(
            r#"json:{{"driver":"nbd","server":{{"type":"unix","path":"{s}"}},"export":"exp"}}"#
        ),
        format!(
            r#"json:{{"driver":"raw","file":{{"driver":"nbd","server.type":"unix","server.path":"{s}","export":"exp"}}}}"#
        ),
        format!(r#"json:{{"file.driver":"nbd","file.path":"{s}","file.export":"exp"}}"#),
        format!(
            r#"json:{{"driver":"raw","offset":1048576,"size":65536,"file":{{"driver":"nbd","server":{{"type":"unix","path":"{s}"}},"export":"exp"}}}}"#
        ),
        format!(
            r#"json:{{"driver":"raw","offset":1048576,"size":65536,"file":{{"driver":"nbd","path":"{s}","export":"exp"}}}}"#
        ),
    ];
    for spec in &specs {
        for args in [
            &["info", "--output=json", spec.as_str()][..],
            &["info", spec],
            &["map", "--output=json", spec],
        ] {
            same_output(&fx, args);
        }
    }
    let opts = format!(
        "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path={s},file.export=exp"
    );
    same_output(&fx, &["info", "--output=json", "--image-opts", &opts]);
    let out = fx.qimg(&["convert", "-O", "qcow2", &specs[0], "copy.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("top.qcow2", "copy.qcow2");
    drop(server);

    fx.sh("qemu-img create -q -f raw target.raw 4M");
    let server = QemuNbd::start(&fx, "target.raw", "raw", true);
    let target = format!(
        "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path={},file.export=exp",
        server.socket
    );
    let out = fx.qimg(&[
        "convert",
        "-n",
        "-f",
        "qcow2",
        "--target-image-opts",
        "top.qcow2",
        &target,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(server);
    fx.assert_same("top.qcow2", "target.raw");
}

/// Proxmox VE copies into a qcow2 volume of a snapshot-as-volume-chain
/// storage with target options built from its blockdev definition
/// (proxmox/qemu-server src/PVE/QemuServer/QemuImage.pm, convert and
/// qcow2_target_image_opts: `convert -p -n -f raw --target-image-opts SRC
/// discard-no-unref=true,driver=qcow2,file.driver=file,file.filename=DST`,
/// keys sorted per level), and to and from iSCSI LUNs with
/// `file.driver=iscsi,...,driver=raw` (convert_iscsi_path).
#[test]
fn proxmox_target_image_opts() {
    let fx = Fixture::new();
    images(&fx);
    fx.sh("qemu-img create -q -f qcow2 dst.qcow2 4M
           qemu-img create -q -f qcow2 ref.qcow2 4M");
    let opts = |f: &str| {
        format!(
            "discard-no-unref=true,driver=qcow2,file.driver=file,file.filename={}",
            fx.path(f).display()
        )
    };
    let args = |f: &str| {
        vec![
            "convert".to_string(),
            "-p".into(),
            "-n".into(),
            "-f".into(),
            "raw".into(),
            "--target-image-opts".into(),
            "r.raw".into(),
            opts(f),
        ]
    };
    let ours: Vec<String> = args("dst.qcow2");
    let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
    let out = fx.qimg(&ours);
    assert!(out.status.success(), "{}", stderr(&out));
    let theirs: Vec<String> = args("ref.qcow2");
    let theirs: Vec<&str> = theirs.iter().map(String::as_str).collect();
    assert!(fx.qemu_img(&theirs).status.success());
    fx.assert_same("dst.qcow2", "ref.qcow2");
    fx.assert_same("r.raw", "dst.qcow2");
    fx.assert_clean("dst.qcow2");
    // An iSCSI LUN: refused by name, nothing written.
    let lun = "file.driver=iscsi,file.transport=tcp,file.initiator-name=foobar,file.portal=127.0.0.1,file.target=iqn.2019-10.org.test:foobar,file.lun=1,driver=raw";
    let before = fx.read("dst.qcow2");
    let err = one_error_line(
        &fx.qimg(&[
            "convert",
            "-p",
            "-n",
            "-f",
            "qcow2",
            "--target-image-opts",
            "dst.qcow2",
            lun,
        ]),
        "iscsi target",
    );
    assert!(
        err.contains("'iscsi' block driver is not supported"),
        "{err}"
    );
    let err = one_error_line(
        &fx.qimg(&[
            "convert",
            "-p",
            "-n",
            "--image-opts",
            "-O",
            "raw",
            lun,
            "dst.qcow2",
        ]),
        "iscsi source",
    );
    assert!(
        err.contains("'iscsi' block driver is not supported"),
        "{err}"
    );
    assert_eq!(fx.read("dst.qcow2"), before);
}
