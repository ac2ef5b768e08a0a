// Copyright (c) 2024-present, fjall-rs
// This source code is licensed under both the Apache 2.0 and MIT License
// (found in the LICENSE-* files in the repository)

use crate::{file::MAGIC_BYTES, keyspace::InternalKeyspaceId, Slice};
use byteorder::{LittleEndian, ReadBytesExt, WriteBytesExt};
use lsm_tree::{
    coding::{Decode, Encode},
    CompressionType, SeqNo, UserKey, UserValue, ValueType,
};
use std::io::{Read, Write};

/// Journal entry. Every batch is composed as a Start, followed by N items, followed by an End.
///
/// - The start entry contains the numbers of items. If the numbers of items following doesn't match, the batch is broken.
///
/// - The end entry contains a checksum value. If the checksum of the items doesn't match that, the batch is broken.
///
/// - The end entry terminates each batch with the magic string: [`TRAILER_MAGIC`].
///
/// - If a start entry is detected, while inside a batch, the batch is broken.
#[derive(Debug, Eq, PartialEq)]
pub enum Entry {
    Start {
        item_count: u32,
        seqno: SeqNo,
    },
    Item {
        keyspace_id: InternalKeyspaceId,
        key: UserKey,
        value: UserValue,
        value_type: ValueType,
        compression: CompressionType,
    },
    End(u64),
    Clear {
        keyspace_id: InternalKeyspaceId,
    },
}

pub fn serialize_marker_item<W: Write>(
    writer: &mut W,
    keyspace_id: InternalKeyspaceId,
    key: &[u8],
    value: &[u8],
    value_type: ValueType,
    compression: CompressionType,
) -> Result<(), lsm_tree::Error> {
    writer.write_u8(Tag::Item.into())?;

    writer.write_u8(u8::from(value_type))?;

    compression.encode_into(writer)?;

    let compressed_value = match compression {
        CompressionType::None => std::borrow::Cow::Borrowed(value),

        #[cfg(feature = "lz4")]
        CompressionType::Lz4 => {
            let compressed = lz4_flex::compress(value);
            std::borrow::Cow::Owned(compressed)
        }
    };

    // NOTE: Truncation is okay and actually needed
    writer.write_u64::<LittleEndian>(keyspace_id)?;

    // NOTE: Truncation is okay and actually needed
    #[expect(clippy::cast_possible_truncation)]
    writer.write_u16::<LittleEndian>(key.len() as u16)?;

    // NOTE: Truncation is okay and actually needed
    #[expect(clippy::cast_possible_truncation)]
    writer.write_u32::<LittleEndian>(value.len() as u32)?;

    // NOTE: Truncation is okay and actually needed
    #[expect(clippy::cast_possible_truncation)]
    writer.write_u32::<LittleEndian>(compressed_value.len() as u32)?;

    writer.write_all(key)?;

    writer.write_all(&compressed_value)?;

    Ok(())
}

pub enum Tag {
    Start = 1,
    Item = 2,
    End = 3,
    Clear = 4,
}

impl TryFrom<u8> for Tag {
    type Error = crate::Error;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        use Tag::{Clear, End, Item, Start};

        match value {
            1 => Ok(Start),
            2 => Ok(Item),
            3 => Ok(End),
            4 => Ok(Clear),
            _ => Err(crate::Error::InvalidTag(("JournalMarkerTag", value))),
        }
    }
}

impl From<Tag> for u8 {
    fn from(val: Tag) -> Self {
        val as Self
    }
}

