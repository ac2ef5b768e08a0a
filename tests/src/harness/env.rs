//! The environment the VRL program reads with `get_env_var`.
//!
//! In the cluster the Vector DaemonSet sets `CLUSTER_NAME` and `VECTOR_SELF_NODE_NAME`.
//! A test process sets fixed values once, before any program runs, so that results
//! never depend on the machine's environment.

use std::sync::Once;

/// `CLUSTER_NAME` as seen by programs run through this harness.
pub const CLUSTER_NAME: &str = "e2e-cluster";
/// `VECTOR_SELF_NODE_NAME` as seen by programs run through this harness.
pub const SELF_NODE_NAME: &str = "e2e-node-from-env";

static INIT: Once = Once::new();

/// Sets the fixed environment once per process. Call it before running any VRL
/// program (every harness entry point in this crate does).
pub fn init() {
    INIT.call_once(|| {
        // Done once, at the start of the run, before the VRL runtime reads them.
        std::env::set_var("CLUSTER_NAME", CLUSTER_NAME);
        std::env::set_var("VECTOR_SELF_NODE_NAME", SELF_NODE_NAME);
    });
}
