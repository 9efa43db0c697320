//! Reading a Kubernetes object into its k8s-openapi type in one pass, passing over
//! `metadata.managedFields`.
//!
//! k8s-openapi keeps managedFields as `serde_json::Value` trees: on the captured reviews they are
//! a third of the object and most of its parse, and stsguard never reads them (no patch touches
//! metadata). The object arrives as its top-level fields ([`crate::review::RawObject`]); the
//! typed deserializer runs over those, and the `metadata` value is read through a map adapter
//! that skips the one key — no copy of the text, no second scan.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{CowStrDeserializer, MapDeserializer};
use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess,
    Visitor,
};
use serde_json::value::RawValue;

const SKIPPED: &str = "managedFields";

/// Deserializes `T` from an object's top-level fields, leaving `metadata.managedFields` unread.
pub fn typed_from_fields<'a, T: DeserializeOwned>(
    fields: impl Iterator<Item = (&'a str, &'a RawValue)>,
) -> serde_json::Result<T> {
    let fields = fields.map(|(k, v)| {
        let v = if k == "metadata" {
            Field::Metadata(v)
        } else {
            Field::Plain(v)
        };
        (k, v)
    });
    T::deserialize(MapDeserializer::new(fields))
}

/// One top-level field's raw JSON; `Metadata` is read without managedFields.
#[derive(Clone, Copy)]
enum Field<'a> {
    Plain(&'a RawValue),
    Metadata(&'a RawValue),
}

impl<'a> IntoDeserializer<'a, serde_json::Error> for Field<'a> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl Field<'_> {
    fn raw(&self) -> &RawValue {
        match self {
            Field::Plain(r) | Field::Metadata(r) => r,
        }
    }
}

macro_rules! forward {
    ($($method:ident ($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(fn $method<V: Visitor<'a>>(self, $($arg: $ty,)* visitor: V) -> serde_json::Result<V::Value> {
            let raw: &'a RawValue = match self { Field::Plain(r) | Field::Metadata(r) => r };
            raw.$method($($arg,)* visitor)
        })*
    };
}

impl<'a> Deserializer<'a> for Field<'a> {
    type Error = serde_json::Error;

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        match self {
            Field::Plain(r) => r.deserialize_struct(name, fields, visitor),
            Field::Metadata(r) => r.deserialize_map(SkipManaged(visitor)),
        }
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> serde_json::Result<V::Value> {
        match self {
            Field::Plain(r) => r.deserialize_map(visitor),
            Field::Metadata(r) => r.deserialize_map(SkipManaged(visitor)),
        }
    }

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> serde_json::Result<V::Value> {
        match self {
            Field::Plain(r) => r.deserialize_any(visitor),
            // Only an object has managedFields to skip; anything else reads as it is.
            Field::Metadata(r) if r.get().trim_start().starts_with('{') => {
                r.deserialize_map(SkipManaged(visitor))
            }
            Field::Metadata(r) => r.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> serde_json::Result<V::Value> {
        match self {
            Field::Plain(r) => r.deserialize_option(visitor),
            Field::Metadata(r) if r.get().trim() == "null" => visitor.visit_none(),
            Field::Metadata(_) => visitor.visit_some(self),
        }
    }

    forward! {
        deserialize_bool(), deserialize_i8(), deserialize_i16(), deserialize_i32(),
        deserialize_i64(), deserialize_i128(), deserialize_u8(), deserialize_u16(),
        deserialize_u32(), deserialize_u64(), deserialize_u128(), deserialize_f32(),
        deserialize_f64(), deserialize_char(), deserialize_str(), deserialize_string(),
        deserialize_bytes(), deserialize_byte_buf(), deserialize_unit(),
        deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str), deserialize_seq(),
        deserialize_tuple(len: usize), deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(), deserialize_ignored_any(),
    }
}

impl fmt::Debug for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw().get())
    }
}

/// A visitor that hands the inner visitor a map without the skipped key.
struct SkipManaged<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for SkipManaged<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(SkipManagedMap(map))
    }
}

