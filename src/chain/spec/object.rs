//! `--object` definitions. qemu-img takes user-creatable objects; the ones
//! its callers pass are `secret`s for encrypted images (libvirt, cinder):
//! checked as qemu-img checks them and gathered into the [`Secrets`] the
//! opens and creates of the command look keys up in.

use super::tree;
use crate::error::{Error, Result};
use crate::io::Secrets;
use serde_json::Value;
use zeroize::Zeroizing;

/// A checked `--object` definition.
#[derive(Clone, PartialEq, Eq)]
pub enum Object {
    /// `secret,id=ID,data=...` or `secret,id=ID,file=PATH` (with
    /// `format=base64`: the value is base64 text).
    Secret {
        /// Its id, by which options such as `encrypt.key-secret` name it.
        id: String,
        /// Its bytes (a file's content as it is, a final newline included,
        /// as QEMU reads it), wiped when dropped.
        data: Zeroizing<Vec<u8>>,
    },
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Secret { id, .. } => f
                .debug_struct("Secret")
                .field("id", id)
                .finish_non_exhaustive(),
        }
    }
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
        if string("keyid").is_some() || string("iv").is_some() {
            return Err(Error::unsupported(
                "secrets encrypted with another secret (keyid, iv) are not supported",
            ));
        }
        let raw = match (string("data"), string("file")) {
            (Some(_), Some(_)) => {
                return Err(Error::argument("'data' and 'file' are mutually exclusive"))
            }
            (None, None) => {
                return Err(Error::argument("Either 'file' or 'data' must be provided"))
            }
            (None, Some(file)) => match std::fs::read(&file) {
                Ok(bytes) => Zeroizing::new(bytes),
                Err(e) => {
                    return Err(Error::io(
                        format!(
                            "Unable to read {file}: Failed to open file \u{201c}{file}\u{201d}"
                        ),
                        e,
                    ))
                }
            },
            (Some(data), None) => Zeroizing::new(data.into_bytes()),
        };
        let data = crate::io::secret::decode(string("format").as_deref(), raw)?;
        Ok(Object::Secret { id, data })
    }

    /// Checks every definition of a command line.
    pub fn parse_all(texts: &[String]) -> Result<Vec<Object>> {
        texts.iter().map(|t| Object::parse(t)).collect()
    }

    /// The secrets of a command line's definitions, by id; a second
    /// object with an id already taken is refused, as QEMU refuses it.
    pub fn secrets(texts: &[String]) -> Result<Secrets> {
        let mut pairs: Vec<(String, Zeroizing<Vec<u8>>)> = Vec::new();
        for object in Self::parse_all(texts)? {
            let Object::Secret { id, data } = object;
            if pairs.iter().any(|(i, _)| *i == id) {
                return Err(Error::argument(format!(
                    "attempt to add duplicate property '{id}' to object (type 'container')"
                )));
            }
            pairs.push((id, data));
        }
        Ok(Secrets::new(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_and_mistakes_get_qemus_words() {
        assert_eq!(
            Object::parse("secret,id=sec0,data=abc123").unwrap(),
            Object::Secret {
                id: "sec0".into(),
                data: Zeroizing::new(b"abc123".to_vec())
            }
        );
        let s = Object::secrets(&["secret,id=b,data=cHc=,format=base64".to_string()]).unwrap();
        assert_eq!(s.get("b").unwrap(), b"pw");
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
