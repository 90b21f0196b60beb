//! `unsafe` is allowed only under `src/capture/` (the live capture ring), and
//! there every `unsafe` block or impl carries a `// SAFETY:` comment on one of
//! the three lines before it. This test reads the sources and enforces both.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// True if `line` uses the `unsafe` keyword in code (not in a comment or string).
fn uses_unsafe(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    let mut in_str = false;
    let mut word = String::new();
    for c in code.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            in_str = !in_str;
        }
        if !in_str && (c.is_alphanumeric() || c == '_') {
            word.push(c);
        } else {
            if word == "unsafe" {
                return true;
            }
            word.clear();
        }
    }
    false
}

#[test]
fn unsafe_only_in_capture_and_each_has_a_safety_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 20, "sources found");
    let capture = root.join("src/capture");
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if !uses_unsafe(l) {
                continue;
            }
            let rel = f.strip_prefix(root).unwrap().display();
            if !f.starts_with(&capture) {
                problems.push(format!("{rel}:{}: unsafe outside src/capture/", i + 1));
            } else if !lines[i.saturating_sub(3)..=i]
                .iter()
                .any(|p| p.contains("SAFETY:"))
            {
                problems.push(format!("{rel}:{}: unsafe without a SAFETY comment", i + 1));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_detector_sees_unsafe_code_and_ignores_comments() {
    assert!(uses_unsafe("    unsafe { ptr.read() }"));
    assert!(uses_unsafe("unsafe impl Send for X {}"));
    assert!(uses_unsafe("let x = unsafe{f()};"));
    assert!(!uses_unsafe("// unsafe is not allowed here"));
    assert!(!uses_unsafe("let s = \"unsafe\";"));
    assert!(!uses_unsafe("fn not_unsafe_at_all() {}"));
}
