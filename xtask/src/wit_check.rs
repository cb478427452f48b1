//! Checks a process component's interface: it may import only
//! `hyperware:process/standard@1.0.0` and `wasi:*` interfaces, and must export exactly
//! `init: func(our: string)` — what the Hyperware runtime links and calls.

use std::fmt;

use anyhow::{bail, Context, Result};
use wit_component::DecodedWasm;
use wit_parser::{Resolve, Type, WorldItem, WorldKey};

/// The one non-WASI interface a process may import.
pub const STANDARD_NAMESPACE: &str = "hyperware";
pub const STANDARD_PACKAGE: &str = "process";
pub const STANDARD_VERSION: &str = "1.0.0";
pub const STANDARD_INTERFACE: &str = "standard";

/// What a component that passed the check imports and exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceReport {
    /// Imported interface ids, e.g. `hyperware:process/standard@1.0.0`, in world order.
    pub imports: Vec<String>,
    /// Rendered exports, e.g. `init: func(our: string)`.
    pub exports: Vec<String>,
}

impl InterfaceReport {
    pub fn wasi_imports(&self) -> usize {
        self.imports
            .iter()
            .filter(|i| i.starts_with("wasi:"))
            .count()
    }
}

impl fmt::Display for InterfaceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let others: Vec<&str> = self
            .imports
            .iter()
            .filter(|i| !i.starts_with("wasi:"))
            .map(String::as_str)
            .collect();
        write!(
            f,
            "imports {} + {} wasi:* interfaces; exports {}",
            if others.is_empty() {
                "nothing else".to_string()
            } else {
                others.join(", ")
            },
            self.wasi_imports(),
            self.exports.join(", ")
        )
    }
}

/// Decodes `bytes` as a component and checks its world. The error lists every offending
/// import and export by name.
pub fn check_component(bytes: &[u8]) -> Result<InterfaceReport> {
    let decoded = wit_component::decode(bytes).context("decoding the component's WIT world")?;
    let (resolve, world_id) = match decoded {
        DecodedWasm::Component(resolve, world) => (resolve, world),
        DecodedWasm::WitPackage(..) => {
            bail!("this is a WIT package, not a component")
        }
    };
    let world = &resolve.worlds[world_id];

    let mut problems = Vec::new();
    let mut imports = Vec::new();
    for (key, item) in &world.imports {
        let name = resolve.name_world_key(key);
        match (key, item) {
            (WorldKey::Interface(_), WorldItem::Interface { id, .. }) => {
                if import_allowed(&resolve, *id) {
                    imports.push(name);
                } else {
                    problems.push(format!(
                        "imports interface `{name}` (only {STANDARD_NAMESPACE}:{STANDARD_PACKAGE}/\
                         {STANDARD_INTERFACE}@{STANDARD_VERSION} and wasi:* are provided by the runtime)"
                    ));
                }
            }
            (WorldKey::Name(_), WorldItem::Interface { .. }) => {
                problems.push(format!("imports unnamed (inline) interface `{name}`"))
            }
            (_, WorldItem::Function(_)) => problems.push(format!("imports free function `{name}`")),
            (_, WorldItem::Type { .. }) => problems.push(format!("imports type `{name}`")),
        }
    }

    let mut exports = Vec::new();
    let mut has_init = false;
    for (key, item) in &world.exports {
        let name = resolve.name_world_key(key);
        match (key, item) {
            (WorldKey::Name(n), WorldItem::Function(func)) if n == "init" => {
                let sig = render_signature(&resolve, func);
                let ok = func.params.len() == 1
                    && func.params[0].name == "our"
                    && func.params[0].ty == Type::String
                    && func.result.is_none();
                if ok {
                    has_init = true;
                    exports.push(format!("init: {sig}"));
                } else {
                    problems.push(format!(
                        "exports `init: {sig}`, expected `init: func(our: string)`"
                    ));
                }
            }
            (_, WorldItem::Function(func)) => problems.push(format!(
                "exports function `{name}: {}`; only `init` may be exported",
                render_signature(&resolve, func)
            )),
            (_, WorldItem::Interface { .. }) => problems.push(format!(
                "exports interface `{name}`; only `init` may be exported"
            )),
            (_, WorldItem::Type { .. }) => problems.push(format!(
                "exports type `{name}`; only `init` may be exported"
            )),
        }
    }
    if !has_init && !problems.iter().any(|p| p.contains("`init:")) {
        problems.push("does not export `init: func(our: string)`".to_string());
    }

    if problems.is_empty() {
        Ok(InterfaceReport { imports, exports })
    } else {
        bail!(
            "component interface check failed:\n  - {}",
            problems.join("\n  - ")
        )
    }
}

