//! What `-p` and `--progress=json` show while a copy runs: a bar on a
//! terminal, qemu-img's percentage lines on stdout elsewhere (where
//! qemu-img writes them), or JSON Lines records on stderr.
//! One reporter for every command that copies (convert, stream, commit,
//! rebase, and the block jobs followed in attach mode).

use super::args::ProgressArg;
use super::signals;
use indicatif::{ProgressBar, ProgressStyle};
use qimg::engine::control::{Control, Progress};
use qimg::output::progress::{JsonLines, PercentLines};
use std::io::IsTerminal;
use std::sync::Arc;

/// Renders progress as the command line asked.
#[derive(Clone)]
pub enum Reporter {
    /// No progress asked for.
    None,
    /// An indicatif bar (stdout and stderr are terminals).
    Bar(ProgressBar),
    /// qemu-img's `    (NN.NN/100%)\r` lines on stdout.
    Lines(Arc<PercentLines>),
    /// JSON Lines records naming the operation.
    Json(Arc<JsonLines>),
}

impl Reporter {
    /// The reporter for `mode` (`None`: no `-p`) of operation `op`.
    pub fn new(op: &'static str, mode: Option<ProgressArg>) -> Self {
        match mode {
            None => Reporter::None,
            Some(ProgressArg::Json) => Reporter::Json(Arc::new(JsonLines::new(op))),
            Some(ProgressArg::Human)
                if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() =>
            {
                let bar = ProgressBar::new(0);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                    )
                    .expect("valid template"),
                );
                Reporter::Bar(bar)
            }
            Some(ProgressArg::Human) => Reporter::Lines(Arc::new(PercentLines::default())),
        }
    }

    /// Shows progress `p`.
    pub fn update(&self, p: Progress) {
        match self {
            Reporter::None => {}
            Reporter::Bar(b) => {
                b.set_length(p.total);
                b.set_position(p.done);
            }
            Reporter::Lines(l) => l.update(p),
            Reporter::Json(j) => j.update(p),
        }
    }

    /// Shows that `event` happened (`paused`, `resumed`) at progress `p`:
    /// a JSON Lines record, or the bar's message. qemu-img's percentage
    /// lines have no place for it.
    pub fn event(&self, event: &'static str, p: Progress) {
        match self {
            Reporter::None | Reporter::Lines(_) => {}
            Reporter::Bar(b) => b.set_message(event),
            Reporter::Json(j) => j.event(event, p),
        }
    }

    /// Ends the display; `p` is where the copy stopped.
    pub fn finish(&self, p: Progress) {
        match self {
            Reporter::None => {}
            Reporter::Bar(b) => b.finish_and_clear(),
            Reporter::Lines(l) => l.finish(p.total == 0 || p.done >= p.total),
            Reporter::Json(j) => j.finish(p),
        }
    }
}

/// The reporter and the controls of a copy run here: SIGINT and SIGTERM
/// stop it cleanly, `rate` limits it, and its progress goes to the
/// reporter (`progress` as asked; `None` for none).
pub fn copy_controls(
    op: &'static str,
    progress: Option<ProgressArg>,
    rate: Option<u64>,
) -> (Reporter, Control) {
    signals::install();
    let reporter = Reporter::new(op, progress);
    let shown = reporter.clone();
    let control = Control::default()
        .with_rate(rate)
        .with_cancel_flag(&signals::INTERRUPTED)
        .with_progress(move |p| shown.update(p));
    (reporter, control)
}
