//! The storage conformance suite against every backend available here.

#[test]
fn embedded_backend_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fdb_sink::store::embedded::EmbeddedStore::open(dir.path()).expect("open");
    fdb_sink::store::conformance::run_all(&store);
}

/// Runs only when built with `--features fdb` and `FDB_CLUSTER_FILE` names a
/// reachable cluster.
#[cfg(feature = "fdb")]
#[test]
fn foundationdb_backend_conforms() {
    let Some(path) = std::env::var_os("FDB_CLUSTER_FILE") else {
        eprintln!("FDB_CLUSTER_FILE not set: FoundationDB conformance not run");
        return;
    };
    let store = fdb_sink::store::fdb::FdbStore::open(std::path::Path::new(&path)).expect("connect");
    fdb_sink::store::conformance::run_all(&store);
}
