//! The operations behind the subcommands, as library functions.

pub mod create;
pub mod info;
pub mod map;
