//! Progress renderers: qemu-img's `    (NN.NN/100%)\r` lines, written on
//! stdout exactly where and as qemu-img writes them (programs such as CDI,
//! vdsm and Proxmox parse them there), or JSON Lines records on stderr for
//! programs that want more.

use crate::engine::control::Progress;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// qemu-img's percentage lines on stdout: `    (0.00/100%)\r` first, one
/// more each time the progress moves by 1% or more, and at the end
/// `    (100.00/100%)\r` followed by a newline, as qemu-img 10 prints them
/// (its final line is printed even when 100% was already shown).
#[derive(Debug)]
pub struct PercentLines {
    last: Mutex<Option<f64>>,
}

impl Default for PercentLines {
    fn default() -> Self {
        PercentLines {
            last: Mutex::new(None),
        }
    }
}

fn percent(p: Progress) -> f64 {
    if p.total == 0 {
        100.0
    } else {
        p.done as f64 * 100.0 / p.total as f64
    }
}

impl PercentLines {
    /// Reports progress `p`.
    pub fn update(&self, p: Progress) {
        let now = percent(p);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        if last.is_none() {
            text.push_str("    (0.00/100%)\r");
        }
        if last.is_none_or(|l| now - l >= 1.0 || (now >= 100.0 && l < 100.0)) {
            *last = Some(now);
            if now > 0.0 {
                text.push_str(&format!("    ({now:.2}/100%)\r"));
            }
        }
        write_out(&text);
    }

    /// Prints the final line: 100% when the copy `completed`, and the
    /// newline that ends the progress display.
    pub fn finish(&self, completed: bool) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        if last.is_none() {
            text.push_str("    (0.00/100%)\r");
            *last = Some(0.0);
        }
        if completed {
            text.push_str("    (100.00/100%)\r");
        }
        text.push('\n');
        write_out(&text);
    }
}

/// Writes progress text on stdout and flushes it at once (a pipe reader
/// sees every update as it happens); a closed stdout is not an error here.
fn write_out(text: &str) {
    if text.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// JSON Lines records: `{"op":…,"done":…,"total":…,"elapsed":…,"rate":…}`,
/// at most five a second, and a final one.
#[derive(Debug)]
pub struct JsonLines {
    op: &'static str,
    start: Instant,
    last: Mutex<Option<Instant>>,
}

impl JsonLines {
    /// Records for operation `op`.
    pub fn new(op: &'static str) -> Self {
        JsonLines {
            op,
            start: Instant::now(),
            last: Mutex::new(None),
        }
    }

    fn record(&self, p: Progress) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            p.done as f64 / elapsed
        } else {
            0.0
        };
        serde_json::json!({
            "op": self.op,
            "done": p.done,
            "total": p.total,
            "elapsed": (elapsed * 1000.0).round() / 1000.0,
            "rate": rate.round() as u64,
        })
        .to_string()
    }

    /// Reports progress `p` (skipped when the last record is under 200 ms old).
    pub fn update(&self, p: Progress) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|l| l.elapsed().as_millis() >= 200) {
            *last = Some(Instant::now());
            let _ = writeln!(std::io::stderr(), "{}", self.record(p));
        }
    }

    /// Prints the final record.
    pub fn finish(&self, p: Progress) {
        let _ = writeln!(std::io::stderr(), "{}", self.record(p));
    }

    /// Prints a record of `event` (such as `paused` or `resumed`) at once,
    /// with the progress `p` when it happened.
    pub fn event(&self, event: &str, p: Progress) {
        let mut record: serde_json::Value =
            serde_json::from_str(&self.record(p)).expect("a record is JSON");
        record["event"] = event.into();
        let _ = writeln!(std::io::stderr(), "{record}");
    }
}
