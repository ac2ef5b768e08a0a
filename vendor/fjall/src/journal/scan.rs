// Copyright (c) 2024-present, fjall-rs
// This source code is licensed under both the Apache 2.0 and MIT License
// (found in the LICENSE-* files in the repository)

//! Classifies the bytes of a journal file that follow its last valid batch,
//! once replay found something it could not read there.
//!
//! A crash can only leave the batch that was being written incomplete: it is
//! the last thing in the file, followed at most by the zeroes of the file's
//! pre-allocated space. Anything else — a complete, well-formed batch
//! further on — means bytes in the middle of the journal were damaged, and
//! discarding from the damage onwards would destroy the batches that follow.

use super::entry::Tag;
use crate::file::MAGIC_BYTES;
use byteorder::{LittleEndian, ReadBytesExt};
use lsm_tree::{coding::Decode, CompressionType, ValueType};
use std::{
    fs::File,
    hash::Hasher,
    io::{BufReader, Read, Seek, SeekFrom},
    path::Path,
};

/// Bytes read at a time while scanning.
const CHUNK_BYTES: usize = 1 << 20;

/// Smallest encoded journal item (a clear marker: tag + keyspace id).
const MIN_ITEM_BYTES: u64 = 9;

/// What follows the last valid batch of a journal file.
#[derive(Debug, Eq, PartialEq)]
pub enum Tail {
    /// Nothing but zeroes (pre-allocated space), or nothing at all.
    Clean,

    /// Bytes that hold no complete batch: an incomplete last batch.
    Torn {
        /// End of the last non-zero byte; zeroes follow up to the file's end.
        data_end: u64,
    },

    /// A complete, well-formed batch starts at this position.
    ValidBatchAt(u64),
}

/// Classifies the bytes of the journal at `path` from `from` to its end.
pub fn classify_tail(path: &Path, from: u64) -> std::io::Result<Tail> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();

    if from >= len {
        return Ok(Tail::Clean);
    }

    file.seek(SeekFrom::Start(from))?;

    let mut prober = Prober::new(File::open(path)?, len);
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut chunk_start = from;
    let mut data_end = None;

    while chunk_start < len {
        let n = read_full(&mut file, &mut chunk)?;
        let Some(bytes) = chunk.get(..n).filter(|b| !b.is_empty()) else {
            break;
        };

        if is_all_zero(bytes) {
            // Pre-allocated space: nothing to look at
        } else if let Some(last) = bytes.iter().rposition(|&b| b != 0) {
            data_end = Some(chunk_start + last as u64 + 1);

            let start_tag = u8::from(Tag::Start);
            for (i, _) in bytes.iter().enumerate().filter(|(_, &b)| b == start_tag) {
                let pos = chunk_start + i as u64;

                // The batch at `from` is the one that failed
                if pos == from {
                    continue;
                }

                if prober.is_complete_batch_at(pos)? {
                    return Ok(Tail::ValidBatchAt(pos));
                }
            }
        }

        chunk_start += n as u64;
    }

    Ok(data_end.map_or(Tail::Clean, |data_end| Tail::Torn { data_end }))
}

/// True when every byte is zero; written to compile to vector instructions,
/// as it reads the whole pre-allocated space of a new journal on reopening.
fn is_all_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(4_096)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Reads until `buf` is full or the reader is exhausted.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Tries to decode one whole batch at a given position, without allocating
/// for the lengths it reads (they may be garbage).
struct Prober {
    reader: BufReader<File>,
    /// Position of `reader` in the file.
    pos: u64,
    len: u64,
}

/// A reader that feeds what it reads into the batch checksum and counts it.
struct Hashing<'a, R> {
    inner: &'a mut R,
    hasher: &'a mut xxhash_rust::xxh3::Xxh3,
    read: u64,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        self.read += n as u64;
        Ok(n)
    }
}

/// Why a probe stopped: not a batch, or an I/O error to report.
enum Probe {
    NotABatch,
    Io(std::io::Error),
}

impl From<std::io::Error> for Probe {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Self::NotABatch,
            _ => Self::Io(e),
        }
    }
}

