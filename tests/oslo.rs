//! OpenStack reads `qemu-img info` through oslo.utils' `QemuImgInfo`
//! (oslo_utils/imageutils): its JSON parser (current release) and its
//! human-format parser (7.x releases, still used by older nova and cinder).
//! Both must give the same attributes for qimg's `info` as for qemu-img's,
//! on every kind of image. The parsers run from virtualenvs that `.ci/run`
//! creates under target/.

mod common;

use common::{stderr, Fixture};
use std::path::PathBuf;
use std::process::Command;

/// The Python of virtualenv `name` under target/, or a failure telling how
/// to create it.
fn venv_python(name: &str) -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name)
        .join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import oslo_utils.imageutils"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "oslo.utils is not installed in target/{name}: run `bash .ci/run` (it creates \
         target/oslo-venv with oslo.utils and target/oslo7-venv with oslo.utils 7.x)"
    );
    python
}

/// The images: plain, over a backing file, with a snapshot, compressed,
/// QED, raw.
fn images(fx: &Fixture) -> Vec<&'static str> {
    fx.sh("qemu-img create -q -f raw raw.img 4M
         qemu-io -f raw -c 'write -P 0x5a 0 1M' raw.img >/dev/null
         qemu-img convert -f raw -O qcow2 raw.img plain.qcow2
         qemu-img create -q -f qcow2 -b plain.qcow2 -F qcow2 top.qcow2
         qemu-io -f qcow2 -c 'write -P 0x22 1M 64k' top.qcow2 >/dev/null
         qemu-img convert -f raw -O qcow2 raw.img snap.qcow2
         qemu-img snapshot -c before snap.qcow2
         qemu-img convert -c -f raw -O qcow2 raw.img zip.qcow2
         qemu-img convert -f raw -O qed raw.img disk.qed
         qemu-img create -q -f qed -b disk.qed -F qed top.qed");
    vec![
        "plain.qcow2",
        "top.qcow2",
        "snap.qcow2",
        "zip.qcow2",
        "disk.qed",
        "top.qed",
        "raw.img",
    ]
}

/// `QemuImgInfo(text, format=parser)` attributes for each of `texts`, one
/// JSON object each, from the virtualenv `venv`.
fn parse(fx: &Fixture, venv: &str, parser: &str, texts: &[String]) -> Vec<serde_json::Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oslo/qemu_img_info.py");
    let mut files = Vec::new();
    for (n, text) in texts.iter().enumerate() {
        let path = fx.path(&format!("info-{venv}-{parser}-{n}.txt"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    let out = Command::new(venv_python(venv))
        .arg(&script)
        .arg(parser)
        .args(&files)
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `info` of `image` (with `extra` flags) by qemu-img and by qimg.
fn both_infos(fx: &Fixture, extra: &[&str], image: &str) -> (String, String) {
    let mut args = vec!["info"];
    args.extend(extra);
    args.push(image);
    let q = fx.qemu_img(&args);
    let i = fx.qimg(&args);
    assert!(q.status.success(), "{}", stderr(&q));
    assert!(i.status.success(), "{}", stderr(&i));
    (
        String::from_utf8(q.stdout).unwrap(),
        String::from_utf8(i.stdout).unwrap(),
    )
}

/// JSON info split into one object per image (a --backing-chain list gives
/// several; OpenStack parses each).
fn objects(text: &str) -> Vec<String> {
    match serde_json::from_str::<serde_json::Value>(text).unwrap() {
        serde_json::Value::Array(list) => list.iter().map(|v| v.to_string()).collect(),
        one => vec![one.to_string()],
    }
}

#[test]
fn oslo_json_parser_reads_qimg_s_info_as_qemu_img_s() {
    let fx = Fixture::new();
    for venv in ["oslo-venv", "oslo7-venv"] {
        for image in images(&fx) {
            for extra in [
                &["--output=json"][..],
                &["--output=json", "--backing-chain"],
            ] {
                let (q, i) = both_infos(&fx, extra, image);
                let (q, i) = (objects(&q), objects(&i));
                assert_eq!(q.len(), i.len(), "{image} {extra:?}");
                let theirs = parse(&fx, venv, "json", &q);
                let ours = parse(&fx, venv, "json", &i);
                assert_eq!(ours, theirs, "{venv}: {image} {extra:?}");
                assert!(theirs[0]["virtual_size"].as_u64().is_some(), "{theirs:?}");
            }
        }
    }
}

#[test]
fn oslo_7_human_parser_reads_qimg_s_info_as_qemu_img_s() {
    let fx = Fixture::new();
    for image in images(&fx) {
        for extra in [&[][..], &["--backing-chain"]] {
            let (q, i) = both_infos(&fx, extra, image);
            let theirs = parse(&fx, "oslo7-venv", "human", &[q]);
            let ours = parse(&fx, "oslo7-venv", "human", &[i]);
            assert_eq!(ours, theirs, "{image} {extra:?}");
            if extra.is_empty() {
                assert_eq!(theirs[0]["image"], image);
            }
        }
    }
}
