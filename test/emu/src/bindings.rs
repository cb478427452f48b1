//! Host bindings of the `process-v1` world of `hyperware:process@1.0.0` (test/emu/wit, a copy
//! of the WIT `cargo xtask build` assembles into target/wit; `tests/wit_copy.rs` checks that
//! they are equal).

wasmtime::component::bindgen!({
    path: "wit",
    world: "process-v1",
    trappable_imports: true,
    additional_derives: [PartialEq, Eq, Hash],
});

pub use hyperware::process::standard as wit;
