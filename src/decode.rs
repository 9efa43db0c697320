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
struct Key<'de>(Cow<'de, str>);

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
