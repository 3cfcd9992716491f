//! Progress renderers: a bar on a terminal, qemu-img's `    (NN.NN/100%)`
//! lines elsewhere, or JSON Lines records for programs. All write to stderr.

use crate::engine::control::Progress;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// qemu-img's percentage lines, printed each time the progress moves by 1%.
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
        if last.is_none() {
            eprint!("    (0.00/100%)\r");
        }
        if last.is_none_or(|l| now - l >= 1.0 || (now >= 100.0 && l < 100.0)) {
            *last = Some(now);
            eprint!("    ({now:.2}/100%)\r");
        }
    }

    /// Prints the final line.
    pub fn finish(&self) {
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|l| l < 100.0) {
            eprint!("    (100.00/100%)\r");
        }
        eprintln!();
    }
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
}
