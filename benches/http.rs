//! Converts from a URL: qimg against `qemu-img convert` (curl driver),
//! both reading a 2 GiB qcow2 with half its clusters allocated (random
//! and text data, 64 KiB clusters) from nginx on 127.0.0.1 (Debian's
//! package, a configuration like Debian's with the bench's own paths),
//! into a new local qcow2. Once directly, once through a proxy written
//! here that holds every chunk 10 ms in each direction (20 ms round
//! trips; this machine's kernel has no netem). The tools alternate, three
//! runs each, medians. qemu-img 10.0.2 can hang from a curl node with its
//! default 8 coroutines (see tests/http.rs): one default run comes first,
//! and when it has not ended in 120 s it is killed and qemu-img is timed
//! with -m 1. Run with `cargo bench --bench http`.

mod common;

use common::{generate_disk_mix, median, peak_rss, require, sh, Fill};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SIZE: u64 = 2 << 30;
const RUNS: usize = 3;
const DELAY: Duration = Duration::from_millis(10);

/// A raw disk with half its clusters data (random or text), the rest holes.
fn half_allocated(path: &Path) {
    generate_disk_mix(
        path,
        SIZE,
        0x2545_f491_4f6c_dd1d,
        &[(Fill::Hole, 2), (Fill::Random, 1), (Fill::Text, 1)],
        "images over HTTP, read through their own metadata. ",
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx serving `dir/www` on `port`.
fn nginx(dir: &Path, port: u16) -> Child {
    let ok = Command::new("nginx")
        .arg("-v")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "nginx not found: this bench needs it (Debian package nginx)"
    );
    let d = dir.join("nginx");
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    for p in [dir, &d, &dir.join("www")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (d, www) = (d.display(), dir.join("www"));
    let www = www.display();
    let conf = format!(
        "worker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 768; }}\n\
         http {{ sendfile on; tcp_nopush on; default_type application/octet-stream;\n\
         access_log off; client_body_temp_path {d}/tmp/b; proxy_temp_path {d}/tmp/p;\n\
         fastcgi_temp_path {d}/tmp/f; uwsgi_temp_path {d}/tmp/u; scgi_temp_path {d}/tmp/s;\n\
         server {{ listen 127.0.0.1:{port}; root {www}; }} }}\n"
    );
    std::fs::write(dir.join("nginx/nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir.join("nginx"))
        .arg("-c")
        .arg(dir.join("nginx/nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    wait_listening(port);
    child
}

/// Copies `from` to `to`, each chunk sent `DELAY` after it arrived
/// (latency without a bandwidth cap: a reader queues, a writer waits).
fn delayed_pipe(mut from: TcpStream, mut to: TcpStream) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + DELAY, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}

/// A proxy on a free port to 127.0.0.1:`target`, adding `DELAY` each way.
fn latency_proxy(target: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || delayed_pipe(client, server));
            std::thread::spawn(move || delayed_pipe(s2, c2));
        }
    });
    port
}

fn main() {
    require("qemu-img");
    let qimg = env!("CARGO_BIN_EXE_qimg");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    eprintln!(
        "generating a 2 GiB half-allocated qcow2 in {}",
        dir.display()
    );
    half_allocated(&dir.join("disk.raw"));
    sh(
        dir,
        "qemu-img convert -O qcow2 disk.raw www/disk.qcow2 && rm disk.raw && chmod 644 www/disk.qcow2",
    );
    let port = free_port();
    let mut server = nginx(dir, port);
    let proxied = latency_proxy(port);
    let limit = Duration::from_secs(600);
    println!(
        "{:<22} {:>14} {:>10} {:>8} {:>12}",
        "case", "qemu-img", "qimg", "ratio", "qimg RSS"
    );
    for (case, p) in [("nginx, 127.0.0.1", port), ("+ 20 ms round trips", proxied)] {
        let url = format!("http://127.0.0.1:{p}/disk.qcow2");
        // qemu-img with its defaults, once, given up on after 120 s; when
        // it ends it is timed with them, else with -m 1.
        let _ = std::fs::remove_file(dir.join("out.qcow2"));
        let (default, _) = peak_rss(
            "qemu-img",
            &["convert", "-O", "qcow2", &url, "out.qcow2"],
            dir,
            Duration::from_secs(120),
        );
        let qemu_args: Vec<&str> = match default {
            Some(t) => {
                println!(
                    "  qemu-img with defaults ends ({:.2}s): timed with them",
                    t.as_secs_f64()
                );
                vec!["convert", "-O", "qcow2", &url, "out.qcow2"]
            }
            None => {
                println!("  qemu-img with defaults: no end within 120 s (killed): timed with -m 1");
                vec!["convert", "-m", "1", "-O", "qcow2", &url, "out.qcow2"]
            }
        };
        let (mut q, mut m, mut rss) = (Vec::new(), Vec::new(), 0);
        for _ in 0..RUNS {
            let _ = std::fs::remove_file(dir.join("out.qcow2"));
            sh(dir, "sync");
            q.push(
                peak_rss("qemu-img", &qemu_args, dir, limit)
                    .0
                    .expect("qemu-img ended"),
            );
            let _ = std::fs::remove_file(dir.join("out.qcow2"));
            sh(dir, "sync");
            let args = ["convert", "-O", "qcow2", &url, "out.qcow2"];
            let (t, r) = peak_rss(qimg, &args, dir, limit);
            m.push(t.expect("qimg ended"));
            rss = rss.max(r);
        }
        sh(dir, "qemu-img compare -q out.qcow2 www/disk.qcow2");
        let (q, m) = (median(q).as_secs_f64(), median(m).as_secs_f64());
        println!(
            "{:<22} {:>13.2}s {:>9.2}s {:>7.2}x {:>8} KiB",
            case,
            q,
            m,
            q / m,
            rss
        );
    }
    // SAFETY: kill(2) on the nginx this bench started.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let _ = server.wait();
}
