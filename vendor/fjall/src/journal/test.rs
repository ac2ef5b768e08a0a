use super::*;
use crate::batch::item::Item as BatchItem;
use entry::Entry;
use lsm_tree::ValueType;
use std::io::Write;
use tempfile::tempdir;
use test_log::test;

impl PartialEq<BatchItem> for crate::journal::batch_reader::ReadBatchItem {
    fn eq(&self, other: &BatchItem) -> bool {
        self.keyspace_id == other.keyspace.id
            && self.key == other.key
            && self.value == other.value
            && self.value_type == other.value_type
    }
}

impl PartialEq<crate::journal::batch_reader::ReadBatchItem> for BatchItem {
    fn eq(&self, other: &crate::journal::batch_reader::ReadBatchItem) -> bool {
        other.eq(self)
    }
}

#[test]
#[expect(clippy::redundant_clone)]
fn journal_rotation() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let next_path = dir2.path().join("1.jnl");

    {
        let journal = Journal::create_new(&path)?;
        let mut writer = journal.get_writer()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace.clone(), *b"a", *b"a", ValueType::Value),
                BatchItem::new(keyspace.clone(), *b"b", *b"b", ValueType::Value),
            ]
            .iter(),
            2,
            0,
        )?;
        writer.rotate()?;
    }

    assert!(path.try_exists()?);
    assert!(next_path.try_exists()?);

    Ok(())
}

#[test]
#[expect(clippy::redundant_clone)]
fn journal_recovery_active() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace0 = db.keyspace("default", Default::default)?;
    let keyspace1 = db.keyspace("default1", Default::default)?;
    let keyspace2 = db.keyspace("default2", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let next_path = dir2.path().join("1.jnl");
    let next_next_path = dir2.path().join("2.jnl");

    {
        let journal = Journal::create_new(&path)?;
        let mut writer = journal.get_writer()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace0.clone(), *b"a", *b"a", ValueType::Value),
                BatchItem::new(keyspace0.clone(), *b"b", *b"b", ValueType::Value),
            ]
            .iter(),
            2,
            0,
        )?;
        writer.rotate()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace1.clone(), *b"c", *b"c", ValueType::Value),
                BatchItem::new(keyspace1.clone(), *b"d", *b"d", ValueType::Value),
            ]
            .iter(),
            2,
            1,
        )?;
        writer.rotate()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace2.clone(), *b"c", *b"c", ValueType::Value),
                BatchItem::new(keyspace2.clone(), *b"d", *b"d", ValueType::Value),
            ]
            .iter(),
            2,
            1,
        )?;
    }

    assert!(path.try_exists()?);
    assert!(next_path.try_exists()?);
    assert!(next_next_path.try_exists()?);

    let journal_recovered = Journal::recover(dir2, CompressionType::None, 0)?;
    assert_eq!(journal_recovered.active.path()?, next_next_path);
    assert_eq!(journal_recovered.sealed, &[(0, path), (1, next_path)]);

    Ok(())
}

#[test]
#[cfg(feature = "lz4")]
#[expect(clippy::redundant_clone)]
fn journal_recovery_active_lz4() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace0 = db.keyspace("default", Default::default)?;
    let keyspace1 = db.keyspace("default1", Default::default)?;
    let keyspace2 = db.keyspace("default2", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let next_path = dir2.path().join("1.jnl");
    let next_next_path = dir2.path().join("2.jnl");

    {
        let journal = Journal::create_new(&path)?.with_compression(CompressionType::Lz4, 1);
        let mut writer = journal.get_writer()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace0.clone(), *b"a", *b"a", ValueType::Value),
                BatchItem::new(keyspace0.clone(), *b"b", *b"b", ValueType::Value),
            ]
            .iter(),
            2,
            0,
        )?;
        writer.rotate()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace1.clone(), *b"c", *b"c", ValueType::Value),
                BatchItem::new(keyspace1.clone(), *b"d", *b"d", ValueType::Value),
            ]
            .iter(),
            2,
            1,
        )?;
        writer.rotate()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace2.clone(), *b"c", *b"c", ValueType::Value),
                BatchItem::new(keyspace2.clone(), *b"d", *b"d", ValueType::Value),
            ]
            .iter(),
            2,
            1,
        )?;
    }

    assert!(path.try_exists()?);
    assert!(next_path.try_exists()?);
    assert!(next_next_path.try_exists()?);

    let journal_recovered = Journal::recover(dir2, CompressionType::None, 0)?;
    assert_eq!(journal_recovered.active.path()?, next_next_path);
    assert_eq!(journal_recovered.sealed, &[(0, path), (1, next_path)]);

    Ok(())
}

