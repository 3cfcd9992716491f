//! qimg as a drop-in for qemu-img's command line: each test runs the same
//! command line with qemu-img and with qimg on the same input and compares
//! the exit code, the line a script reads, and the resulting image.

mod common;

use common::{stderr, stdout, Fixture};
use std::path::PathBuf;
use std::process::Output;

/// qimg under the name `qemu-img`: a symlink in the fixture, as the README
/// tells users to install it.
fn qemu_img_link(fx: &Fixture) -> PathBuf {
    let dir = fx.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("qemu-img");
    if !link.exists() {
        std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("qimg"), &link).unwrap();
    }
    link
}

/// Runs qimg started as `qemu-img` (through the symlink).
fn as_qemu_img(fx: &Fixture, args: &[&str]) -> Output {
    let link = qemu_img_link(fx);
    std::process::Command::new(&link)
        .args(args)
        .current_dir(fx.dir())
        .output()
        .expect("run the qemu-img symlink")
}

/// The value of `key` in `info --output=json` of `image`, read by qemu-img.
fn info_field(fx: &Fixture, image: &str, key: &str) -> serde_json::Value {
    let out = fx.qemu_img(&["info", "--output=json", image]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[key].clone()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Runs `args` with qemu-img (targets named with `.q`) and with qimg
/// (`.i`), where `{}` in an argument stands for that suffix; asserts the
/// same exit code and returns both outputs.
fn both(fx: &Fixture, args: &[&str]) -> (Output, Output) {
    let with =
        |suffix: &str| -> Vec<String> { args.iter().map(|a| a.replace("{}", suffix)).collect() };
    let q: Vec<String> = with("q");
    let i: Vec<String> = with("i");
    let q_out = fx.run(
        "qemu-img",
        &q.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let i_out = fx.qimg(&i.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        q_out.status.code(),
        i_out.status.code(),
        "{args:?}\nqemu-img: {}{}\nqimg: {}{}",
        stdout(&q_out),
        stderr(&q_out),
        stdout(&i_out),
        stderr(&i_out)
    );
    (q_out, i_out)
}

fn sources(fx: &Fixture) {
    fx.sh("qemu-img create -q -f raw in.raw 4M
         qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x33 3M 64k' in.raw >/dev/null
         qemu-img convert -f raw -O qcow2 in.raw in.qcow2
         qemu-img snapshot -c sn1 in.qcow2
         qemu-io -f qcow2 -c 'write -P 0x77 0 64k' in.qcow2 >/dev/null");
}

#[test]
fn options_between_file_names_are_taken_as_qemu_img_takes_them() {
    let fx = Fixture::new();
    sources(&fx);
    for args in [
        &["convert", "in.qcow2", "-O", "raw", "a.{}"][..],
        &["convert", "-f", "raw", "in.raw", "-O", "qcow2", "b.{}"],
        &["convert", "in.qcow2", "-l", "sn1", "-O", "raw", "c.{}"],
        &[
            "convert",
            "-O",
            "qcow2",
            "in.raw",
            "d.{}",
            "-o",
            "cluster_size=4k",
        ],
    ] {
        let _ = both(&fx, args);
        let target = args.iter().find(|a| a.contains("{}")).unwrap();
        fx.assert_same(&target.replace("{}", "q"), &target.replace("{}", "i"));
    }
    // The snapshot's content, not the current one.
    fx.assert_same("c.i", "in.raw");
    assert_eq!(info_field(&fx, "d.i", "cluster-size"), 4096);
    for args in [
        &["info", "in.qcow2", "--output=json", "-f", "qcow2"][..],
        &["check", "in.qcow2", "--output", "json", "-f", "qcow2"],
        &["map", "in.qcow2", "--output=json", "-f", "qcow2"],
    ] {
        let (q, i) = both(&fx, args);
        let parse = |o: &Output| serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap();
        let (mut q, mut i) = (parse(&q), parse(&i));
        for v in [&mut q, &mut i] {
            if let Some(o) = v.as_object_mut() {
                o.remove("actual-size");
                o.remove("children");
            }
        }
        assert_eq!(q, i, "{args:?}");
    }
    let (_, _) = both(&fx, &["create", "e.{}", "-f", "qcow2", "1M", "-q"]);
    assert_eq!(info_field(&fx, "e.i", "format"), "qcow2");
    fx.sh("cp in.qcow2 f.q && cp in.qcow2 f.i");
    let (_, _) = both(&fx, &["rebase", "f.{}", "-u", "-b", "in.raw", "-F", "raw"]);
    assert_eq!(info_field(&fx, "f.i", "backing-filename"), "in.raw");
    for t in ["q", "i"] {
        fx.sh(&format!(
            "cp in.raw gb.{t} && qemu-img create -q -f qcow2 -b gb.{t} -F raw g.{t}
             qemu-io -f qcow2 -c 'write -P 9 0 64k' g.{t} >/dev/null"
        ));
    }
    let _ = both(&fx, &["commit", "g.{}", "-d", "-f", "qcow2", "-q"]);
    fx.assert_same("gb.q", "gb.i");
    fx.assert_same("g.q", "g.i");
    // One file is not enough, with qemu-img's sentence.
    let (q, i) = both(&fx, &["convert", "in.qcow2"]);
    assert_eq!(
        first_line(&stderr(&q)),
        "qemu-img: Must specify image file name"
    );
    assert_eq!(
        first_line(&stderr(&i)),
        "qimg: Must specify image file name"
    );
}

#[test]
fn a_repeated_option_takes_its_last_value_as_with_qemu_img() {
    let fx = Fixture::new();
    sources(&fx);
    let _ = both(
        &fx,
        &[
            "convert", "-f", "qcow2", "-f", "raw", "-O", "raw", "-O", "qcow2", "in.raw", "r.{}",
        ],
    );
    assert_eq!(info_field(&fx, "r.i", "format"), "qcow2");
    fx.assert_same("r.q", "r.i");
    // -o, unlike the others, adds up; a repeated name in it takes the last value.
    let (q, i) = both(
        &fx,
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=4k",
            "-o",
            "lazy_refcounts=on,cluster_size=8k",
            "m.{}",
            "1M",
        ],
    );
    assert_eq!(stdout(&i).replace("m.i", "m.q"), stdout(&q));
    assert!(stdout(&q).contains("cluster_size=8192"), "{}", stdout(&q));
}

#[test]
fn progress_lines_are_qemu_img_s_bytes_on_stdout() {
    let fx = Fixture::new();
    sources(&fx);
    let (q, i) = both(
        &fx,
        &[
            "convert", "-p", "-f", "raw", "-O", "qcow2", "in.raw", "p.{}",
        ],
    );
    assert!(
        stderr(&q).is_empty() && stderr(&i).is_empty(),
        "{}",
        stderr(&i)
    );
    // Both start at 0% and end with 100% twice and a newline (the last
    // update, then the final line); every record is "    (N.NN/100%)\r"
    // and the percentages never go down.
    for text in [stdout(&q), stdout(&i)] {
        assert!(text.starts_with("    (0.00/100%)\r"), "{text:?}");
        assert!(
            text.ends_with("    (100.00/100%)\r    (100.00/100%)\r\n"),
            "{text:?}"
        );
        let mut last = 0.0;
        for record in text.trim_end_matches('\n').split_terminator('\r') {
            let n: f64 = record
                .strip_prefix("    (")
                .and_then(|r| r.strip_suffix("/100%)"))
                .unwrap_or_else(|| panic!("{record:?} in {text:?}"))
                .parse()
                .unwrap();
            assert!(n >= last && n <= 100.0, "{text:?}");
            last = n;
        }
    }
}

#[test]
fn the_version_line_is_qemu_img_s_shape_with_qimg_s_version() {
    let fx = Fixture::new();
    let q = fx.qemu_img(&["--version"]);
    let i = fx.qimg(&["--version"]);
    let version = |o: &Output| {
        let text = stdout(o);
        let rest = first_line(&text)
            .strip_prefix("qemu-img version ")
            .unwrap_or_else(|| panic!("not qemu-img's shape: {text}"))
            .to_string();
        rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        version(&i),
        version(&q),
        "qimg follows the installed qemu-img"
    );
    assert!(first_line(&stdout(&i)).contains(&format!("qimg {}", env!("CARGO_PKG_VERSION"))));
    assert_eq!(stdout(&fx.qimg(&["-V"])), stdout(&i));
}

#[test]
fn started_as_qemu_img_it_speaks_as_qemu_img() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw r.raw 1M");
    for args in [
        &[][..],
        &["nosuchcommand"],
        &["check", "r.raw"],
        &["check", "-f", "raw", "r.raw"],
    ] {
        let q = fx.qemu_img(args);
        let i = as_qemu_img(&fx, args);
        assert_eq!(q.status.code(), i.status.code(), "{args:?}: {}", stderr(&i));
        let q_err = stderr(&q);
        let q_line = q_err.lines().find(|l| l.starts_with("qemu-img:")).unwrap();
        assert_eq!(first_line(&stderr(&i)), q_line, "{args:?}");
    }
    // Errors of a command carry the qemu-img prefix too.
    let out = as_qemu_img(&fx, &["info", "missing.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("qemu-img: "), "{}", stderr(&out));
    // The version banner and the help start as qemu-img's.
    let out = as_qemu_img(&fx, &["--version"]);
    assert!(stdout(&out).starts_with("qemu-img version "));
    let help = stdout(&as_qemu_img(&fx, &["--help"]));
    assert!(help.starts_with("qemu-img version "), "{help}");
    assert!(
        help.contains("qemu-img [standard options] COMMAND"),
        "{help}"
    );
    for sub in [
        "create", "info", "map", "check", "convert", "commit", "rebase",
    ] {
        assert!(
            help.contains(&format!("\n  {sub} - ")),
            "{sub} missing:\n{help}"
        );
    }
    // A bad option: qemu-img's two lines, exit 1.
    let out = as_qemu_img(&fx, &["convert", "-x", "a", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "qemu-img convert: invalid option -- 'x'\nTry 'qemu-img convert --help' for more info\n"
    );
    // qemu-img's standard -T/--trace option before the command is accepted.
    for args in [
        &["-T", "enable=nosuch", "info", "r.raw"][..],
        &["--trace", "enable=nosuch", "info", "r.raw"],
        &["--trace=enable=nosuch", "info", "r.raw"],
    ] {
        let q = fx.qemu_img(args);
        let i = as_qemu_img(&fx, args);
        assert!(
            q.status.success() && i.status.success(),
            "{args:?}: {}",
            stderr(&i)
        );
        assert_eq!(first_line(&stdout(&i)), first_line(&stdout(&q)), "{args:?}");
    }
    // Real work under that name: a convert gives qemu-img's result.
    let out = as_qemu_img(
        &fx,
        &["convert", "-f", "raw", "r.raw", "-O", "qcow2", "r.qcow2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_clean("r.qcow2");
    fx.assert_same("r.raw", "r.qcow2");
}

#[test]
fn check_of_raw_prints_qemu_img_s_sentence_on_the_first_line() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw r.raw 1M");
    let (q, i) = both(&fx, &["check", "-f", "raw", "r.raw"]);
    assert_eq!(q.status.code(), Some(63));
    let sentence = "This image format does not support checks";
    assert_eq!(first_line(&stderr(&q)), format!("qemu-img: {sentence}"));
    assert!(
        first_line(&stderr(&i)).starts_with(&format!("qimg: {sentence}")),
        "{}",
        stderr(&i)
    );
}

#[test]
fn sizes_in_hex_are_taken_as_qemu_img_takes_them() {
    let fx = Fixture::new();
    let _ = both(
        &fx,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=0x10000",
            "h.{}",
            "0x100000",
        ],
    );
    for key in ["virtual-size", "cluster-size"] {
        assert_eq!(info_field(&fx, "h.i", key), info_field(&fx, "h.q", key));
    }
    assert_eq!(info_field(&fx, "h.i", "virtual-size"), 1 << 20);
    // Hex with a suffix is refused by both.
    let (q, i) = both(&fx, &["create", "-q", "-f", "raw", "x.{}", "0x1M"]);
    assert!(stderr(&q).contains("Invalid image size specified: '0x1M'."));
    assert!(
        stderr(&i).contains("Invalid image size specified: '0x1M'."),
        "{}",
        stderr(&i)
    );
}

#[test]
fn a_doubled_comma_in_an_option_value_is_a_comma() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 'a,b.qcow2' 1M");
    let _ = both(
        &fx,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "backing_file=a,,b.qcow2,backing_fmt=qcow2",
            "o.{}",
        ],
    );
    assert_eq!(info_field(&fx, "o.i", "backing-filename"), "a,b.qcow2");
    assert_eq!(
        info_field(&fx, "o.i", "backing-filename"),
        info_field(&fx, "o.q", "backing-filename")
    );
}

#[test]
fn option_help_has_qemu_img_s_shape_and_names() {
    let fx = Fixture::new();
    for (format, file) in [
        ("qcow2", None),
        ("qed", None),
        ("raw", None),
        ("qcow2", Some("x.qcow2")),
    ] {
        let mut args = vec!["create", "-f", format, "-o", "help"];
        args.extend(file);
        let (q, i) = both(&fx, &args);
        let (q, i) = (stdout(&q), stdout(&i));
        assert_eq!(first_line(&i), first_line(&q), "{format}");
        let entries = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("  "))
                .map(|l| l.trim().split(' ').next().unwrap().to_string())
                .collect()
        };
        let theirs = entries(&q);
        let ours = entries(&i);
        assert!(!ours.is_empty());
        for entry in &ours {
            assert!(
                theirs.contains(entry),
                "{format}: qemu-img lists no {entry}:\n{q}"
            );
        }
        // Every line is "  name=<type>  - text", padded as qemu-img pads
        // the same entry.
        let heads = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("  "))
                .map(|l| l[..l.find(" - ").unwrap() + 3].to_string())
                .collect()
        };
        let theirs = heads(&q);
        for head in heads(&i) {
            assert!(
                theirs.contains(&head),
                "{format}: {head:?} not as qemu-img pads it:\n{q}"
            );
        }
    }
}

