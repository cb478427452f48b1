//! The command line: `cargo xtask <command> [options]`, with `--help` for each command.
//! Hand-rolled (five commands, three options) so xtask, which every user compiles before
//! anything else runs, does not also compile clap.

use crate::perfdocs;
use crate::prereq::MIN_RUST;
use crate::testcmd::{self, STEPS};
use crate::workspace::WASM_TARGET;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cli {
    /// Print this help and exit 0.
    Help(Topic),
    Build,
    CheckComponents,
    /// Rewrite docs/performance.md's generated tables; `check` = only compare them.
    Docs {
        check: bool,
    },
    /// `steps` empty = all; `list` = print the steps instead of running them.
    Test {
        steps: Vec<String>,
        list: bool,
    },
}

/// Which help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Main,
    Build,
    CheckComponents,
    Docs,
    Test,
}

/// A command line that cannot be run: print `message` and the topic's help, exit 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    pub message: String,
    pub topic: Topic,
}

const COMMANDS: &[(&str, Topic)] = &[
    ("build", Topic::Build),
    ("check-components", Topic::CheckComponents),
    ("docs", Topic::Docs),
    ("test", Topic::Test),
];

fn command_names() -> String {
    let mut names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
    names.push("help");
    names.join(", ")
}

fn topic(name: &str) -> Option<Topic> {
    COMMANDS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn usage_error(topic: Topic, message: String) -> UsageError {
    UsageError { message, topic }
}

/// Parses the arguments after `cargo xtask`. `steps` are the valid `--step` names.
pub fn parse(args: &[String], steps: &[&str]) -> Result<Cli, UsageError> {
    let Some((command, rest)) = args.split_first() else {
        return Err(usage_error(Topic::Main, "no command given".into()));
    };
    let command = command.as_str();
    if matches!(command, "help" | "-h" | "--help") {
        return match rest {
            [] => Ok(Cli::Help(Topic::Main)),
            [name] => topic(name).map(Cli::Help).ok_or_else(|| {
                usage_error(
                    Topic::Main,
                    format!("no help for `{name}`: the commands are {}", command_names()),
                )
            }),
            [_, extra, ..] => Err(usage_error(
                Topic::Main,
                format!("unexpected argument `{extra}` after `help <command>`"),
            )),
        };
    }
    let Some(topic) = topic(command) else {
        let hint = if command.starts_with('-') {
            " (options come after the command)"
        } else {
            ""
        };
        return Err(usage_error(
            Topic::Main,
            format!(
                "unknown command `{command}`{hint}; the commands are {}",
                command_names()
            ),
        ));
    };
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Cli::Help(topic));
    }
    match topic {
        Topic::Build | Topic::CheckComponents => match rest.first() {
            None => Ok(if topic == Topic::Build {
                Cli::Build
            } else {
                Cli::CheckComponents
            }),
            Some(arg) => Err(usage_error(
                topic,
                format!("`{command}` takes no arguments, got `{arg}`"),
            )),
        },
        Topic::Docs => match rest {
            [] => Ok(Cli::Docs { check: false }),
            [arg, tail @ ..] if arg == "--check" => match tail.first() {
                None => Ok(Cli::Docs { check: true }),
                Some(extra) => Err(usage_error(
                    topic,
                    format!("unexpected argument `{extra}` after `--check`"),
                )),
            },
            [arg, ..] => Err(usage_error(
                topic,
                format!("unknown argument `{arg}` for `docs`"),
            )),
        },
        Topic::Test => parse_test(rest, steps),
        Topic::Main => unreachable!("Main is not a command"),
    }
}

fn parse_test(args: &[String], steps: &[&str]) -> Result<Cli, UsageError> {
    let mut chosen = Vec::new();
    let mut list = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = if arg == "--step" {
            Some(args.next().cloned().ok_or_else(|| {
                usage_error(
                    Topic::Test,
                    format!("`--step` needs a step name: one of {}", steps.join(", ")),
                )
            })?)
        } else {
            arg.strip_prefix("--step=").map(String::from)
        };
        match value {
            Some(name) if steps.contains(&name.as_str()) => chosen.push(name),
            Some(name) => {
                return Err(usage_error(
                    Topic::Test,
                    format!("unknown step `{name}`; the steps are {}", steps.join(", ")),
                ))
            }
            None if arg == "--list" => list = true,
            None => {
                return Err(usage_error(
                    Topic::Test,
                    format!("unknown argument `{arg}` for `test`"),
                ))
            }
        }
    }
    Ok(Cli::Test {
        steps: chosen,
        list,
    })
}

