//! The emulated `kit run-tests` (p2p_emu::kit) reads test/tests.toml as kit does and reports
//! a failing check with its test, file and line, and the test's panic with its message.
//! The passing run of the whole test package is `cargo xtask test --step kit`.

use p2p_emu::kit::{self, Verdict};
use p2p_emu::EmuConfig;
use std::path::Path;

fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

fn tests() -> Vec<kit::KitTest> {
    let ws = workspace();
    kit::load(&ws.join("test/tests.toml"), &ws).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn tests_toml_names_three_nodes_our_package_and_the_test_package() {
    let t = tests();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].nodes, ["alice.os", "bob.os", "charlie.os"]);
    let setup: Vec<String> = t[0].setup.iter().map(|p| p.id()).collect();
    assert_eq!(
        setup,
        [
            "p2p-patterns:p2p-patterns.os",
            "p2p-patterns-test:p2p-patterns.os"
        ]
    );
    assert_eq!(t[0].tests.len(), 1);
    assert_eq!(t[0].tests[0].0, "p2p-patterns-test");
}

#[test]
fn a_failed_check_is_reported_with_its_test_file_and_line_and_the_panic_message() {
    // Two nodes only: the presence module needs three and says so.
    let mut t = tests().remove(0);
    t.nodes.truncate(2);
    let cfg = EmuConfig {
        echo_verbosity: None,
        ..EmuConfig::default()
    };
    let report = kit::run(&t, cfg, Some(workspace().join("target/emu-cache"))).unwrap();
    let Verdict::Fail {
        test, file, line, ..
    } = &report.verdict
    else {
        panic!("{}", report.summary())
    };
    assert_eq!(test, "presence");
    assert!(
        file.ends_with("src/presence.rs") && *line > 0,
        "{file}:{line}"
    );
    let summary = report.summary();
    assert!(summary.starts_with("FAIL: presence "), "{summary}");
    let crash = report
        .crashes
        .iter()
        .find(|c| c.process.ends_with(":tester:sys"))
        .unwrap_or_else(|| panic!("the test panicked after reporting: {summary}"));
    assert!(
        crash.message.contains("needs three nodes") && crash.message.contains("src/presence.rs"),
        "{}",
        crash.message
    );
}
