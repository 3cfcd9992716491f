//! Images over HTTP(S), against real servers on 127.0.0.1 started here:
//! nginx (the Debian package) with a configuration close to its default,
//! over HTTP and over HTTPS with a CA made for the test; qemu-img's curl
//! driver read on the same URLs as the reference. Then the faults: the
//! server stopped and restarted mid-copy, stopped for good, a server that
//! ignores `Range` (Python's http.server, nginx with `max_ranges 0`), a
//! hostile server written here (short bodies, wrong Content-Length), a
//! certificate that does not verify, and a signal during a wait.

mod common;

use common::{require_tool, stderr, stdout, Fixture};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (the listener is closed again at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`.
fn wait_listening(port: u16) {
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes `dir` readable by nginx's workers (they run as nobody when the
/// test runs as root).
fn open_up(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A test CA and a certificate for 127.0.0.1 signed by it, made with
/// the openssl command.
fn make_certificates(dir: &Path) {
    require_tool("openssl");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(&[
        &["req", "-x509", "-nodes", "-days", "2"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=qimg test CA",
        ],
    ]
    .concat());
    run(&[
        &["req", "-nodes"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    for f in ["server.key", "server.pem", "ca.pem"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// An nginx serving the fixture's `www/`, with its own prefix, pid file
/// and logs under the fixture: plain HTTP, HTTPS (certificate from the
/// test CA), and the same files rate-limited under `/slow/` (so a copy
/// lasts long enough to pull the server from under it) and without
/// ranges under `/norange/`. `/moved/NAME` redirects (302) to `/NAME`.
struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
    /// The port of plain HTTP.
    port: u16,
    /// The port of HTTPS.
    tls_port: u16,
}

impl Nginx {
    fn start(fx: &Fixture) -> Nginx {
        require_tool("nginx");
        open_up(fx.dir());
        let dir = fx.path("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::create_dir_all(fx.path("www")).unwrap();
        open_up(&dir);
        open_up(&fx.path("www"));
        make_certificates(&dir);
        let (port, tls_port) = (free_port(), free_port());
        let d = dir.display();
        let www = fx.path("www");
        let www = www.display();
        // The directives of Debian's nginx.conf that matter here, with
        // paths of the test's own; the rest stays at nginx's defaults.
        let conf = format!(
            "worker_processes 2;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log;\n\
             events {{ worker_connections 768; }}\n\
             http {{\n\
               sendfile on;\n\
               tcp_nopush on;\n\
               types {{ application/octet-stream qcow2 img raw; }}\n\
               default_type application/octet-stream;\n\
               access_log {d}/access.log;\n\
               client_body_temp_path {d}/tmp/body;\n\
               proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fastcgi;\n\
               uwsgi_temp_path {d}/tmp/uwsgi;\n\
               scgi_temp_path {d}/tmp/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 listen 127.0.0.1:{tls_port} ssl;\n\
                 ssl_certificate {d}/server.pem;\n\
                 ssl_certificate_key {d}/server.key;\n\
                 root {www};\n\
                 location /moved/ {{ rewrite ^/moved/(.*)$ /$1 redirect; }}\n\
                 location /slow/ {{ alias {www}/; sendfile off; limit_rate 2m; }}\n\
                 location /norange/ {{ alias {www}/; max_ranges 0; }}\n\
               }}\n\
             }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut n = Nginx {
            child: None,
            dir,
            port,
            tls_port,
        };
        n.run();
        n
    }

    /// Starts the server (again).
    fn run(&mut self) {
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        self.child = Some(child);
        wait_listening(self.port);
        wait_listening(self.tls_port);
    }

    /// Stops the server (fast shutdown: open connections are closed).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the nginx this test started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    fn https_url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.tls_port)
    }

    fn ca(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }

    /// How many GET requests for `path` the access log holds.
    fn requests(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let needle = format!("\"GET {path} ");
        log.lines().filter(|l| l.contains(&needle)).count()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// qimg with `env` set, in the fixture's directory, given at most `limit`.
fn qimg_env(fx: &Fixture, args: &[&str], env: &[(&str, &str)], limit: u64) -> Output {
    let mut cmd = assert_cmd::Command::cargo_bin("qimg").unwrap();
    cmd.args(args)
        .current_dir(fx.dir())
        .timeout(Duration::from_secs(limit));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// qemu-img 10.0.2's convert from a curl node hangs for good (no request
/// in flight, no progress) with its default of 8 coroutines, and with 3
/// or more on these images; with one it completes. The reference copies
/// are made with one.
const QEMU_M: [&str; 2] = ["-m", "1"];

/// Images to serve: a qcow2 with data, a zero cluster and holes, and a raw
/// file with zeros in it (so zero detection has something to find).
fn make_images(fx: &Fixture) {
    fx.sh("qemu-img create -q -f qcow2 www/base.qcow2 64M
         qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x22 5M 3M' \
                 -c 'write -z 9M 64k' -c 'write -P 0x33 63M 1M' www/base.qcow2 >/dev/null
         qemu-img create -q -f raw www/disk.raw 24M
         qemu-io -f raw -c 'write -P 0x44 0 2M' -c 'write -P 0x55 10M 1M' \
                 -c 'write -P 0x66 23M 1M' www/disk.raw >/dev/null
         chmod 644 www/*");
}

/// info and map of `url` equal qemu-img's on `reference` (the same image,
/// spelled for qemu-img), and convert of it gives qemu-img's image.
fn matches_qemu_img(fx: &Fixture, url: &str, reference: &str, env: &[(&str, &str)], tag: &str) {
    for args in [
        &["info", "--output=json"][..],
        &["info"][..],
        &["map", "--output=json"][..],
        &["map"][..],
    ] {
        let theirs = fx.qemu_img(&[args, &[reference]].concat());
        assert_ok(&format!("qemu-img {args:?} {reference}"), &theirs);
        let ours = qimg_env(fx, &[args, &[url]].concat(), env, 30);
        assert_ok(&format!("qimg {args:?} {url}"), &ours);
        let (t, o) = (stdout(&theirs), stdout(&ours));
        // qemu-img names the image as it was spelled for it.
        let t = t.replace(reference, url);
        assert_eq!(o, t, "qimg {args:?} {url} differs from qemu-img");
    }
    let ours = format!("{tag}-qimg.qcow2");
    let theirs = format!("{tag}-qemu.qcow2");
    let out = qimg_env(fx, &["convert", "-O", "qcow2", url, &ours], env, 60);
    assert_ok(&format!("qimg convert {url}"), &out);
    assert_ok(
        "qemu-img convert",
        &fx.qemu_img(&[
            "convert", QEMU_M[0], QEMU_M[1], "-O", "qcow2", reference, &theirs,
        ]),
    );
    fx.assert_clean(&ours);
    fx.assert_same(&ours, &theirs);
    // Zero detection kept the holes: qimg's copy allocates no more than qemu-img's.
    let size = |f: &str| std::fs::metadata(fx.path(f)).unwrap().len();
    assert!(
        size(&ours) <= size(&theirs) + (1 << 20),
        "{ours} is {} bytes, qemu-img's {}",
        size(&ours),
        size(&theirs)
    );
    // check and compare read the URL too.
    // check reads it as qemu-img does (a raw image has no checks: 63).
    let ours_check = qimg_env(fx, &["check", url], env, 30);
    let theirs_check = fx.qemu_img(&["check", reference]);
    assert_eq!(
        ours_check.status.code(),
        theirs_check.status.code(),
        "check {url}: {}{}",
        stdout(&ours_check),
        stderr(&ours_check)
    );
    assert_ok(
        "qimg compare URL copy",
        &qimg_env(fx, &["compare", url, &ours], env, 30),
    );
}

#[test]
fn info_map_and_convert_over_http_match_qemu_img() {
    let fx = Fixture::new();
    let nginx = Nginx::start(&fx);
    make_images(&fx);
    for name in ["base.qcow2", "disk.raw"] {
        let url = nginx.url(name);
        matches_qemu_img(&fx, &url, &url, &[], &format!("http-{name}"));
    }
}

#[test]
fn info_map_and_convert_over_https_match_qemu_img() {
    let fx = Fixture::new();
    let nginx = Nginx::start(&fx);
    make_images(&fx);
    let ca = nginx.ca();
    for name in ["base.qcow2", "disk.raw"] {
        let url = nginx.https_url(name);
        // qemu-img's curl driver trusts only the system's CAs and has no
        // CA option: it reads the same image with sslverify off.
        let reference =
            format!(r#"json:{{"file.driver":"https","file.url":"{url}","file.sslverify":"off"}}"#);
        // qimg verifies the server with the test CA (QIMG_HTTP_CA_FILE) ...
        let env = [("QIMG_HTTP_CA_FILE", ca.as_str())];
        let info = qimg_env(&fx, &["info", "--output=json", &url], &env, 30);
        assert_ok("qimg info https", &info);
        let theirs = fx.qemu_img(&["info", "--output=json", &reference]);
        assert_ok("qemu-img info https", &theirs);
        let strip = |s: String| -> serde_json::Value {
            let mut v: serde_json::Value = serde_json::from_str(&s).unwrap();
            v.as_object_mut().unwrap().remove("filename");
            v["children"][0]["info"]
                .as_object_mut()
                .unwrap()
                .remove("filename");
            v
        };
        assert_eq!(strip(stdout(&info)), strip(stdout(&theirs)));
        // ... and both read the json: spelling with sslverify off alike.
        let theirs_map = fx.qemu_img(&["map", "--output=json", &reference]);
        let ours_map = qimg_env(&fx, &["map", "--output=json", &reference], &[], 30);
        assert_ok("qimg map json https", &ours_map);
        assert_eq!(stdout(&ours_map), stdout(&theirs_map));
        let ours = format!("https-{name}-qimg.qcow2");
        let theirs = format!("https-{name}-qemu.qcow2");
        let out = qimg_env(&fx, &["convert", "-O", "qcow2", &url, &ours], &env, 60);
        assert_ok("qimg convert https", &out);
        assert_ok(
            "qemu-img convert https",
            &fx.qemu_img(&[
                "convert", QEMU_M[0], QEMU_M[1], "-O", "qcow2", &reference, &theirs,
            ]),
        );
        fx.assert_clean(&ours);
        fx.assert_same(&ours, &theirs);
        // The CA can also be named in the node (qimg's ca-file option).
        let ours = format!(
            r#"json:{{"file.driver":"https","file.url":"{url}","file.ca-file":"{ca}","file.timeout":10,"file.readahead":"64k"}}"#
        );
        let out = qimg_env(
            &fx,
            &["convert", "-O", "qcow2", &ours, "ca-file.qcow2"],
            &[],
            60,
        );
        assert_ok("qimg convert json ca-file", &out);
        fx.assert_same("ca-file.qcow2", &format!("www/{name}"));
    }
}

#[test]
fn a_certificate_that_does_not_verify_is_one_clear_error() {
    let fx = Fixture::new();
    let nginx = Nginx::start(&fx);
    make_images(&fx);
    let url = nginx.https_url("base.qcow2");
    let started = Instant::now();
    let out = qimg_env(&fx, &["info", &url], &[], 30);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&url) && err.contains("certificate"), "{err}");
    // Not retried: a certificate does not start verifying later.
    assert!(started.elapsed() < Duration::from_secs(5));
    // sslverify off reads it.
    let spec =
        format!(r#"json:{{"file.driver":"https","file.url":"{url}","file.sslverify":false}}"#);
    assert_ok("sslverify off", &qimg_env(&fx, &["info", &spec], &[], 30));
}

#[test]
fn a_redirect_is_resolved_once() {
    let fx = Fixture::new();
    let nginx = Nginx::start(&fx);
    make_images(&fx);
    let url = nginx.url("moved/base.qcow2");
    let out = qimg_env(
        &fx,
        &["convert", "-O", "qcow2", &url, "copy.qcow2"],
        &[],
        60,
    );
    assert_ok("convert through a redirect", &out);
    fx.assert_same("copy.qcow2", "www/base.qcow2");
    assert_eq!(
        nginx.requests("/moved/base.qcow2"),
        1,
        "the redirect was asked again"
    );
    assert!(nginx.requests("/base.qcow2") > 3);
    // The image keeps the name it was given.
    let info = qimg_env(&fx, &["info", &url], &[], 30);
    assert!(stdout(&info).starts_with(&format!("image: {url}\n")));
}

/// The rapid-deployment workflow: an overlay backed by the URL, then
/// stream (a slice, then the rest) until it is independent.
#[test]
fn overlay_on_a_url_streams_until_independent() {
    let fx = Fixture::new();
    let nginx = Nginx::start(&fx);
    make_images(&fx);
    let url = nginx.url("base.qcow2");
    let out = fx.qimg(&[
        "create", "-q", "-f", "qcow2", "-b", &url, "-F", "qcow2", "vm.qcow2",
    ]);
    assert_ok("create -b URL", &out);
    // QEMU opens the overlay and finds the URL as its backing file.
    let info = fx.qemu_img(&["info", "--output=json", "vm.qcow2"]);
    assert_ok("qemu-img info overlay", &info);
    let v: serde_json::Value = serde_json::from_str(&stdout(&info)).unwrap();
    assert_eq!(v["backing-filename"], url.as_str());
    assert_eq!(v["virtual-size"], 64 << 20);
    // The guest writes into its overlay before the stream is done.
    fx.sh(
        "qemu-io -f qcow2 -c 'write -P 0x77 6M 64k' vm.qcow2 >/dev/null
           cp www/base.qcow2 expected.qcow2
           qemu-io -f qcow2 -c 'write -P 0x77 6M 64k' expected.qcow2 >/dev/null",
    );
    fx.assert_same("vm.qcow2", "expected.qcow2");
    assert_ok("map of the overlay", &fx.qimg(&["map", "vm.qcow2"]));
    let out = fx.qimg(&["stream", "--offset", "0", "--length", "8M", "vm.qcow2"]);
    assert_ok("stream a slice", &out);
    let out = fx.qimg(&["stream", "--when-idle=20", "--time-limit", "1m", "vm.qcow2"]);
    assert_ok("stream the rest", &out);
    let info = fx.qemu_img(&["info", "--output=json", "vm.qcow2"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&info)).unwrap();
    assert!(v.get("backing-filename").is_none(), "{v}");
    fx.assert_clean("vm.qcow2");
    fx.assert_same("vm.qcow2", "expected.qcow2");
    // Independent: it reads the same with the server gone.
    drop(nginx);
    fx.assert_same("vm.qcow2", "expected.qcow2");
}

/// A big raw file of distinct non-zero megabytes under `www/`.
fn make_big_raw(fx: &Fixture, name: &str, mib: u32) {
    let mut script = format!("qemu-img create -q -f raw www/{name} {mib}M\nqemu-io -f raw");
    for m in 0..mib {
        script.push_str(&format!(" -c 'write -P {} {m}M 1M'", 1 + m % 250));
    }
    script.push_str(&format!(" www/{name} >/dev/null\nchmod 644 www/{name}"));
    fx.sh(&script);
}

#[test]
fn retries_carry_a_convert_over_a_server_restart() {
    let fx = Fixture::new();
    let mut nginx = Nginx::start(&fx);
    make_big_raw(&fx, "big.raw", 48);
    // 2 MiB/s per request, 4 connections: about 6 s of copy (sendfile is
    // off under /slow/: nginx sends a sendfile chunk whole before it
    // waits for the rate).
    let url = nginx.url("slow/big.raw");
    let bin = assert_cmd::cargo::cargo_bin("qimg");
    let mut child = Command::new(bin)
        .args(["convert", "-f", "raw", "-O", "qcow2", &url, "copy.qcow2"])
        .current_dir(fx.dir())
        .env("QIMG_HTTP_CONNECTIONS", "4")
        .env("QIMG_HTTP_TIMEOUT", "5")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    if child.try_wait().unwrap().is_some() {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let log = std::fs::read_to_string(nginx.dir.join("access.log")).unwrap_or_default();
        panic!(
            "the copy ended before the fault: {err} {:?}\n{log}",
            child.try_wait()
        );
    }
    nginx.stop();
    std::thread::sleep(Duration::from_millis(1500));
    nginx.run();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the copy never ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "convert across a restart failed: {err}");
    fx.assert_clean("copy.qcow2");
    fx.assert_same("copy.qcow2", "www/big.raw");
}

#[test]
fn a_server_gone_for_good_is_one_error_in_bounded_time_and_the_stream_resumes() {
    let fx = Fixture::new();
    let mut nginx = Nginx::start(&fx);
    make_big_raw(&fx, "big.raw", 64);
    // 64 MiB from /slow/ (2 MiB/s per request, 8 at once): about 4 s.
    fx.sh("qemu-img convert -f raw -O qcow2 www/big.raw www/big.qcow2 && chmod 644 www/big.qcow2");
    let url = nginx.url("slow/big.qcow2");
    assert_ok(
        "create",
        &fx.qimg(&[
            "create", "-q", "-f", "qcow2", "-b", &url, "-F", "qcow2", "vm.qcow2",
        ]),
    );
    let bin = assert_cmd::cargo::cargo_bin("qimg");
    let child = Command::new(bin)
        .args(["stream", "vm.qcow2"])
        .current_dir(fx.dir())
        .env("QIMG_HTTP_RETRIES", "3")
        .env("QIMG_HTTP_TIMEOUT", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    nginx.stop();
    let stopped = Instant::now();
    let out = child.wait_with_output().unwrap();
    // 3 retries back off 0.2 + 0.4 + 0.8 s, and connects are refused at once.
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "took {:?}",
        stopped.elapsed()
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(
        err.contains(&url) && err.contains("bytes ") && err.contains("after 3 retries"),
        "{err}"
    );
    // The overlay is consistent (checked without opening its backing
    // file, which is gone), still backed, and streams on later.
    fx.assert_clean(
        r#"json:{"driver":"qcow2","file":{"driver":"file","filename":"vm.qcow2"},"backing":null}"#,
    );
    nginx.run();
    fx.assert_same("vm.qcow2", "www/big.qcow2");
    assert_ok("stream again", &fx.qimg(&["stream", "vm.qcow2"]));
    fx.assert_clean("vm.qcow2");
    fx.assert_same("vm.qcow2", "www/big.raw");
    let info = stdout(&fx.qemu_img(&["info", "vm.qcow2"]));
    assert!(!info.contains("backing file"), "{info}");
    // A convert from a server that is gone: one line, bounded, nothing left half-made that qemu-img rejects.
    nginx.stop();
    let started = Instant::now();
    let out = qimg_env(
        &fx,
        &["convert", "-O", "qcow2", &url, "gone.qcow2"],
        &[("QIMG_HTTP_RETRIES", "2")],
        30,
    );
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&url) && err.contains("bytes 0-0") && err.contains("after 2 retries"),
        "{err}"
    );
}

#[test]
fn servers_that_ignore_range_are_refused_clearly() {
    let fx = Fixture::new();
    let nginx = Nginx::start(&fx);
    make_images(&fx);
    // nginx told not to serve ranges.
    let url = nginx.url("norange/base.qcow2");
    let out = qimg_env(&fx, &["info", &url], &[], 30);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&url) && err.contains("ignores Range"), "{err}");
    // Python's http.server, which has no ranges at all.
    require_tool("python3");
    let port = free_port();
    let mut py = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(fx.path("www"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    let url = format!("http://127.0.0.1:{port}/disk.raw");
    let out = qimg_env(&fx, &["convert", "-O", "raw", &url, "x.raw"], &[], 30);
    let _ = py.kill();
    let _ = py.wait();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&url) && err.contains("ignores Range"), "{err}");
}

/// How the hostile server answers the ranges after the probe.
#[derive(Clone, Copy)]
enum Hostility {
    /// The body stops short of its Content-Length, then the connection closes.
    Truncated,
    /// Content-Length says fewer bytes than the range asked.
    WrongLength,
    /// The first few ranges are truncated, the rest served right.
    TruncatedAtFirst,
    /// Reads the request and never answers.
    Silent,
}

/// A small HTTP/1.1 server over std's TcpListener serving `data` with
/// ranges, misbehaving as `how` says. Counts the range requests.
fn hostile_server(data: Vec<u8>, how: Hostility) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let data = Arc::new(data);
    let served = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(stream) = stream else { continue };
            let (data, served) = (data.clone(), served.clone());
            std::thread::spawn(move || serve(stream, &data, how, &served));
        }
    });
    (port, count)
}

fn serve(stream: std::net::TcpStream, data: &[u8], how: Hostility, served: &AtomicUsize) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut range = None;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                let (a, b) = v.trim().split_once('-').unwrap();
                range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
            }
        }
        let (a, b) = range.unwrap_or((0, data.len() - 1));
        let body = &data[a..=b.min(data.len() - 1)];
        let head = |len: usize| {
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{}/{}\r\nContent-Length: {len}\r\n\r\n",
                a + body.len() - 1,
                data.len()
            )
        };
        if a == 0 && b == 0 {
            let _ = out.write_all(head(1).as_bytes());
            let _ = out.write_all(body);
            continue;
        }
        let n = served.fetch_add(1, Ordering::SeqCst);
        match how {
            Hostility::Silent => {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            Hostility::Truncated => {
                let _ = out.write_all(head(body.len()).as_bytes());
                let _ = out.write_all(&body[..body.len() / 2]);
                return;
            }
            Hostility::TruncatedAtFirst if n < 3 => {
                let _ = out.write_all(head(body.len()).as_bytes());
                let _ = out.write_all(&body[..body.len() / 3]);
                return;
            }
            Hostility::WrongLength => {
                let _ = out.write_all(head(body.len() - 100).as_bytes());
                let _ = out.write_all(&body[..body.len() - 100]);
            }
            Hostility::TruncatedAtFirst => {
                let _ = out.write_all(head(body.len()).as_bytes());
                let _ = out.write_all(body);
            }
        }
    }
}

fn hostile_data() -> Vec<u8> {
    (0..(3u32 << 20)).map(|i| (i % 251 + 1) as u8).collect()
}

#[test]
fn truncated_bodies_and_wrong_lengths_are_retried_then_reported() {
    let fx = Fixture::new();
    let data = hostile_data();
    fx.write("expected.raw", &data);
    let env = [("QIMG_HTTP_RETRIES", "2")];
    for (how, words) in [
        (Hostility::Truncated, "the body ended after"),
        (Hostility::WrongLength, "wrong Content-Length"),
    ] {
        let (port, count) = hostile_server(data.clone(), how);
        let url = format!("http://127.0.0.1:{port}/disk.raw");
        let out = qimg_env(
            &fx,
            &["convert", "-f", "raw", "-O", "raw", &url, "x.raw"],
            &env,
            30,
        );
        assert!(!out.status.success());
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&url)
                && err.contains("bytes ")
                && err.contains(words)
                && err.contains("after 2 retries"),
            "{err}"
        );
        assert!(count.load(Ordering::SeqCst) >= 3, "ranges were not retried");
    }
    // A few short bodies, then good ones: the retries carry the copy.
    let (port, _) = hostile_server(data.clone(), Hostility::TruncatedAtFirst);
    let url = format!("http://127.0.0.1:{port}/disk.raw");
    let out = qimg_env(
        &fx,
        &["convert", "-f", "raw", "-O", "raw", &url, "x.raw"],
        &[],
        30,
    );
    assert_ok("convert over a few short bodies", &out);
    assert_eq!(fx.read("x.raw"), data);
}

#[test]
fn signals_end_a_wait_on_a_silent_server_within_a_second() {
    let fx = Fixture::new();
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let (port, count) = hostile_server(hostile_data(), Hostility::Silent);
        let url = format!("http://127.0.0.1:{port}/disk.raw");
        let bin = assert_cmd::cargo::cargo_bin("qimg");
        let mut child = Command::new(bin)
            .args(["convert", "-f", "raw", "-O", "qcow2", &url, "x.qcow2"])
            .current_dir(fx.dir())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while count.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < until, "no range was asked");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: kill(2) on the child this test spawned.
        unsafe { libc::kill(child.id() as i32, signal) };
        let sent = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(3),
                "the wait did not end"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            sent.elapsed() < Duration::from_millis(1500),
            "took {:?}",
            sent.elapsed()
        );
        assert_eq!(status.code(), Some(code));
        fx.assert_clean("x.qcow2");
    }
}

#[test]
fn urls_are_read_only_and_json_options_are_checked() {
    let fx = Fixture::new();
    let msg = |args: &[&str]| {
        let out = fx.qimg(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        stderr(&out)
    };
    let e = msg(&["create", "-f", "qcow2", "http://127.0.0.1:9/x.qcow2", "1M"]);
    assert!(e.contains("read-only"), "{e}");
    let e = msg(&[
        "info",
        r#"json:{"file.driver":"https","file.url":"http://h/x"}"#,
    ]);
    assert!(e.contains("https://"), "{e}");
    let e = msg(&[
        "info",
        r#"json:{"file.driver":"http","file.url":"http://h/x","file.bogus":1}"#,
    ]);
    assert!(e.contains("'bogus'"), "{e}");
    let e = msg(&[
        "info",
        r#"json:{"file.driver":"http","file.url":"http://h/x","file.password-secret":"s"}"#,
    ]);
    // The secret is looked up before any connection, as by qemu-img.
    assert!(e.contains("No secret with id 's'"), "{e}");
}

/// The README's recipe `name` (a `<!-- recipe: NAME -->` block).
fn recipe(name: &str) -> String {
    let readme = include_str!("../README.md");
    let marker = format!("<!-- recipe: {name} -->");
    let (_, rest) = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("the README has no recipe {name}"));
    rest.split_once("```sh\n")
        .and_then(|(_, b)| b.split_once("\n```"))
        .map(|(code, _)| code.to_string())
        .unwrap_or_else(|| panic!("recipe {name} has no sh block"))
}

