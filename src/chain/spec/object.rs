//! `--object` definitions. qemu-img takes user-creatable objects; the ones
//! its callers pass are `secret`s for encrypted images (libvirt, cinder).
//! qimg checks them as qemu-img does, so such command lines parse, and
//! has no use for them: it does not open encrypted images.

use super::tree;
use crate::error::{Error, Result};
use serde_json::Value;

/// A checked `--object` definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// `secret,id=ID,data=...` or `secret,id=ID,file=PATH`.
    Secret {
        /// Its id, by which options such as `encrypt.key-secret` name it.
        id: String,
    },
}

/// Object types QEMU has that qimg does not take.
const OTHER_TYPES: &[&str] = &[
    "secret_keyring",
    "tls-creds-anon",
    "tls-creds-psk",
    "tls-creds-x509",
    "tls-cipher-suites",
    "throttle-group",
    "iothread",
    "authz-simple",
    "authz-list",
    "authz-listfile",
    "authz-pam",
];

impl Object {
    /// Checks an `--object` definition (`TYPE,key=value,...` or JSON),
    /// with qemu-img's messages for a missing id or value.
    pub fn parse(text: &str) -> Result<Object> {
        let tree = if text.trim_start().starts_with('{') {
            tree::from_json(text)?
        } else {
            // The first item without '=' is the type (qom-type=... also works).
            let (kind, rest) = match text.split_once(',') {
                Some((k, r)) if !k.contains('=') => (k, r),
                None if !text.contains('=') => (text, ""),
                _ => ("", text),
            };
            let mut t = tree::from_options(rest)?;
            if !kind.is_empty() {
                t.insert("qom-type".into(), Value::String(kind.into()));
            }
            t
        };
        let string = |k: &str| match tree.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let kind =
            string("qom-type").ok_or_else(|| Error::argument("Parameter 'qom-type' is missing"))?;
        match kind.as_str() {
            "secret" => {}
            k if OTHER_TYPES.contains(&k) => {
                return Err(Error::unsupported(format!(
                    "objects of type '{k}' are not supported (qimg takes secret objects)"
                )))
            }
            k => {
                return Err(Error::argument(format!(
                    "Parameter 'qom-type' does not accept value '{k}'"
                )))
            }
        }
        let id = string("id").ok_or_else(|| Error::argument("Parameter 'id' is missing"))?;
        match (string("data"), string("file")) {
            (Some(_), Some(_)) => Err(Error::argument("'data' and 'file' are mutually exclusive")),
            (None, None) => Err(Error::argument("Either 'file' or 'data' must be provided")),
            (None, Some(file)) => match std::fs::File::open(&file) {
                Ok(_) => Ok(Object::Secret { id }),
                Err(e) => Err(Error::io(
                    format!("Unable to read {file}: Failed to open file \u{201c}{file}\u{201d}"),
                    e,
                )),
            },
            (Some(_), None) => Ok(Object::Secret { id }),
        }
    }

    /// Checks every definition of a command line.
    pub fn parse_all(texts: &[String]) -> Result<Vec<Object>> {
        texts.iter().map(|t| Object::parse(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_and_mistakes_get_qemus_words() {
        assert_eq!(
            Object::parse("secret,id=sec0,data=abc123").unwrap(),
            Object::Secret { id: "sec0".into() }
        );
        let msg = |t: &str| Object::parse(t).unwrap_err().message().to_string();
        assert_eq!(
            msg("secret,id=s0"),
            "Either 'file' or 'data' must be provided"
        );
        assert_eq!(msg("secret,data=abc"), "Parameter 'id' is missing");
        assert_eq!(
            msg("foo,id=s0"),
            "Parameter 'qom-type' does not accept value 'foo'"
        );
        assert_eq!(
            msg("secret,id=s0,file=/nonexistent/key"),
            "Unable to read /nonexistent/key: Failed to open file \u{201c}/nonexistent/key\u{201d}"
        );
        assert!(Object::parse("tls-creds-psk,id=t0,dir=/tmp").is_err());
    }
}
