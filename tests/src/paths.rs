//! Locations the tests depend on, resolved from this crate's manifest directory so that
//! they hold wherever the repository is cloned.

use std::path::PathBuf;

/// The workspace root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `vector-config/`: the Vector configurations and their VRL programs.
pub fn vector_config_dir() -> PathBuf {
    repo_root().join("vector-config")
}

/// The shared contracts directory (`SPEC.md`, the Vector schema, the captured Vector
/// requests). `SHARED_DIR` overrides it; by default it sits beside the repository
/// checkout: `$CARGO_MANIFEST_DIR/../../shared`. When the checkout is nested deeper
/// (a git worktree), the nearest `shared/` holding `SPEC.md` further up is used.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SHARED_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if beside.join("SPEC.md").is_file() {
        return beside;
    }
    repo_root()
        .ancestors()
        .skip(1)
        .map(|a| a.join("shared"))
        .find(|s| s.join("SPEC.md").is_file())
        .unwrap_or(beside)
}

/// The JSON schema Vector 0.56.0 generates for its own configuration.
pub fn vector_schema() -> PathBuf {
    shared_dir().join("vector/config-schema.json")
}

/// Requests a real Vector 0.56.0 `http` sink sent, with the configs that produced them.
pub fn http_sink_fixtures() -> PathBuf {
    shared_dir().join("fixtures/vector-http-sink")
}
