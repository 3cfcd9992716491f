//! The `json:{...}` names QEMU gives a node it cannot name by a file name
//! (a raw window, a node with options that change what it reads). QEMU
//! prints the keys of each object in the order of its dictionary's hash
//! buckets, so scripts that compare `info` output with qemu-img's see the
//! same text only when qimg orders them the same way.

use serde_json::Value;

/// How many buckets QEMU's dictionaries have.
const BUCKETS: u32 = 512;

/// The bucket QEMU's dictionary puts `key` in (the TDB hash of the key,
/// modulo the bucket count).
fn bucket(key: &str) -> u32 {
    let bytes = key.as_bytes();
    let mut value = 0x238F_13AFu32.wrapping_mul(bytes.len() as u32);
    for (i, &b) in bytes.iter().enumerate() {
        value = value.wrapping_add(u32::from(b) << ((i * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) % BUCKETS
}

/// `pairs` (in the order they were added) as QEMU's JSON text of a
/// dictionary: by bucket, and within a bucket the key added last first;
/// `": "` after keys and `", "` between members.
pub fn qdict_json(pairs: &[(String, Value)]) -> String {
    let mut order: Vec<(u32, usize)> = pairs
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (bucket(k), i))
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let members: Vec<String> = order
        .iter()
        .map(|&(_, i)| {
            let (k, v) = &pairs[i];
            format!("{}: {}", Value::String(k.clone()), scalar_or_nested(v))
        })
        .collect();
    format!("{{{}}}", members.join(", "))
}

/// A value as QEMU prints it inside such a name (nested objects in the
/// same order and spacing).
fn scalar_or_nested(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let pairs: Vec<(String, Value)> =
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            qdict_json(&pairs)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_come_in_qemus_order() {
        // qemu-img 10 names a raw window so:
        // json:{"offset": 512, "driver": "raw", "size": 512, "file": {"driver": "file", "filename": "r.raw"}}
        let file = json!({"driver": "file", "filename": "r.raw"});
        let pairs = vec![
            ("driver".to_string(), json!("raw")),
            ("offset".to_string(), json!(512)),
            ("size".to_string(), json!(512)),
            ("file".to_string(), file),
        ];
        assert_eq!(
            qdict_json(&pairs),
            r#"{"offset": 512, "driver": "raw", "size": 512, "file": {"driver": "file", "filename": "r.raw"}}"#
        );
    }
}
