//! fdb-sink: validates `file-event/1` lines and writes idempotent audit
//! records to FoundationDB or an embedded store.
//!
//! Layers, bottom up:
//! - [`keys`]: the SPEC §2 key layout (tuple-encoded), shared by all backends;
//! - [`store`]: the transactional key-value trait and its backends;
//! - [`record`]: the audit record and its validation (dead letters with reasons);
//! - [`audit`]: idempotent batch writes and the read helpers for queries;
//! - [`api`]: the query and agent-coordination API (`serve --api-listen`);
//! - [`retention`] and [`export`]: the lifecycle jobs;
//! - [`late`]: markers of records stored after their day was archived.

pub mod api;
pub mod audit;
pub mod cli;
pub mod conn;
pub mod export;
pub mod ingest;
pub mod keys;
pub mod late;
pub mod metrics;
pub mod record;
pub mod retention;
pub mod store;
pub mod timespec;
