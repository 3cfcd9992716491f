//! The programs that call qemu-img, run unchanged against qimg: each test
//! copies a client's command lines from its source (repository and file
//! cited), runs them with qemu-img, with qimg, and with qimg started as
//! `qemu-img` (the README's symlink), and compares what that client reads
//! (exit code, the stdout it parses with its own regex) and the resulting
//! images (`qemu-img compare`, `qemu-img check`).

mod common;

use common::{stderr, stdout, Daemon, Fixture};
use regex::Regex;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One way to run "qemu-img": the real one, qimg, or qimg by the symlink.
struct Tool {
    /// A short tag used in target file names.
    tag: &'static str,
    path: PathBuf,
}

/// The three programs every client line is run with.
fn tools(fx: &Fixture) -> Vec<Tool> {
    let bin = fx.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("qemu-img");
    if !link.exists() {
        std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("qimg"), &link).unwrap();
    }
    vec![
        Tool {
            tag: "qemu",
            path: PathBuf::from("qemu-img"),
        },
        Tool {
            tag: "qimg",
            path: assert_cmd::cargo::cargo_bin("qimg"),
        },
        Tool {
            tag: "link",
            path: link,
        },
    ]
}

impl Tool {
    /// Runs the client's argument list in `dir`; `{}` in an argument is
    /// replaced by this tool's tag (so each tool writes its own target).
    fn run(&self, dir: &Path, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.replace("{}", self.tag)).collect();
        Command::new(&self.path)
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.path.display()))
    }

    /// As `run`, asserting success.
    fn ok(&self, dir: &Path, args: &[&str]) -> Output {
        let out = self.run(dir, args);
        assert!(
            out.status.success(),
            "{} {args:?}: exit {:?}\n{}{}",
            self.tag,
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
        out
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// A raw disk with data, a hole and a run of zeroes, and a qcow2 copy of it
/// over a backing file.
fn disks(fx: &Fixture) {
    fx.sh(
        "qemu-img create -q -f raw disk.raw 8M
         qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x11 5M 512k' -c 'write -z 6M 1M' disk.raw >/dev/null
         qemu-img convert -f raw -O qcow2 disk.raw disk.qcow2
         qemu-img create -q -f qcow2 -b disk.qcow2 -F qcow2 top.qcow2
         qemu-io -f qcow2 -c 'write -P 0x22 2M 64k' top.qcow2 >/dev/null",
    );
}

/// kubevirt CDI's progress parsing (pkg/image/qemu.go, reportProgress with
/// matcherString): stdout split on '\r', each piece matched against
/// `\((\d?\d\.\d\d)\/100%\)`; the values it would report.
fn cdi_progress(out: &Output) -> Vec<f64> {
    let re = Regex::new(r"\((\d?\d\.\d\d)\/100%\)").unwrap();
    stdout(out)
        .split('\r')
        .filter_map(|line| re.captures(line))
        .map(|c| c[1].parse().unwrap())
        .collect()
}

#[test]
fn kubevirt_cdi_reads_the_same_progress_and_info() {
    // kubevirt/containerized-data-importer pkg/image/qemu.go: convertToRaw
    // builds ["convert", "-t", "none", "-p", "-O", "raw", src, dest] and
    // appends ["-o", "preallocation=falloc"] after the file names; Info runs
    // ["info", "--output=json", url]; checkOutputQemuImgInfo reads format,
    // backing-filename, virtual-size and actual-size.
    let fx = Fixture::new();
    disks(&fx);
    let mut targets = Vec::new();
    let mut infos = Vec::new();
    for tool in tools(&fx) {
        let out = tool.ok(
            fx.dir(),
            &[
                "convert",
                "-t",
                "none",
                "-p",
                "-O",
                "raw",
                "top.qcow2",
                "cdi.{}.raw",
                "-o",
                "preallocation=falloc",
            ],
        );
        let progress = cdi_progress(&out);
        assert!(
            !progress.is_empty(),
            "{}: CDI sees no progress in {:?}",
            tool.tag,
            stdout(&out)
        );
        assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
        assert_eq!(progress[0], 0.0, "{}", tool.tag);
        targets.push(format!("cdi.{}.raw", tool.tag));
        let info = json(&tool.ok(fx.dir(), &["info", "--output=json", "top.qcow2"]));
        infos.push((
            info["format"].clone(),
            info["backing-filename"].clone(),
            info["virtual-size"].clone(),
        ));
    }
    assert!(infos.windows(2).all(|w| w[0] == w[1]), "{infos:?}");
    for t in &targets[1..] {
        fx.assert_same(&targets[0], t);
        assert_eq!(
            fx.read(t).len(),
            8 << 20,
            "preallocated to the virtual size"
        );
    }
}

/// Proxmox's parser (proxmox/qemu-server src/PVE/QemuServer/QemuImage.pm,
/// convert): each output line matched against `\((\S+)\/100\%\)`; PVE's
/// run_command hands the parser pieces split at newlines and carriage
/// returns.
fn proxmox_progress(out: &Output) -> Vec<String> {
    let re = Regex::new(r"\((\S+)\/100\%\)").unwrap();
    stdout(out)
        .split(['\r', '\n'])
        .filter_map(|line| re.captures(line).map(|c| c[1].to_string()))
        .collect()
}

#[test]
fn proxmox_allocates_clones_converts_and_sizes_images_the_same_way() {
    let fx = Fixture::new();
    disks(&fx);
    let dir = fx.dir();
    let listing = Regex::new(r"(?m)Image is not in \S+ format$").unwrap();
    for tool in tools(&fx) {
        let t = tool.tag;
        // proxmox/pve-storage src/PVE/Storage/Plugin.pm alloc_image:
        // ['/usr/bin/qemu-img', 'create', '-o', 'preallocation=metadata', '-f', $fmt, $path, "${size}K"]
        tool.ok(
            dir,
            &[
                "create",
                "-o",
                "preallocation=metadata",
                "-f",
                "qcow2",
                "vm-{}.qcow2",
                "8192K",
            ],
        );
        fx.assert_clean(&format!("vm-{t}.qcow2"));
        // qemu-server src/PVE/QemuServer/QemuImage.pm convert:
        // qemu-img convert -p -n [-T none] [-r ${bwlimit}K] -f $src_format -O $dst_format $src $dst
        let out = tool.ok(
            dir,
            &[
                "convert",
                "-p",
                "-n",
                "-T",
                "none",
                "-r",
                "102400K",
                "-f",
                "qcow2",
                "-O",
                "qcow2",
                "top.qcow2",
                "vm-{}.qcow2",
            ],
        );
        let seen = proxmox_progress(&out);
        assert_eq!(
            seen.first().map(String::as_str),
            Some("0.00"),
            "{t}: {seen:?}"
        );
        assert_eq!(
            seen.last().map(String::as_str),
            Some("100.00"),
            "{t}: {seen:?}"
        );
        assert!(seen.iter().all(|p| p.parse::<f64>().is_ok()), "{seen:?}");
        fx.assert_clean(&format!("vm-{t}.qcow2"));
        fx.assert_same("top.qcow2", &format!("vm-{t}.qcow2"));
        // pve-storage Plugin.pm clone_image (run in the images directory):
        // ['/usr/bin/qemu-img', 'create', '-b', "../$basevmid/$basename", '-F', $format, '-f', 'qcow2', $path]
        fx.sh(&format!(
            "mkdir -p base-{t} clone-{t} && cp disk.qcow2 base-{t}/base.qcow2"
        ));
        let images = fx.path(&format!("clone-{t}"));
        tool.ok(
            &images,
            &[
                "create",
                "-b",
                &format!("../base-{t}/base.qcow2"),
                "-F",
                "qcow2",
                "-f",
                "qcow2",
                "clone.qcow2",
            ],
        );
        fx.assert_same("disk.qcow2", &format!("clone-{t}/clone.qcow2"));
        // pve-storage Plugin.pm file_size_info:
        // ['/usr/bin/qemu-img', 'info', '--output=json', $filename, '-f', $file_format]
        // and it reads virtual-size, format, actual-size, backing-filename.
        let info = json(&tool.ok(
            &images,
            &["info", "--output=json", "clone.qcow2", "-f", "qcow2"],
        ));
        assert_eq!(info["virtual-size"], 8 << 20, "{t}");
        assert_eq!(info["format"], "qcow2", "{t}");
        assert_eq!(
            info["backing-filename"],
            format!("../base-{t}/base.qcow2"),
            "{t}"
        );
        assert!(info["actual-size"].as_u64().is_some(), "{t}");
        // pve-storage Plugin.pm list_images: a file_size_info error that
        // matches m/Image is not in \S+ format$/ makes it query the image
        // as raw; any other error is fatal.
        let out = tool.run(dir, &["info", "--output=json", "disk.raw", "-f", "qcow2"]);
        assert_eq!(out.status.code(), Some(1), "{t}");
        let err = stderr(&out);
        assert!(listing.is_match(&err), "{t}: Proxmox would die on: {err}");
        let info = json(&tool.ok(dir, &["info", "--output=json", "disk.raw", "-f", "raw"]));
        assert_eq!(info["virtual-size"], 8 << 20, "{t}");
    }
}

/// vdsm's ProgressCommand._update_progress (oVirt/vdsm
/// lib/vdsm/storage/qemuimg.py): every complete record before the last
/// '\r' must match `\s*\(([\d.]+)/100%\)\s*`, else vdsm raises; returns
/// the last value, as vdsm keeps it.
fn vdsm_progress(out: &Output) -> f64 {
    let re = Regex::new(r"^\s*\(([\d.]+)/100%\)\s*").unwrap();
    let text = stdout(out);
    let idx = text.rfind('\r').expect("vdsm needs at least one record");
    let last = text[..idx].rsplit('\r').next().unwrap();
    let m = re
        .captures(last)
        .unwrap_or_else(|| panic!("vdsm: Unable to parse: {last:?}"));
    m[1].parse().unwrap()
}

#[test]
fn ovirt_vdsm_converts_commits_rebases_and_checks_the_same_way() {
    let fx = Fixture::new();
    disks(&fx);
    let dir = fx.dir();
    for tool in tools(&fx) {
        let t = tool.tag;
        // oVirt/vdsm lib/vdsm/storage/qemuimg.py convert: [qemu-img, "convert",
        // "-p", "-t", "none", "-T", "none", "-f", srcFormat, "-O", dstFormat,
        // "-o", "compat=1.1,backing_file=...,backing_fmt=...", src, dst]
        let out = tool.ok(
            dir,
            &[
                "convert",
                "-p",
                "-t",
                "none",
                "-T",
                "none",
                "-f",
                "qcow2",
                "-O",
                "qcow2",
                "-o",
                "compat=1.1",
                "top.qcow2",
                "v-{}.qcow2",
            ],
        );
        assert_eq!(vdsm_progress(&out), 100.0, "{t}");
        fx.assert_clean(&format!("v-{t}.qcow2"));
        fx.assert_same("top.qcow2", &format!("v-{t}.qcow2"));
        let out = tool.ok(
            dir,
            &[
                "convert",
                "-p",
                "-t",
                "none",
                "-T",
                "none",
                "-f",
                "qcow2",
                "-O",
                "qcow2",
                "-o",
                "compat=1.1,backing_file=disk.qcow2,backing_fmt=qcow2",
                "top.qcow2",
                "vb-{}.qcow2",
            ],
        );
        assert_eq!(vdsm_progress(&out), 100.0, "{t}");
        fx.assert_same("top.qcow2", &format!("vb-{t}.qcow2"));
        // info: [qemu-img, "info", "--output", "json", "-f", format, "-U", image];
        // it reads format, virtual-size, actual-size, cluster-size,
        // backing-filename and format-specific.data.compat.
        let info = json(&tool.ok(
            dir,
            &[
                "info",
                "--output",
                "json",
                "-f",
                "qcow2",
                "-U",
                &format!("vb-{t}.qcow2"),
            ],
        ));
        assert_eq!(info["format"], "qcow2");
        assert_eq!(info["virtual-size"], 8 << 20);
        assert_eq!(info["cluster-size"], 65536);
        assert_eq!(info["backing-filename"], "disk.qcow2");
        assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
        // check: [qemu-img, "check", "--output", "json", "-f", format, image]; reads image-end-offset.
        let check = json(&tool.ok(
            dir,
            &[
                "check",
                "--output",
                "json",
                "-f",
                "qcow2",
                &format!("vb-{t}.qcow2"),
            ],
        ));
        assert!(check["image-end-offset"].as_u64().is_some(), "{t}: {check}");
        // rebase: [qemu-img, "rebase", "-t", "none", "-T", "none", "-u", "-f", format, "-F", backingFormat, "-b", backing, image]
        fx.sh(&format!("cp disk.qcow2 r-{t}.qcow2"));
        tool.ok(
            dir,
            &[
                "rebase",
                "-t",
                "none",
                "-T",
                "none",
                "-u",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                &format!("r-{t}.qcow2"),
                &format!("vb-{t}.qcow2"),
            ],
        );
        // commit: [qemu-img, "commit", "-p", "-t", "none", "-d", "-f", topFormat, top]
        let out = tool.ok(
            dir,
            &[
                "commit",
                "-p",
                "-t",
                "none",
                "-d",
                "-f",
                "qcow2",
                &format!("vb-{t}.qcow2"),
            ],
        );
        assert_eq!(vdsm_progress(&out), 100.0, "{t}");
        fx.assert_clean(&format!("r-{t}.qcow2"));
        fx.assert_same("top.qcow2", &format!("r-{t}.qcow2"));
    }
}

#[test]
fn openstack_nova_and_cinder_read_the_same_version_info_and_copies() {
    let fx = Fixture::new();
    disks(&fx);
    let dir = fx.dir();
    // cinder/image/image_utils.py get_qemu_img_version: re.match(r"qemu-img
    // version ([0-9\.]*)", output of `qemu-img --version`).
    let version = Regex::new(r"^qemu-img version ([0-9\.]*)").unwrap();
    let mut versions = Vec::new();
    let mut infos = Vec::new();
    for tool in tools(&fx) {
        let t = tool.tag;
        let out = tool.run(dir, &["--version"]);
        let text = stdout(&out);
        let v = version
            .captures(&text)
            .unwrap_or_else(|| panic!("{t}: cinder finds no qemu-img in {text:?}"))[1]
            .to_string();
        versions.push(v);
        // nova/privsep/qemu.py unprivileged_qemu_img_info:
        // ('qemu-img', 'info', path, '--force-share', '--output=json') + ('-f', format)
        let nova = json(&tool.ok(
            dir,
            &[
                "info",
                "top.qcow2",
                "--force-share",
                "--output=json",
                "-f",
                "qcow2",
            ],
        ));
        // cinder/image/image_utils.py qemu_img_info:
        // ['qemu-img', 'info', '-f', format_name, '--output=json', '--force-share', path]
        let cinder = json(&tool.ok(
            dir,
            &[
                "info",
                "-f",
                "qcow2",
                "--output=json",
                "--force-share",
                "top.qcow2",
            ],
        ));
        assert_eq!(nova, cinder, "{t}");
        let pick = |v: &Value| {
            [
                "format",
                "virtual-size",
                "cluster-size",
                "backing-filename",
                "backing-filename-format",
                "dirty-flag",
            ]
            .map(|k| v[k].clone())
        };
        infos.push(pick(&nova));
        // nova/privsep/qemu.py unprivileged_convert_image:
        // ('qemu-img', 'convert', '-t', cache_mode, '-O', out_format) + ('-f', in_format) + (source, dest)
        tool.ok(
            dir,
            &[
                "convert",
                "-t",
                "none",
                "-O",
                "raw",
                "-f",
                "qcow2",
                "top.qcow2",
                "nova-{}.raw",
            ],
        );
        fx.assert_same("top.qcow2", &format!("nova-{t}.raw"));
        // ... with compression ('-c') to qcow2.
        tool.ok(
            dir,
            &[
                "convert",
                "-t",
                "writeback",
                "-O",
                "qcow2",
                "-f",
                "qcow2",
                "-c",
                "top.qcow2",
                "novac-{}.qcow2",
            ],
        );
        fx.assert_clean(&format!("novac-{t}.qcow2"));
        fx.assert_same("top.qcow2", &format!("novac-{t}.qcow2"));
        // cinder _get_qemu_convert_cmd: ['qemu-img', 'convert', '-O', out_format, '-t', cache_mode, '-f', src_format, src, dest]
        tool.ok(
            dir,
            &[
                "convert",
                "-O",
                "qcow2",
                "-t",
                "none",
                "-f",
                "raw",
                "disk.raw",
                "cinder-{}.qcow2",
            ],
        );
        fx.assert_clean(&format!("cinder-{t}.qcow2"));
        fx.assert_same("disk.raw", &format!("cinder-{t}.qcow2"));
    }
    assert!(versions.windows(2).all(|w| w[0] == w[1]), "{versions:?}");
    assert!(infos.windows(2).all(|w| w[0] == w[1]), "{infos:?}");
}

#[test]
fn packer_retries_a_convert_while_the_vm_holds_the_disk_then_succeeds() {
    // hashicorp/packer-plugin-qemu builder/qemu/step_convert_disk.go:
    // command ["convert", "-c", ..., "-O", format, source, target], retried
    // while the error contains `Failed to get shared "write" lock`.
    let fx = Fixture::new();
    disks(&fx);
    for tool in tools(&fx) {
        let t = tool.tag;
        fx.sh(&format!("mkdir -p p-{t} && cp disk.qcow2 p-{t}/vm.qcow2"));
        let dir = fx.path(&format!("p-{t}"));
        let mut vm = Daemon::start(&fx, &format!("p-{t}"), "vm.qcow2");
        let args = [
            "convert",
            "-c",
            "-O",
            "qcow2",
            "vm.qcow2",
            "vm.qcow2.convert",
        ];
        let out = tool.run(&dir, &args);
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert!(
            stderr(&out).contains(r#"Failed to get shared "write" lock"#),
            "{t}: Packer would not retry on: {}",
            stderr(&out)
        );
        vm.stop();
        tool.ok(&dir, &args);
        let converted = format!("p-{t}/vm.qcow2.convert");
        fx.assert_clean(&converted);
        fx.assert_same("disk.qcow2", &converted);
    }
}

#[test]
fn virt_builder_lima_and_diskimage_builder_get_the_same_images() {
    let fx = Fixture::new();
    disks(&fx);
    let dir = fx.dir();
    let mut lima_infos = Vec::new();
    for tool in tools(&fx) {
        let t = tool.tag;
        // libguestfs/guestfs-tools builder/builder.ml: sprintf "qemu-img
        // convert%s %s -O %s %s%s" with " -f raw" first: convert -f raw IN -O qcow2 OUT
        tool.ok(
            dir,
            &[
                "convert",
                "-f",
                "raw",
                "disk.raw",
                "-O",
                "qcow2",
                "vb-{}.qcow2",
            ],
        );
        fx.assert_clean(&format!("vb-{t}.qcow2"));
        fx.assert_same("disk.raw", &format!("vb-{t}.qcow2"));
        // lima-vm/lima pkg/qemu/imgutil/imgutil.go: ConvertToRaw runs
        // "qemu-img", "convert", "-O", "raw", source, dest; GetInfo runs
        // "qemu-img", "info", "--output=json", "--force-share", f.
        tool.ok(dir, &["convert", "-O", "raw", "top.qcow2", "lima-{}.raw"]);
        fx.assert_same("top.qcow2", &format!("lima-{t}.raw"));
        let info = json(&tool.ok(
            dir,
            &["info", "--output=json", "--force-share", "top.qcow2"],
        ));
        lima_infos.push(
            [
                "format",
                "virtual-size",
                "cluster-size",
                "backing-filename",
                "full-backing-filename",
                "backing-filename-format",
                "dirty-flag",
            ]
            .map(|k| info[k].clone()),
        );
        // openstack/diskimage-builder diskimage_builder/lib/img-functions
        // compress_and_save_image: qemu-img convert ${COMPRESS_IMAGE:+-c} -f
        // raw -O $IMAGE_TYPE $EXTRA_OPTIONS $TMP_IMAGE_PATH $1-new, with
        // EXTRA_OPTIONS="-o $QEMU_IMG_OPTIONS".
        tool.ok(
            dir,
            &[
                "convert",
                "-c",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                "compat=1.1",
                "disk.raw",
                "dib-{}.qcow2-new",
            ],
        );
        fx.assert_clean(&format!("dib-{t}.qcow2-new"));
        fx.assert_same("disk.raw", &format!("dib-{t}.qcow2-new"));
    }
    assert!(
        lima_infos.windows(2).all(|w| w[0] == w[1]),
        "{lima_infos:?}"
    );
}
