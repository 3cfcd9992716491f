//! NBD URIs as QEMU spells them: `nbd://HOST[:PORT]/EXPORT` and
//! `nbd+unix:///EXPORT?socket=PATH`, and QEMU's older spellings
//! `nbd:unix:PATH[:exportname=NAME]` and `nbd:HOST:PORT[:exportname=NAME]`.

use crate::error::{Error, Result};
use std::path::PathBuf;

/// Where an export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdAddress {
    /// `nbd://HOST[:PORT]/EXPORT` (port 10809 by default).
    Tcp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `nbd+unix:///EXPORT?socket=PATH`.
    Unix(PathBuf),
}

/// A parsed NBD URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUri {
    /// Where the server listens.
    pub address: NbdAddress,
    /// The export name ("" for the default export).
    pub export: String,
}

/// Whether `name` is an NBD URI qimg understands.
pub fn is_nbd_uri(name: &str) -> bool {
    ["nbd:", "nbd+unix://", "nbds://", "nbds+unix://"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn uri_error(uri: &str, why: &str) -> Error {
    Error::argument(format!("invalid NBD URI '{uri}': {why}"))
}

impl NbdUri {
    /// Parses `nbd://HOST[:PORT]/EXPORT`, `nbd+unix:///EXPORT?socket=PATH`,
    /// `nbd:unix:PATH[:exportname=NAME]` or `nbd:HOST:PORT[:exportname=NAME]`.
    pub fn parse(uri: &str) -> Result<NbdUri> {
        if uri.starts_with("nbds://") || uri.starts_with("nbds+unix://") {
            return Err(
                Error::unsupported("NBD over TLS (nbds://) is not supported by qimg")
                    .with_path(uri),
            );
        }
        if let Some(rest) = uri.strip_prefix("nbd:").filter(|r| !r.starts_with("//")) {
            return Self::parse_legacy(uri, rest);
        }
        if let Some(rest) = uri.strip_prefix("nbd+unix://") {
            let (export, query) = rest
                .split_once('?')
                .ok_or_else(|| uri_error(uri, "nbd+unix needs ?socket=PATH"))?;
            if !export.starts_with('/') {
                return Err(uri_error(
                    uri,
                    "nbd+unix takes no host (nbd+unix:///EXPORT?socket=PATH)",
                ));
            }
            let socket = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("socket="))
                .filter(|s| !s.is_empty())
                .ok_or_else(|| uri_error(uri, "nbd+unix needs ?socket=PATH"))?;
            return Ok(NbdUri {
                address: NbdAddress::Unix(PathBuf::from(socket)),
                export: export[1..].to_string(),
            });
        }
        let rest = uri
            .strip_prefix("nbd://")
            .ok_or_else(|| uri_error(uri, "not nbd:// or nbd+unix://"))?;
        let (hostport, export) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| uri_error(uri, "the port is not a number"))?,
            ),
            _ => (hostport, 10809),
        };
        if host.is_empty() {
            return Err(uri_error(uri, "no host"));
        }
        Ok(NbdUri {
            address: NbdAddress::Tcp {
                host: host.to_string(),
                port,
            },
            export: export.split('?').next().unwrap_or("").to_string(),
        })
    }

    /// The name QEMU shows for this export (qemu-img info's `image:`):
    /// `nbd+unix:///EXPORT?socket=PATH` or `nbd://HOST:PORT/EXPORT`, with
    /// no `/EXPORT` for the default export. `None` for an IPv6 host, which
    /// QEMU shows as a JSON specification instead.
    pub fn canonical(&self) -> Option<String> {
        let export = if self.export.is_empty() {
            String::new()
        } else {
            format!("/{}", self.export)
        };
        match &self.address {
            NbdAddress::Unix(path) => {
                Some(format!("nbd+unix://{export}?socket={}", path.display()))
            }
            NbdAddress::Tcp { host, .. } if host.contains(':') => None,
            NbdAddress::Tcp { host, port } => Some(format!("nbd://{host}:{port}{export}")),
        }
    }

    /// The part of `nbd:REST` after `nbd:`, as QEMU's legacy syntax.
    fn parse_legacy(uri: &str, rest: &str) -> Result<NbdUri> {
        let (place, export) = match rest.split_once(":exportname=") {
            Some((p, e)) => (p, e.to_string()),
            None => (rest, String::new()),
        };
        if let Some(path) = place.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(uri_error(uri, "nbd:unix: needs a socket path"));
            }
            return Ok(NbdUri {
                address: NbdAddress::Unix(PathBuf::from(path)),
                export,
            });
        }
        let (host, port) = place
            .rsplit_once(':')
            .ok_or_else(|| uri_error(uri, "expected nbd:HOST:PORT or nbd:unix:PATH"))?;
        let host = match host.strip_prefix('[') {
            Some(h) => h
                .strip_suffix(']')
                .ok_or_else(|| uri_error(uri, "unclosed '[' in the host"))?,
            None => host,
        };
        if host.is_empty() {
            return Err(uri_error(uri, "no host"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| uri_error(uri, "the port is not a number"))?;
        Ok(NbdUri {
            address: NbdAddress::Tcp {
                host: host.to_string(),
                port,
            },
            export,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{NbdAddress, NbdUri};

    #[test]
    fn uris_as_qemu_spells_them() {
        use std::path::PathBuf;
        let u = NbdUri::parse("nbd://example.org:10810/disk0").unwrap();
        assert_eq!(
            u.address,
            NbdAddress::Tcp {
                host: "example.org".into(),
                port: 10810
            }
        );
        assert_eq!(u.export, "disk0");
        let u = NbdUri::parse("nbd://127.0.0.1").unwrap();
        assert_eq!(u.export, "");
        assert!(matches!(u.address, NbdAddress::Tcp { port: 10809, .. }));
        let u = NbdUri::parse("nbd+unix:///exp?socket=/run/nbd.sock").unwrap();
        assert_eq!(u.address, NbdAddress::Unix(PathBuf::from("/run/nbd.sock")));
        assert_eq!(u.export, "exp");
        let u = NbdUri::parse("nbd:unix:/run/nbd.sock:exportname=disk0").unwrap();
        assert_eq!(u.address, NbdAddress::Unix(PathBuf::from("/run/nbd.sock")));
        assert_eq!(u.export, "disk0");
        let u = NbdUri::parse("nbd:unix:/tmp/s.sock").unwrap();
        assert_eq!(u.address, NbdAddress::Unix(PathBuf::from("/tmp/s.sock")));
        assert_eq!(u.export, "");
        let u = NbdUri::parse("nbd:localhost:10810:exportname=exp").unwrap();
        assert_eq!(
            u.address,
            NbdAddress::Tcp {
                host: "localhost".into(),
                port: 10810
            }
        );
        assert_eq!(u.export, "exp");
        let u = NbdUri::parse("nbd:[::1]:10809").unwrap();
        assert!(matches!(&u.address, NbdAddress::Tcp { host, port: 10809 } if host == "::1"));
        assert!(super::is_nbd_uri("nbd:unix:/s") && super::is_nbd_uri("nbd:h:1"));
        for (given, shown) in [
            ("nbd://h:10811/", "nbd://h:10811"),
            ("nbd://h/e", "nbd://h:10809/e"),
            ("nbd:h:1:exportname=e", "nbd://h:1/e"),
            ("nbd:unix:/s:exportname=e", "nbd+unix:///e?socket=/s"),
            ("nbd+unix:///?socket=/s", "nbd+unix://?socket=/s"),
        ] {
            assert_eq!(NbdUri::parse(given).unwrap().canonical().unwrap(), shown);
        }
        for bad in [
            "nbd:unix:",
            "nbd:localhost",
            "nbd::10809",
            "nbd:h:port",
            "nbd+unix:///exp",
            "nbds://h/x",
            "nbds+unix:///x?socket=/s",
            "nbd+unix://host/exp?socket=/s",
            "nbd://:10809/x",
            "nbd://h:port/x",
            "http://h/x",
        ] {
            assert!(NbdUri::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