impl Entry {
    #[cfg(test)]
    pub fn encode_into_vec(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf).expect("should encode");
        buf
    }

    pub(crate) fn encode_into<W: Write>(&self, writer: &mut W) -> Result<(), crate::Error> {
        use Entry::{Clear, End, Item, Start};

        match self {
            Start { item_count, seqno } => {
                writer.write_u8(Tag::Start.into())?;
                writer.write_u32::<LittleEndian>(*item_count)?;
                writer.write_u64::<LittleEndian>(*seqno)?;
            }
            Item {
                keyspace_id,
                key,
                value,
                value_type,
                compression,
            } => {
                serialize_marker_item(writer, *keyspace_id, key, value, *value_type, *compression)?;
            }
            End(val) => {
                writer.write_u8(Tag::End.into())?;
                writer.write_u64::<LittleEndian>(*val)?;

                // NOTE: Write some fixed trailer bytes so we know the end marker is fully written
                // Otherwise we couldn't know if the checksum value is maybe mangled
                // (only partially written, with the rest being padding zeroes)
                writer.write_all(MAGIC_BYTES)?;
            }
            Clear { keyspace_id } => {
                writer.write_u8(Tag::Clear.into())?;
                writer.write_u64::<LittleEndian>(*keyspace_id)?;
            }
        }
        Ok(())
    }

    /// Decodes one entry, which starts `available` bytes before the end of
    /// the file.
    ///
    /// The lengths an item's header states are checked before anything is
    /// allocated for them: a key and value longer than the bytes left in the
    /// file, or an LZ4 value that decompresses to more than its compressed
    /// bytes can produce, are damage (`InvalidData`), not a reason to
    /// reserve up to 4 GiB.
    pub(crate) fn decode_from<R: Read>(
        reader: &mut R,
        available: u64,
    ) -> Result<Self, crate::Error> {
        match reader.read_u8()?.try_into()? {
            Tag::Start => {
                let item_count = reader.read_u32::<LittleEndian>()?;
                let seqno = reader.read_u64::<LittleEndian>()?;
                Ok(Self::Start { item_count, seqno })
            }
            Tag::Item => {
                let value_type = reader.read_u8()?;
                let value_type = value_type
                    .try_into()
                    .map_err(|()| lsm_tree::Error::InvalidTag(("ValueType", value_type)))?;

                let compression = CompressionType::decode_from(reader)?;

                // Read keyspace ID
                let keyspace_id = reader.read_u64::<LittleEndian>()?;

                // Read key len
                let key_len = reader.read_u16::<LittleEndian>()?;

                // Read real value size
                let value_len = reader.read_u32::<LittleEndian>()?;

                // Read on-disk value size
                let on_disk_value_len = reader.read_u32::<LittleEndian>()?;

                check_item_lengths(
                    available,
                    key_len,
                    value_len,
                    on_disk_value_len,
                    compression,
                )?;

                let key = Slice::from_reader(reader, usize::from(key_len))?;

                let value = match compression {
                    CompressionType::None => {
                        Slice::from_reader(reader, on_disk_value_len as usize)?
                    }

                    #[cfg(feature = "lz4")]
                    CompressionType::Lz4 => {
                        let compressed_value =
                            Slice::from_reader(reader, on_disk_value_len as usize)?;

                        #[allow(unsafe_code)]
                        let mut value = unsafe { Slice::builder_unzeroed(value_len as usize) };

                        let size = lz4_flex::decompress_into(&compressed_value, &mut value)
                            .map_err(|e| {
                                log::error!("LZ4 decompression failed: {e}");
                                crate::Error::Decompress(CompressionType::Lz4)
                            })?;

                        if size != value.len() {
                            log::error!("Decompressed size does not match expected value size");
                            return Err(crate::Error::Decompress(CompressionType::Lz4));
                        }

                        Slice::from(value.freeze())
                    }
                };

                Ok(Self::Item {
                    keyspace_id,
                    key,
                    value,
                    value_type,
                    compression,
                })
            }
            Tag::End => {
                let checksum = reader.read_u64::<LittleEndian>()?;

                // Check trailer
                let mut magic = [0u8; MAGIC_BYTES.len()];
                reader.read_exact(&mut magic)?;

                if magic != MAGIC_BYTES {
                    return Err(crate::Error::InvalidTrailer);
                }

                Ok(Self::End(checksum))
            }
            Tag::Clear => {
                let keyspace_id = reader.read_u64::<LittleEndian>()?;
                Ok(Self::Clear { keyspace_id })
            }
        }
    }
}

/// Bytes of an item's header: tag, value type, compression, keyspace id,
/// key length, value length, on-disk value length.
const ITEM_HEADER_BYTES: u64 = 1 + 1 + 1 + 8 + 2 + 4 + 4;

/// Most bytes one byte of an LZ4 block decompresses to (a length byte adds
/// at most 255); a value is refused when it is longer than this many bytes
/// for each compressed byte plus one.
const LZ4_MAX_RATIO: u64 = 255;

