//! `--untrusted`: an image from a stranger is read as data only. Each
//! attack file names something outside itself (a host file as data file,
//! backing file or VMDK extent, a network URL, a `json:` name); under
//! `--untrusted` the command refuses it in one line and never opens it,
//! which strace sees from the outside. Without the flag qimg behaves as
//! before (and the trace shows the name opened, so the check can fail).

mod common;

use common::{require_tool, stderr, stdout, Fixture};
use std::process::Output;

/// A host file the attack images point at, outside their directory.
const SECRET: &str = "../outside/secret.txt";

/// The attack images, each with the name it smuggles in.
fn attack_files(fx: &Fixture) -> Vec<(&'static str, &'static str)> {
    fx.sh("mkdir -p outside img
         printf 'host secret, not guest data\\n' > outside/secret.txt
         cd img
         # qemu-img create truncates the data file it is given (tests may
         # run as root): the images are made with a name of the same length
         # beside them, which is then patched in the header extension.
         qemu-img create -q -f qcow2 -o data_file=DDDDDDDDDDD df-abs.qcow2 1M
         perl -pi -e 's|DDDDDDDDDDD|/etc/passwd|' df-abs.qcow2
         qemu-img create -q -f qcow2 -o data_file=RRRRRRRRRRRRRRRRRRRRR,data_file_raw=on \
             df-rel.qcow2 1M
         perl -pi -e 's|RRRRRRRRRRRRRRRRRRRRR|../outside/secret.txt|' df-rel.qcow2
         qemu-img info df-abs.qcow2 | grep -q 'data file: /etc/passwd'
         qemu-img info df-rel.qcow2 | grep -q 'data file: ../outside/secret.txt'
         qemu-img create -q -f qcow2 -u -b /etc/shadow -F raw bk-shadow.qcow2 1M
         qemu-img create -q -f qcow2 -u -b ../outside/secret.txt -F raw bk-rel.qcow2 1M
         qemu-img create -q -f qcow2 -u -b nbd://127.0.0.1:10809/disk -F raw bk-nbd.qcow2 1M
         qemu-img create -q -f qcow2 -u -b https://127.0.0.1:8443/base.raw -F raw bk-https.qcow2 1M
         qemu-img create -q -f qcow2 -u -F raw \
             -b 'json:{\"driver\":\"file\",\"filename\":\"../outside/secret.txt\"}' bk-json.qcow2 1M
         qemu-img create -q -f vmdk -o subformat=monolithicFlat ext.vmdk 1M
         sed -i 's|\"ext-flat.vmdk\"|\"/etc/passwd\"|' ext.vmdk
         grep -q '\"/etc/passwd\"' ext.vmdk");
    vec![
        ("df-abs.qcow2", "/etc/passwd"),
        ("df-rel.qcow2", SECRET),
        ("bk-shadow.qcow2", "/etc/shadow"),
        ("bk-rel.qcow2", SECRET),
        ("bk-nbd.qcow2", "nbd://127.0.0.1:10809/disk"),
        ("bk-https.qcow2", "https://127.0.0.1:8443/base.raw"),
        ("bk-json.qcow2", "secret.txt"),
        ("ext.vmdk", "/etc/passwd"),
    ]
}

/// Runs qimg with `args` in img/ under strace, with the trace of every
/// file open and network connection it made (failed attempts included).
fn traced(fx: &Fixture, args: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    common::strace_qimg(fx, "img", "openat,open,connect", args, env)
}

/// Whether the trace opened (or tried to open) `name`, or connected
/// anywhere for a URL.
fn touched(trace: &str, name: &str) -> bool {
    if name.contains("://") {
        return trace
            .lines()
            .any(|l| l.contains("connect(") && l.contains("AF_INET"));
    }
    let file = name.rsplit('/').next().unwrap_or(name);
    trace
        .lines()
        .filter(|l| l.contains("open"))
        .any(|l| l.split('"').nth(1).is_some_and(|p| p.ends_with(file)))
}

#[test]
fn untrusted_refuses_every_name_an_image_smuggles_in_and_opens_none() {
    require_tool("strace");
    let fx = Fixture::new();
    for (image, name) in attack_files(&fx) {
        let out_name = format!("{image}.raw");
        for (args, env) in [
            (
                vec!["convert", "--untrusted", "-O", "raw", image, &out_name],
                vec![],
            ),
            (
                vec!["convert", "-O", "raw", image, &out_name],
                vec![("QIMG_UNTRUSTED", "1")],
            ),
            (vec!["map", "--untrusted", image], vec![]),
            (vec!["compare", "--untrusted", image, image], vec![]),
        ] {
            let (out, trace) = traced(&fx, &args, &env);
            let err = stderr(&out);
            // compare's errors exit 2, as qemu-img's do (1 means "differ").
            let code = if args[0] == "compare" { 2 } else { 1 };
            assert_eq!(out.status.code(), Some(code), "{args:?} {env:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
            assert!(
                err.contains(image) && err.contains("--untrusted"),
                "{args:?}: {err}"
            );
            assert!(!touched(&trace, name), "{args:?} touched {name}:\n{trace}");
            assert!(
                !fx.path("img").join(&out_name).exists(),
                "{args:?}: nothing is written"
            );
        }
    }
}

#[test]
fn info_and_check_describe_an_untrusted_image_and_list_what_they_refused() {
    require_tool("strace");
    let fx = Fixture::new();
    for (image, name) in attack_files(&fx) {
        let (out, trace) = traced(&fx, &["info", "--untrusted", "--output=json", image], &[]);
        assert!(out.status.success(), "info {image}: {}", stderr(&out));
        assert!(
            !touched(&trace, name),
            "info {image} touched {name}:\n{trace}"
        );
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["virtual-size"], 1 << 20, "{image}: {v}");
        let refused = v["refused"].as_array().expect("a refused list");
        assert_eq!(refused.len(), 1, "{image}: {v}");
        let kind = refused[0]["kind"].as_str().unwrap();
        let expected = match &image[..2] {
            "df" => "data-file",
            "bk" => "backing-file",
            _ => "extent-file",
        };
        assert_eq!(kind, expected, "{image}: {v}");
        assert!(
            refused[0]["name"].as_str().unwrap().contains(name),
            "{image}: {v}"
        );

        if image.ends_with(".qcow2") {
            let (out, trace) = traced(&fx, &["check", "--untrusted", image], &[]);
            let text = stdout(&out);
            assert!(out.status.success(), "check {image}: {}", stderr(&out));
            assert!(
                text.contains("No errors were found on the image."),
                "{text}"
            );
            assert!(text.contains("refused (--untrusted): "), "{text}");
            assert!(!touched(&trace, name), "check {image} touched {name}");
        }
    }
    // A clean image reports an empty list: nothing was refused.
    fx.sh("cd img && qemu-img create -q -f qcow2 clean.qcow2 1M");
    let (out, _) = traced(
        &fx,
        &["info", "--untrusted", "--output=json", "clean.qcow2"],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["refused"], serde_json::json!([]));
    // Without --untrusted the key is absent, as in qemu-img's output.
    let (out, _) = traced(&fx, &["info", "--output=json", "clean.qcow2"], &[]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v.get("refused").is_none(), "{v}");
}

#[test]
fn without_untrusted_the_names_are_followed_as_before() {
    require_tool("strace");
    let fx = Fixture::new();
    attack_files(&fx);
    // The data file is read as guest data: the attack qimg guards against.
    let (out, trace) = traced(
        &fx,
        &["convert", "-O", "raw", "df-rel.qcow2", "out.raw"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        touched(&trace, SECRET),
        "the trusted convert opens the data file"
    );
    let data = fx.read("img/out.raw");
    assert!(
        data.starts_with(b"host secret"),
        "the data file became guest data"
    );
    let (out, trace) = traced(&fx, &["info", "--backing-chain", "bk-rel.qcow2"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(touched(&trace, SECRET));
    // QIMG_UNTRUSTED=0 is off, like no variable at all.
    let (out, trace) = traced(&fx, &["map", "bk-rel.qcow2"], &[("QIMG_UNTRUSTED", "0")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(touched(&trace, SECRET));
}

#[test]
fn untrusted_images_without_names_convert_as_usual_but_qed_is_refused() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 up.qcow2 4M
         qemu-io -c 'write -P 7 0 1M' up.qcow2 >/dev/null
         qemu-img create -q -f qed up.qed 4M");
    let out = fx.qimg(&["convert", "--untrusted", "-O", "raw", "up.qcow2", "up.raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("up.qcow2", "up.raw");
    let out = fx.qimg(&["convert", "--untrusted", "-O", "raw", "up.qed", "qed.raw"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("QED"), "{}", stderr(&out));
    assert!(!fx.path("qed.raw").exists());
    // info still describes it, and says why it would be refused.
    let out = fx.qimg(&["info", "--untrusted", "--output=json", "up.qed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["refused"][0]["kind"], "format", "{v}");
}