#[test]
#[expect(clippy::redundant_clone)]
fn journal_recovery_no_active() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let next_path = dir2.path().join("1.jnl");

    {
        let journal = Journal::create_new(&path)?;

        {
            let mut writer = journal.get_writer()?;

            writer.write_batch(
                [
                    BatchItem::new(keyspace.clone(), *b"a", *b"a", ValueType::Value),
                    BatchItem::new(keyspace.clone(), *b"b", *b"b", ValueType::Value),
                ]
                .iter(),
                2,
                0,
            )?;
            writer.rotate()?;
        }

        // NOTE: Delete the new, active journal -> old journal will be
        // reused as active on next recovery
        std::fs::remove_file(&next_path)?;
    }

    assert!(path.try_exists()?);
    assert!(!next_path.try_exists()?);

    let journal_recovered = Journal::recover(dir2, CompressionType::None, 0)?;
    assert_eq!(journal_recovered.active.path()?, path);
    assert_eq!(journal_recovered.sealed, &[]);

    Ok(())
}

#[test]
#[expect(clippy::unwrap_used, clippy::redundant_clone)]
fn journal_truncation_corrupt_bytes() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");

    let values = [
        BatchItem::new(keyspace.clone(), *b"abc", *b"def", ValueType::Value),
        BatchItem::new(keyspace.clone(), *b"yxc", *b"ghj", ValueType::Value),
    ];

    {
        let journal = Journal::create_new(&path)?;
        journal
            .get_writer()?
            .write_batch(values.iter(), values.len(), 0)?;
    }

    {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        file.write_all(b"09pmu35w3a9mp53bao9upw3ab5up")?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    for _ in 0..5 {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        file.write_all(b"09pmu35w3a9mp53bao9upw3ab5up")?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    Ok(())
}

#[test]
#[expect(clippy::unwrap_used, clippy::redundant_clone)]
fn journal_truncation_repeating_start_marker() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");

    let values = [
        BatchItem::new(keyspace.clone(), *b"abc", *b"def", ValueType::Value),
        BatchItem::new(keyspace.clone(), *b"yxc", *b"ghj", ValueType::Value),
    ];

    {
        let journal = Journal::create_new(&path)?;
        journal
            .get_writer()?
            .write_batch(values.iter(), values.len(), 0)?;
    }

    {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::Start {
            item_count: 2,
            seqno: 64,
        }
        .encode_into(&mut file)?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    for _ in 0..5 {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::Start {
            item_count: 2,
            seqno: 64,
        }
        .encode_into(&mut file)?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    Ok(())
}

#[test]
#[expect(clippy::unwrap_used, clippy::redundant_clone)]
fn journal_truncation_repeating_end_marker() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");

    let values = [
        BatchItem::new(keyspace.clone(), *b"abc", *b"def", ValueType::Value),
        BatchItem::new(keyspace.clone(), *b"yxc", *b"ghj", ValueType::Value),
    ];

    {
        let journal = Journal::create_new(&path)?;
        journal
            .get_writer()?
            .write_batch(values.iter(), values.len(), 0)?;
    }

    {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::End(5432).encode_into(&mut file)?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    for _ in 0..5 {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::End(5432).encode_into(&mut file)?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    Ok(())
}

#[test]
#[expect(clippy::unwrap_used, clippy::redundant_clone)]
fn journal_truncation_repeating_item_marker() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");

    let values = [
        BatchItem::new(keyspace.clone(), *b"abc", *b"def", ValueType::Value),
        BatchItem::new(keyspace.clone(), *b"yxc", *b"ghj", ValueType::Value),
    ];

    {
        let journal = Journal::create_new(&path)?;
        journal
            .get_writer()?
            .write_batch(values.iter(), values.len(), 0)?;
    }

    {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::Item {
            keyspace_id: 0,
            key: (*b"zzz").into(),
            value: (*b"").into(),
            value_type: ValueType::Tombstone,
            compression: lsm_tree::CompressionType::None,
        }
        .encode_into(&mut file)?;

        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    for _ in 0..5 {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::Item {
            keyspace_id: 0,
            key: (*b"zzz").into(),
            value: (*b"").into(),
            value_type: ValueType::Tombstone,
            compression: lsm_tree::CompressionType::None,
        }
        .encode_into(&mut file)?;

        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    Ok(())
}

/// The items of each batch, and where each batch starts and ends.
type WrittenBatches = (Vec<Vec<BatchItem>>, Vec<(u64, u64)>);

/// Writes three batches of two items to a new journal at `path`.
fn write_three_batches(
    keyspace: &crate::Keyspace,
    path: &std::path::Path,
) -> crate::Result<WrittenBatches> {
    let batches: Vec<Vec<BatchItem>> = (0..3u8)
        .map(|b| {
            (0..2u8)
                .map(|i| {
                    BatchItem::new(
                        keyspace.clone(),
                        vec![b'k', b, i],
                        vec![b'v'; 100],
                        ValueType::Value,
                    )
                })
                .collect()
        })
        .collect();

    let mut bounds = Vec::new();
    let journal = Journal::create_new(path)?;
    let mut writer = journal.get_writer()?;
    let mut pos = 0;
    for (seqno, batch) in batches.iter().enumerate() {
        let len = writer.write_batch(batch.iter(), batch.len(), seqno as u64)? as u64;
        bounds.push((pos, pos + len));
        pos += len;
    }
    writer.persist(PersistMode::SyncAll)?;
    Ok((batches, bounds))
}

fn overwrite(path: &std::path::Path, pos: u64, bytes: &[u8]) -> crate::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.seek(SeekFrom::Start(pos))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[test]
#[expect(clippy::unwrap_used, clippy::indexing_slicing)]
fn journal_damage_before_a_valid_batch_is_an_error_and_the_file_is_kept() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let (batches, bounds) = write_three_batches(&keyspace, &path)?;

    // Damage the second batch in two ways: a byte of an item's value (its
    // checksum no longer matches), then its start marker (undecodable)
    for (offset, bytes) in [(bounds[1].0 + 60, &b"X"[..]), (bounds[1].0, &[0xEE][..])] {
        overwrite(&path, offset, bytes)?;
        let before = std::fs::read(&path)?;

        for _ in 0..2 {
            let journal = Journal::from_file(&path)?;
            let mut reader = journal.get_reader()?;

            let first = reader.next().unwrap()?;
            assert_eq!(batches[0], first.items);

            match reader.next() {
                Some(Err(crate::Error::JournalRecovery(
                    crate::JournalRecoveryError::CorruptionBeforeValidData {
                        path: p,
                        pos,
                        next_valid_batch,
                    },
                ))) => {
                    assert_eq!(p, path);
                    assert_eq!(pos, bounds[1].0);
                    assert_eq!(next_valid_batch, Some(bounds[2].0));
                }
                other => panic!("expected a corruption error, got {other:?}"),
            }
            assert!(reader.next().is_none());
            drop(reader);
            drop(journal);

            assert_eq!(before, std::fs::read(&path)?, "the file must not change");
        }
    }

    Ok(())
}

#[test]
#[expect(clippy::unwrap_used, clippy::indexing_slicing)]
fn journal_damaged_last_batch_is_a_torn_tail() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let (batches, bounds) = write_three_batches(&keyspace, &path)?;

    // The last batch's value byte changed: checksum mismatch, nothing after
    overwrite(&path, bounds[2].0 + 60, b"X")?;
    {
        let journal = Journal::from_file(&path)?;
        let collected = journal.get_reader()?.collect::<crate::Result<Vec<_>>>()?;
        assert_eq!(2, collected.len());
        assert_eq!(batches[1], collected[1].items);
    }
    assert_eq!(bounds[1].1, std::fs::metadata(&path)?.len());

    // Cut in the middle of the (now) last batch
    {
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(bounds[1].0 + 50)?;
    }
    {
        let journal = Journal::from_file(&path)?;
        let collected = journal.get_reader()?.collect::<crate::Result<Vec<_>>>()?;
        assert_eq!(1, collected.len());
        assert_eq!(batches[0], collected.first().unwrap().items);
    }
    assert_eq!(bounds[0].1, std::fs::metadata(&path)?.len());

    Ok(())
}

#[test]
#[expect(clippy::indexing_slicing)]
fn journal_unused_preallocated_space_is_a_clean_end() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let (_, bounds) = write_three_batches(&keyspace, &path)?;
    assert!(std::fs::metadata(&path)?.len() > bounds[2].1);

    assert_eq!(scan::classify_tail(&path, bounds[2].1)?, scan::Tail::Clean,);
    assert_eq!(
        scan::classify_tail(&path, bounds[1].0)?,
        scan::Tail::ValidBatchAt(bounds[2].0),
    );

    let journal = Journal::from_file(&path)?;
    let collected = journal.get_reader()?.collect::<crate::Result<Vec<_>>>()?;
    assert_eq!(3, collected.len());
    assert_eq!(bounds[2].1, std::fs::metadata(&path)?.len());

    Ok(())
}

#[test]
#[expect(clippy::indexing_slicing)]
fn sealed_journal_damage_is_an_error_even_at_its_end() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let (_, bounds) = write_three_batches(&keyspace, &path)?;
    overwrite(&path, bounds[2].0 + 60, b"X")?;
    let before = std::fs::read(&path)?;

    let reader = batch_reader::JournalBatchReader::new(JournalReader::new(&path)?).sealed();
    let result = reader.collect::<crate::Result<Vec<_>>>();
    assert!(
        matches!(
            result,
            Err(crate::Error::JournalRecovery(
                crate::JournalRecoveryError::CorruptionBeforeValidData {
                    pos,
                    next_valid_batch: None,
                    ..
                }
            )) if pos == bounds[2].0
        ),
        "{result:?}"
    );
    assert_eq!(before, std::fs::read(&path)?);

    Ok(())
}

