//! Ingest: from request bodies or NDJSON streams to committed records.
//!
//! - [`decode`]: `Content-Encoding` (gzip, zstd) with a size cap;
//! - [`framing`]: NDJSON (final newline optional) or a JSON array → lines;
//! - [`grouping`]: validation, with the invalid lines past a count grouped;
//! - [`lines`]: NDJSON lines from a stream, in bounded memory;
//! - [`pipeline`]: validate lines and write them, with metrics;
//! - [`health`]: whether the store takes writes now (readiness);
//! - [`http`]: the ingest server (`POST /v1/events`, metrics, health);
//! - [`conn`](crate::conn): its connections' deadlines (slow or silent clients).

pub mod decode;
pub mod framing;
pub mod grouping;
pub mod health;
pub mod http;
pub mod lines;
pub mod pipeline;

pub use pipeline::Ingestor;
