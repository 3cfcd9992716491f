//! qimg: a library and command-line toolkit for qcow2, QED and raw
//! virtual-disk images, in the style of qemu-img.
//!
//! Layers, top to bottom: `ops` (operations), `output` (renderers), `chain`
//! (backing chains and views), `format` (one module per image format),
//! `io` (byte storage). A lower layer never uses an upper one. Beside them,
//! `attach` drives a running VMM's block layer over QMP.

pub mod attach;
pub mod chain;
pub mod engine;
pub mod error;
pub mod format;
pub mod io;
pub mod ops;
pub mod output;
pub mod paths;
pub mod size;