#[test]
#[expect(clippy::indexing_slicing)]
fn journal_scan_skips_start_like_garbage_and_stops_at_the_end_of_the_file() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let (_, bounds) = write_three_batches(&keyspace, &path)?;

    // Bytes that look like batch starts (announcing 2 items), then garbage
    let mut garbage = Vec::new();
    for _ in 0..8 {
        garbage.extend_from_slice(&[1, 2, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 2, 0]);
    }
    overwrite(&path, bounds[1].0, &garbage)?;
    assert_eq!(
        scan::classify_tail(&path, bounds[0].1)?,
        scan::Tail::ValidBatchAt(bounds[2].0),
    );

    // The same bytes as the end of the file: each probe runs into its end
    {
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(bounds[2].1)?;
    }
    overwrite(&path, bounds[2].1, &garbage)?;
    assert_eq!(
        scan::classify_tail(&path, bounds[2].1)?,
        scan::Tail::Torn {
            data_end: bounds[2].1 + garbage.len() as u64 - 1
        },
    );

    Ok(())
}

/// Where the first item of the batch starting at `batch_start` states its
/// value's length, then its stored length (after a 13-byte batch start and
/// 13 bytes of the item's header).
fn first_item_value_lengths(batch_start: u64) -> u64 {
    batch_start + 13 + 13
}

