//! The layer rules, checked on the source: generic code (operations,
//! chains, the command line, the renderers) reaches formats only through
//! the driver table, so it never names a format nor imports one's types.
//! (A new format must not need a change there.)

use std::fs;
use std::path::{Path, PathBuf};

/// The folders of generic code.
const GENERIC: &[&str] = &[
    "src/ops",
    "src/chain",
    "src/cli",
    "src/output",
    "src/engine",
];

/// What generic code must not contain: format names as string literals
/// (name comparisons, hard-coded defaults), and paths into a format's
/// folder or its types.
const FORBIDDEN: &[&str] = &[
    "\"qcow2\"",
    "\"qed\"",
    "\"raw\"",
    "format::qcow2",
    "format::qed",
    "format::raw",
    "qcow2::",
    "qed::",
    "Qcow2",
    "Qed",
    "FormatKind::Raw",
    "FormatKind::Qcow2",
    "FormatKind::Qed",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code lines of a file: comments dropped, and everything from the
/// first `#[cfg(test)]` on (unit tests may name formats to build inputs).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        // A trailing comment (not inside a string: good enough for the
        // literals looked for, which contain no "//").
        let code = match line.find(" // ") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push((n + 1, code.to_string()));
    }
    out
}

#[test]
fn generic_code_names_no_format() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in GENERIC {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let mut hits = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("read source");
        for (n, line) in code_lines(&text) {
            for word in FORBIDDEN {
                if line.contains(word) {
                    hits.push(format!(
                        "{}:{n}: {word}: {}",
                        file.strip_prefix(root).unwrap_or(file).display(),
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "generic code names formats (ask the driver instead):\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_check_sees_a_name_comparison() {
    // The scanner itself: a comparison like the ones the driver table
    // replaced is found, a comment and a unit test module are not.
    let sample = "fn f(i: &dyn Format) -> bool {\n    i.format_name() == \"raw\"\n}\n\
                  // \"qcow2\" in a comment\n#[cfg(test)]\nmod tests { const X: &str = \"qed\"; }\n";
    let lines = code_lines(sample);
    let found: Vec<usize> = lines
        .iter()
        .filter(|(_, l)| FORBIDDEN.iter().any(|w| l.contains(w)))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(found, [2]);
}