/// The help text for `topic`.
pub fn help(topic: Topic) -> String {
    let needs = format!(
        "needs: Rust >= {MIN_RUST} and the {WASM_TARGET} target (`rustup target add {WASM_TARGET}`);\n\
         works offline (crates.io only), no kit needed"
    );
    match topic {
        Topic::Main => format!(
            "cargo xtask: build the installable package and run the project's checks

usage: cargo xtask <command> [options]

commands:
  build              build the package: pkg/*.wasm and target/<package>:<publisher>.zip
  check-components   check the interface of every existing pkg/*.wasm (builds nothing)
  docs               rewrite the generated tables of docs/performance.md from the build
                     and the simulator benches (`--check` only compares them)
  test               run every check: formatting, native tests, API docs, package build,
                     component checks, emulated nodes, simulator, generated docs
                     (`cargo xtask test --list` lists them)
  help [<command>]   print this help, or a command's

`cargo xtask <command> --help` prints a command's help.

{needs}"
        ),
        Topic::Build => format!(
            "cargo xtask build: build the installable package without kit

usage: cargo xtask build

  1. target/wit: hyperware.wit from hyperware_process_lib, plus api/*.wit
  2. cargo build --release --target {WASM_TARGET} of every process crate
  3. pkg/<process>.wasm: each core module made a component (wasmtime 33.0.0 reactor
     adapter), validated, checked to import only hyperware:process/standard@1.0.0 and wasi:*
  4. examples/<name>/ (example apps): built in a second wasm build, made components and
     checked the same way, written to target/examples/<name>.wasm; never packaged
  5. ui/ (if it has a package.json): npm build, copied to pkg/ui/
  6. pkg/api.zip, then target/<package>:<publisher>.zip, with its sha256

Files are rewritten only when their contents change, so a second build with nothing
changed recompiles nothing. The first build compiles hyperware_process_lib for {WASM_TARGET}
and takes several minutes.

options:
  -h, --help   print this help

{needs}"
        ),
        Topic::CheckComponents => "cargo xtask check-components: check the existing components

usage: cargo xtask check-components

Validates every pkg/*.wasm and checks it imports only hyperware:process/standard@1.0.0 and
wasi:* and exports init. Builds nothing; run `cargo xtask build` first.

options:
  -h, --help   print this help"
            .to_string(),
        Topic::Docs => format!(
            "cargo xtask docs: the measured numbers in {doc}

usage: cargo xtask docs [--check]

Builds the package (cargo xtask build) and p2p-sim (release), runs
`p2p-sim bench ping --json` and `p2p-sim bench presence --json` (about 70 s of CPU), times
`p2p-sim {check}`, then rewrites every block of {doc} between
`<!-- generated: <name> -->` and `<!-- end -->` (blocks: package, ping, presence, notify),
and the `sync-live` block of {sync_doc} from `p2p-sim bench sync --check --json` (kept by the
`bench` step of `cargo xtask test`); the text around them is left alone.

With --check, writes nothing and fails if a figure in a block differs from what the build
and the benches print now; this is the `docs-check` step of `cargo xtask test`. Lines
starting `{measured}` hold wall-clock times and are never compared. Component and zip sizes
are compared only under the toolchain and cargo home the block names (panic messages embed
registry paths). The bench JSON is kept in target/xtask-docs/ with the p2p-sim binary's
sha256 and reused while the binary is the same, so a check after `cargo xtask docs`, or a
second check, does not run the benches again.

options:
  --check      compare only; exit 1 on a difference
  -h, --help   print this help

{needs}",
            doc = perfdocs::DOC,
            sync_doc = perfdocs::SYNC_DOC,
            check = perfdocs::CHECK_ARGS.join(" "),
            measured = perfdocs::MEASURED.trim_end(),
        ),
        Topic::Test => format!(
            "cargo xtask test: run the project's checks

usage: cargo xtask test [--step <name>]... [--list]

Checks the prerequisites of the chosen steps first, then runs the steps in order, stopping
at the first failure; prints each step's time and, last, `xtask: N passed, M failed`.

options:
  --step <name>   run only this step (repeat for several; they run in the order below)
  --list          list the steps and exit
  -h, --help      print this help

steps:
{}

{needs}",
            testcmd::list(STEPS).trim_end()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP_NAMES: &[&str] = &["fmt", "native", "build"];

    fn p(args: &[&str]) -> Result<Cli, UsageError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&args, STEP_NAMES)
    }

    fn test(steps: &[&str], list: bool) -> Cli {
        Cli::Test {
            steps: steps.iter().map(|s| s.to_string()).collect(),
            list,
        }
    }

    #[test]
    fn commands_parse() {
        assert_eq!(p(&["build"]), Ok(Cli::Build));
        assert_eq!(p(&["check-components"]), Ok(Cli::CheckComponents));
        assert_eq!(p(&["test"]), Ok(test(&[], false)));
        assert_eq!(p(&["docs"]), Ok(Cli::Docs { check: false }));
        assert_eq!(p(&["docs", "--check"]), Ok(Cli::Docs { check: true }));
    }

    #[test]
    fn docs_takes_only_check() {
        let err = p(&["docs", "--chek"]).unwrap_err();
        assert_eq!(err.topic, Topic::Docs);
        assert!(
            err.message.contains("unknown argument `--chek` for `docs`"),
            "{err:?}"
        );
        let err = p(&["docs", "--check", "again"]).unwrap_err();
        assert!(err.message.contains("`again` after `--check`"), "{err:?}");
        assert_eq!(p(&["docs", "--check", "-h"]), Ok(Cli::Help(Topic::Docs)));
        let docs = help(Topic::Docs);
        for text in [
            "usage: cargo xtask docs [--check]",
            "docs/performance.md",
            "<!-- generated: <name> -->",
            "Measured on",
            "docs-check",
            "check --seeds 200",
        ] {
            assert!(docs.contains(text), "docs help says {text:?}: {docs}");
        }
        assert!(
            help(Topic::Main).contains("  docs  "),
            "{}",
            help(Topic::Main)
        );
    }

    #[test]
    fn help_for_everything_and_each_command() {
        for args in [&["help"][..], &["--help"], &["-h"]] {
            assert_eq!(p(args), Ok(Cli::Help(Topic::Main)), "{args:?}");
        }
        for (name, topic) in COMMANDS {
            assert_eq!(p(&[name, "--help"]), Ok(Cli::Help(*topic)));
            assert_eq!(p(&[name, "-h"]), Ok(Cli::Help(*topic)));
            assert_eq!(p(&["help", name]), Ok(Cli::Help(*topic)));
        }
        // --help wins over anything else on the line, even bad arguments.
        assert_eq!(
            p(&["test", "--step", "nope", "--help"]),
            Ok(Cli::Help(Topic::Test))
        );
        assert_eq!(p(&["build", "x", "-h"]), Ok(Cli::Help(Topic::Build)));
        assert_eq!(p(&["help", "bild"]).unwrap_err().topic, Topic::Main);
    }

    #[test]
    fn unknown_commands_name_the_known_ones() {
        let err = p(&["bild"]).unwrap_err();
        assert_eq!(err.topic, Topic::Main);
        assert!(err.message.contains("unknown command `bild`;"), "{err:?}");
        for name in ["build", "check-components", "docs", "test", "help"] {
            assert!(err.message.contains(name), "{err:?}");
        }
        assert!(p(&["--step", "fmt"])
            .unwrap_err()
            .message
            .contains("options come after the command"));
        assert_eq!(p(&[]).unwrap_err().topic, Topic::Main);
    }

    #[test]
    fn test_steps_and_list() {
        assert_eq!(p(&["test", "--step", "fmt"]), Ok(test(&["fmt"], false)));
        assert_eq!(
            p(&["test", "--step=build", "--step", "fmt"]),
            Ok(test(&["build", "fmt"], false))
        );
        assert_eq!(p(&["test", "--list"]), Ok(test(&[], true)));

        let err = p(&["test", "--step", "fmtt"]).unwrap_err();
        assert_eq!(err.topic, Topic::Test);
        assert!(err.message.contains("unknown step `fmtt`"), "{err:?}");
        assert!(err.message.contains("fmt, native, build"), "{err:?}");

        let err = p(&["test", "--step"]).unwrap_err();
        assert!(err.message.contains("needs a step name"), "{err:?}");
        let err = p(&["test", "--stp", "fmt"]).unwrap_err();
        assert!(err.message.contains("`--stp`"), "{err:?}");
        let err = p(&["build", "--release"]).unwrap_err();
        assert_eq!(err.topic, Topic::Build);
        assert!(err.message.contains("`--release`"), "{err:?}");
    }

    #[test]
    fn help_texts_state_usage_and_the_real_minimum_rust() {
        assert!(help(Topic::Main).contains("usage: cargo xtask <command>"));
        assert!(help(Topic::Build).contains("usage: cargo xtask build"));
        assert!(help(Topic::CheckComponents).contains("usage: cargo xtask check-components"));
        let test = help(Topic::Test);
        assert!(
            test.contains("--step <name>") && test.contains("--list"),
            "{test}"
        );
        for step in STEPS {
            assert!(
                test.contains(step.name),
                "test help lists step {}",
                step.name
            );
        }
        assert!(help(Topic::Main).contains(&format!("Rust >= {MIN_RUST}")));
        assert!(help(Topic::Build).contains("rustup target add wasm32-wasip1"));
    }
}
