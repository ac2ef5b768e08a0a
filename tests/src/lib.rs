//! End-to-end test support for the audit pipeline.
//!
//! - [`paths`]: where the repository, `vector-config/` and the shared contracts live.
//! - [`vector_config`]: loads the Vector TOML configs the way Vector reads them
//!   (environment interpolation included) and finds the VRL programs they use.
//! - [`harness`]: a Vector-faithful delivery path: wrap a monitor line as
//!   `kubernetes_logs` does ([`harness::k8s_wrap`]), run the remap program with the
//!   `vrl` crate Vector 0.56.0 embeds ([`harness::remap`]), batch and deliver like
//!   Vector's `http` sink ([`harness::http_sink`]); plus a capture server that answers
//!   scripted statuses ([`harness::capture_server`]).
//! - [`procs`]: builds and runs the real `file-monitor` and `fdb-sink` binaries.
//! - [`scenario`]: monitors feeding the pipeline, and reading the sink's store back.

pub mod harness;
pub mod paths;
pub mod procs;
pub mod scenario;
pub mod vector_config;
