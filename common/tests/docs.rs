//! What README.md, docs/api.md and the example's README tell an app developer about calling
//! us is true: the manifest entries they show grant every process the package starts, the
//! errors they quote are the ones the code writes, the minimum Rust is `rust-version`, and
//! the library section names the real dependency line.

use p2p_common::api::presence::SubscriberMessage;
use p2p_common::appreach::grant_error;
use p2p_common::client::{ClientError, DEFAULT_TIMEOUT_S};
use p2p_common::{Address, ApiError, ApiResult, NodeId};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_file(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `process:package:publisher` of every process pkg/manifest.json starts.
fn package_processes() -> BTreeSet<String> {
    let meta = json_file("metadata.json");
    let (package, publisher) = (
        meta["properties"]["package_name"]
            .as_str()
            .unwrap()
            .to_string(),
        meta["properties"]["publisher"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    json_file("pkg/manifest.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["process_name"].as_str().unwrap();
            format!("{name}:{package}:{publisher}")
        })
        .collect()
}

/// The keys every manifest entry has (those of our own pkg/manifest.json).
fn manifest_keys() -> BTreeSet<String> {
    json_file("pkg/manifest.json")[0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The text of the first `## ` section of a markdown document.
fn first_section(doc: &str) -> &str {
    let start = doc.find("\n## ").expect("a ## section") + 1;
    let end = doc[start + 3..]
        .find("\n## ")
        .map_or(doc.len(), |i| start + 3 + i);
    &doc[start..end]
}

/// The first ```json block holding `grant_capabilities`, parsed.
fn grant_block(text: &str, what: &str) -> Value {
    let block = text
        .split("```json\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .find(|b| b.contains("grant_capabilities"))
        .unwrap_or_else(|| panic!("{what}: no ```json block with grant_capabilities"));
    serde_json::from_str(block).unwrap_or_else(|e| panic!("{what}: block is not JSON ({e})"))
}

fn check_entries(block: &Value, what: &str) {
    let entries = match block {
        Value::Array(a) => a.clone(),
        v => vec![v.clone()],
    };
    assert!(!entries.is_empty(), "{what}");
    for entry in entries {
        let keys: BTreeSet<String> = entry.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, manifest_keys(), "{what}: a whole manifest entry");
        let grants: BTreeSet<String> = entry["grant_capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_string())
            .collect();
        assert_eq!(grants, package_processes(), "{what}: grants every process");
        assert_eq!(
            entry["public"], false,
            "{what}: an ordinary, non-public app"
        );
        assert_eq!(
            entry["request_capabilities"],
            serde_json::json!([]),
            "{what}"
        );
    }
}

#[test]
fn the_manifest_grant_comes_first_and_names_every_process() {
    let readme = read("README.md");
    check_entries(
        &grant_block(first_section(&readme), "README.md's first section"),
        "README.md",
    );
    let api = read("docs/api.md");
    let first = first_section(&api);
    assert!(first.starts_with("## Calling us at all"), "{first}");
    check_entries(
        &grant_block(first, "docs/api.md's first section"),
        "docs/api.md",
    );
    let example = read("examples/presence-watch/README.md");
    check_entries(
        &grant_block(&example, "the example's README"),
        "examples/presence-watch/README.md",
    );
}

#[test]
fn the_quoted_errors_are_the_ones_the_code_writes() {
    let api = read("docs/api.md");
    let alice = NodeId::parse("alice.os").unwrap();
    let timeout = ClientError::LocalTimeout {
        target: Address::ours(&alice, "presence"),
        timeout_s: DEFAULT_TIMEOUT_S,
    };
    assert!(
        api.contains(&timeout.to_string()),
        "docs/api.md quotes the LocalTimeout message: {timeout}"
    );

    let line = api
        .lines()
        .find(|l| l.starts_with(r#"← {"Err": {"code": "Forbidden", "message": "presence cannot"#))
        .expect("docs/api.md shows the Forbidden answer to Subscribe");
    let documented: ApiResult<()> = serde_json::from_str(&line["← ".len()..]).unwrap();
    let documented: ApiError = documented.unwrap_err();
    // An app of the calling package whose manifest entry lacks the grant.
    let app = Address::parse("alice.os@other-app:my-app:someone.os").unwrap();
    assert!(documented.message.contains(&app.to_string()));
    assert_eq!(documented, grant_error("presence", &app));

    // The welcome the docs show is what a subscriber receives.
    for doc in [&api, &read("README.md")] {
        let at = doc.find(r#"{"Welcome": "#).expect("the welcome is shown");
        let end = at + doc[at..].find("}}").unwrap() + 2;
        let welcome: SubscriberMessage = serde_json::from_str(&doc[at..end]).unwrap();
        assert!(matches!(welcome, SubscriberMessage::Welcome { .. }));
    }
}

#[test]
fn the_readme_states_what_works_per_service() {
    let readme = read("README.md");
    let section = &readme[readme
        .find("## What works today")
        .expect("the status table")..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    // Services that answer only Ping and Info today (none since all four landed), and
    // services that work in part: their row says what is still open (and in which issue).
    let basic_only: [&str; 0] = [];
    let in_progress = ["notify"];
    for process in package_processes() {
        let name = process.split(':').next().unwrap();
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("README's status table has no row for {name}"));
        let only_base = row.contains("only `Ping` and `Info`");
        assert_eq!(only_base, basic_only.contains(&name), "{row}");
        assert_eq!(
            row.contains("open)"),
            basic_only.contains(&name) || in_progress.contains(&name),
            "{row}"
        );
    }
}

#[test]
fn the_readme_states_the_real_minimum_rust() {
    let readme = read("README.md");
    let min = env!("CARGO_PKG_RUST_VERSION");
    let stated: Vec<&str> = readme
        .split("Rust ≥ ")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()
                .unwrap()
                .trim_end_matches('.')
        })
        .collect();
    assert!(!stated.is_empty(), "README states the minimum Rust");
    assert!(
        stated.iter().all(|v| *v == min),
        "README says Rust ≥ {stated:?}, Cargo.toml's rust-version is {min}"
    );
    // The only other Rust version in it is kit's default toolchain.
    let others: Vec<&str> = readme.matches("1.85").collect();
    assert_eq!(
        others.len(),
        readme.matches("+1.85.1").count(),
        "{others:?}"
    );
}

#[test]
fn the_readme_says_how_to_depend_on_the_library() {
    let readme = read("README.md");
    let line = format!(
        r#"p2p-common = {{ git = "<this repository>", tag = "v{}" }}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert!(readme.contains(&line), "README shows {line}");
    assert!(readme.contains("`p2p_common::client::ProcessTransport`"));
    assert!(readme.contains("exists **only on wasm32**"));
    assert!(readme.contains("cargo doc --target wasm32-wasip1 -p p2p-common --no-deps"));
    assert!(readme.contains("examples/presence-watch"));
}
