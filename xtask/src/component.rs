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
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
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
    Ok(())
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
    fn componentize_rejects_garbage_with_an_error() {
        assert!(componentize(b"\0asm garbage").is_err());
    }
}
