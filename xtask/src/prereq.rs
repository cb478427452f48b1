//! Prerequisites, checked before any long compile, each failure with the command that fixes it.

use std::fmt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::workspace::{self, WASM_TARGET};

/// The workspace's minimum Rust: `rust-version` of `[workspace.package]` in Cargo.toml,
/// which xtask inherits, so Cargo.toml stays the one place that states it.
pub const MIN_RUST: &str = env!("CARGO_PKG_RUST_VERSION");

/// Something a command or test step needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Prereq {
    /// `rustc` at least [`MIN_RUST`].
    Rust,
    /// The `wasm32-wasip1` standard library.
    WasmTarget,
    /// `cargo fmt`.
    Rustfmt,
}

impl Prereq {
    pub fn describe(self) -> String {
        match self {
            Prereq::Rust => format!("Rust >= {MIN_RUST}"),
            Prereq::WasmTarget => format!("the {WASM_TARGET} target"),
            Prereq::Rustfmt => "rustfmt".to_string(),
        }
    }
}

/// A `major.minor.patch` version; a missing patch is 0 and pre-release tags are ignored
/// (1.90.0-nightly counts as 1.90.0, as cargo's `rust-version` check does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Version(major, minor, patch))
    }

    /// The version in `rustc --version` output: `rustc 1.95.0 (59807616e 2026-04-14)`.
    pub fn from_rustc_output(output: &str) -> Option<Version> {
        let mut words = output.split_whitespace();
        if words.next()? != "rustc" {
            return None;
        }
        Version::parse(words.next()?)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What the machine looks like, as far as the checks care. Real probes run commands; tests
/// pass fixed answers.
pub trait Probe {
    /// `rustc --version` output, or why it could not run.
    fn rustc_version(&self) -> Result<String, String>;
    /// Whether the standard library for `target` is installed.
    fn has_target(&self, target: &str) -> bool;
    /// Whether `cargo fmt` runs.
    fn has_rustfmt(&self) -> bool;
}

/// Checks `needs`; `Ok` holds one line per check for the progress output, `Err` every
/// failure with its fix.
pub fn evaluate(needs: &[Prereq], probe: &dyn Probe) -> Result<Vec<String>, Vec<String>> {
    let mut needs = needs.to_vec();
    needs.sort();
    needs.dedup();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for need in needs {
        match check(need, probe) {
            Ok(line) => ok.push(line),
            Err(line) => failed.push(line),
        }
    }
    if failed.is_empty() {
        Ok(ok)
    } else {
        Err(failed)
    }
}

fn check(need: Prereq, probe: &dyn Probe) -> Result<String, String> {
    match need {
        Prereq::Rust => {
            let min = Version::parse(MIN_RUST).ok_or_else(|| {
                format!("rust-version {MIN_RUST:?} in Cargo.toml is not a version")
            })?;
            let output = probe.rustc_version().map_err(|why| {
                format!("cannot run `rustc --version` ({why}); install Rust from https://rustup.rs")
            })?;
            let found = Version::from_rustc_output(&output).ok_or_else(|| {
                format!("cannot read a version in `rustc --version` output {output:?}")
            })?;
            if found < min {
                Err(format!(
                    "rustc {found} is too old: this workspace needs Rust >= {MIN_RUST} \
                     (`rust-version` in Cargo.toml; the locked dependencies need it). \
                     Fix: `rustup update stable`, or `rustup override set {MIN_RUST}` here"
                ))
            } else {
                Ok(format!("rustc {found} (>= {MIN_RUST})"))
            }
        }
        Prereq::WasmTarget => {
            if probe.has_target(WASM_TARGET) {
                Ok(format!("{WASM_TARGET} target"))
            } else {
                Err(format!(
                    "the {WASM_TARGET} target is not installed for this toolchain. \
                     Fix: `rustup target add {WASM_TARGET}`"
                ))
            }
        }
        Prereq::Rustfmt => {
            if probe.has_rustfmt() {
                Ok("rustfmt".to_string())
            } else {
                Err("rustfmt is not installed (`cargo fmt` fails). \
                     Fix: `rustup component add rustfmt`"
                    .to_string())
            }
        }
    }
}

/// Checks `needs` on this machine, printing one line; errors with every fix needed.
pub fn require(needs: &[Prereq]) -> Result<()> {
    if needs.is_empty() {
        return Ok(());
    }
    match evaluate(needs, &Machine) {
        Ok(lines) => {
            println!("xtask: prerequisites OK: {}", lines.join(", "));
            Ok(())
        }
        Err(failures) => {
            for failure in &failures {
                eprintln!("xtask: missing prerequisite: {failure}");
            }
            bail!(
                "{} prerequisite{} missing (see above); nothing was built",
                failures.len(),
                if failures.len() == 1 { " is" } else { "s are" }
            )
        }
    }
}

/// The real machine: the `rustc` and `cargo` that cargo would use.
struct Machine;

fn rustc() -> Command {
    Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
}

impl Probe for Machine {
    fn rustc_version(&self) -> Result<String, String> {
        let output = rustc()
            .arg("--version")
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn has_target(&self, target: &str) -> bool {
        // Works with and without rustup: the target's libstd lives in the sysroot.
        let Ok(output) = rustc()
            .args(["--print", "target-libdir", "--target", target])
            .output()
        else {
            return false;
        };
        let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
        output.status.success() && has_libstd(Path::new(&libdir))
    }

    fn has_rustfmt(&self) -> bool {
        workspace::cargo_command()
            .args(["fmt", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

fn has_libstd(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") && name.ends_with(".rlib")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        rustc: Result<String, String>,
        wasm: bool,
        rustfmt: bool,
    }

    impl Probe for Fake {
        fn rustc_version(&self) -> Result<String, String> {
            self.rustc.clone()
        }
        fn has_target(&self, target: &str) -> bool {
            assert_eq!(target, WASM_TARGET);
            self.wasm
        }
        fn has_rustfmt(&self) -> bool {
            self.rustfmt
        }
    }

    fn good() -> Fake {
        Fake {
            rustc: Ok("rustc 1.95.0 (59807616e 2026-04-14)\n".into()),
            wasm: true,
            rustfmt: true,
        }
    }

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(Version::parse("1.90"), Some(Version(1, 90, 0)));
        assert_eq!(Version::parse("1.88.0"), Some(Version(1, 88, 0)));
        assert_eq!(Version::parse("1.90.0-nightly"), Some(Version(1, 90, 0)));
        assert_eq!(Version::parse("1"), None);
        assert_eq!(Version::parse("1.x"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert!(Version(1, 89, 9) < Version(1, 90, 0));
        assert!(
            Version(1, 100, 0) > Version(1, 90, 0),
            "numeric, not textual"
        );
        assert!(Version(2, 0, 0) > Version(1, 95, 3));
        assert_eq!(
            Version::from_rustc_output("rustc 1.95.0 (59807616e 2026-04-14)"),
            Some(Version(1, 95, 0))
        );
        assert_eq!(
            Version::from_rustc_output("rustc 1.91.0-nightly (abc 2025-08-01)"),
            Some(Version(1, 91, 0))
        );
        assert_eq!(Version::from_rustc_output("cargo 1.95.0"), None);
        assert_eq!(Version::from_rustc_output(""), None);
    }

    #[test]
    fn min_rust_is_the_workspace_rust_version() {
        let manifest =
            std::fs::read_to_string(workspace::workspace_root().join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("rust-version = \"{MIN_RUST}\"")),
            "xtask's MIN_RUST {MIN_RUST} must come from Cargo.toml"
        );
        assert!(Version::parse(MIN_RUST).is_some());
    }

    #[test]
    fn rust_version_check_compares_against_min_rust() {
        let min = Version::parse(MIN_RUST).unwrap();
        let at_min = format!("rustc {min} (hash 2025-01-01)");
        let below = format!("rustc {}.{}.0 (hash 2025-01-01)", min.0, min.1 - 1);
        let above = format!("rustc {}.{}.0 (hash 2025-01-01)", min.0, min.1 + 1);
        let check_with = |text: String| {
            evaluate(
                &[Prereq::Rust],
                &Fake {
                    rustc: Ok(text),
                    ..good()
                },
            )
        };
        assert!(check_with(at_min).is_ok());
        assert!(check_with(above).is_ok());
        let err = check_with(below).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].contains("too old"), "{err:?}");
        assert!(err[0].contains(MIN_RUST), "{err:?}");
        assert!(err[0].contains("rustup update"), "{err:?}");

        let err = evaluate(
            &[Prereq::Rust],
            &Fake {
                rustc: Err("No such file".into()),
                ..good()
            },
        )
        .unwrap_err();
        assert!(err[0].contains("rustup.rs"), "{err:?}");
    }

    #[test]
    fn every_failure_is_reported_with_its_fix() {
        let all = [Prereq::Rustfmt, Prereq::WasmTarget, Prereq::Rust];
        let ok = evaluate(&all, &good()).unwrap();
        assert_eq!(ok.len(), 3, "{ok:?}");

        let broken = Fake {
            rustc: Ok("rustc 1.80.0 (x 2024-07-21)".into()),
            wasm: false,
            rustfmt: false,
        };
        let err = evaluate(&all, &broken).unwrap_err();
        assert_eq!(err.len(), 3, "{err:?}");
        assert!(
            err[1].contains("rustup target add wasm32-wasip1"),
            "{err:?}"
        );
        assert!(err[2].contains("rustup component add rustfmt"), "{err:?}");

        // Only what is asked for is checked; duplicates are checked once.
        assert!(evaluate(&[Prereq::Rustfmt], &broken).is_err());
        let only_rust = Fake {
            wasm: false,
            rustfmt: false,
            ..good()
        };
        assert_eq!(
            evaluate(&[Prereq::Rust, Prereq::Rust], &only_rust)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn this_machine_probe_finds_the_running_toolchain() {
        // The toolchain compiling this test is at least MIN_RUST (cargo enforces
        // rust-version), so the real probe must agree.
        let output = Machine.rustc_version().unwrap();
        assert!(Version::from_rustc_output(&output).is_some(), "{output}");
        assert!(evaluate(&[Prereq::Rust], &Machine).is_ok());
        assert!(!Machine.has_target("no-such-target-xyz"));
    }
}
