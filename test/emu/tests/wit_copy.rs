//! test/emu/wit/hyperware.wit is the WIT the emulator is compiled against; it must be the
//! one `cargo xtask build` assembles into target/wit from process_lib (what the components
//! were built against).

use std::path::Path;

#[test]
fn the_checked_in_wit_equals_the_assembled_one() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here
        .parent()
        .and_then(Path::parent)
        .expect("workspace root");
    // `cargo xtask build` assembles the WIT into the workspace's target/wit whatever
    // CARGO_TARGET_DIR says (xtask/src/pkgbuild.rs).
    let assembled = root.join("target").join("wit").join("hyperware.wit");
    let assembled = std::fs::read_to_string(&assembled).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Run `cargo xtask build` in {} first (it assembles target/wit).",
            assembled.display(),
            root.display()
        )
    });
    let ours = std::fs::read_to_string(here.join("wit").join("hyperware.wit")).unwrap();
    assert!(
        ours == assembled,
        "test/emu/wit/hyperware.wit differs from target/wit/hyperware.wit: copy the new one \
         over and check the host functions (src/host.rs) against it"
    );
}
