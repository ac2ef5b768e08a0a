// Copyright (c) 2024-present, fjall-rs
// This source code is licensed under both the Apache 2.0 and MIT License
// (found in the LICENSE-* files in the repository)

use super::{
    reader::JournalReader,
    scan::{classify_tail, Tail},
    writer::PRE_ALLOCATED_BYTES,
};
use crate::{journal::entry::Entry, keyspace::InternalKeyspaceId, JournalRecoveryError};
use lsm_tree::{SeqNo, UserKey, UserValue, ValueType};
use std::{fs::OpenOptions, hash::Hasher};

#[derive(Debug)]
pub struct ReadBatchItem {
    pub keyspace_id: InternalKeyspaceId,
    pub key: UserKey,
    pub value: UserValue,
    pub value_type: ValueType,
}

#[derive(Debug)]
pub struct Batch {
    pub(crate) seqno: SeqNo,
    pub(crate) items: Vec<ReadBatchItem>,
    pub(crate) cleared_keyspaces: Vec<InternalKeyspaceId>,
}

#[expect(clippy::module_name_repetitions)]
pub struct JournalBatchReader {
    reader: JournalReader,
    items: Vec<ReadBatchItem>,
    cleared_keyspaces: Vec<InternalKeyspaceId>,
    is_in_batch: bool,
    batch_counter: u32,
    batch_seqno: SeqNo,
    last_valid_pos: u64,
    checksum_builder: xxhash_rust::xxh3::Xxh3,

    /// Newer journal files follow this one, so damage in it is never a
    /// torn tail
    is_sealed: bool,

    /// Replay ended (at the end of the valid batches, or with an error)
    is_done: bool,
}

impl JournalBatchReader {
    pub fn new(reader: JournalReader) -> Self {
        Self {
            reader,
            items: Vec::with_capacity(10),
            cleared_keyspaces: Vec::new(),
            checksum_builder: xxhash_rust::xxh3::Xxh3::new(),
            is_in_batch: false,
            batch_seqno: 0,
            last_valid_pos: 0,
            batch_counter: 0,
            is_sealed: false,
            is_done: false,
        }
    }

    /// Reads a sealed journal: one that newer journal files follow, and
    /// that was fsynced whole before they were created.
    pub fn sealed(mut self) -> Self {
        self.is_sealed = true;
        self
    }

    fn truncate_to(&self, last_valid_pos: u64) -> crate::Result<()> {
        // TODO: on windows, reading file probably needs to be closed first...?

        let file = OpenOptions::new().write(true).open(&self.reader.path)?;
        file.set_len(last_valid_pos)?;
        file.sync_all()?;

        Ok(())
    }

    /// Ends replay at the end of the last valid batch, because what follows
    /// it cannot be replayed (`reason`).
    ///
    /// Zeroes (the file's pre-allocated space) are cut off. Bytes that hold
    /// no complete batch are an incomplete last batch, torn by a crash: they
    /// are discarded, with a warning (in a sealed journal, which was
    /// fsynced whole, they are damage and an error). If a complete batch
    /// follows, the bytes were damaged in the middle of the journal: that is
    /// an error, and the file is left untouched.
    fn end_replay(&mut self, reason: &str) -> crate::Result<()> {
        self.is_done = true;

        let path = &self.reader.path;
        let pos = self.last_valid_pos;

        let corruption = |next_valid_batch| {
            crate::Error::JournalRecovery(JournalRecoveryError::CorruptionBeforeValidData {
                path: path.clone(),
                pos,
                next_valid_batch,
            })
        };

        match classify_tail(path, pos)? {
            Tail::Clean => {
                let len = std::fs::metadata(path)?.len();
                if len > pos {
                    // Only a journal not reopened since it was created has
                    // zeroes at its end, and it has exactly this size
                    if len == PRE_ALLOCATED_BYTES {
                        log::trace!(
                            "Truncating journal {} to {pos} (unused pre-allocated space)",
                            path.display(),
                        );
                    } else {
                        log::warn!(
                            "Journal {}: discarding {} zero bytes from byte offset {pos}, after \
                             the last complete batch ({reason}); the file is cut at {pos}",
                            path.display(),
                            len - pos,
                        );
                    }
                    self.truncate_to(pos)?;
                }
                Ok(())
            }
            Tail::Torn { data_end } if !self.is_sealed => {
                let len = std::fs::metadata(path)?.len();
                let unused = len - data_end;
                log::warn!(
                    "Journal {}: discarding an incomplete last batch: {} bytes from byte offset \
                     {pos} ({reason}){}; the file is cut at {pos}. A crash while a batch was \
                     being written leaves this; no complete batch follows it",
                    path.display(),
                    data_end - pos,
                    if unused > 0 {
                        format!(", followed by {unused} zero bytes")
                    } else {
                        String::new()
                    },
                );
                self.truncate_to(pos)?;
                Ok(())
            }
            Tail::Torn { .. } => {
                log::error!(
                    "Sealed journal {} is damaged at byte offset {pos} ({reason}); \
                     newer journals follow it, so the file is left as it is",
                    path.display(),
                );
                Err(corruption(None))
            }
            Tail::ValidBatchAt(next) => {
                log::error!(
                    "Journal {} is damaged at byte offset {pos} ({reason}), and a valid batch \
                     follows at byte offset {next}; the file is left as it is",
                    path.display(),
                );
                Err(corruption(Some(next)))
            }
        }
    }

