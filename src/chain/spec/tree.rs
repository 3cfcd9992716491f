//! The two spellings of a block-node option tree, turned into one nested
//! map: `json:{...}` text and `key=value,key2=value2` option strings
//! (`--image-opts`). Dotted keys (`file.filename`) become nested objects,
//! so `{"file.filename":"x"}` and `{"file":{"filename":"x"}}` are the same tree.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// A node's options: keys in the order given, values nested.
pub type Tree = Map<String, Value>;

/// Parses the text after `json:` into a tree, with QEMU's messages for
/// text that is not a JSON object.
pub fn from_json(text: &str) -> Result<Tree> {
    let value = parse_json_object(text)?;
    match value {
        Value::Object(map) => crumple(map),
        _ => Err(Error::argument("Invalid JSON object given")),
    }
}

/// Parses JSON text, refusing duplicate keys as QEMU does.
fn parse_json_object(text: &str) -> Result<Value> {
    let parse_error = |why: String| {
        Error::argument(format!(
            "Could not parse the JSON options: JSON parse error, {why}"
        ))
    };
    if text.trim().is_empty() {
        return Err(Error::argument(
            "Could not parse the JSON options: Expecting a JSON value",
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let why = if e.is_eof() {
            "premature EOI".to_string()
        } else {
            e.to_string()
        };
        parse_error(why)
    })?;
    if has_duplicate_key(text) {
        return Err(parse_error("duplicate key".into()));
    }
    Ok(value)
}

/// Whether some object in the (valid) JSON `text` names a key twice
/// (serde_json keeps the last one silently).
fn has_duplicate_key(text: &str) -> bool {
    struct Dup(bool);
    impl<'de> serde::de::Visitor<'de> for Dup {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<bool, E> {
            Ok(self.0)
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<bool, E> {
            Ok(self.0)
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<bool, E> {
            Ok(self.0)
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<bool, E> {
            Ok(self.0)
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<bool, E> {
            Ok(self.0)
        }
        fn visit_unit<E>(self) -> std::result::Result<bool, E> {
            Ok(self.0)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<bool, A::Error> {
            let mut dup = false;
            while let Some(d) = seq.next_element_seed(DupSeed)? {
                dup |= d;
            }
            Ok(dup)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<bool, A::Error> {
            let mut keys = std::collections::HashSet::new();
            let mut dup = false;
            while let Some(key) = map.next_key::<String>()? {
                dup |= !keys.insert(key);
                dup |= map.next_value_seed(DupSeed)?;
            }
            Ok(dup)
        }
    }
    struct DupSeed;
    impl<'de> serde::de::DeserializeSeed<'de> for DupSeed {
        type Value = bool;
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<bool, D::Error> {
            d.deserialize_any(Dup(false))
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde::de::DeserializeSeed::deserialize(DupSeed, &mut de).unwrap_or(false)
}

/// Parses an option string (`driver=qcow2,file.filename=a,,b.qcow2`):
/// `,,` is a literal comma, a key without `=` means `on`, and a later
/// value for the same key wins. Every value is a string.
pub fn from_options(text: &str) -> Result<Tree> {
    let mut flat = Map::new();
    for item in split_options(text) {
        if item.is_empty() {
            continue;
        }
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (item.clone(), "on".to_string()),
        };
        if key.is_empty() {
            return Err(Error::argument(format!(
                "Invalid parameter name in '{item}'"
            )));
        }
        flat.remove(&key);
        flat.insert(key, Value::String(value));
    }
    crumple(flat)
}

/// Splits at single commas; `,,` stands for one comma.
fn split_options(text: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                items.last_mut().expect("one item").push(',');
            } else {
                items.push(String::new());
            }
        } else {
            items.last_mut().expect("one item").push(c);
        }
    }
    items
}

/// Nests dotted keys, recursively: `{"a.b": 1, "a": {"c": 2}}` becomes
/// `{"a": {"b": 1, "c": 2}}`. A key that names both a value and an
/// object is refused.
pub fn crumple(map: Tree) -> Result<Tree> {
    let mut out = Tree::new();
    for (key, value) in map {
        let value = match value {
            Value::Object(inner) => Value::Object(crumple(inner)?),
            v => v,
        };
        insert(&mut out, &key, &key, value)?;
    }
    Ok(out)
}

fn insert(into: &mut Tree, full: &str, key: &str, value: Value) -> Result<()> {
    let conflict = || {
        Error::argument(format!(
            "Option '{full}' conflicts with another option of the same name"
        ))
    };
    match key.split_once('.') {
        None => match into.get_mut(key) {
            Some(Value::Object(existing)) => match value {
                Value::Object(more) => {
                    for (k, v) in more {
                        insert(existing, full, &k, v)?;
                    }
                    Ok(())
                }
                _ => Err(conflict()),
            },
            Some(_) if matches!(value, Value::Object(_)) => Err(conflict()),
            _ => {
                // A later scalar for the same key wins.
                into.insert(key.to_string(), value);
                Ok(())
            }
        },
        Some((head, rest)) => {
            if head.is_empty() || rest.is_empty() {
                return Err(Error::argument(format!("Invalid parameter name '{full}'")));
            }
            let slot = into
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Tree::new()));
            match slot {
                Value::Object(inner) => insert(inner, full, rest, value),
                _ => Err(conflict()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_and_nested_keys_make_the_same_tree() {
        let a = from_json(r#"{"file.driver":"file","file.filename":"x"}"#).unwrap();
        let b = from_json(r#"{"file":{"driver":"file","filename":"x"}}"#).unwrap();
        assert_eq!(a, b);
        let c = from_options("file.driver=file,file.filename=x").unwrap();
        assert_eq!(
            Value::Object(c),
            json!({"file": {"driver": "file", "filename": "x"}})
        );
    }

    #[test]
    fn option_strings_escape_commas_and_take_the_last_value() {
        let t = from_options("driver=raw,file.filename=a,,b.img,driver=qcow2,ro").unwrap();
        assert_eq!(
            Value::Object(t),
            json!({"file": {"filename": "a,b.img"}, "driver": "qcow2", "ro": "on"})
        );
    }

    #[test]
    fn bad_json_gets_qemus_words() {
        let msg = |t: &str| from_json(t).unwrap_err().message().to_string();
        assert_eq!(
            msg(r#"{"driver":"qcow2""#),
            "Could not parse the JSON options: JSON parse error, premature EOI"
        );
        assert_eq!(msg("[1]"), "Invalid JSON object given");
        assert_eq!(
            msg(""),
            "Could not parse the JSON options: Expecting a JSON value"
        );
        assert_eq!(
            msg(r#"{"driver":"raw","driver":"qcow2"}"#),
            "Could not parse the JSON options: JSON parse error, duplicate key"
        );
        assert!(from_json(r#"{"file":"a","file.filename":"b"}"#).is_err());
    }
}