#[test]
fn convert_with_no_create_refuses_creation_options_as_qemu_img_does() {
    let fx = Fixture::new();
    sources(&fx);
    fx.sh("qemu-img create -q -f raw t.q 4M && qemu-img create -q -f raw t.i 4M");
    let (q, i) = both(
        &fx,
        &["convert", "-n", "-o", "cluster_size=4k", "in.raw", "t.{}"],
    );
    let sentence = "-o has no effect when skipping image creation";
    assert!(stderr(&q).contains(sentence));
    assert!(stderr(&i).contains(sentence), "{}", stderr(&i));
}

#[test]
fn convert_copy_offloading_refuses_what_qemu_img_refuses_in_its_order() {
    let fx = Fixture::new();
    sources(&fx);
    for (args, sentence) in [
        (
            &["-C", "-c"][..],
            "Cannot enable copy offloading when -c is used",
        ),
        (
            &["-C", "-S", "4k"],
            "Cannot enable copy offloading when -S is used",
        ),
        (
            &["-C", "-S", "0"],
            "Cannot enable copy offloading when -S is used",
        ),
        (
            &["-C", "--salvage"],
            "Cannot use copy offloading in salvaging mode",
        ),
        (
            &["-C", "-S", "4k", "-c"],
            "Cannot enable copy offloading when -c is used",
        ),
        (
            &["--salvage", "-C", "-S", "4k"],
            "Cannot enable copy offloading when -S is used",
        ),
        (
            &["-n", "-o", "cluster_size=4k", "-C", "-c"],
            "Cannot enable copy offloading when -c is used",
        ),
    ] {
        let mut full = vec!["convert"];
        full.extend(args);
        full.extend(["-O", "qcow2", "in.raw", "t.{}"]);
        let (q, i) = both(&fx, &full);
        let expected = format!("qemu-img: {sentence}");
        assert_eq!(first_line(&stderr(&q)), expected, "{full:?}");
        assert_eq!(
            first_line(&stderr(&i)),
            format!("qimg: {sentence}"),
            "{full:?}"
        );
    }
    // Alone, -C copies (qimg without an offload).
    let (q, i) = both(&fx, &["convert", "-C", "-O", "qcow2", "in.raw", "c.{}"]);
    assert!(q.status.success() && i.status.success(), "{}", stderr(&i));
    fx.assert_same("c.q", "c.i");
}

