//! LUKS-encrypted images: the `luks` format and qcow2 with
//! `encrypt.format=luks`, against qemu-img 10.0.2 both ways; secrets
//! given as data, file and base64; wrong and missing secrets; plaintext
//! never in the image file; crash safety of both write paths; malformed
//! LUKS headers.

mod common;

use common::{stderr, stdout, Fixture};
use qimg::format::luks::Luks;
use qimg::format::Format;
use qimg::io::{FaultStorage, Secrets, StorageOptions};
use std::sync::Arc;

const SECRET: &str = "secret,id=sec0,data=correct horse";

/// `json:` name of `file` opened as `driver` with secret `sec0`.
fn keyed(driver: &str, file: &str) -> String {
    let key = if driver == "luks" {
        "key-secret"
    } else {
        "encrypt.key-secret"
    };
    format!(r#"json:{{"driver":"{driver}","{key}":"sec0","file":{{"filename":"{file}"}}}}"#)
}

/// The guest bytes of an encrypted image, as qemu-img reads them.
fn guest_by_qemu(fx: &Fixture, driver: &str, image: &str) -> Vec<u8> {
    let name = keyed(driver, image);
    let out = fx.qemu_img(&[
        "convert",
        "--object",
        SECRET,
        "-O",
        "raw",
        &name,
        "guest-q.raw",
    ]);
    assert!(
        out.status.success(),
        "qemu-img convert {image}: {}",
        stderr(&out)
    );
    fx.read("guest-q.raw")
}

/// Asserts that qemu-img finds `image` (of `driver`) and `raw` the same.
fn assert_same_as_raw(fx: &Fixture, driver: &str, image: &str, raw: &str) {
    let name = keyed(driver, image);
    let out = fx.qemu_img(&["compare", "--object", SECRET, &name, raw]);
    assert!(
        out.status.success(),
        "qemu-img compare {image} {raw}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Asserts that `qemu-img check` (with the secret) finds an encrypted
/// qcow2 image clean.
fn assert_clean_encrypted(fx: &Fixture, image: &str) {
    let name = keyed("qcow2", image);
    let out = fx.qemu_img(&["check", "--object", SECRET, &name]);
    assert!(
        out.status.success(),
        "qemu-img check {image}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// A 5 MiB raw source with patterns, a random run and holes.
fn source_raw(fx: &Fixture) {
    fx.sh(
        "qemu-img create -q -f raw src.raw 5M && \
         qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 3M 4k' -c 'write -P 0x33 4100k 1000' src.raw >/dev/null && \
         head -c 131072 /dev/urandom | dd of=src.raw bs=64k seek=16 conv=notrunc status=none",
    );
}

fn secrets() -> Secrets {
    Secrets::new([(
        "sec0".to_string(),
        zeroize::Zeroizing::new(b"correct horse".to_vec()),
    )])
}

fn keyed_options(base: StorageOptions) -> StorageOptions {
    base.with_secrets(secrets())
        .with_key_secret(Some("sec0".into()))
}

#[test]
fn a_qemu_img_luks_image_reads_as_in_qemu_img() {
    let fx = Fixture::new();
    fx.sh(&format!(
        "qemu-img create -q -f luks --object '{SECRET}' -o key-secret=sec0,iter-time=10 q.luks 4M && \
         qemu-io --object '{SECRET}' --image-opts -c 'write -P 0x5a 0 4k' -c 'write -P 0x6b 1M 64k' \
           driver=luks,key-secret=sec0,file.filename=q.luks >/dev/null"
    ));
    // info needs no secret; with one it says the same.
    for with_secret in [false, true] {
        let mut args = vec!["info", "--output=json"];
        if with_secret {
            args.extend(["--object", SECRET]);
        }
        args.push("q.luks");
        let (q, m) = common::assert_same_answer(&fx, &args);
        assert!(stdout(&m).contains("\"encrypted\": true"), "{}", stdout(&q));
    }
    common::assert_same_answer(&fx, &["info", "q.luks"]);
    // The content, through --image-opts as people write it
    // (xtruder/notes, apps/qemu.md: qemu-img convert --image-opts --object
    // secret,id=sec0,file=pass.b64,format=base64 -O qcow2
    // driver=luks,file.driver=file,file.filename=...,key-secret=sec0 out).
    fx.sh("printf '%s' 'correct horse' | base64 > pass.b64");
    let out = fx.qimg(&[
        "convert",
        "--image-opts",
        "--object",
        "secret,id=sec0,file=pass.b64,format=base64",
        "-O",
        "qcow2",
        "driver=luks,file.driver=file,file.filename=q.luks,key-secret=sec0",
        "plain.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_clean("plain.qcow2");
    assert_same_as_raw(&fx, "luks", "q.luks", "plain.qcow2");
    let map = [
        "map",
        "--output=json",
        "--object",
        SECRET,
        &keyed("luks", "q.luks"),
    ];
    common::assert_same_answer(&fx, &map);
}

#[test]
fn an_encrypted_qcow2_from_qemu_img_converts_to_plain_and_back() {
    let fx = Fixture::new();
    fx.sh(&format!(
        "qemu-img create -q -f qcow2 --object '{SECRET}' \
           -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 e.qcow2 4M && \
         qemu-io --object '{SECRET}' --image-opts -c 'write -P 0x44 0 4k' -c 'write -P 0x33 1M 64k' \
           -c 'write -z 2M 64k' driver=qcow2,encrypt.key-secret=sec0,file.filename=e.qcow2 >/dev/null"
    ));
    common::assert_same_answer(&fx, &["info", "--output=json", "e.qcow2"]);
    common::assert_same_answer(&fx, &["info", "e.qcow2"]);
    let e = keyed("qcow2", "e.qcow2");
    common::assert_same_answer(&fx, &["map", "--output=json", "--object", SECRET, &e]);
    let out = fx.qimg(&[
        "convert",
        "--object",
        SECRET,
        "-O",
        "qcow2",
        &e,
        "plain.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_clean("plain.qcow2");
    assert_same_as_raw(&fx, "qcow2", "e.qcow2", "plain.qcow2");
    // Back, encrypted by qimg: qemu-img opens it with the same secret.
    let out = fx.qimg(&[
        "convert",
        "--object",
        SECRET,
        "-O",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        "plain.qcow2",
        "back.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_clean_encrypted(&fx, "back.qcow2");
    assert_same_as_raw(&fx, "qcow2", "back.qcow2", "plain.qcow2");
    // qimg's own check counts the LUKS area as used: nothing leaks, and a
    // leak repair leaves the key slots alone.
    for image in ["e.qcow2", "back.qcow2"] {
        let name = keyed("qcow2", image);
        common::assert_same_answer(&fx, &["check", "--object", SECRET, &name]);
        let out = fx.qimg(&["check", "-r", "leaks", "--object", SECRET, &name]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        assert_clean_encrypted(&fx, image);
    }
    assert_same_as_raw(&fx, "qcow2", "back.qcow2", "plain.qcow2");
    // qemu-img sees the same LUKS layout it makes (cluster 4, 2 MiB area).
    let info = fx.qemu_img(&["info", "--output=json", "back.qcow2"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let enc = &v["format-specific"]["data"]["encrypt"];
    assert_eq!(enc["format"], "luks", "{v}");
    assert_eq!(enc["cipher-alg"], "aes-256");
    assert_eq!(enc["payload-offset"], 2068480);
    assert_eq!(v["encrypted"], true);
}

#[test]
fn luks_images_made_by_qimg_open_in_qemu_img() {
    let fx = Fixture::new();
    source_raw(&fx);
    let out = fx.qimg(&[
        "convert",
        "--object",
        SECRET,
        "-O",
        "luks",
        "-o",
        "key-secret=sec0,iter-time=10",
        "src.raw",
        "m.luks",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_as_raw(&fx, "luks", "m.luks", "src.raw");
    // As qemu-img, every payload sector is written (zeros too): the
    // file holds the payload whole.
    let len = std::fs::metadata(fx.path("m.luks")).unwrap().len();
    assert_eq!(len, 2068480 + 5 * 1024 * 1024);
    // luks -> encrypted qcow2 -> luks, all by qimg, all read by qemu-img.
    let m = keyed("luks", "m.luks");
    let out = fx.qimg(&[
        "convert",
        "--object",
        SECRET,
        "-O",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,cluster_size=4k",
        &m,
        "m.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_clean_encrypted(&fx, "m.qcow2");
    assert_same_as_raw(&fx, "qcow2", "m.qcow2", "src.raw");
    let out = fx.qimg(&[
        "create",
        "-f",
        "luks",
        "--object",
        SECRET,
        "-o",
        "key-secret=sec0,iter-time=10,cipher-alg=aes-128,hash-alg=sha1",
        "small.luks",
        "1M",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "Formatting 'small.luks', fmt=luks size=1048576 key-secret=sec0 cipher-alg=aes-128 hash-alg=sha1 iter-time=10"
    );
    let info = fx.qemu_img(&["info", "--output=json", "small.luks"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["format-specific"]["data"]["cipher-alg"], "aes-128");
    assert_eq!(v["format-specific"]["data"]["hash-alg"], "sha1");
    assert_eq!(v["format-specific"]["data"]["payload-offset"], 2056 * 512);
    let q = fx.qemu_img(&[
        "convert",
        "--object",
        SECRET,
        "-O",
        "raw",
        &keyed("luks", "small.luks"),
        "small.raw",
    ]);
    assert!(q.status.success(), "{}", stderr(&q));
}

#[test]
fn a_wrong_or_missing_secret_is_one_clear_error_and_a_file_secret_works() {
    let fx = Fixture::new();
    fx.sh(&format!(
        "qemu-img create -q -f luks --object '{SECRET}' -o key-secret=sec0,iter-time=0 q.luks 1M && \
         qemu-img create -q -f qcow2 --object '{SECRET}' \
           -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=0 e.qcow2 1M"
    ));
    for (driver, file, option) in [
        ("luks", "q.luks", "key-secret"),
        ("qcow2", "e.qcow2", "encrypt.key-secret"),
    ] {
        let name = keyed(driver, file);
        let out = fx.qimg(&[
            "convert",
            "--object",
            "secret,id=sec0,data=wrong",
            "-O",
            "raw",
            &name,
            "x.raw",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("Invalid password, cannot unlock any keyslot"),
            "{err}"
        );
        assert!(!fx.path("x.raw").exists(), "nothing is written");
        // No secret: the ciphertext is not read as data.
        for args in [
            vec!["convert", "-O", "raw", file, "x.raw"],
            vec!["map", "--output=json", file],
        ] {
            let out = fx.qimg(&args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = stderr(&out);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.contains(&format!("Parameter '{option}' is required for cipher")),
                "{err}"
            );
        }
        let out = fx.qimg(&[
            "convert",
            "--object",
            "secret,id=sec1,data=x",
            "-O",
            "raw",
            &name,
            "x.raw",
        ]);
        assert!(
            stderr(&out).contains("No secret with id 'sec0'"),
            "{}",
            stderr(&out)
        );
        // The secret from a file, as libvirt and cinder pass it.
        fx.write("key.txt", b"correct horse");
        let out = fx.qimg(&[
            "compare",
            "--object",
            "secret,id=sec0,format=raw,file=key.txt",
            &name,
            &name,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // create without the secret's id: qemu-img's words.
    let out = fx.qimg(&["create", "-f", "luks", "n.luks", "1M"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Parameter 'key-secret' is required for cipher"),
        "{}",
        stderr(&out)
    );
    // Compressed clusters cannot be encrypted.
    let out = fx.qimg(&[
        "convert",
        "-c",
        "--object",
        SECRET,
        "-O",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=0",
        "-f",
        "qcow2",
        "e.qcow2",
        "c.qcow2",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn plaintext_never_reaches_the_image_file() {
    let fx = Fixture::new();
    let marker = b"QIMG-PLAINTEXT-MARKER-0123456789";
    let mut data = Vec::new();
    while data.len() < 3 << 20 {
        data.extend_from_slice(marker);
    }
    fx.write("plain.raw", &data);
    for (fmt, opts) in [
        ("luks", "key-secret=sec0,iter-time=0"),
        (
            "qcow2",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=0",
        ),
    ] {
        let target = format!("t.{fmt}");
        let out = fx.qimg(&[
            "convert",
            "--object",
            SECRET,
            "-f",
            "raw",
            "-O",
            fmt,
            "-o",
            opts,
            "plain.raw",
            &target,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let bytes = fx.read(&target);
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "{fmt}: the plaintext is in the image file"
        );
        assert!(
            !bytes.windows(13).any(|w| w == b"correct horse"),
            "{fmt}: the passphrase is in the image file"
        );
        assert_eq!(
            guest_by_qemu(&fx, if fmt == "luks" { "luks" } else { "qcow2" }, &target)[..data.len()],
            data[..]
        );
    }
    // No file but the inputs, the outputs and qemu-img's copy was left.
    let mut names: Vec<String> = std::fs::read_dir(fx.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["guest-q.raw", "plain.raw", "t.luks", "t.qcow2"]);
}

/// Writes into 64 KiB slots of a LUKS image over `fault`, flushing now
/// and then; returns how many ops were flushed.
fn slot_writes(image: &Luks, ops: &[Option<(u64, u8)>]) -> usize {
    let mut flushed = 0;
    for (i, op) in ops.iter().enumerate() {
        let r = match op {
            Some((s, b)) => image.write(s << 16, &vec![*b; 1 << 16]),
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

#[test]
fn a_crash_at_any_write_of_a_luks_image_leaves_old_or_new_slots() {
    let fx = Fixture::new();
    fx.sh(&format!(
        "qemu-img create -q -f luks --object '{SECRET}' -o key-secret=sec0,iter-time=0 c0.luks 1M && \
         qemu-io --object '{SECRET}' --image-opts -c 'write -P 0x77 0 1M' \
           driver=luks,key-secret=sec0,file.filename=c0.luks >/dev/null"
    ));
    let bytes = fx.read("c0.luks");
    let initial = guest_by_qemu(&fx, "luks", "c0.luks");
    let ops: Vec<Option<(u64, u8)>> = vec![
        Some((3, 1)),
        Some((7, 2)),
        None,
        Some((0, 3)),
        Some((15, 4)),
        Some((8, 5)),
        None,
        Some((9, 6)),
        None,
    ];
    let options = keyed_options(StorageOptions::default());
    let open = |n: u64| {
        let fault = Arc::new(FaultStorage::new(fx.path("c.luks"), bytes.clone(), n));
        let image = Luks::open(Box::new(fault.clone()), &options).expect("open");
        (fault, image)
    };
    let total = {
        let (fault, image) = open(u64::MAX);
        slot_writes(&image, &ops);
        fault.writes()
    };
    assert!(total >= 6, "only {total} writes");
    for n in 0..=total {
        let (fault, image) = open(n);
        let flushed = slot_writes(&image, &ops);
        drop(image);
        for (k, state) in fault.crash_states(n).into_iter().enumerate() {
            fx.write("crash.luks", &state);
            let got = guest_by_qemu(&fx, "luks", "crash.luks");
            assert_eq!(got.len(), initial.len());
            for (i, op) in ops.iter().enumerate() {
                let Some((s, b)) = op else { continue };
                let r = (s << 16) as usize..((s + 1) << 16) as usize;
                let is_new = got[r.clone()].iter().all(|x| x == b);
                let is_old = got[r.clone()] == initial[r.clone()];
                assert!(
                    is_new || is_old,
                    "crash {n}/{total} state {k}: slot {s} torn"
                );
                if i < flushed {
                    assert!(is_new, "crash {n}/{total} state {k}: flushed slot {s} lost");
                }
            }
        }
    }
}

#[test]
fn a_convert_into_an_encrypted_qcow2_cut_after_any_change_stays_consistent() {
    let fx = Fixture::new();
    // A small source: every change of the copy is a crash point.
    fx.sh(&format!(
        "qemu-img create -q -f raw src.raw 1M && \
         qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 512k 4k' src.raw >/dev/null && \
         head -c 65536 /dev/urandom | dd of=src.raw bs=64k seek=12 conv=notrunc status=none && \
         qemu-img create -q -f qcow2 --object '{SECRET}' \
           -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=0 dst.qcow2 1M"
    ));
    let empty = fx.read("dst.qcow2");
    let src = fx.read("src.raw");
    let total = common::uncut_convert_with(&fx, "dst.qcow2", "qcow2", keyed_options);
    assert_same_as_raw(&fx, "qcow2", "dst.qcow2", "src.raw");
    assert!(total >= 4, "only {total} changes");
    for n in 0..total {
        let reset = ("dst.qcow2", empty.as_slice());
        let cut =
            common::cut_convert_with(&fx, "dst.qcow2", "qcow2", reset, n, total, keyed_options);
        assert!(cut.crashed, "no crash at {n}/{total}");
        let pattern = cut.pattern;
        // Leaks at most (exit 0 or 3), never corruption.
        let check = fx.qemu_img(&["check", "--object", SECRET, &keyed("qcow2", "dst.qcow2")]);
        assert!(
            matches!(check.status.code(), Some(0 | 3)),
            "cut after {n}/{total} (pattern {pattern}): {}{}",
            stdout(&check),
            stderr(&check)
        );
        // Every 64 KiB cluster reads as the source or as zeros.
        let got = guest_by_qemu(&fx, "qcow2", "dst.qcow2");
        for (c, (have, want)) in got.chunks(1 << 16).zip(src.chunks(1 << 16)).enumerate() {
            assert!(
                have == want || have.iter().all(|&x| x == 0),
                "cut after {n}/{total} (pattern {pattern}): cluster {c} is neither old nor new"
            );
        }
    }
}

/// A change to a header's bytes.
type Patch = Box<dyn Fn(&mut Vec<u8>)>;

/// A LUKS image of qemu-img's with `patch` applied to its header bytes.
fn patched(fx: &Fixture, name: &str, patch: impl Fn(&mut Vec<u8>)) {
    let mut b = fx.read("good.luks");
    patch(&mut b);
    fx.write(name, &b);
}

#[test]
fn malformed_luks_headers_are_one_clear_error() {
    let fx = Fixture::new();
    fx.sh(&format!(
        "qemu-img create -q -f luks --object '{SECRET}' -o key-secret=sec0,iter-time=0 good.luks 1M"
    ));
    let be32 = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let slot0 = 208;
    let cases: Vec<(&str, Patch, &str)> = vec![
        (
            "keybytes.luks",
            Box::new(move |b| be32(b, 108, 0x7fff_ffff)),
            "key bytes",
        ),
        (
            "stripes.luks",
            Box::new(move |b| be32(b, slot0 + 44, 3999)),
            "stripes 3999 != 4000",
        ),
        (
            "slotoff.luks",
            Box::new(move |b| be32(b, slot0 + 40, 0x00ff_ffff)),
            "Keyslot 0",
        ),
        (
            "iters.luks",
            Box::new(move |b| be32(b, slot0 + 4, u32::MAX)),
            "PBKDF2 iterations",
        ),
        (
            "mkiters.luks",
            Box::new(move |b| be32(b, 164, u32::MAX)),
            "PBKDF2 iterations",
        ),
        (
            "cipher.luks",
            Box::new(|b| b[8..11].copy_from_slice(b"des")),
            "cipher 'des'",
        ),
        (
            "mode.luks",
            Box::new(|b| b[40..43].copy_from_slice(b"cbc")),
            "cipher mode",
        ),
        (
            "hash.luks",
            Box::new(|b| b[72..78].copy_from_slice(b"md4\0\0\0")),
            "hash algorithm 'md4'",
        ),
        ("truncated.luks", Box::new(|b| b.truncate(300)), "truncated"),
        ("version.luks", Box::new(|b| b[7] = 2), "LUKS version 2"),
        (
            "state.luks",
            Box::new(move |b| be32(b, slot0 + 48, 0x1234)),
            "unknown state",
        ),
    ];
    for (name, patch, want) in &cases {
        patched(&fx, name, patch);
        for args in [
            vec!["info", "-f", "luks", name],
            vec![
                "convert",
                "--object",
                SECRET,
                "-O",
                "raw",
                &keyed("luks", name),
                "out.raw",
            ],
        ] {
            let started = std::time::Instant::now();
            let out = fx.qimg(&args);
            assert_eq!(out.status.code(), Some(1), "{name}: {args:?}");
            let err = stderr(&out);
            assert_eq!(err.lines().count(), 1, "{name}: {err}");
            assert!(
                err.contains(want) && !err.contains("panicked"),
                "{name}: {err}"
            );
            assert!(started.elapsed().as_secs() < 10, "{name} took too long");
            assert!(!fx.path("out.raw").exists(), "{name}: nothing is written");
        }
    }
    // The payload offset past the end of the file.
    patched(&fx, "payload.luks", |b| {
        b[104..108].copy_from_slice(&0x0100_0000u32.to_be_bytes())
    });
    let out = fx.qimg(&["info", "payload.luks"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("payload"), "{}", stderr(&out));
}

#[test]
fn resize_changes_a_luks_payload_as_qemu_img_does() {
    let fx = Fixture::new();
    fx.sh(&format!(
        "qemu-img create -q -f luks --object '{SECRET}' -o key-secret=sec0,iter-time=0 a.luks 2M && \
         qemu-io --object '{SECRET}' --image-opts -c 'write -P 0x5a 0 1M' \
           driver=luks,key-secret=sec0,file.filename=a.luks >/dev/null && cp a.luks b.luks"
    ));
    let args = |tool_file: &str, size: &str| {
        vec![
            "resize".to_string(),
            "--object".into(),
            SECRET.into(),
            "--image-opts".into(),
            format!("driver=luks,key-secret=sec0,file.filename={tool_file}"),
            size.into(),
        ]
    };
    let ours = args("a.luks", "+3M");
    let out = fx.qimg(&ours.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Image resized.\n");
    let theirs = args("b.luks", "+3M");
    let out = fx.qemu_img(&theirs.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    // The same key, the same IVs: even the grown noise is the same.
    let cmp = fx.qemu_img(&[
        "compare",
        "--object",
        SECRET,
        &keyed("luks", "a.luks"),
        &keyed("luks", "b.luks"),
    ]);
    assert!(cmp.status.success(), "{}{}", stdout(&cmp), stderr(&cmp));
    let info = fx.qemu_img(&["info", "--output=json", "a.luks"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["virtual-size"], 5 << 20);
    // Without the secret: qemu-img's refusal, nothing changed.
    let before = fx.read("a.luks");
    let out = fx.qimg(&["resize", "a.luks", "8M"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Parameter 'key-secret' is required for cipher"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fx.read("a.luks"), before);
}

#[test]
fn whole_sectors_are_planned_for_the_workers_and_land_encrypted() {
    use qimg::format::{GuestOffset, Placement};
    let fx = Fixture::new();
    fx.sh(&format!(
        "qemu-img create -q -f luks --object '{SECRET}' -o key-secret=sec0,iter-time=0 w.luks 1M"
    ));
    let options = keyed_options(StorageOptions::default());
    let storage = qimg::io::FileStorage::open_rw(&fx.path("w.luks")).expect("open");
    let image = Luks::open(Box::new(storage), &options).expect("open");
    // Whole sectors: one host piece the engine's workers write (through
    // the data storage, which encrypts); a partial sector: done here.
    let pieces = image.plan_write(GuestOffset(4096), 8192).unwrap();
    let [Placement::Host { host, len, .. }] = pieces[..] else {
        panic!("{pieces:?}")
    };
    assert_eq!((host.0, len), (2068480 + 4096, 8192));
    image
        .data_storage()
        .write_data_vectored_at(&[&[0xab; 4096], &[0xcd; 4096]], host.0)
        .unwrap();
    image.publish(&pieces).unwrap();
    let pieces = image.plan_write(GuestOffset(100), 10).unwrap();
    assert!(
        matches!(pieces[..], [Placement::Serial { .. }]),
        "{pieces:?}"
    );
    image.write(100, &[0xef; 10]).unwrap();
    image.flush().unwrap();
    drop(image);
    let got = guest_by_qemu(&fx, "luks", "w.luks");
    assert_eq!(&got[4096..8192], &[0xab; 4096][..]);
    assert_eq!(&got[8192..12288], &[0xcd; 4096][..]);
    assert_eq!(&got[100..110], &[0xef; 10][..]);
    let raw = fx.read("w.luks");
    assert!(!raw.windows(64).any(|w| w == [0xab; 64] || w == [0xcd; 64]));
}
