//! Core module → component (WASI preview1 reactor adapter of wasmtime 33.0.0, the runtime's
//! version), validation, and the interface check over `pkg/*.wasm`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wasmparser::{Validator, WasmFeatures};
use wit_component::ComponentEncoder;

use crate::wit_check::{self, InterfaceReport};

/// Components with a size limit (bytes). `cargo xtask build` and the `components` step fail
/// above it. `sync.wasm` carries the Loro CRDT; its limit is issue 12's target,
/// [`SYNC_TARGET`] (3,275,469 bytes until every dependency was optimized for size and the
/// wire enums and sorts shared their code, 2026-12-02; docs/sync.md).
pub const SIZE_LIMITS: &[(&str, u64)] = &[("sync.wasm", SYNC_TARGET)];

/// Issue 12's size target for `sync.wasm`.
pub const SYNC_TARGET: u64 = 3_000_000;

/// The limit of component `file_name`, if it has one.
pub fn size_limit(file_name: &str) -> Option<u64> {
    SIZE_LIMITS
        .iter()
        .find(|(name, _)| *name == file_name)
        .map(|(_, max)| *max)
}

/// The size line of a component (`sync.wasm: 2,951,234 bytes, limit 3,000,000`) and
/// whether it is within its limit.
pub fn size_line(file_name: &str, size: u64) -> (String, bool) {
    match size_limit(file_name) {
        Some(max) => (
            format!(
                "{file_name}: {} bytes, limit {}{}{}",
                thousands(size),
                thousands(max),
                if size > max { " (OVER)" } else { "" },
                if file_name == "sync.wasm" && size > SYNC_TARGET {
                    format!(
                        "; {} over issue 12's target of {}",
                        thousands(size - SYNC_TARGET),
                        thousands(SYNC_TARGET)
                    )
                } else {
                    String::new()
                }
            ),
            size <= max,
        ),
        None => (format!("{file_name}: {} bytes", thousands(size)), true),
    }
}

/// Fails naming every component over its limit (`sizes`: file name and bytes).
pub fn check_sizes<'a>(sizes: impl IntoIterator<Item = (&'a str, u64)>) -> Result<()> {
    let over: Vec<String> = sizes
        .into_iter()
        .filter_map(|(name, size)| {
            let (line, ok) = size_line(name, size);
            (!ok).then_some(line)
        })
        .collect();
    if !over.is_empty() {
        bail!("component over its size limit: {}", over.join("; "));
    }
    Ok(())
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Wraps a `wasm32-wasip1` core module into a component.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>> {
    let component = ComponentEncoder::default()
        .module(core)
        .context("reading the core module's component-type metadata")?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("loading the wasi_snapshot_preview1 reactor adapter")?
        .validate(true)
        .encode()
        .context("encoding the component")?;
    validate_component(&component)?;
    Ok(component)
}

/// Full validation with the component model enabled.
pub fn validate_component(bytes: &[u8]) -> Result<()> {
    if !wasmparser::Parser::is_component(bytes) {
        bail!("not a WebAssembly component");
    }
    Validator::new_with_features(WasmFeatures::default() | WasmFeatures::COMPONENT_MODEL)
        .validate_all(bytes)
        .context("the component does not validate")?;
    Ok(())
}

/// `pkg/*.wasm`, sorted. Errors only if `pkg/` cannot be read.
pub fn pkg_components(pkg: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(pkg).with_context(|| format!("listing {}", pkg.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", pkg.display()))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "wasm") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Validates and interface-checks one component file.
pub fn check_file(path: &Path) -> Result<InterfaceReport> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    validate_component(&bytes).with_context(|| path.display().to_string())?;
    wit_check::check_component(&bytes).with_context(|| path.display().to_string())
}

/// `cargo xtask check-components`: checks every `pkg/*.wasm` and prints one line each.
pub fn check_pkg_components(root: &Path) -> Result<()> {
    let pkg = root.join("pkg");
    let files = pkg_components(&pkg)?;
    if files.is_empty() {
        bail!(
            "no components in {}; run `cargo xtask build` first",
            pkg.display()
        );
    }
    let mut failures = Vec::new();
    let mut sizes = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if size_limit(&name).is_some() {
            println!("size {}", size_line(&name, size).0);
        }
        sizes.push((name.to_string(), size));
        match check_file(path) {
            Ok(report) => println!("interface check OK   {name}: {report}"),
            Err(err) => {
                println!("interface check FAIL {name}: {err:#}");
                failures.push(name.into_owned());
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} components failed the interface check: {}",
            failures.len(),
            files.len(),
            failures.join(", ")
        );
    }
    println!("interface check: all {} components OK", files.len());
    check_sizes(sizes.iter().map(|(n, s)| (n.as_str(), *s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_accepts_components_and_rejects_core_modules() {
        let component = crate::wit_check::tests::component(
            "import hyperware:process/standard@1.0.0;\nexport init: func(our: string);",
        );
        validate_component(&component).unwrap();

        let core = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert!(validate_component(&core).is_err());
        // Truncated component: header says component, body is cut.
        assert!(validate_component(&component[..component.len() / 2]).is_err());
    }

    #[test]
    fn a_component_over_its_size_limit_fails_the_check() {
        let max = size_limit("sync.wasm").unwrap();
        assert_eq!(max, 3_000_000);
        check_sizes([("sync.wasm", max), ("presence.wasm", 9_000_000)]).unwrap();
        let err = check_sizes([("presence.wasm", 1), ("sync.wasm", max + 1)]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("sync.wasm: 3,000,001 bytes, limit 3,000,000 (OVER)"),
            "{msg}"
        );
        assert!(!msg.contains("presence"), "{msg}");
        assert_eq!(
            size_line("sync.wasm", 2_951_234).0,
            "sync.wasm: 2,951,234 bytes, limit 3,000,000"
        );
        assert_eq!(
            size_line("sync.wasm", 3_080_000).0,
            "sync.wasm: 3,080,000 bytes, limit 3,000,000 (OVER); 80,000 over issue 12's target of 3,000,000"
        );
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
    }

    #[test]
    fn componentize_rejects_garbage_with_an_error() {
        assert!(componentize(b"\0asm garbage").is_err());
    }
}
