//! The operations behind the subcommands, as library functions.

pub mod amend;
pub mod bitmap;
pub mod check;
pub mod checksum;
pub mod commit;
pub mod compare;
pub mod convert;
pub mod create;
pub mod dd;
pub mod info;
pub mod map;
pub mod measure;
pub mod rebase;
pub mod resize;
pub mod safety;
pub mod snapshot;
pub mod stream;
