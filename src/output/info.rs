//! `info` output: qemu-img's JSON (`ImageInfo`) and human forms.

use super::human::size_to_str;
use super::qjson;
use crate::format::{Fact, FormatKind, FormatSpecific, SnapshotInfo as Snapshot};
use crate::io::Refusal;
use crate::ops::info::{FileInfo, ImageInfo};
use serde_json::{json, Map, Value};

/// The `ImageInfo` object, with keys in the order qemu-img prints them.
pub fn info_json(info: &ImageInfo) -> Value {
    let Some(file) = &info.file else {
        // A protocol node opened as the image: QEMU shows that node alone.
        return node_json(&FileInfo {
            filename: info.filename.clone(),
            length: info.virtual_size,
            actual_size: info.actual_size,
            protocol: info.format,
            window_onto: None,
        });
    };
    let d = &info.description;
    let mut m = Map::new();
    let mut children: Vec<Value> = info
        .extents
        .iter()
        .enumerate()
        .rev()
        .map(|(i, e)| json!({"name": format!("extents.{i}"), "info": node_json(e)}))
        .collect();
    children.push(json!({"name": "file", "info": node_json(file)}));
    m.insert("children".into(), Value::Array(children));
    if let Some(f) = &info.backing_format {
        m.insert("backing-filename-format".into(), json!(f));
    }
    if !d.snapshots.is_empty() {
        m.insert(
            "snapshots".into(),
            Value::Array(d.snapshots.iter().map(snapshot_json).collect()),
        );
    }
    m.insert("virtual-size".into(), json!(info.virtual_size));
    m.insert("filename".into(), json!(info.filename));
    if let Some(cs) = d.cluster_size {
        m.insert("cluster-size".into(), json!(cs));
    }
    m.insert("format".into(), json!(info.format));
    if let Some(a) = info.actual_size {
        m.insert("actual-size".into(), json!(a));
    }
    if let Some(specific) = &d.specific {
        m.insert(
            "format-specific".into(),
            json!({"type": specific.kind, "data": specific_json(specific)}),
        );
    }
    if let Some(full) = &info.full_backing_filename {
        m.insert("full-backing-filename".into(), json!(full));
    }
    if let Some(b) = &info.backing_filename {
        m.insert("backing-filename".into(), json!(b));
    }
    if d.encrypted {
        m.insert("encrypted".into(), json!(true));
    }
    // QEMU shows the flag over a local file, and over HTTP(S) for the
    // formats that say it themselves (raw asks the protocol, and curl
    // has no answer).
    let http = matches!(file.protocol, "http" | "https");
    if is_local(file.protocol) || (http && info.format != FormatKind::fallback().name()) {
        m.insert("dirty-flag".into(), json!(not_cleanly_closed(info)));
    }
    if let Some(refused) = &info.refused {
        m.insert("refused".into(), json!(refused));
    }
    Value::Object(m)
}

/// The qcow2 dirty bit, or QED's need-check flag: either way the image was
/// not closed cleanly and its metadata may need a check. (qemu-img always
/// says false for QED; qimg tells.)
fn not_cleanly_closed(info: &ImageInfo) -> bool {
    info.description.dirty || info.description.need_check
}

/// Whether a protocol is a local file (QEMU reports its allocation).
fn is_local(protocol: &str) -> bool {
    matches!(protocol, "file" | "host_device")
}

/// A node below the image: a protocol node, or a raw window onto one.
fn node_json(node: &FileInfo) -> Value {
    let mut m = Map::new();
    let local = is_local(node.protocol);
    match &node.window_onto {
        Some(inner) => {
            m.insert(
                "children".into(),
                json!([{"name": "file", "info": node_json(inner)}]),
            );
            m.insert("virtual-size".into(), json!(node.length));
            m.insert("filename".into(), json!(node.filename));
            // A window is a node of the fallback (raw) driver.
            m.insert("format".into(), json!(FormatKind::fallback().name()));
            if let (Some(a), true) = (node.actual_size, local) {
                m.insert("actual-size".into(), json!(a));
            }
            if local {
                m.insert("dirty-flag".into(), json!(false));
            }
        }
        None => {
            m.insert("children".into(), json!([]));
            m.insert("virtual-size".into(), json!(node.length));
            m.insert("filename".into(), json!(node.filename));
            m.insert("format".into(), json!(node.protocol));
            if !local {
                // QEMU says no more about a network export.
                return Value::Object(m);
            }
            if let Some(a) = node.actual_size {
                m.insert("actual-size".into(), json!(a));
            }
            m.insert(
                "format-specific".into(),
                json!({"type": "file", "data": {}}),
            );
            m.insert("dirty-flag".into(), json!(false));
        }
    }
    Value::Object(m)
}

