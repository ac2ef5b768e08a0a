//! Reading a `file-event/1` object, optionally together with fields a
//! consumer finds in the same object (the sink: what the collector added),
//! in one pass and without buffering the object. [`FileEvent`]'s own
//! `Deserialize` is this reader with no extra fields, so there is one
//! definition of how the wire format is read.
//!
//! As a derived implementation would: required fields missing or repeated
//! fields are errors, optional fields may be absent or `null`, and unknown
//! fields are skipped (unless the consumer's [`ExtraFields`] reads them).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::FileEvent;

/// Fields read from the same JSON object as a `file-event/1`, in the same
/// pass.
pub trait ExtraFields<'de>: Default {
    /// Called for every key that is not a `file-event/1` field: reads its
    /// value with `map.next_value()` and returns true, or returns false
    /// without reading it to have it skipped.
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;
}

/// No extra fields: every other key is skipped.
impl<'de> ExtraFields<'de> for () {
    fn field<A: MapAccess<'de>>(&mut self, _: &str, _: &mut A) -> Result<bool, A::Error> {
        Ok(false)
    }
}

/// A `file-event/1` and the consumer's fields from the same object.
#[derive(Debug, Clone, PartialEq)]
pub struct WithExtra<X> {
    pub event: FileEvent,
    pub extra: X,
}

impl<'de> Deserialize<'de> for FileEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EventVisitor::<()>(PhantomData))
            .map(|w| w.event)
    }
}

impl<'de, X: ExtraFields<'de>> Deserialize<'de> for WithExtra<X> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EventVisitor::<X>(PhantomData))
    }
}

/// Declares the wire names once: the field enum and its lookup.
macro_rules! fields {
    ($($variant:ident = $name:literal),* $(,)?) => {
        #[derive(Clone, Copy)]
        enum Field { $($variant),* }

        impl Field {
            fn of(name: &str) -> Option<Field> {
                match name {
                    $($name => Some(Field::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

fields! {
    Schema = "schema",
    EventId = "event_id",
    MonitorId = "monitor_id",
    Seq = "seq",
    Timestamp = "timestamp",
    EventType = "event_type",
    Kind = "kind",
    Path = "path",
    PathB64 = "path_b64",
    From = "from",
    FromB64 = "from_b64",
    To = "to",
    ToB64 = "to_b64",
    Size = "size",
    Checksum = "checksum",
    TenantId = "tenant_id",
    UserId = "user_id",
    SessionId = "session_id",
    Metadata = "metadata",
    Rescan = "rescan",
}

/// An object key: a `file-event/1` field, or another (borrowed from the
/// input when it can be).
enum Key<'de> {
    Known(Field),
    Other(Cow<'de, str>),
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Field::of(v).map_or(Key::Other(Cow::Borrowed(v)), Key::Known))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Field::of(v).map_or_else(|| Key::Other(Cow::Owned(v.to_owned())), Key::Known))
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

struct EventVisitor<X>(PhantomData<X>);

/// Stores the next value in `slot`, unless the field was already seen.
fn once<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

fn required<T, E: de::Error>(slot: Option<T>, name: &'static str) -> Result<T, E> {
    slot.ok_or_else(|| E::missing_field(name))
}

impl<'de, X: ExtraFields<'de>> Visitor<'de> for EventVisitor<X> {
    type Value = WithExtra<X>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a file-event/1 object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WithExtra<X>, A::Error> {
        let (mut schema, mut event_id, mut monitor_id, mut seq, mut timestamp) =
            (None, None, None, None, None);
        let (mut event_type, mut kind, mut path, mut path_b64) = (None, None, None, None);
        let (mut from, mut from_b64, mut to, mut to_b64) = (None, None, None, None);
        let (mut size, mut checksum, mut metadata, mut rescan) = (None, None, None, None);
        let (mut tenant_id, mut user_id, mut session_id) = (None, None, None);
        let mut extra = X::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let m = &mut map;
            match key {
                Key::Known(Field::Schema) => once(&mut schema, "schema", m)?,
                Key::Known(Field::EventId) => once(&mut event_id, "event_id", m)?,
                Key::Known(Field::MonitorId) => once(&mut monitor_id, "monitor_id", m)?,
                Key::Known(Field::Seq) => once(&mut seq, "seq", m)?,
                Key::Known(Field::Timestamp) => once(&mut timestamp, "timestamp", m)?,
                Key::Known(Field::EventType) => once(&mut event_type, "event_type", m)?,
                Key::Known(Field::Kind) => once(&mut kind, "kind", m)?,
                Key::Known(Field::Path) => once(&mut path, "path", m)?,
                Key::Known(Field::PathB64) => once(&mut path_b64, "path_b64", m)?,
                Key::Known(Field::From) => once(&mut from, "from", m)?,
                Key::Known(Field::FromB64) => once(&mut from_b64, "from_b64", m)?,
                Key::Known(Field::To) => once(&mut to, "to", m)?,
                Key::Known(Field::ToB64) => once(&mut to_b64, "to_b64", m)?,
                Key::Known(Field::Size) => once(&mut size, "size", m)?,
                Key::Known(Field::Checksum) => once(&mut checksum, "checksum", m)?,
                Key::Known(Field::TenantId) => once(&mut tenant_id, "tenant_id", m)?,
                Key::Known(Field::UserId) => once(&mut user_id, "user_id", m)?,
                Key::Known(Field::SessionId) => once(&mut session_id, "session_id", m)?,
                Key::Known(Field::Metadata) => once(&mut metadata, "metadata", m)?,
                Key::Known(Field::Rescan) => once(&mut rescan, "rescan", m)?,
                Key::Other(k) => {
                    if !extra.field(&k, m)? {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
            }
        }
        let event = FileEvent {
            schema: required(schema, "schema")?,
            event_id: required(event_id, "event_id")?,
            monitor_id: required(monitor_id, "monitor_id")?,
            seq: required(seq, "seq")?,
            timestamp: required(timestamp, "timestamp")?,
            event_type: required(event_type, "event_type")?,
            kind: required(kind, "kind")?,
            path: required(path, "path")?,
            path_b64: path_b64.flatten(),
            from: from.flatten(),
            from_b64: from_b64.flatten(),
            to: to.flatten(),
            to_b64: to_b64.flatten(),
            size: size.flatten(),
            checksum: checksum.flatten(),
            tenant_id: tenant_id.flatten(),
            user_id: user_id.flatten(),
            session_id: session_id.flatten(),
            metadata: metadata.unwrap_or_default(),
            rescan: rescan.unwrap_or_default(),
        };
        Ok(WithExtra { event, extra })
    }
}
