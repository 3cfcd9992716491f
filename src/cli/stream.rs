//! `qimg stream`.

use super::args::{parse_size, FormatArg, FormatParser, OutputArg, ProgressArg};
use super::attached::{self, AttachArgs};
use super::exit;
use super::program::Program;
use super::progress::copy_controls;
use super::signals;
use clap::Args;
use qimg::attach::jobs::OnReady;
use qimg::engine::control::StopReason;
use qimg::engine::Outcome;
use qimg::error::{Error, Result};
use qimg::ops::stream::{stream, StreamRequest};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `qimg stream`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 done (or the slice done), 1 error, 75 stopped by --time-limit/--deadline (run again to continue), 130/143 interrupted.\n\nExamples:\n  qimg stream overlay.qcow2\n  qimg stream --base base.qcow2 top.qcow2\n  qimg stream --time-limit 2h -r 50M vm.qcow2\n  qimg stream --deadline 06:00 --when-idle=20 vm.qcow2   (nightly, yielding to busy disks)\n  qimg stream --attach /run/vm/qmp.sock --device drive0   (in the running VM)"
)]
pub struct StreamArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Stop pulling at this backing file; it becomes the new backing file.
    #[arg(long = "base", value_name = "FILE")]
    base: Option<String>,
    /// Name to record for the new backing file.
    #[arg(long = "backing-file", value_name = "NAME")]
    backing_file: Option<String>,
    /// Stream only from this guest offset (with --length).
    #[arg(long = "offset", value_name = "N", value_parser = parse_size, requires = "length", conflicts_with = "attach")]
    offset: Option<u64>,
    /// Stream only this many bytes (with --offset).
    #[arg(long = "length", value_name = "N", value_parser = parse_size, requires = "offset")]
    length: Option<u64>,
    /// Limit the copy rate in bytes per second (e.g. 50M).
    #[arg(short = 'r', long = "rate-limit", value_name = "RATE", value_parser = parse_size)]
    rate: Option<u64>,
    /// Stop cleanly after this long (e.g. 2h), exit 75.
    #[arg(long = "time-limit", value_name = "DUR", conflicts_with = "deadline")]
    time_limit: Option<String>,
    /// Stop cleanly at this local time (HH:MM), exit 75.
    #[arg(long = "deadline", value_name = "HH:MM")]
    deadline: Option<String>,
    /// Pause while host I/O pressure (PSI "some avg10" in /proc/pressure/io,
    /// or the file $QIMG_PSI_PATH names) is above PCT percent (default 10);
    /// with --attach, the VMM's job is paused and resumed.
    #[arg(long = "when-idle", value_name = "PCT", num_args = 0..=1, require_equals = true, default_missing_value = "10")]
    when_idle: Option<u32>,
    /// Show progress (-p), or JSON Lines records with --progress=json.
    #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    progress: Option<ProgressArg>,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t = OutputArg::Human, value_name = "human|json")]
    output: OutputArg,
    /// Attach mode.
    #[command(flatten)]
    vmm: AttachArgs,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The image to stream into.
    #[arg(value_name = "FILE", required_unless_present = "attach")]
    file: Option<PathBuf>,
}

