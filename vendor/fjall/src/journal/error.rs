// Copyright (c) 2024-present, fjall-rs
// This source code is licensed under both the Apache 2.0 and MIT License
// (found in the LICENSE-* files in the repository)

/// Recovery mode to use
///
/// Based on `RocksDB`'s WAL Recovery Modes: <https://github.com/facebook/rocksdb/wiki/WAL-Recovery-Modes>
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// The last batch in the journal may be corrupt on crash,
    /// and will be discarded without error.
    ///
    /// This mode will error on any other IO or consistency error, so
    /// any data up to the tail will be consistent.
    ///
    /// This is the default mode.
    #[default]
    TolerateCorruptTail,
    // TODO: in the future?
    /*  /// Skips corrupt (invalid checksum) batches. This may violate
    /// consistency, but will recover as much data as possible.
    SkipInvalidBatches, */
    // TODO: absolute consistency
}

/// Errors that can occur during journal recovery
#[derive(Clone, Debug, Eq, PartialEq)]
#[expect(clippy::module_name_repetitions)]
pub enum RecoveryError {
    /// Batch had less items than expected, so it's incomplete
    InsufficientLength,

    /* /// Batch was not terminated, so it's possibly incomplete
    MissingTerminator, */
    /// Too many items in batch
    TooManyItems,

    /// The checksum value does not match the expected value
    ChecksumMismatch,

    /// An unparseable journal file name was encountered
    InvalidFileName,

    /// A journal file holds bytes that are not a valid batch, and a valid
    /// batch or a newer journal follows them: the file is damaged, not torn
    /// at its end by a crash. The file was left as it is.
    ///
    /// (Since this variant, replay no longer returns `InsufficientLength`,
    /// `TooManyItems` or `ChecksumMismatch`: such a batch is either a torn
    /// tail, discarded, or damage, reported with this variant.)
    CorruptionBeforeValidData {
        /// The journal file
        path: std::path::PathBuf,

        /// Where the damaged batch starts (the end of the last valid batch
        /// before it)
        pos: u64,

        /// Where the next complete batch in the same file starts; `None`
        /// when the file is a sealed journal (newer journal files follow it)
        /// and holds no complete batch after the damage
        next_valid_batch: Option<u64>,
    },
}

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CorruptionBeforeValidData {
                path,
                pos,
                next_valid_batch,
            } => {
                write!(
                    f,
                    "journal {} is damaged at byte offset {pos}",
                    path.display()
                )?;
                match next_valid_batch {
                    Some(next) => write!(f, ", and a valid batch follows at byte offset {next}"),
                    None => write!(f, ", and it is a sealed journal that newer journals follow"),
                }
            }
            _ => write!(f, "RecoveryError({self:?})"),
        }
    }
}

impl std::error::Error for RecoveryError {}
