//! `fdb-sink tenants`: the tenants that have audit records, one per line
//! (what the daily export archives when told to export every tenant).
//!
//! The tenants are read from the session rows in key order, in chunks: a
//! chunk that ends inside a tenant's rows skips the rest of them. A chunk
//! that held one tenant only halves the next (down to one row, a plain skip
//! from tenant to tenant); one that held several doubles it. So many small
//! tenants cost a few range reads, and few large ones about one each. The
//! reads are spread over transactions of at most `READS_PER_TXN` (about
//! half a second of round trips on FoundationDB, plus the time to transfer
//! the rows read, at most 10,000 per read); a tenant is listed when its
//! rows were there at the read that found it.

use std::io::{BufWriter, Write};

use clap::Args;

use super::StoreArgs;
use crate::keys::Keys;
use crate::store::{ReadTxn, Store, StoreError, StoreExt};

/// Session rows the first range read asks for.
const FIRST_CHUNK: usize = 1000;
/// Session rows one range read asks for at most.
const MAX_CHUNK: usize = 10_000;
/// Range reads one transaction makes at most (one round trip each on
/// FoundationDB).
const READS_PER_TXN: usize = 500;

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
    let tenants = list(store.as_ref(), &keys, READS_PER_TXN)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for t in &tenants {
        writeln!(out, "{t}")?;
    }
    out.flush()?;
    eprintln!("tenants: {}", tenants.len());
    Ok(())
}

/// Where a listing stands between transactions.
#[derive(Debug, Clone)]
struct Resume {
    /// The first session key not read yet.
    begin: Vec<u8>,
    /// Rows the next range read asks for.
    chunk: usize,
}

/// Every tenant with at least one session row, in key order, read in
/// transactions of at most `reads_per_txn` range reads.
fn list(
    store: &(impl Store + ?Sized),
    keys: &Keys,
    reads_per_txn: usize,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut at = Some(Resume {
        begin: keys.sessions_all().begin,
        chunk: FIRST_CHUNK,
    });
    while let Some(from) = at {
        let (found, next) = store.read(|txn| tenants_from(txn, keys, &from, reads_per_txn))?;
        out.extend(found);
        at = next;
    }
    Ok(out)
}