fn import_allowed(resolve: &Resolve, id: wit_parser::InterfaceId) -> bool {
    let iface = &resolve.interfaces[id];
    let Some(pkg) = iface.package.map(|p| &resolve.packages[p].name) else {
        return false;
    };
    if pkg.namespace == "wasi" {
        return true;
    }
    pkg.namespace == STANDARD_NAMESPACE
        && pkg.name == STANDARD_PACKAGE
        && pkg.version.as_ref().map(ToString::to_string).as_deref() == Some(STANDARD_VERSION)
        && iface.name.as_deref() == Some(STANDARD_INTERFACE)
}

fn render_signature(resolve: &Resolve, func: &wit_parser::Function) -> String {
    let params: Vec<String> = func
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, render_type(resolve, &p.ty)))
        .collect();
    let mut sig = format!("func({})", params.join(", "));
    if let Some(result) = &func.result {
        sig.push_str(" -> ");
        sig.push_str(&render_type(resolve, result));
    }
    sig
}

fn render_type(resolve: &Resolve, ty: &Type) -> String {
    match ty {
        Type::Id(id) => resolve.types[*id]
            .name
            .clone()
            .unwrap_or_else(|| "<anonymous type>".to_string()),
        Type::String => "string".into(),
        Type::Bool => "bool".into(),
        Type::Char => "char".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use wit_component::{ComponentEncoder, StringEncoding};
    use wit_parser::{LiftLowerAbi, ManglingAndAbi};

    /// Stand-ins for the runtime's packages; the checker only looks at names and `init`.
    const WASI_STUB: &str = "package wasi:cli@0.2.3;
        interface environment { get-arguments: func() -> list<string>; }";
    const STANDARD_STUB: &str = "package hyperware:process@1.0.0;
        interface standard { print-to-terminal: func(verbosity: u8, message: string); }
        interface presence { ping: func() -> string; }";
    const EVIL_STUB: &str = "package evil:net@1.0.0;
        interface socket { connect: func(host: string) -> u32; }";

    /// Builds a component whose world is `world` in the package `test:proc`, with the stub
    /// packages available. The core module is `wit_component::dummy_module`, which imports
    /// every imported function, so every import survives into the component.
    pub(crate) fn component(world_body: &str) -> Vec<u8> {
        let mut resolve = Resolve::default();
        for (path, text) in [
            ("wasi.wit", WASI_STUB),
            ("standard.wit", STANDARD_STUB),
            ("evil.wit", EVIL_STUB),
        ] {
            resolve.push_str(path, text).unwrap();
        }
        let main = format!("package test:proc;\nworld proc {{\n{world_body}\n}}\n");
        let pkg = resolve.push_str("proc.wit", &main).unwrap();
        component_from(&resolve, pkg, "proc")
    }

    pub(crate) fn component_from(
        resolve: &Resolve,
        pkg: wit_parser::PackageId,
        world: &str,
    ) -> Vec<u8> {
        let world = resolve.select_world(&[pkg], Some(world)).unwrap();
        let mut module =
            wit_component::dummy_module(resolve, world, ManglingAndAbi::Legacy(LiftLowerAbi::Sync));
        wit_component::embed_component_metadata(
            &mut module,
            resolve,
            world,
            StringEncoding::UTF8,
            false,
        )
        .unwrap();
        ComponentEncoder::default()
            .module(&module)
            .unwrap()
            .validate(true)
            .encode()
            .unwrap()
    }

    const GOOD: &str = "import hyperware:process/standard@1.0.0;
        import wasi:cli/environment@0.2.3;
        export init: func(our: string);";

    #[test]
    fn accepts_standard_wasi_and_init() {
        let report = check_component(&component(GOOD)).unwrap();
        assert_eq!(
            report.imports,
            [
                "hyperware:process/standard@1.0.0",
                "wasi:cli/environment@0.2.3"
            ]
        );
        assert_eq!(report.exports, ["init: func(our: string)"]);
        assert_eq!(report.wasi_imports(), 1);
    }

    #[test]
    fn rejects_an_extra_import_and_names_it() {
        let bytes = component(&format!("{GOOD}\nimport evil:net/socket@1.0.0;"));
        let err = check_component(&bytes).unwrap_err().to_string();
        assert!(err.contains("evil:net/socket@1.0.0"), "{err}");
        assert!(!err.contains("standard@1.0.0`"), "{err}");
    }

    #[test]
    fn rejects_another_interface_of_the_hyperware_package() {
        // API interfaces live in hyperware:process too; a process must not import functions
        // from them (nothing implements them).
        let bytes = component(&format!("{GOOD}\nimport hyperware:process/presence@1.0.0;"));
        let err = check_component(&bytes).unwrap_err().to_string();
        assert!(err.contains("hyperware:process/presence@1.0.0"), "{err}");
    }

    #[test]
    fn rejects_free_function_imports() {
        let bytes = component(&format!("{GOOD}\nimport log: func(msg: string);"));
        let err = check_component(&bytes).unwrap_err().to_string();
        assert!(err.contains("free function `log`"), "{err}");
    }

    #[test]
    fn rejects_extra_exports() {
        let bytes = component(&format!("{GOOD}\nexport handle: func(body: list<u8>);"));
        let err = check_component(&bytes).unwrap_err().to_string();
        assert!(err.contains("`handle"), "{err}");

        let bytes = component(&format!("{GOOD}\nexport wasi:cli/environment@0.2.3;"));
        let err = check_component(&bytes).unwrap_err().to_string();
        assert!(
            err.contains("exports interface `wasi:cli/environment@0.2.3`"),
            "{err}"
        );
    }

    #[test]
    fn rejects_missing_or_misshapen_init() {
        let bytes = component("import hyperware:process/standard@1.0.0;");
        let err = check_component(&bytes).unwrap_err().to_string();
        assert!(err.contains("does not export `init"), "{err}");

        let bytes = component(
            "import hyperware:process/standard@1.0.0;
             export init: func(our: string) -> u32;",
        );
        let err = check_component(&bytes).unwrap_err().to_string();
        assert!(err.contains("init: func(our: string) -> u32"), "{err}");

        let bytes = component("export init: func(node: string);");
        assert!(check_component(&bytes).is_err());
    }

    #[test]
    fn rejects_non_components() {
        // A core module (magic + version 1) is not a component.
        let core = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert!(check_component(&core).is_err());
        assert!(check_component(b"not wasm").is_err());
    }

    #[test]
    fn accepts_the_real_process_v1_world() {
        // The world the runtime actually defines, from the resolved hyperware_process_lib.
        let root = crate::workspace::workspace_root();
        let wit = crate::workspace::Metadata::load(&root)
            .unwrap()
            .process_lib_wit()
            .unwrap();
        let mut resolve = Resolve::default();
        let pkg = resolve.push_file(&wit).unwrap();
        let bytes = component_from(&resolve, pkg, "process-v1");
        let report = check_component(&bytes).unwrap();
        assert_eq!(report.imports, ["hyperware:process/standard@1.0.0"]);
        assert_eq!(report.exports, ["init: func(our: string)"]);
    }

    #[test]
    fn built_package_components_pass_when_present() {
        let pkg = crate::workspace::workspace_root().join("pkg");
        let wasms = crate::component::pkg_components(&pkg).unwrap_or_default();
        if wasms.is_empty() {
            eprintln!("no pkg/*.wasm yet; run `cargo xtask build` to check real components");
        }
        for path in wasms {
            let bytes = std::fs::read(&path).unwrap();
            let report =
                check_component(&bytes).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            assert!(report
                .imports
                .contains(&"hyperware:process/standard@1.0.0".to_string()));
            eprintln!("{}: {}", path.display(), report.imports.join(" "));
        }
    }
}
