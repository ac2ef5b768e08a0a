//! fdb-sink integration tests: the real binary, real HTTP, real files.
//! One module per scenario; `harness` starts and stops sink processes.

mod harness;

mod auth;
mod backpressure;
mod cli_checks;
mod conflicts;
mod conformance;
mod crash;
mod dead_letter_export;
mod dead_letter_redelivery;
mod dead_letters;
mod delivery_gap;
mod encoding;
mod idempotency;
mod ingest_outage;
mod late;
mod lifecycle;
mod memory;
mod monitor_tenant;
mod ready_writes;
mod retention_guard;
mod slow_clients;
mod stdin;
mod store_faults;
mod stream_grouping;
mod stream_limits;
mod unavailable;
mod upstream_exact_bytes;
mod validation;
mod vector_fixtures;

mod api_agent_list;
mod api_auth;
mod api_claims;
mod api_cursors;
mod api_duplicates_own;
mod api_harness;
mod api_history;
mod api_limits;
mod api_logs;
mod api_openapi;
mod api_sessions;