/// The human lines of a node below the image, indented one level per
/// depth, as qemu-img prints child nodes.
fn human_node(out: &mut String, node: &FileInfo, name: &str, depth: usize) {
    let pad = "    ".repeat(depth);
    let disk = node
        .actual_size
        .map(size_to_str)
        .unwrap_or_else(|| "unavailable".into());
    *out += &format!("{}Child node '{name}':\n", "    ".repeat(depth - 1));
    match &node.window_onto {
        Some(inner) => {
            *out += &format!("{pad}image: {}\n", node.filename);
            *out += &format!("{pad}file format: {}\n", FormatKind::fallback());
            *out += &format!(
                "{pad}virtual size: {} ({} bytes)\n",
                size_to_str(node.length),
                node.length
            );
            *out += &format!("{pad}disk size: {disk}\n");
            human_node(out, inner, &format!("{name}/file"), depth + 1);
        }
        None => {
            *out += &format!("{pad}filename: {}\n", node.filename);
            *out += &format!("{pad}protocol type: {}\n", node.protocol);
            *out += &format!(
                "{pad}file length: {} ({} bytes)\n",
                size_to_str(node.length),
                node.length
            );
            *out += &format!("{pad}disk size: {disk}\n");
        }
    }
}

fn snapshot_json(s: &Snapshot) -> Value {
    let mut m = Map::new();
    if let Some(i) = s.icount {
        m.insert("icount".into(), json!(i));
    }
    m.insert(
        "vm-clock-nsec".into(),
        json!(s.vm_clock_nsec % 1_000_000_000),
    );
    m.insert("name".into(), json!(s.name));
    m.insert("date-sec".into(), json!(s.date_sec));
    m.insert("date-nsec".into(), json!(s.date_nsec));
    m.insert(
        "vm-clock-sec".into(),
        json!(s.vm_clock_nsec / 1_000_000_000),
    );
    m.insert("id".into(), json!(s.id));
    m.insert("vm-state-size".into(), json!(s.vm_state_size));
    Value::Object(m)
}

/// A format's `format-specific` data, keys in the format's order.
fn specific_json(specific: &FormatSpecific) -> Value {
    object_json(&specific.data)
}

