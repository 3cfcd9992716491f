//! Renderers for human and JSON output, shaped like qemu-img's.

pub mod check;
pub mod checksum;
pub mod human;
pub mod info;
pub mod map;
pub mod progress;
pub mod qjson;
pub mod safety;

/// The `--output` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Text for people (qemu-img's labels).
    #[default]
    Human,
    /// JSON for programs (qemu-img's schema).
    Json,
}
