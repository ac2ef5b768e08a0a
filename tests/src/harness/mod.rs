//! A delivery path that behaves like the project's Vector pipeline, built from the
//! same parts Vector uses where that is possible (the `vrl` crate for the remap) and
//! checked against requests a real Vector 0.56.0 sent where it is not (the `http`
//! sink): see `tests/tests/e2e/http_sink_fixtures.rs`.

pub mod capture_server;
pub mod env;
pub mod http_sink;
pub mod k8s_wrap;
pub mod pipeline;
pub mod remap;
