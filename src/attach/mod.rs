//! Attach mode: hand `stream` and `commit` to the block layer of a running
//! QEMU or qemu-storage-daemon over QMP, control its block jobs, and show
//! the images it has open. Nothing here touches image files.

pub mod jobs;
pub mod nodes;
pub mod qmp;
