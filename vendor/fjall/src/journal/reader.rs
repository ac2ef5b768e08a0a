// Copyright (c) 2024-present, fjall-rs
// This source code is licensed under both the Apache 2.0 and MIT License
// (found in the LICENSE-* files in the repository)

use super::entry::Entry;
use std::{
    fs::File,
    io::{BufReader, Seek},
    path::{Path, PathBuf},
};

/// Reads and emits through the entries in a journal file, but doesn't
/// check the validity of batches
///
/// Stops at the first entry it cannot decode, and records why in
/// [`JournalReader::stopped_at`]. It never changes the file: whether the
/// undecodable bytes are a torn tail that may be discarded is for
/// the batch reader to decide.
#[expect(clippy::module_name_repetitions)]
pub struct JournalReader {
    pub(crate) path: PathBuf,
    pub(crate) reader: BufReader<File>,
    pub(crate) last_valid_pos: u64,

    /// Size of the file when it was opened: no entry reaches past it
    len: u64,

    /// Why reading stopped before the end of the file, if it did
    pub(crate) stopped_at: Option<String>,
}

impl JournalReader {
    pub fn new<P: AsRef<Path>>(path: P) -> crate::Result<Self> {
        let file = File::open(&path)?;
        let len = file.metadata()?.len();

        Ok(Self {
            path: path.as_ref().into(),
            reader: BufReader::new(file),
            last_valid_pos: 0,
            len,
            stopped_at: None,
        })
    }
}

/// True for the errors of decoding bytes that are not a journal entry (as
/// opposed to failing to read them).
fn is_decode_error(e: &crate::Error) -> bool {
    match e {
        crate::Error::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::Other
                | std::io::ErrorKind::InvalidData
        ),
        crate::Error::Storage(lsm_tree::Error::Io(e)) => matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::Other
                | std::io::ErrorKind::InvalidData
        ),
        _ => true,
    }
}

impl Iterator for JournalReader {
    type Item = crate::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped_at.is_some() {
            return None;
        }

        // Each entry starts where the last valid one ended
        let available = self.len.saturating_sub(self.last_valid_pos);

        match Entry::decode_from(&mut self.reader, available) {
            Ok(item) => {
                self.last_valid_pos = fail_iter!(self.reader.stream_position());
                Some(Ok(item))
            }
            Err(e) if is_decode_error(&e) => {
                self.stopped_at = Some(format!(
                    "undecodable entry at byte offset {}: {e}",
                    self.last_valid_pos
                ));
                None
            }
            Err(e) => Some(Err(e)),
        }
    }
}