#[test]
#[expect(clippy::indexing_slicing)]
fn journal_item_length_past_the_end_of_the_file_is_damage() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let (_, bounds) = write_three_batches(&keyspace, &path)?;

    // The second batch's first item states a 4 GiB value
    let huge = [0xFF; 8];
    overwrite(&path, first_item_value_lengths(bounds[1].0), &huge)?;
    let before = std::fs::read(&path)?;

    // The entry reader stops at that item because of its length, without
    // reading (or reserving) the 4 GiB it states
    let mut entries = JournalReader::new(&path)?;
    let decoded = entries.by_ref().collect::<crate::Result<Vec<_>>>()?;
    assert_eq!(2 + 2 + 1, decoded.len(), "batch 0 and the start of batch 1");
    let why = entries.stopped_at.clone().unwrap_or_default();
    assert!(why.contains("bytes are left in the file"), "{why}");
    assert!(
        why.contains(&format!("byte offset {}", bounds[1].0 + 13)),
        "{why}"
    );

    // A complete batch follows: damage, reported, the file kept
    let result = Journal::from_file(&path)?
        .get_reader()?
        .collect::<crate::Result<Vec<_>>>();
    assert!(
        matches!(
            &result,
            Err(crate::Error::JournalRecovery(
                crate::JournalRecoveryError::CorruptionBeforeValidData {
                    pos,
                    next_valid_batch: Some(next),
                    ..
                }
            )) if *pos == bounds[1].0 && *next == bounds[2].0
        ),
        "{result:?}"
    );
    assert_eq!(before, std::fs::read(&path)?, "the file must not change");

    // The same damage in the last batch: a torn tail, cut off
    let path = dir2.path().join("1.jnl");
    let (batches, bounds) = write_three_batches(&keyspace, &path)?;
    overwrite(&path, first_item_value_lengths(bounds[2].0), &huge)?;
    let collected = Journal::from_file(&path)?
        .get_reader()?
        .collect::<crate::Result<Vec<_>>>()?;
    assert_eq!(2, collected.len());
    assert_eq!(batches[1], collected[1].items);
    assert_eq!(bounds[1].1, std::fs::metadata(&path)?.len());

    Ok(())
}

#[test]
#[expect(clippy::indexing_slicing)]
fn journal_item_value_lengths_that_disagree_are_damage() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let (_, bounds) = write_three_batches(&keyspace, &path)?;

    // An uncompressed value that states 4 GiB but is stored in 100 bytes
    overwrite(&path, first_item_value_lengths(bounds[1].0), &[0xFF; 4])?;

    let mut entries = JournalReader::new(&path)?;
    let decoded = entries.by_ref().collect::<crate::Result<Vec<_>>>()?;
    assert_eq!(5, decoded.len());
    let why = entries.stopped_at.clone().unwrap_or_default();
    assert!(why.contains("stored in 100 bytes"), "{why}");

    let result = Journal::from_file(&path)?
        .get_reader()?
        .collect::<crate::Result<Vec<_>>>();
    assert!(
        matches!(
            &result,
            Err(crate::Error::JournalRecovery(
                crate::JournalRecoveryError::CorruptionBeforeValidData { pos, .. }
            )) if *pos == bounds[1].0
        ),
        "{result:?}"
    );

    Ok(())
}
