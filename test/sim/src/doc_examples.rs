//! The Rust examples in the Markdown docs, compiled and run as doctests of this crate
//! (`cargo test --doc -p p2p-sim`, part of `cargo test -p p2p-sim` and so of
//! `cargo xtask test`). p2p-sim depends on p2p-common and every service crate, so an
//! example may use any of them, and the WIT-generated types of `wit-compat` (a
//! dev-dependency). What the JSON examples answer is checked by `tests/doc_answers.rs`.
//!
//! A code block with no language or `rust` is Rust; give anything else its language (`text`,
//! `json`, `sh`). The test below fails when a Markdown file with a Rust block is not listed
//! here, or when a listed file has a block that would not run (`ignore`, `no_run`).

macro_rules! doctested {
    ($($name:ident = $path:literal),* $(,)?) => {
        /// Markdown files (relative to the workspace root) whose Rust blocks run as doctests.
        pub const DOCTESTED: &[&str] = &[$($path),*];
        $(
            #[cfg(doctest)]
            #[doc = include_str!(concat!("../../../", $path))]
            pub struct $name;
        )*
    };
}

doctested! {
    Readme = "README.md",
    Api = "docs/api.md",
    Architecture = "docs/architecture.md",
    Performance = "docs/performance.md",
    Presence = "docs/presence.md",
    Simulator = "docs/simulator.md",
}

/// Markdown files with Rust blocks that are not doctests yet, each with the reason. An
/// example that needs a Hyperware node runs against [`crate::harness`] instead: real cores
/// behind the driver, with a `Transport` standing in for `ProcessTransport` (hidden `# `
/// lines set it up; see docs/api.md).
pub const NOT_YET: &[(&str, &str)] = &[];

/// A fenced code block: its info string and first line number (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub info: String,
    pub line: usize,
}

/// Every fenced code block (``` or ~~~) in `markdown`.
pub fn code_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(char, usize)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let fence_char = match trimmed.chars().next() {
            Some(c @ ('`' | '~')) => c,
            _ => continue,
        };
        let len = trimmed.chars().take_while(|&c| c == fence_char).count();
        if len < 3 {
            continue;
        }
        match open {
            None => {
                open = Some((fence_char, len));
                blocks.push(Block {
                    info: trimmed[len..].trim().to_string(),
                    line: i + 1,
                });
            }
            Some((c, n)) if c == fence_char && len >= n && trimmed[len..].trim().is_empty() => {
                open = None;
            }
            Some(_) => {}
        }
    }
    blocks
}

/// The attributes rustdoc reads from an info string (`rust,no_run` → `["rust", "no_run"]`).
fn attributes(info: &str) -> Vec<&str> {
    info.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

/// Whether rustdoc compiles the block as Rust: no attributes at all, or at least one of
/// rustdoc's own (`rust`, `no_run`, ...), as rustdoc decides (`text` alone is not Rust,
/// `rust,text` is).
pub fn is_rust(info: &str) -> bool {
    const RUSTDOC: &[&str] = &[
        "rust",
        "ignore",
        "no_run",
        "should_panic",
        "compile_fail",
        "test_harness",
        "standalone_crate",
        "edition2015",
        "edition2018",
        "edition2021",
        "edition2024",
    ];
    let attrs = attributes(info);
    attrs.is_empty() || attrs.iter().any(|a| RUSTDOC.contains(a))
}

/// Whether a Rust block is compiled but not run (or not even compiled).
pub fn skips_running(info: &str) -> bool {
    attributes(info)
        .iter()
        .any(|a| matches!(*a, "ignore" | "no_run"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// README.md and docs/*.md, relative to the root, sorted.
    fn markdown_files() -> Vec<String> {
        let mut files = vec!["README.md".to_string()];
        for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
            let path = entry.expect("docs entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                files.push(format!("docs/{name}"));
            }
        }
        files.sort();
        files
    }

    #[test]
    fn every_rust_block_in_the_docs_is_a_doctest_that_runs() {
        let files = markdown_files();
        assert!(files.len() >= 5, "found only {files:?}");
        let mut rust_blocks = 0;
        let mut problems = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(root().join(file)).expect("readable");
            let rust: Vec<Block> = code_blocks(&text)
                .into_iter()
                .filter(|b| is_rust(&b.info))
                .collect();
            let listed = DOCTESTED.contains(&file.as_str());
            let pending = NOT_YET.iter().any(|(f, _)| f == file);
            if listed {
                rust_blocks += rust.len();
                for b in rust.iter().filter(|b| skips_running(&b.info)) {
                    problems.push(format!(
                        "{file}:{}: ```{} is not run; make it run or mark it ```text",
                        b.line, b.info
                    ));
                }
            } else if !rust.is_empty() && !pending {
                problems.push(format!(
                    "{file} has Rust blocks (line {}) but is not in DOCTESTED \
                     (test/sim/src/doc_examples.rs); a block that is not Rust needs a \
                     language (```text, ```json, ```sh)",
                    rust.iter()
                        .map(|b| b.line.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            } else if pending && rust.is_empty() {
                problems.push(format!(
                    "{file} has no Rust blocks any more: remove it from NOT_YET"
                ));
            }
        }
        for listed in DOCTESTED {
            if !files.iter().any(|f| f == listed) {
                problems.push(format!("DOCTESTED names {listed}, which does not exist"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // The simulator and architecture docs have examples: the doctests are not empty.
        assert!(rust_blocks >= 2, "only {rust_blocks} Rust blocks found");
    }

    #[test]
    fn fences_and_languages() {
        let md = "text\n```\nplain\n```\n```rust,no_run\nx\n```\n````text\n```\n````\n\
                  ~~~json\n{}\n~~~\n  ```sh\n  ls\n  ```\n";
        let blocks = code_blocks(md);
        let infos: Vec<&str> = blocks.iter().map(|b| b.info.as_str()).collect();
        assert_eq!(infos, ["", "rust,no_run", "text", "json", "sh"]);
        assert_eq!(blocks[1].line, 5);
        assert!(is_rust("") && is_rust("rust") && is_rust("rust,should_panic"));
        assert!(is_rust("edition2021") && is_rust("no_run"));
        assert!(!is_rust("text") && !is_rust("json") && !is_rust("sh"));
        assert!(is_rust("rust,text"), "rustdoc compiles it");
        assert!(skips_running("rust,no_run") && skips_running("ignore"));
        assert!(!skips_running("rust") && !skips_running("should_panic"));
    }
}