struct SkipManagedMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipManagedMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(Key(key)) = self.0.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            if key == SKIPPED {
                self.0.next_value::<IgnoredAny>()?;
                continue;
            }
            let key: CowStrDeserializer<'de, A::Error> = key.into_deserializer();
            return seed.deserialize(key).map(Some);
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.0.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// A map key, borrowed from the input when it has no escapes.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use std::collections::BTreeMap;

    fn read(text: &str) -> serde_json::Result<Pod> {
        let fields: BTreeMap<&str, &RawValue> = serde_json::from_str(text)?;
        typed_from_fields(fields.into_iter())
    }

    #[test]
    fn skips_managed_fields_even_when_escaped() -> serde_json::Result<()> {
        let p = read(
            r#"{"metadata":{"name":"a","managed\u0046ields":[{"manager":"x"}],"managedFields":[],"labels":{"k":"v"}}}"#,
        )?;
        assert_eq!(p.metadata.name.as_deref(), Some("a"));
        assert_eq!(p.metadata.managed_fields, None);
        assert_eq!(
            p.metadata
                .labels
                .unwrap_or_default()
                .get("k")
                .map(String::as_str),
            Some("v")
        );
        Ok(())
    }

    #[test]
    fn bad_metadata_is_an_error_not_a_panic() {
        for text in [
            r#"{"metadata":7}"#,
            r#"{"metadata":[1]}"#,
            r#"{"metadata":{"name":7}}"#,
            r#"{"metadata":{"managedFields":7,"name":1}}"#,
        ] {
            assert!(read(text).is_err(), "{text}");
        }
        // null metadata reads as k8s-openapi reads it
        assert_eq!(
            read(r#"{"metadata":null}"#).is_ok(),
            serde_json::from_str::<Pod>(r#"{"metadata":null}"#).is_ok()
        );
    }
}

/// An object read straight into its type while the envelope is read (see [`typed_rest`]).
pub enum TypedObject {
    StatefulSet(Box<k8s_openapi::api::apps::v1::StatefulSet>),
    Pod(Box<k8s_openapi::api::core::v1::Pod>),
}

/// The kinds read in one pass.
#[derive(Clone, Copy)]
pub enum Known {
    StatefulSet,
    Pod,
}

/// The object's kind from its `apiVersion` and `kind` fields read so far (the API server writes
/// them first), when it is one read in one pass.
pub fn known_kind<'de>(fields: &[(Cow<'de, str>, &'de RawValue)]) -> Option<Known> {
    let get = |key: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.get())
    };
    match (get("apiVersion")?, get("kind")?) {
        (r#""apps/v1""#, r#""StatefulSet""#) => Some(Known::StatefulSet),
        (r#""v1""#, r#""Pod""#) => Some(Known::Pod),
        _ => None,
    }
}

/// Reads the object typed: the fields already read (`buffered`), then the rest of the map
/// straight from the input — one pass, `metadata.managedFields` skipped either way.
pub fn typed_rest<'de, A: MapAccess<'de>>(
    kind: Known,
    buffered: &[(Cow<'de, str>, &'de RawValue)],
    live: A,
) -> Result<TypedObject, A::Error> {
    let de = Chain(ChainMap {
        buf: buffered.iter(),
        live,
        next: Next::Live,
    });
    Ok(match kind {
        Known::StatefulSet => {
            TypedObject::StatefulSet(Box::new(serde::Deserialize::deserialize(de)?))
        }
        Known::Pod => TypedObject::Pod(Box::new(serde::Deserialize::deserialize(de)?)),
    })
}

struct Chain<'b, 'de, A>(ChainMap<'b, 'de, A>);

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Chain<'_, 'de, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self.0)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

enum Next<'de> {
    Buffered(&'de RawValue, bool),
    LiveMetadata,
    Live,
}

struct ChainMap<'b, 'de, A> {
    buf: std::slice::Iter<'b, (Cow<'de, str>, &'de RawValue)>,
    live: A,
    next: Next<'de>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for ChainMap<'_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let key = if let Some((k, v)) = self.buf.next() {
            self.next = Next::Buffered(v, k == "metadata");
            k.clone()
        } else {
            let Some(Key(k)) = self.live.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            self.next = if k == "metadata" {
                Next::LiveMetadata
            } else {
                Next::Live
            };
            k
        };
        let key: CowStrDeserializer<'de, A::Error> = key.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        match std::mem::replace(&mut self.next, Next::Live) {
            Next::Buffered(raw, metadata) => {
                let field = if metadata {
                    Field::Metadata(raw)
                } else {
                    Field::Plain(raw)
                };
                seed.deserialize(field).map_err(serde::de::Error::custom)
            }
            Next::LiveMetadata => self.live.next_value_seed(MetadataSeed(seed)),
            Next::Live => self.live.next_value_seed(seed),
        }
    }
}

/// Reads `metadata` through [`SkipManaged`].
struct MetadataSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for MetadataSeed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(SkipManagedDe(d))
    }
}

struct SkipManagedDe<D>(D);

/// An Option visitor whose `Some` is read through [`SkipManagedDe`].
struct SkipManagedSome<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for SkipManagedSome<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(SkipManagedDe(d))
    }
}

macro_rules! forward_inner {
    ($($method:ident ($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method($($arg,)* visitor)
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for SkipManagedDe<D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(SkipManaged(visitor))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(SkipManaged(visitor))
    }

    // k8s-openapi reads `metadata` as an Option first.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_option(SkipManagedSome(visitor))
    }

    forward_inner! {
        deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(),
        deserialize_i32(), deserialize_i64(), deserialize_i128(), deserialize_u8(),
        deserialize_u16(), deserialize_u32(), deserialize_u64(), deserialize_u128(),
        deserialize_f32(), deserialize_f64(), deserialize_char(), deserialize_str(),
        deserialize_string(), deserialize_bytes(), deserialize_byte_buf(), deserialize_unit(), deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str), deserialize_seq(),
        deserialize_tuple(len: usize), deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(), deserialize_ignored_any(),
    }
}