#[test]
fn convert_takes_the_backing_format_from_o_backing_fmt_as_from_f() {
    let fx = Fixture::new();
    sources(&fx);
    let _ = both(
        &fx,
        &[
            "convert",
            "-O",
            "qcow2",
            "-B",
            "in.raw",
            "-o",
            "backing_fmt=raw",
            "in.qcow2",
            "k.{}",
        ],
    );
    // vdsm's spelling: the backing file in -o as well.
    let _ = both(
        &fx,
        &[
            "convert",
            "-O",
            "qcow2",
            "-o",
            "backing_file=in.raw,backing_fmt=raw",
            "in.qcow2",
            "v.{}",
        ],
    );
    for t in ["k", "v"] {
        let (q, i) = (format!("{t}.q"), format!("{t}.i"));
        for key in ["backing-filename", "backing-filename-format"] {
            assert_eq!(
                info_field(&fx, &i, key),
                info_field(&fx, &q, key),
                "{t} {key}"
            );
        }
        fx.assert_clean(&i);
        fx.assert_same(&q, &i);
    }
    assert_eq!(info_field(&fx, "k.i", "backing-filename-format"), "raw");
}

#[test]
fn refused_values_carry_qemu_img_s_sentences() {
    let fx = Fixture::new();
    sources(&fx);
    for (args, sentence) in [
        (
            &[
                "convert", "-B", "in.qcow2", "-F", "qcow2", "-O", "raw", "in.qcow2", "x.{}",
            ][..],
            "Backing file not supported for file format 'raw'",
        ),
        (
            &[
                "create", "-f", "raw", "-b", "in.qcow2", "-F", "qcow2", "x.{}", "1M",
            ],
            "Backing file not supported for file format 'raw'",
        ),
        (
            &["info", "-f", "qcow2", "in.raw"],
            "Image is not in qcow2 format",
        ),
        (&["map", "-f", "qed", "in.qcow2"], "Image not in QED format"),
        (
            &["convert", "-T", "bogus", "in.raw", "x.{}"],
            "Invalid source cache option: bogus",
        ),
        (
            &["check", "-T", "bogus", "in.qcow2"],
            "Invalid source cache option: bogus",
        ),
        (
            &["rebase", "-T", "bogus", "-u", "-b", "", "in.qcow2"],
            "Invalid source cache option: bogus",
        ),
        (
            &["convert", "-t", "bogus", "in.raw", "x.{}"],
            "Invalid cache option: bogus",
        ),
        (
            &["convert", "-S", "1000", "in.raw", "x.{}"],
            "Invalid buffer size for sparse output specified",
        ),
        (
            &["convert", "-r", "fast", "in.raw", "x.{}"],
            "Invalid rate limit specified: 'fast'.",
        ),
        (
            &["convert", "-m", "0", "in.raw", "x.{}"],
            "Invalid number of coroutines specified. Must be between 1 and 16.",
        ),
        (
            &["map", "--max-length", "x", "in.raw"],
            "Invalid max length specified: 'x'.",
        ),
        (
            &["create", "-f", "raw", "x.{}", "9223372036854775808"],
            "Invalid image size specified. Must be between 0 and 9223372036854775807.",
        ),
        (
            &[
                "create",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=3000",
                "x.{}",
                "1M",
            ],
            "Cluster size must be a power of two between 512 and 2048k",
        ),
        (
            &[
                "create",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=0x1000k",
                "x.{}",
                "1M",
            ],
            "Parameter 'cluster_size' expects a non-negative number below 2^64",
        ),
        (
            &["create", "-f", "qcow2", "-o", "nosuch=1", "x.{}", "1M"],
            "Invalid parameter 'nosuch'",
        ),
        (
            &[
                "create",
                "-f",
                "raw",
                "-o",
                "preallocation=metadata",
                "x.{}",
                "1M",
            ],
            "Unsupported preallocation mode: metadata",
        ),
        (
            &[
                "create",
                "-f",
                "qed",
                "-o",
                "preallocation=metadata",
                "x.{}",
                "1M",
            ],
            "Unsupported preallocation mode: metadata",
        ),
        (
            &["create", "-f", "qcow2", "-o", "size=abc", "x.{}", "1M"],
            "Parameter 'size' expects a non-negative number below 2^64",
        ),
        (
            &[
                "convert",
                "--skip-broken-bitmaps",
                "-O",
                "qcow2",
                "in.qcow2",
                "x.{}",
            ],
            "Use of --skip-broken-bitmaps requires --bitmaps",
        ),
        (
            &["convert", "--bitmaps", "-O", "raw", "in.qcow2", "x.{}"],
            "Format driver 'raw' does not support bitmaps",
        ),
        (
            &[
                "convert",
                "--bitmaps",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "in.raw",
                "x.{}",
            ],
            "Source lacks bitmap support",
        ),
    ] {
        let (q, i) = both(&fx, args);
        assert_eq!(q.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&q).contains(sentence),
            "{args:?}: qemu-img said {}",
            stderr(&q)
        );
        assert!(
            stderr(&i).contains(sentence),
            "{args:?}: qimg said {}",
            stderr(&i)
        );
    }
}

