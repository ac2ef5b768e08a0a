//! Integration tests: the real `file-monitor` binary on real temporary
//! directories, one module per scenario.
#![allow(clippy::unwrap_used)]

mod support;

mod cli;
mod content;
mod ctime;
mod hostile;
mod ignore;
mod journal;
mod kinds;
mod lookups;
mod metrics;
mod mounts;
mod moves;
mod outputs;
mod poll;
mod ratelimit;
mod rescan;
mod reuse;
mod semantics;
mod shutdown;
mod state;
mod storm;
mod unreadable;
mod watch_budget;