/// Refuses an item whose stated lengths cannot be true: its key and stored
/// value run past the `available` bytes from the item's start to the end of
/// the file, or (LZ4) its value is longer than its compressed bytes can
/// decompress to, or (uncompressed) its two value lengths differ.
fn check_item_lengths(
    available: u64,
    key_len: u16,
    value_len: u32,
    on_disk_value_len: u32,
    compression: CompressionType,
) -> Result<(), crate::Error> {
    let invalid =
        |what: String| crate::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what));

    let needed = ITEM_HEADER_BYTES + u64::from(key_len) + u64::from(on_disk_value_len);
    if needed > available {
        return Err(invalid(format!(
            "journal item states a {key_len}-byte key and a {on_disk_value_len}-byte value, \
             {needed} bytes in all, but only {available} bytes are left in the file"
        )));
    }

    match compression {
        CompressionType::None => {
            if value_len != on_disk_value_len {
                return Err(invalid(format!(
                    "uncompressed journal item states a {value_len}-byte value stored in \
                     {on_disk_value_len} bytes"
                )));
            }
        }

        #[cfg(feature = "lz4")]
        CompressionType::Lz4 => {
            let most = (u64::from(on_disk_value_len) + 1) * LZ4_MAX_RATIO;
            if u64::from(value_len) > most {
                return Err(invalid(format!(
                    "LZ4 journal item states a {value_len}-byte value, more than its \
                     {on_disk_value_len} compressed bytes can hold"
                )));
            }
        }
    }

    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_log::test;

    #[test]
    fn test_serialize_and_deserialize_success() -> crate::Result<()> {
        let item = Entry::Item {
            keyspace_id: 0,
            key: vec![1, 2, 3].into(),
            value: vec![].into(),
            value_type: ValueType::Value,
            compression: CompressionType::None,
        };

        let serialized_data = item.encode_into_vec();
        let mut reader = &serialized_data[..];
        let deserialized_item = Entry::decode_from(&mut reader, serialized_data.len() as u64)?;

        assert_eq!(item, deserialized_item);

        Ok(())
    }

    #[test]
    fn test_invalid_deserialize() {
        let invalid_data = [Tag::Start as u8; 1]; // Should be followed by a u32

        // Try to deserialize with invalid data
        let mut reader = &invalid_data[..];
        let result = Entry::decode_from(&mut reader, u64::MAX);

        match result {
            Ok(_) => panic!("should error"),
            Err(error) => match error {
                crate::Error::Io(e) => match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => {}
                    _ => panic!("should throw UnexpectedEof"),
                },
                _ => panic!("should throw UnexpectedEof"),
            },
        }
    }

    #[test]
    fn test_invalid_tag() {
        let invalid_data = [5u8; 1]; // Invalid tag

        // Try to deserialize with invalid data
        let mut reader = &invalid_data[..];
        let result = Entry::decode_from(&mut reader, u64::MAX);

        match result {
            Ok(_) => panic!("should error"),
            Err(error) => match error {
                crate::Error::InvalidTag(("JournalMarkerTag", 5)) => {}
                _ => panic!("should throw InvalidTag"),
            },
        }
    }

    /// A 300-byte value under a 3-byte key, as the writer lays it out.
    fn encoded_item(compression: CompressionType) -> crate::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        serialize_marker_item(
            &mut bytes,
            0,
            b"key",
            &[b'v'; 300],
            ValueType::Value,
            compression,
        )?;
        Ok(bytes)
    }

    /// `bytes` with the item's two value lengths (at bytes 13..17 and
    /// 17..21) replaced.
    fn with_value_lengths(mut bytes: Vec<u8>, value_len: u32, on_disk_value_len: u32) -> Vec<u8> {
        bytes.splice(13..17, value_len.to_le_bytes());
        bytes.splice(17..21, on_disk_value_len.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8], available: u64) -> Result<Entry, crate::Error> {
        let mut reader = bytes;
        Entry::decode_from(&mut reader, available)
    }

    fn assert_invalid_data(result: Result<Entry, crate::Error>, expected: &str) {
        match result {
            Err(crate::Error::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                assert!(e.to_string().contains(expected), "{e}");
            }
            other => panic!("expected InvalidData ({expected}), got {other:?}"),
        }
    }

    #[test]
    fn stored_value_longer_than_the_rest_of_the_file_is_refused() -> crate::Result<()> {
        let bytes = with_value_lengths(encoded_item(CompressionType::None)?, u32::MAX, u32::MAX);
        let result = decode(&bytes, bytes.len() as u64);
        assert_invalid_data(result, "but only 324 bytes are left in the file");
        Ok(())
    }

    #[test]
    fn item_that_exactly_fills_the_rest_of_the_file_is_read() -> crate::Result<()> {
        let bytes = encoded_item(CompressionType::None)?;
        let entry = decode(&bytes, 324)?;
        assert!(matches!(entry, Entry::Item { value, .. } if value.len() == 300));

        let result = decode(&bytes, 323);
        assert_invalid_data(result, "324 bytes in all, but only 323 bytes are left");
        Ok(())
    }

    #[test]
    #[cfg(feature = "lz4")]
    fn lz4_value_longer_than_its_compressed_bytes_can_hold_is_refused() -> crate::Result<()> {
        let bytes = encoded_item(CompressionType::Lz4)?;
        let on_disk = bytes
            .get(17..21)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes);
        let Some(on_disk) = on_disk.filter(|&n| n < 30) else {
            panic!("300 equal bytes compress to a few: {on_disk:?}");
        };

        // The real lengths decode
        let entry = decode(&bytes, bytes.len() as u64)?;
        assert!(matches!(entry, Entry::Item { value, .. } if value.len() == 300));

        let bytes = with_value_lengths(bytes, u32::MAX, on_disk);
        let result = decode(&bytes, bytes.len() as u64);
        assert_invalid_data(result, "more than its");
        Ok(())
    }

    #[test]
    fn uncompressed_value_lengths_that_differ_are_refused() -> crate::Result<()> {
        let bytes = with_value_lengths(encoded_item(CompressionType::None)?, u32::MAX, 300);
        let result = decode(&bytes, bytes.len() as u64);
        assert_invalid_data(result, "stored in 300 bytes");
        Ok(())
    }
}
