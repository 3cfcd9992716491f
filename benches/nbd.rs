//! `convert` from an NBD export: qimg against qemu-img reading the same
//! qemu-nbd export of the generated 2 GiB disk (see the convert bench),
//! over a unix socket and over TCP on 127.0.0.1, three alternating runs
//! each, medians. Run with `cargo bench --bench nbd`.

mod common;

use common::{disk_dir, measure, median};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZE: u64 = 2 << 30;
const RUNS: usize = 3;

fn main() {
    let qimg = env!("CARGO_BIN_EXE_qimg");
    let tmp = disk_dir(SIZE);
    let dir = tmp.path();
    let socket = dir.join("nbd.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut servers = Vec::new();
    for listen in [
        vec!["-k".to_string(), socket.display().to_string()],
        vec![
            "-b".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
    ] {
        servers.push(
            Command::new("qemu-nbd")
                .args(["-t", "-r", "-e", "16", "-x", "exp", "-f", "qcow2"])
                .args(&listen)
                .arg("disk.qcow2")
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("qemu-nbd"),
        );
    }
    let uris = [
        (
            "unix socket",
            format!("nbd+unix:///exp?socket={}", socket.display()),
        ),
        ("TCP 127.0.0.1", format!("nbd://127.0.0.1:{port}/exp")),
    ];
    for (_, uri) in &uris {
        let start = Instant::now();
        while !Command::new("qemu-img")
            .args(["info", uri])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "qemu-nbd not serving"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!(
        "{:<16} {:>10} {:>10} {:>9} {:>12}",
        "transport", "qemu-img", "qimg", "ratio", "qimg RSS"
    );
    for (name, uri) in &uris {
        let args = ["convert", "-O", "qcow2", uri.as_str(), "out.qcow2"];
        let (mut q, mut m, mut rss) = (Vec::new(), Vec::new(), 0);
        for _ in 0..RUNS {
            q.push(measure("qemu-img", &args, dir).0);
            let (t, r) = measure(qimg, &args, dir);
            m.push(t);
            rss = rss.max(r);
        }
        let (q, m) = (median(q), median(m));
        println!(
            "{:<16} {:>9.2}s {:>9.2}s {:>8.2}x {:>8} KiB",
            name,
            q.as_secs_f64(),
            m.as_secs_f64(),
            q.as_secs_f64() / m.as_secs_f64(),
            rss
        );
    }
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
}
