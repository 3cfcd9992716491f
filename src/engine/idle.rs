//! Waiting for a quiet host: Linux pressure stall information for I/O
//! (`/proc/pressure/io`) says what share of the last ten seconds some task
//! waited on I/O. A copy that should yield to the host's real work pauses
//! while that share is above a threshold.

use crate::error::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where Linux publishes I/O pressure.
pub const DEFAULT_PSI_PATH: &str = "/proc/pressure/io";

/// How often the pressure is read (it is a ten-second average anyway).
pub const POLL: Duration = Duration::from_secs(1);

/// Reads the `some avg10` figure (percent) from PSI text.
pub fn some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// Decides whether the host is too busy for the copy to go on.
#[derive(Debug)]
pub struct IoPressureGate {
    path: PathBuf,
    threshold: f64,
    /// The last reading and when it was taken.
    last: Mutex<Option<(Instant, bool)>>,
}

impl IoPressureGate {
    /// A gate that closes while `some avg10` in `path` is above
    /// `threshold` percent. Reads the file once now, so a missing PSI is
    /// an error before any work starts.
    pub fn new(path: &Path, threshold: f64) -> Result<Self> {
        let gate = IoPressureGate {
            path: path.to_path_buf(),
            threshold,
            last: Mutex::new(None),
        };
        gate.read()?;
        Ok(gate)
    }

    fn read(&self) -> Result<f64> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            Error::io(
                "cannot read I/O pressure for --when-idle (it needs Linux 4.20 or later with PSI enabled)",
                e,
            )
            .with_path(&self.path)
        })?;
        some_avg10(&text).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "no 'some avg10=' figure in the I/O pressure file",
            )
            .with_path(&self.path)
        })
    }

    /// Whether the host is busy now (read at most once per [`POLL`]; a file
    /// that stops being readable counts as idle, so a copy never hangs on it).
    pub fn busy(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, busy)) = *last {
            if at.elapsed() < POLL {
                return busy;
            }
        }
        let busy = self.read().is_ok_and(|p| p > self.threshold);
        *last = Some((Instant::now(), busy));
        busy
    }
}

#[cfg(test)]
mod tests {
    use super::some_avg10;

    #[test]
    fn reads_the_some_line() {
        let text = "some avg10=12.50 avg60=1.91 avg300=1.44 total=166868814\n\
                    full avg10=0.46 avg60=1.34 avg300=1.03 total=135502765\n";
        assert_eq!(some_avg10(text), Some(12.5));
        assert_eq!(some_avg10("full avg10=3.00\n"), None);
        assert_eq!(some_avg10("some avg10=x\n"), None);
        assert_eq!(some_avg10(""), None);
    }
}