#[test]
fn the_readme_deploy_recipe_runs() {
    let fx = Fixture::new();
    let nginx = Nginx::start(&fx);
    make_images(&fx);
    let url = nginx.url("base.qcow2");
    let bin = assert_cmd::cargo::cargo_bin("qimg");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(recipe("deploy-from-url"))
        .args(["deploy", &url, "disk.qcow2"])
        .env("PATH", path)
        .current_dir(fx.dir())
        .output()
        .unwrap();
    assert_ok("the deploy recipe", &out);
    assert!(stdout(&out).contains("no longer needs"), "{}", stdout(&out));
    let info = stdout(&fx.qemu_img(&["info", "disk.qcow2"]));
    assert!(!info.contains("backing file"), "{info}");
    fx.assert_clean("disk.qcow2");
    drop(nginx);
    fx.assert_same("disk.qcow2", "www/base.qcow2");
}

#[test]
fn a_server_that_is_not_there_at_open_is_one_line_within_a_second() {
    let fx = Fixture::new();
    // A port nobody listens on: the one a listener just gave back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/disk.qcow2");
    for args in [
        vec!["info", url.as_str()],
        vec!["convert", "-O", "raw", url.as_str(), "out.raw"],
    ] {
        let started = Instant::now();
        let out = qimg_env(&fx, &args, &[], 30);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(took < Duration::from_secs(3), "{args:?} took {took:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&url)
                && err.contains("Connection refused")
                && err.contains("after 2 retries"),
            "{err}"
        );
        assert!(!fx.path("out.raw").exists());
    }
    // Fewer retries asked for are fewer still.
    let out = qimg_env(&fx, &["info", &url], &[("QIMG_HTTP_RETRIES", "0")], 30);
    assert!(!stderr(&out).contains("retr"), "{}", stderr(&out));
}

/// A fuzz finding: a response whose header line has no colon and ends in a
/// bare LF (`Content-Length\n`) made the HTTP client (ureq 2.12) panic. It
/// is one error line naming the URL, not a crash.
#[test]
fn a_header_line_without_a_colon_is_one_error_not_a_panic() {
    use std::io::{Read, Write};
    let fx = Fixture::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/disk.img", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let _ = conn.read(&mut [0u8; 4096]);
            let _ = conn.write_all(
                b"HTTP/1.1 302 Found\r\nLocation:$/elsewhere.img\r\nContent-Length\n\r\n",
            );
        }
    });
    let out = qimg_env(&fx, &["info", &url], &[], 30);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&url) && err.contains("could not parse the server's response"),
        "{err}"
    );
}