    /// Ends replay because of `reason`: `None` when the rest is a torn tail
    /// (discarded), or the error to return.
    fn stop(&mut self, reason: &str) -> Option<crate::Result<Batch>> {
        match self.end_replay(reason) {
            Ok(()) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl Iterator for JournalBatchReader {
    type Item = crate::Result<Batch>;

    #[expect(clippy::too_many_lines)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.is_done {
            return None;
        }

        loop {
            let Some(item) = self.reader.next() else {
                let reason = if self.is_in_batch {
                    "batch not terminated"
                } else {
                    "no batch start"
                };
                let reason = self
                    .reader
                    .stopped_at
                    .as_ref()
                    .map_or_else(|| reason.to_string(), |why| format!("{reason}, {why}"));
                return self.stop(&reason);
            };
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    self.is_done = true;
                    return Some(Err(e));
                }
            };

            let journal_file_pos = self.reader.last_valid_pos;

            match item {
                Entry::Start { item_count, seqno } => {
                    if self.is_in_batch {
                        return self.stop("batch start inside a batch");
                    }

                    self.is_in_batch = true;
                    self.batch_counter = item_count;
                    self.batch_seqno = seqno;
                }
                Entry::End(expected_checksum) => {
                    if !self.is_in_batch {
                        return self.stop("batch end without batch start");
                    }

                    if self.batch_counter > 0 {
                        return self.stop("batch has fewer items than its start announces");
                    }

                    let got_checksum = self.checksum_builder.finish();
                    self.checksum_builder = xxhash_rust::xxh3::Xxh3::new();

                    if got_checksum != expected_checksum {
                        return self.stop(&format!(
                            "batch checksum mismatch, expected: {expected_checksum}, got: {got_checksum}"
                        ));
                    }

                    // Reset all variables
                    self.is_in_batch = false;
                    self.batch_counter = 0;

                    self.last_valid_pos = journal_file_pos;

                    let items = std::mem::take(&mut self.items);
                    let cleared_keyspaces = std::mem::take(&mut self.cleared_keyspaces);
                    return Some(Ok(Batch {
                        seqno: self.batch_seqno,
                        items,
                        cleared_keyspaces,
                    }));
                }
                Entry::Item {
                    keyspace_id,
                    key,
                    value,
                    value_type,
                    compression,
                } => {
                    if !self.is_in_batch {
                        return self.stop("batch item without batch start");
                    }

                    if self.batch_counter == 0 {
                        return self.stop("batch has more items than its start announces");
                    }

                    let item = Entry::Item {
                        keyspace_id,
                        key: key.clone(),
                        value: value.clone(),
                        value_type,
                        compression,
                    };
                    let mut bytes = Vec::with_capacity(100);
                    fail_iter!(item.encode_into(&mut bytes));

                    self.checksum_builder.update(&bytes);

                    self.batch_counter -= 1;

                    self.items.push(ReadBatchItem {
                        keyspace_id,
                        key,
                        value,
                        value_type,
                    });
                }
                Entry::Clear { keyspace_id } => {
                    if !self.is_in_batch {
                        return self.stop("clear marker without batch start");
                    }

                    if self.batch_counter == 0 {
                        return self.stop("batch has more items than its start announces");
                    }

                    let entry = Entry::Clear { keyspace_id };
                    let mut bytes = Vec::with_capacity(16);
                    fail_iter!(entry.encode_into(&mut bytes));

                    self.checksum_builder.update(&bytes);

                    self.batch_counter -= 1;

                    self.cleared_keyspaces.push(keyspace_id);
                }
            }
        }
    }
}
