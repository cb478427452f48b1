//! Assembles the WIT a Hyperware app generates its types from, as `cargo xtask build` does
//! for target/wit: process_lib's `hyperware.wit` plus our `api/*.wit`, into OUT_DIR/wit, and
//! writes the `wit_bindgen::generate!` call for it (the macro takes only a literal path).

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let wit = out.join("wit");
    if wit.exists() {
        std::fs::remove_dir_all(&wit).unwrap();
    }
    std::fs::create_dir_all(&wit).unwrap();

    let hyperware = hyperware_wit(&root);
    println!("cargo:rerun-if-changed={}", hyperware.display());
    println!("cargo:rerun-if-env-changed=HYPERWARE_WIT");
    std::fs::copy(&hyperware, wit.join("hyperware.wit")).unwrap();

    let api = root.join("api");
    println!("cargo:rerun-if-changed={}", api.display());
    let mut copied = 0;
    for entry in std::fs::read_dir(&api).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wit") {
            println!("cargo:rerun-if-changed={}", path.display());
            std::fs::copy(&path, wit.join(path.file_name().unwrap())).unwrap();
            copied += 1;
        }
    }
    assert!(copied > 0, "no api/*.wit in {}", api.display());

    let bindings = format!(
        "wit_bindgen::generate!({{\n    path: {:?},\n    world: \"p2p-patterns-p2p-patterns-dot-os-v0\",\n    \
         generate_unused_types: true,\n    \
         additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],\n}});\n",
        wit.to_str().expect("OUT_DIR is UTF-8")
    );
    std::fs::write(out.join("bindings.rs"), bindings).unwrap();
}

/// `hyperware-wit/hyperware.wit` of the hyperware_process_lib version in Cargo.lock, from
/// cargo's registry sources (or `$HYPERWARE_WIT`, or `cargo metadata` if not unpacked).
fn hyperware_wit(root: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("HYPERWARE_WIT") {
        return PathBuf::from(p);
    }
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let lock = std::fs::read_to_string(&lock).expect("Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"hyperware_process_lib\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .expect("hyperware_process_lib in Cargo.lock")
        .to_string();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let dir = format!("hyperware_process_lib-{version}");
    if let Ok(registries) = std::fs::read_dir(cargo_home.join("registry/src")) {
        for reg in registries.flatten() {
            let p = reg.path().join(&dir).join("hyperware-wit/hyperware.wit");
            if p.is_file() {
                return p;
            }
        }
    }
    // Not unpacked yet: let cargo fetch it (wasm-only dependency, hence the platform filter).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            "wasm32-wasip1",
        ])
        .output()
        .expect("running cargo metadata");
    let text = String::from_utf8_lossy(&out.stdout);
    let needle = format!("{dir}/Cargo.toml");
    let manifest = text
        .split('"')
        .find(|s| s.ends_with(&needle))
        .unwrap_or_else(|| panic!("no {dir} in `cargo metadata`; set HYPERWARE_WIT"));
    Path::new(manifest)
        .parent()
        .unwrap()
        .join("hyperware-wit/hyperware.wit")
}
