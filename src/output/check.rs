//! `check` output: qemu-img's `ImageCheck` JSON and its human summary.

use super::qjson;
use crate::format::check::CheckReport;
use crate::io::Refusal;
use serde_json::{json, Map, Value};

/// The `ImageCheck` object; counters appear only when non-zero, in
/// qemu-img's key order.
/// With `--untrusted`, `refused` lists what the open refused.
pub fn render_json(
    filename: &str,
    format: &str,
    r: &CheckReport,
    refused: Option<&[Refusal]>,
) -> String {
    let mut m = Map::new();
    let nonzero = |m: &mut Map<String, Value>, key: &str, v: u64| {
        if v != 0 {
            m.insert(key.into(), json!(v));
        }
    };
    nonzero(&mut m, "image-end-offset", r.image_end_offset);
    nonzero(&mut m, "compressed-clusters", r.compressed_clusters);
    nonzero(&mut m, "total-clusters", r.total_clusters);
    nonzero(&mut m, "corruptions", r.corruptions);
    nonzero(&mut m, "corruptions-fixed", r.corruptions_fixed);
    m.insert("check-errors".into(), json!(r.check_errors));
    nonzero(&mut m, "leaks", r.leaks);
    nonzero(&mut m, "leaks-fixed", r.leaks_fixed);
    nonzero(&mut m, "allocated-clusters", r.allocated_clusters);
    m.insert("filename".into(), json!(filename));
    m.insert("format".into(), json!(format));
    nonzero(&mut m, "fragmented-clusters", r.fragmented_clusters);
    if let Some(refused) = refused {
        m.insert("refused".into(), json!(refused));
    }
    qjson::to_string(&Value::Object(m))
}

/// The human summary qemu-img prints on stdout.
pub fn render_human(r: &CheckReport) -> String {
    let mut out = String::new();
    if r.corruptions == 0 && r.leaks == 0 && r.check_errors == 0 {
        out += "No errors were found on the image.\n";
    } else {
        if r.corruptions > 0 {
            out += &format!(
                "\n{} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n",
                r.corruptions
            );
        }
        if r.leaks > 0 {
            out += &format!(
                "\n{} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n",
                r.leaks
            );
        }
        if r.check_errors > 0 {
            out += &format!(
                "\n{} internal errors have occurred during the check.\n",
                r.check_errors
            );
        }
    }
    if r.total_clusters != 0 && r.allocated_clusters != 0 {
        let allocated = r.allocated_clusters as f64;
        out += &format!(
            "{}/{} = {:.2}% allocated, {:.2}% fragmented, {:.2}% compressed clusters\n",
            r.allocated_clusters,
            r.total_clusters,
            allocated * 100.0 / r.total_clusters as f64,
            r.fragmented_clusters as f64 * 100.0 / allocated,
            r.compressed_clusters as f64 * 100.0 / allocated
        );
    }
    if r.image_end_offset != 0 {
        out += &format!("Image end offset: {}\n", r.image_end_offset);
    }
    out
}

/// The header qemu-img prints after a repair, before double-checking.
pub fn render_repaired(r: &CheckReport) -> String {
    format!(
        "The following inconsistencies were found and repaired:\n\n    {} leaked clusters\n    {} corruptions\n\nDouble checking the fixed image now...\n",
        r.leaks_fixed, r.corruptions_fixed
    )
}
