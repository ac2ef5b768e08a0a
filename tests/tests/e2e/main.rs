//! End-to-end tests, one module per subject (one test binary for the crate).
//!
//! - `vrl_programs`: every `.vrl` in `vector-config/` under the vrl 0.33.1 compiler,
//!   run on events shaped exactly like Vector's `kubernetes_logs` output.
//! - `vector_configs`: every TOML in `vector-config/` against Vector 0.56.0's schema,
//!   the pipeline's settings, and the `[[tests]]` blocks run with the vrl crate.
//! - `http_sink_fixtures`: the delivery harness reproduces the requests a real Vector
//!   0.56.0 sent.
//! - `scenarios`: the design's scenarios through the real `file-monitor` and
//!   `fdb-sink` binaries.

mod support;

mod http_sink_fixtures;
mod scenarios;
mod vector_configs;
mod vrl_programs;
