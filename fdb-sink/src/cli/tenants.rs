//! `fdb-sink tenants`: the tenants that have audit records, one per line
//! (what the daily export archives when told to export every tenant).

use std::io::{BufWriter, Write};

use clap::Args;

use super::StoreArgs;
use crate::audit;
use crate::store::StoreExt;

/// Arguments of `fdb-sink tenants`.
#[derive(Debug, Args)]
pub struct TenantsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Prints every tenant with at least one session, in key order, and a
/// count on stderr.
pub fn run(args: TenantsArgs) -> anyhow::Result<()> {
    let store = args.store.open_existing()?;
    let keys = args.store.keys();
    let tenants = store.read(|t| audit::tenants(t, &keys))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for t in &tenants {
        writeln!(out, "{t}")?;
    }
    out.flush()?;
    eprintln!("tenants: {}", tenants.len());
    Ok(())
}
