//! Writes the Rust client block of `docs/backend.md` (the one after
//! `<!-- dev-check: rust -->`) into `OUT_DIR`, for `main.rs` to include as the body of its
//! `main`.

use std::path::Path;

const MARKER: &str = "<!-- dev-check: rust -->";
const FENCE: &str = "```rust,ignore\n";

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let readme = Path::new(&manifest).join("../../../docs/backend.md");
    println!("cargo::rerun-if-changed={}", readme.display());
    let text = std::fs::read_to_string(&readme).unwrap_or_default();
    let block = text
        .split_once(MARKER)
        .and_then(|(_, after)| after.split_once(FENCE))
        .and_then(|(_, block)| block.split_once("```"))
        .map(|(block, _)| block)
        .unwrap_or("compile_error!(\"docs/backend.md has no `<!-- dev-check: rust -->` block\");");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("readme_block.rs");
    if let Err(e) = std::fs::write(&out, format!("{{\n{block}\nfolder\n}}\n")) {
        println!("cargo::error=cannot write {}: {e}", out.display());
    }
}