/// The tenants with session rows from `from` on, in key order, found with
/// at most `max_reads` range reads, and where to continue (`None`: done).
fn tenants_from(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    from: &Resume,
    max_reads: usize,
) -> Result<(Vec<String>, Option<Resume>), StoreError> {
    let end = keys.sessions_all().end;
    let mut at = from.clone();
    let mut out: Vec<String> = Vec::new();
    for _ in 0..max_reads.max(1) {
        let rows = txn.get_range(&at.begin, &end, at.chunk, false)?;
        let full = rows.len() >= at.chunk;
        let before = out.len();
        // Rows of one tenant are contiguous, and the chunk starts past
        // every tenant listed so far.
        for (k, _) in &rows {
            let f = keys
                .decode_session_field(k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if out.len() == before || out.last() != Some(&f.tenant) {
                out.push(f.tenant);
            }
        }
        let Some(last) = out.last().filter(|_| full) else {
            return Ok((out, None));
        };
        at.begin = keys.sessions_tenant(last).end;
        at.chunk = if out.len() - before > 1 {
            (at.chunk * 2).min(MAX_CHUNK)
        } else {
            (at.chunk / 2).max(1)
        };
    }
    Ok((out, Some(at)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::counting::CountingReads;
    use crate::keys::Keys;
    use crate::store::embedded::EmbeddedStore;

    /// One `file-event/1` line of `tenant`, user `u`, `session`, from the
    /// tenant's own monitor (a monitor belongs to one tenant).
    fn line(tenant: &str, session: &str, seq: usize) -> String {
        let monitor = tenant
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)))
            & 0xffff_ffff_ffff;
        serde_json::json!({
            "schema": "file-event/1",
            "event_id": uuid::Uuid::now_v7().to_string(),
            "monitor_id": format!("0190b5a0-0000-7000-8000-{monitor:012x}"),
            "seq": seq,
            "timestamp": "2026-11-26T10:00:00Z",
            "event_type": "create", "kind": "file", "path": "f",
            "tenant_id": tenant, "user_id": "u", "session_id": session,
        })
        .to_string()
    }

    /// 500 tenants of one session and 3 of 400 sessions each, between them.
    fn store_of_many_tenants() -> (tempfile::TempDir, EmbeddedStore, Keys, Vec<String>) {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let mut lines = Vec::new();
        let mut want = Vec::new();
        for i in 0..500 {
            let tenant = format!("t{i:03}");
            lines.push(line(&tenant, "s", lines.len() + 1));
            want.push(tenant);
        }
        for big in ["t100x", "t250x", "t499x"] {
            for s in 0..400 {
                lines.push(line(big, &format!("s{s:03}"), lines.len() + 1));
            }
            want.push(big.to_owned());
        }
        want.sort();
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(&keys, l.as_bytes(), 0))
            .collect();
        crate::audit::write_items(&store, &keys, &items, Default::default()).expect("write");
        (dir, store, keys, want)
    }

    /// Listing 503 tenants costs a few range reads, not one per tenant.
    #[test]
    fn listing_tenants_costs_a_few_reads_not_one_per_tenant() {
        let (_dir, store, keys, want) = store_of_many_tenants();
        let (got, calls) = store
            .read(|t| {
                let mut c = CountingReads::new(t);
                let got = tenants_from(&mut c, &keys, &start(&keys), usize::MAX)?.0;
                Ok((got, c.calls()))
            })
            .expect("list");
        assert_eq!(got, want);
        assert!(
            calls <= 10,
            "listing {} tenants made {calls} read calls",
            want.len()
        );
    }

    fn start(keys: &Keys) -> Resume {
        Resume {
            begin: keys.sessions_all().begin,
            chunk: FIRST_CHUNK,
        }
    }

    /// Split over transactions of one read each, the listing is the same;
    /// so it is when every tenant outgrows the chunks.
    #[test]
    fn the_listing_is_the_same_over_many_transactions() {
        let (_dir, store, keys, want) = store_of_many_tenants();
        assert_eq!(list(&store, &keys, 1).expect("list"), want);
        assert_eq!(list(&store, &keys, READS_PER_TXN).expect("list"), want);
        let empty = tempfile::tempdir().expect("dir");
        let empty = EmbeddedStore::open(empty.path()).expect("open");
        assert!(list(&empty, &keys, 1).expect("list").is_empty());
        let many = store_of_large_tenants(&keys);
        let (got, calls) = many
            .1
            .read(|t| {
                let mut c = CountingReads::new(t);
                let got = tenants_from(&mut c, &keys, &start(&keys), usize::MAX)?.0;
                Ok((got, c.calls()))
            })
            .expect("list");
        assert_eq!(got, many.2);
        // Halving from the first chunk to one row takes about ten reads;
        // from then on, one per tenant.
        assert!(calls <= many.2.len() + 12, "{calls} read calls");
    }

    /// 40 tenants of 300 sessions each (more rows than the first chunk).
    fn store_of_large_tenants(keys: &Keys) -> (tempfile::TempDir, EmbeddedStore, Vec<String>) {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let mut lines = Vec::new();
        let tenants: Vec<String> = (0..40).map(|i| format!("big{i:02}")).collect();
        for t in &tenants {
            for s in 0..300 {
                lines.push(line(t, &format!("s{s:03}"), lines.len() + 1));
            }
        }
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(keys, l.as_bytes(), 0))
            .collect();
        crate::audit::write_items(&store, keys, &items, Default::default()).expect("write");
        (dir, store, tenants)
    }
}