impl StreamArgs {
    /// Runs `stream`.
    pub fn run(self, program: Program) -> Result<ExitCode> {
        if let Some(socket) = self.vmm.attach.clone() {
            return self.run_attached(&socket);
        }
        let file = self
            .file
            .clone()
            .expect("clap requires FILE without --attach");
        let file = self.spec.name(&file, self.format.is_some())?;
        let idle_gate = super::args::idle_gate(self.when_idle)?;
        let deadline = self.deadline()?;
        let request = StreamRequest {
            file: file.clone(),
            format: self.format.map(|f| f.0),
            base: self.base,
            backing_file: self.backing_file,
            range: self.offset.zip(self.length),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let (reporter, control) = copy_controls("stream", self.progress, self.rate);
        let control =
            control
                .with_deadline(deadline)
                .with_storage_options(self.spec.trust.apply(
                    qimg::io::StorageOptions::default().with_secrets(self.spec.objects.secrets()?),
                ));
        let control = match idle_gate {
            Some(gate) => control.with_pause_while(move || gate.busy()),
            None => control,
        };
        let (outcome, report) = stream(&request, &control)?;
        reporter.finish(control.progress());
        match self.output {
            OutputArg::Json => println!(
                "{}",
                serde_json::json!({
                    "offset": report.offset,
                    "next-offset": report.next_offset,
                    "bytes-copied": report.bytes_copied,
                    "virtual-size": report.virtual_size,
                    "done": report.done,
                })
            ),
            OutputArg::Human if report.already_independent => {
                println!("{} has no backing file: nothing to stream", file.display())
            }
            OutputArg::Human if !report.done && outcome == Outcome::Completed => println!(
                "Streamed {} bytes of {}..{}; more remains elsewhere in the image",
                report.bytes_copied, report.offset, report.next_offset
            ),
            OutputArg::Human => {}
        }
        match outcome {
            Outcome::Completed => Ok(ExitCode::SUCCESS),
            Outcome::Stopped { reason, resume_at } => {
                eprintln!(
                    "{}{}: stopped at offset {resume_at} of {}; run the same command again to continue",
                    program.prefix(),
                    file.display(),
                    report.virtual_size
                );
                Ok(ExitCode::from(match reason {
                    StopReason::TimeUp => exit::STOPPED_EARLY,
                    StopReason::Cancelled => signals::exit_code(),
                }))
            }
        }
    }
}

impl StreamArgs {
    /// When `--time-limit` or `--deadline` says to stop, if either does.
    fn deadline(&self) -> Result<Option<Instant>> {
        Ok(match (&self.time_limit, &self.deadline) {
            (Some(t), _) => Some(Instant::now() + parse_duration(t)?),
            (None, Some(d)) => Some(Instant::now() + until_local_time(d)?),
            (None, None) => None,
        })
    }

    /// Starts QEMU's block-stream in the VMM and follows it.
    fn run_attached(self, socket: &str) -> Result<ExitCode> {
        let mut qmp = attached::connect(socket)?;
        let device = self.vmm.device.clone().expect("clap requires --device");
        let mut args = json!({
            "job-id": self.vmm.job_id("stream"),
            "device": device,
        });
        if let Some(node) = attached::node_for(&mut qmp, &device, &self.vmm.base_node, &self.base)?
        {
            args["base-node"] = json!(node);
        }
        if let Some(name) = &self.backing_file {
            args["backing-file"] = json!(name);
        }
        if let Some(rate) = self.rate {
            args["speed"] = json!(rate);
        }
        attached::run_job(
            &mut qmp,
            "stream",
            "block-stream",
            args,
            self.vmm.detach,
            &attached::Following {
                on_ready: OnReady::Complete,
                progress: self.progress,
                pacing: attached::Pacing {
                    idle_gate: super::args::idle_gate(self.when_idle)?,
                    deadline: self.deadline()?,
                },
            },
        )
    }
}

/// Parses a duration such as `90s`, `30m`, `2h` or `1h30m` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || {
        Error::argument(format!(
            "invalid duration '{text}' (e.g. 90s, 30m, 2h, 1h30m)"
        ))
    };
    let (mut total, mut number) = (0u64, String::new());
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        total = total
            .checked_add(number.parse().map_err(|_| bad())?)
            .ok_or_else(bad)?;
    }
    if text.trim().is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// How long until the next local time `HH:MM` (tomorrow if it has passed today).
fn until_local_time(text: &str) -> Result<Duration> {
    let bad = || Error::argument(format!("invalid deadline '{text}' (HH:MM, local time)"));
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    // SAFETY: time() and localtime_r() only write into our own struct.
    let now_in_day = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        (tm.tm_hour as i64 * 3600) + (tm.tm_min as i64 * 60) + tm.tm_sec as i64
    };
    let target = h * 3600 + m * 60;
    let wait = (target - now_in_day).rem_euclid(86400);
    Ok(Duration::from_secs(wait as u64))
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, until_local_time};
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        for bad in ["", "h", "2x", "1.5h", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn deadlines_are_within_a_day() {
        let wait = until_local_time("06:00").unwrap();
        assert!(wait < Duration::from_secs(86400));
        for bad in ["6", "24:00", "06:60", "ab:cd", "06:00:00"] {
            assert!(until_local_time(bad).is_err(), "{bad} accepted");
        }
    }
}