#[test]
fn valid_cache_modes_and_short_map_flags_work_as_with_qemu_img() {
    let fx = Fixture::new();
    sources(&fx);
    for mode in ["none", "writeback", "unsafe", "directsync", "writethrough"] {
        let _ = both(
            &fx,
            &[
                "convert", "-T", mode, "-t", mode, "-O", "qcow2", "in.qcow2", "c.{}",
            ],
        );
        fx.assert_clean("c.i");
        fx.assert_same("c.q", "c.i");
        let _ = both(&fx, &["check", "-T", mode, "in.qcow2"]);
    }
    let (q, i) = both(
        &fx,
        &["map", "-s", "1M", "-l", "2M", "--output=json", "in.raw"],
    );
    assert_eq!(stdout(&q), stdout(&i));
    let (q, i) = both(
        &fx,
        &[
            "convert",
            "--output-format",
            "qcow2",
            "--output-cache",
            "unsafe",
            "in.raw",
            "l.{}",
        ],
    );
    assert_eq!(q.status.code(), Some(0), "{}", stderr(&q));
    assert!(i.status.success());
    fx.assert_same("l.q", "l.i");
}

#[test]
fn bitmaps_of_a_source_without_bitmaps_convert_as_with_qemu_img() {
    let fx = Fixture::new();
    sources(&fx);
    let _ = both(
        &fx,
        &["convert", "--bitmaps", "-O", "qcow2", "in.qcow2", "b.{}"],
    );
    fx.assert_clean("b.i");
    fx.assert_same("b.q", "b.i");
    // A source with a bitmap: both copy it (tests/bitmap.rs checks the bits).
    fx.sh("qemu-img bitmap --add in.qcow2 b0");
    let _ = both(
        &fx,
        &["convert", "--bitmaps", "-O", "qcow2", "in.qcow2", "c.{}"],
    );
    let listed = |f: &str| {
        let out = fx.qemu_img(&["info", "--output=json", f]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        v["format-specific"]["data"]["bitmaps"].clone()
    };
    assert_eq!(listed("c.i"), listed("c.q"));
    assert_eq!(listed("c.i")[0]["name"], "b0");
    fx.assert_clean("c.i");
}

#[test]
fn refused_command_lines_read_as_qemu_img_s_when_started_as_qemu_img() {
    let fx = Fixture::new();
    for args in [
        &["convert", "--foo", "a", "b"][..],
        &["convert", "-x", "a", "b"],
        &["convert", "-f"],
        &["info", "-f"],
        &["info", "--format"],
        &["info", "--output"],
        &["map", "--output=xml", "a"],
        &["check", "-r", "x", "a"],
        &["info"],
        &["map"],
        &["check"],
        &["commit"],
        &["convert"],
        &["rebase", "-b", "x"],
        &["info", "a", "b"],
        &["create", "x", "1M", "y"],
        &["rebase", "a"],
        &["create", "-f", "qcow2"],
    ] {
        let q = fx.qemu_img(args);
        let i = as_qemu_img(&fx, args);
        assert_eq!(q.status.code(), i.status.code(), "{args:?}");
        assert_eq!(stderr(&i), stderr(&q), "{args:?}");
    }
}

#[test]
fn rebase_unsafe_without_a_backing_file_drops_it_as_qemu_img_does() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 1M
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 t.q
         cp t.q t.i");
    let _ = both(&fx, &["rebase", "-u", "t.{}"]);
    assert_eq!(
        info_field(&fx, "t.i", "backing-filename"),
        serde_json::Value::Null
    );
    assert_eq!(
        info_field(&fx, "t.q", "backing-filename"),
        serde_json::Value::Null
    );
    let (q, i) = both(&fx, &["rebase", "t.{}"]);
    let sentence = "Must specify backing file (-b) or use unsafe mode (-u)";
    assert!(stderr(&q).contains(sentence));
    assert!(stderr(&i).contains(sentence), "{}", stderr(&i));
}