fn object_json(entries: &[(&'static str, Fact)]) -> Value {
    let mut m = Map::new();
    for (k, v) in entries {
        m.insert((*k).into(), fact_json(v));
    }
    Value::Object(m)
}

fn fact_json(fact: &Fact) -> Value {
    match fact {
        Fact::Str(s) => json!(s),
        Fact::Int(n) => json!(n),
        Fact::Bool(b) => json!(b),
        Fact::List(items) => Value::Array(items.iter().map(fact_json).collect()),
        Fact::Object(entries) => object_json(entries),
    }
}

/// `info --output=json`: one object, or a list with `--backing-chain`.
pub fn render_json(infos: &[ImageInfo], as_list: bool) -> String {
    if as_list {
        qjson::to_string(&Value::Array(infos.iter().map(info_json).collect()))
    } else {
        qjson::to_string(&info_json(&infos[0]))
    }
}

/// What an untrusted open refused, one line each (`info`, `check`).
pub fn render_refusals(refused: &[Refusal]) -> String {
    refused
        .iter()
        .map(|r| format!("refused (--untrusted): {} '{}'\n", r.kind.words(), r.name))
        .collect()
}

/// `info` in human form; images of a chain are separated by a blank line.
pub fn render_human(infos: &[ImageInfo]) -> String {
    let blocks: Vec<String> = infos.iter().map(human_one).collect();
    blocks.join("\n")
}

fn human_one(info: &ImageInfo) -> String {
    let d = &info.description;
    let mut out = String::new();
    let disk = info
        .actual_size
        .map(size_to_str)
        .unwrap_or_else(|| "unavailable".into());
    out += &format!("image: {}\n", info.filename);
    out += &format!("file format: {}\n", info.format);
    out += &format!(
        "virtual size: {} ({} bytes)\n",
        size_to_str(info.virtual_size),
        info.virtual_size
    );
    out += &format!("disk size: {disk}\n");
    if d.encrypted {
        out += "encrypted: yes\n";
    }
    if let Some(cs) = d.cluster_size {
        out += &format!("cluster_size: {cs}\n");
    }
    if not_cleanly_closed(info) {
        out += "cleanly shut down: no\n";
    }
    if let Some(b) = &info.backing_filename {
        out += &format!("backing file: {b}");
        if let Some(full) = info.full_backing_filename.as_ref().filter(|f| *f != b) {
            out += &format!(" (actual path: {full})");
        }
        out += "\n";
        if let Some(f) = &info.backing_format {
            out += &format!("backing file format: {f}\n");
        }
    }
    out += &render_refusals(info.refused.as_deref().unwrap_or_default());
    out += &render_snapshot_list(&d.snapshots);
    if let Some(specific) = &d.specific {
        out += "Format specific information:\n";
        dump_value(&mut out, &specific_json(specific), 1);
    }
    for (i, e) in info.extents.iter().enumerate().rev() {
        human_node(&mut out, e, &format!("/extents.{i}"), 1);
    }
    if let Some(file) = &info.file {
        human_node(&mut out, file, "/file", 1);
    }
    out
}

/// The snapshot table as `qemu-img info` and `qemu-img snapshot -l` print
/// it: a "Snapshot list:" heading and one row per snapshot, dates in local
/// time; nothing at all when there are none.
pub fn render_snapshot_list(snapshots: &[Snapshot]) -> String {
    let mut out = String::new();
    if snapshots.is_empty() {
        return out;
    }
    out += "Snapshot list:\n";
    out += &snapshot_row("ID", "TAG", "VM_SIZE", "DATE", "VM_CLOCK", "ICOUNT");
    for s in snapshots {
        let secs = s.vm_clock_nsec / 1_000_000_000;
        let clock = format!(
            "{:04}:{:02}:{:02}.{:03}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60,
            (s.vm_clock_nsec / 1_000_000) % 1000
        );
        let icount = s
            .icount
            .map(|i| i.to_string())
            .unwrap_or_else(|| "--".into());
        out += &snapshot_row(
            &s.id,
            &s.name,
            &size_to_str(s.vm_state_size),
            &local_time(s.date_sec as i64),
            &clock,
            &icount,
        );
    }
    out
}

fn snapshot_row(id: &str, tag: &str, size: &str, date: &str, clock: &str, icount: &str) -> String {
    format!("{id:<7} {tag:<16} {size:>8} {date:>19} {clock:>15} {icount:>10}\n")
}

/// Seconds since the epoch as local `YYYY-MM-DD HH:MM:SS`.
fn local_time(secs: i64) -> String {
    // SAFETY: localtime_r writes only into the tm we pass.
    let tm = unsafe {
        let t: libc::time_t = secs as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Prints a value as qemu-img's human dump does: `key: value` lines, dashes
/// in keys turned to spaces, lists as `[i]:` items.
fn dump_value(out: &mut String, v: &Value, level: usize) {
    let pad = "    ".repeat(level);
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = k.replace('-', " ");
                if v.is_object() || v.is_array() {
                    out.push_str(&format!("{pad}{key}:\n"));
                    dump_value(out, v, level + 1);
                } else {
                    out.push_str(&format!("{pad}{key}: {}\n", scalar(v)));
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                if v.is_object() || v.is_array() {
                    out.push_str(&format!("{pad}[{i}]:\n"));
                    dump_value(out, v, level + 1);
                } else {
                    out.push_str(&format!("{pad}[{i}]: {}\n", scalar(v)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