impl Prober {
    fn new(file: File, len: u64) -> Self {
        Self {
            reader: BufReader::with_capacity(64 * 1_024, file),
            pos: 0,
            len,
        }
    }

    fn is_complete_batch_at(&mut self, pos: u64) -> std::io::Result<bool> {
        // `seek_relative` keeps the buffer when the target is inside it
        #[expect(clippy::cast_possible_wrap)]
        self.reader.seek_relative(pos as i64 - self.pos as i64)?;
        self.pos = pos;

        let result = self.probe();
        // Exact even when a read stopped halfway (at the end of the file)
        self.pos = self.reader.stream_position()?;

        match result {
            Ok(()) => Ok(true),
            Err(Probe::NotABatch) => Ok(false),
            Err(Probe::Io(e)) => Err(e),
        }
    }

    /// Decodes Start, its items and End with a matching checksum, as
    /// the writer lays them out.
    fn probe(&mut self) -> Result<(), Probe> {
        let (start, len) = (self.pos, self.len);
        let remaining = |consumed: u64| len.saturating_sub(start + consumed);
        let mut consumed = 0;

        let mut header = [0u8; 13];
        self.reader.read_exact(&mut header)?;
        consumed += header.len() as u64;

        let mut item_count_bytes = [0u8; 4];
        item_count_bytes.copy_from_slice(header.get(1..5).ok_or(Probe::NotABatch)?);
        let item_count = u32::from_le_bytes(item_count_bytes);

        // The writer never writes an empty batch
        if item_count == 0 || u64::from(item_count) * MIN_ITEM_BYTES > remaining(consumed) {
            return Err(Probe::NotABatch);
        }

        let mut hasher = xxhash_rust::xxh3::Xxh3::new();

        for _ in 0..item_count {
            let remaining_now = remaining(consumed);
            let mut item = Hashing {
                inner: &mut self.reader,
                hasher: &mut hasher,
                read: 0,
            };
            let result = probe_item(&mut item, remaining_now);
            consumed += item.read;
            result?;
        }

        let tag = self.reader.read_u8()?;
        let checksum = self.reader.read_u64::<LittleEndian>()?;
        let mut magic = [0u8; MAGIC_BYTES.len()];
        self.reader.read_exact(&mut magic)?;

        if tag != u8::from(Tag::End) || magic != MAGIC_BYTES || checksum != hasher.finish() {
            return Err(Probe::NotABatch);
        }

        Ok(())
    }
}

/// Decodes one item or clear marker, reading (and so hashing) exactly its
/// encoded bytes; lengths larger than what is left of the file are refused
/// before anything is read.
fn probe_item<R: Read>(reader: &mut R, remaining: u64) -> Result<(), Probe> {
    let tag = reader.read_u8()?;

    if tag == u8::from(Tag::Clear) {
        reader.read_u64::<LittleEndian>()?;
        return Ok(());
    }

    if tag != u8::from(Tag::Item) {
        return Err(Probe::NotABatch);
    }

    let value_type = reader.read_u8()?;
    if ValueType::try_from(value_type).is_err() {
        return Err(Probe::NotABatch);
    }

    let compression = match CompressionType::decode_from(reader) {
        Ok(c) => c,
        Err(lsm_tree::Error::Io(e)) => return Err(e.into()),
        Err(_) => return Err(Probe::NotABatch),
    };

    let _keyspace_id = reader.read_u64::<LittleEndian>()?;
    let key_len = reader.read_u16::<LittleEndian>()?;
    let value_len = reader.read_u32::<LittleEndian>()?;
    let on_disk_value_len = reader.read_u32::<LittleEndian>()?;

    if compression == CompressionType::None && value_len != on_disk_value_len {
        return Err(Probe::NotABatch);
    }

    let body = u64::from(key_len) + u64::from(on_disk_value_len);
    if body > remaining {
        return Err(Probe::NotABatch);
    }

    let copied = std::io::copy(&mut reader.take(body), &mut std::io::sink())?;
    if copied != body {
        return Err(Probe::NotABatch);
    }

    Ok(())
}