#[test]
fn convert_option_help_lists_the_target_format_s_options_as_qemu_img() {
    let fx = Fixture::new();
    sources(&fx);
    for args in [
        &["convert", "-O", "qcow2", "-o", "help", "in.raw", "x.qcow2"][..],
        &["convert", "-O", "qed", "-o", "help"],
        &["convert", "-o", "help"],
    ] {
        let (q, i) = both(&fx, args);
        assert_eq!(first_line(&stdout(&i)), first_line(&stdout(&q)), "{args:?}");
        assert!(stdout(&i).contains("  size=<size> "), "{args:?}");
    }
    assert!(!fx.path("x.qcow2").exists(), "-o help created the target");
}

#[test]
fn every_spelling_of_a_source_snapshot_converts_as_with_qemu_img() {
    let fx = Fixture::new();
    sources(&fx);
    for spec in [
        "sn1",
        "1",
        "snapshot.name=sn1",
        "snapshot.id=1",
        "snapshot.id=1,snapshot.name=sn1",
    ] {
        let _ = both(
            &fx,
            &["convert", "-l", spec, "-O", "raw", "in.qcow2", "s.{}"],
        );
        fx.assert_same("s.q", "s.i");
        fx.assert_same("s.i", "in.raw");
    }
    for spec in ["snapshot.id=1,snapshot.name=other", "snapshot.name=nope"] {
        let (q, i) = both(
            &fx,
            &["convert", "-l", spec, "-O", "raw", "in.qcow2", "s.{}"],
        );
        let sentence = "Failed to load snapshot: Can't find snapshot";
        assert!(stderr(&q).contains(sentence));
        assert!(stderr(&i).contains(sentence), "{}", stderr(&i));
    }
}

/// The commands added after the drop-in work (resize, dd, compare),
/// started as `qemu-img`, print exactly qemu-img's lines where they refuse
/// or warn.
#[test]
fn newer_commands_speak_as_qemu_img_under_its_name() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 a.qcow2 4M
         qemu-img create -q -f raw r.raw 1M");
    for args in [
        &["resize", "a.qcow2", "1M"][..],
        &["dd", "bs=1M", "skip=9", "-f", "raw", "if=r.raw", "of=o.raw"],
        &["compare", "a.qcow2", "missing.qcow2"],
    ] {
        let theirs = fx.qemu_img(args);
        let ours = as_qemu_img(&fx, args);
        assert_eq!(ours.status.code(), theirs.status.code(), "{args:?}");
        // qemu-img repeats the name of a file it cannot open; qimg says it once.
        let first = |o: &Output| stderr(o).lines().next().unwrap_or_default().to_string();
        if args[0] == "compare" {
            assert!(
                first(&ours).starts_with("qemu-img: missing.qcow2"),
                "{}",
                stderr(&ours)
            );
        } else {
            assert_eq!(stderr(&ours), stderr(&theirs), "{args:?}");
        }
    }
}
