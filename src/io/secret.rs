//! The secrets of a command line (`--object secret,...`), by id: what
//! unlocks an encrypted image, passed down with the storage options (no
//! process-wide store). The bytes are wiped when the last holder drops
//! them, and never printed (`Debug` shows the ids only).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Secrets by id, cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Secrets {
    by_id: Arc<BTreeMap<String, Zeroizing<Vec<u8>>>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_id.keys()).finish()
    }
}

impl Secrets {
    /// The store of these `(id, bytes)` pairs (a later id replaces an
    /// earlier one, as QEMU refuses duplicates before this is built).
    pub fn new(pairs: impl IntoIterator<Item = (String, Zeroizing<Vec<u8>>)>) -> Self {
        Secrets {
            by_id: Arc::new(pairs.into_iter().collect()),
        }
    }

    /// The bytes of secret `id`, with qemu-img's message when there is none.
    pub fn get(&self, id: &str) -> Result<&[u8]> {
        self.by_id
            .get(id)
            .map(|v| v.as_slice())
            .ok_or_else(|| Error::argument(format!("No secret with id '{id}'")))
    }

    /// Whether there are no secrets.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The bytes of a secret object's value as its `format` says: `raw` (the
/// default) as they are, `base64` decoded (a final newline allowed).
pub fn decode(format: Option<&str>, value: Zeroizing<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>> {
    match format {
        None | Some("raw") => Ok(value),
        Some("base64") => {
            use base64::Engine;
            let text = String::from_utf8_lossy(&value);
            base64::engine::general_purpose::STANDARD
                .decode(text.trim_end())
                .map(Zeroizing::new)
                .map_err(|_| Error::argument("Invalid base64 data in secret"))
        }
        Some(other) => Err(Error::argument(format!(
            "Parameter 'format' does not accept value '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_debug_hide_the_bytes() {
        let s = Secrets::new([("s0".to_string(), Zeroizing::new(b"hunter2".to_vec()))]);
        assert_eq!(s.get("s0").unwrap(), b"hunter2");
        assert_eq!(s.get("s9").unwrap_err().message(), "No secret with id 's9'");
        let shown = format!("{s:?}");
        assert!(
            shown.contains("s0") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
