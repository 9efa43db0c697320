//! Reading a review's object straight into its k8s-openapi type, in the same pass as the
//! envelope.
//!
//! Two things happen on the way, both private to this module:
//! - `metadata.managedFields` is passed over unread. k8s-openapi keeps it as `serde_json::Value`
//!   trees; on the captured reviews it is a third of the object and most of its parse, and
//!   stsguard never reads it.
//! - The parts a patch adds under must be JSON objects in the request itself: a StatefulSet's
//!   `spec.template`, a Pod's `metadata` and `spec`. k8s-openapi reads a missing or `null`
//!   required field as its default, and a patch adding under it would not apply.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::core::GroupVersionKind;
use serde::Deserialize;
use serde::de::value::CowStrDeserializer;
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, IntoDeserializer, MapAccess, Visitor,
};

/// The kinds stsguard reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    StatefulSet,
    Pod,
    Scale,
    /// A DELETE's `oldObject` ([`crate::validate::Subject::DeleteNamespace`]).
    Namespace,
    /// A DELETE's `oldObject` ([`crate::validate::Subject::DeleteClaim`]).
    PersistentVolumeClaim,
}

impl Kind {
    /// The kind of a request's `kind` (the object's group, version and kind).
    pub fn of(gvk: &GroupVersionKind) -> Option<Kind> {
        match (gvk.group.as_str(), gvk.version.as_str(), gvk.kind.as_str()) {
            ("apps", "v1", "StatefulSet") => Some(Kind::StatefulSet),
            ("", "v1", "Pod") => Some(Kind::Pod),
            ("autoscaling", "v1", "Scale") => Some(Kind::Scale),
            ("", "v1", "Namespace") => Some(Kind::Namespace),
            ("", "v1", "PersistentVolumeClaim") => Some(Kind::PersistentVolumeClaim),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::StatefulSet => "StatefulSet",
            Kind::Pod => "Pod",
            Kind::Scale => "Scale",
            Kind::Namespace => "Namespace",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
        }
    }
}

/// An object read into its type.
#[derive(Debug)]
pub enum Object {
    StatefulSet(Box<StatefulSet>),
    Pod(Box<Pod>),
    Scale(Box<Scale>),
    Namespace(Box<Namespace>),
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::StatefulSet(_) => Kind::StatefulSet,
            Object::Pod(_) => Kind::Pod,
            Object::Scale(_) => Kind::Scale,
            Object::Namespace(_) => Kind::Namespace,
            Object::PersistentVolumeClaim(_) => Kind::PersistentVolumeClaim,
        }
    }
}

/// Reads an object of `kind` (`null`: none). `for_patch`: the object will be patched, so what a
/// patch adds under must be an object. `partial`: only its `metadata` and `spec.replicas` are
/// read, the rest passed over unread (a stored object past a bound, [`crate::bounds`]); a
/// StatefulSet's `spec.selector` and `spec.template`, passed over, are k8s-openapi's defaults.
#[derive(Clone, Copy)]
pub struct ObjectSeed {
    pub kind: Kind,
    pub for_patch: bool,
    pub partial: bool,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = Option<Object>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Object>, D::Error> {
        let node = match (self.kind, self.for_patch) {
            _ if self.partial => Node::Partial,
            (Kind::StatefulSet, true) => Node::StatefulSet,
            (Kind::Pod, true) => Node::Pod,
            _ => Node::Object,
        };
        let typed = |d| Shaped { d, node };
        Ok(match self.kind {
            Kind::StatefulSet => {
                Option::<StatefulSet>::deserialize(typed(d))?.map(|o| Object::StatefulSet(o.into()))
            }
            Kind::Pod => Option::<Pod>::deserialize(typed(d))?.map(|o| Object::Pod(o.into())),
            Kind::Scale => Option::<Scale>::deserialize(typed(d))?.map(|o| Object::Scale(o.into())),
            Kind::Namespace => {
                Option::<Namespace>::deserialize(typed(d))?.map(|o| Object::Namespace(o.into()))
            }
            Kind::PersistentVolumeClaim => Option::<PersistentVolumeClaim>::deserialize(typed(d))?
                .map(|o| Object::PersistentVolumeClaim(o.into())),
        })
    }
}

/// Where a value sits in the object, and so how it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    /// Read as it is.
    Plain,
    /// An object's top level: `metadata` is read without managedFields.
    Object,
    /// An object's top level of which only `metadata` (as [`Node::Object`]'s) and `spec` (as
    /// [`Node::ReplicasOnly`]) are read.
    Partial,
    /// A `spec` of which only `replicas` is read.
    ReplicasOnly,
    /// A StatefulSet's top level: as [`Node::Object`], and `spec` is [`Node::StatefulSetSpec`].
    StatefulSet,
    /// A Pod's top level: `metadata` and `spec` must be objects.
    Pod,
    /// `metadata`: managedFields passed over; `required`: it must be an object.
    Metadata { required: bool },
    /// A StatefulSet's `spec`: `template` must be an object.
    StatefulSetSpec,
    /// Must be an object (not `null`, not missing); the field's path for the message.
    Required(&'static str),
}

impl Node {
    fn child(self, key: &str) -> Node {
        match (self, key) {
            (Node::Object | Node::StatefulSet | Node::Partial, "metadata") => {
                Node::Metadata { required: false }
            }
            (Node::Partial, "spec") => Node::ReplicasOnly,
            (Node::Pod, "metadata") => Node::Metadata { required: true },
            (Node::StatefulSet, "spec") => Node::StatefulSetSpec,
            (Node::Pod, "spec") => Node::Required("spec"),
            (Node::StatefulSetSpec, "template") => Node::Required("spec.template"),
            _ => Node::Plain,
        }
    }

    /// The keys that must be present, with their paths.
    fn required_keys(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Node::Pod => &[("metadata", "metadata"), ("spec", "spec")],
            Node::StatefulSetSpec => &[("template", "spec.template")],
            _ => &[],
        }
    }

    /// `Some(path)`: the value must be an object.
    fn must_be_object(self) -> Option<&'static str> {
        match self {
            Node::Metadata { required: true } => Some("metadata"),
            Node::Required(path) => Some(path),
            _ => None,
        }
    }
}

/// A deserializer that reads maps according to their [`Node`].
struct Shaped<D> {
    d: D,
    node: Node,
}

macro_rules! forward {
    ($($method:ident ($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.d.$method($($arg,)* visitor)
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Shaped<D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.d.deserialize_map(MapVisitor {
            inner: visitor,
            node: self.node,
        })
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_map(visitor)
    }

    // k8s-openapi reads every field as an `Option` first, required ones too.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.d.deserialize_option(OptionVisitor {
            inner: visitor,
            node: self.node,
        })
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

/// `null` is refused where an object is required; `Some` is read shaped.
struct OptionVisitor<V> {
    inner: V,
    node: Node,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for OptionVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        match self.node.must_be_object() {
            Some(path) => Err(E::custom(format!("{path} is not an object"))),
            None => self.inner.visit_none(),
        }
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.visit_none()
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.inner.visit_some(Shaped { d, node: self.node })
    }
}

/// Hands the inner visitor a [`ShapedMap`]; anything but a map is refused by the inner type.
struct MapVisitor<V> {
    inner: V,
    node: Node,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for MapVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(ShapedMap {
            map,
            node: self.node,
            next: Node::Plain,
            seen: 0,
        })
    }
}

struct ShapedMap<A> {
    map: A,
    node: Node,
    /// How the value of the key just read is read.
    next: Node,
    /// Bit i: the node's i-th required key was read.
    seen: u8,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for ShapedMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(Key(key)) = self.map.next_key::<Key<'de>>()? else {
                let required = self.node.required_keys();
                return match required
                    .iter()
                    .enumerate()
                    .find(|(i, _)| self.seen & (1 << i) == 0)
                {
                    Some((_, (_, path))) => Err(A::Error::custom(format!("{path} is missing"))),
                    None => Ok(None),
                };
            };
            let passed_over = match self.node {
                Node::Metadata { .. } => key == "managedFields",
                Node::Partial => key != "metadata" && key != "spec",
                Node::ReplicasOnly => key != "replicas",
                _ => false,
            };
            if passed_over {
                self.map.next_value::<IgnoredAny>()?;
                continue;
            }
            if let Some(i) = self
                .node
                .required_keys()
                .iter()
                .position(|(k, _)| *k == key)
            {
                self.seen |= 1 << i;
            }
            self.next = self.node.child(&key);
            let key: CowStrDeserializer<'de, A::Error> = key.into_deserializer();
            return seed.deserialize(key).map(Some);
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        match std::mem::replace(&mut self.next, Node::Plain) {
            Node::Plain => self.map.next_value_seed(seed),
            node => self.map.next_value_seed(ShapedSeed { seed, node }),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

struct ShapedSeed<S> {
    seed: S,
    node: Node,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for ShapedSeed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Shaped { d, node: self.node })
    }
}

/// A map key, borrowed from the input when it has no escapes.
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
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

/// Reads an object from its JSON text.
pub fn object_from_str(seed: ObjectSeed, text: &str) -> serde_json::Result<Option<Object>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let object = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(object)
}

/// Reads a StatefulSet from its JSON text as stsguard reads a review's object for `/mutate`:
/// `metadata.managedFields` passed over. For tests and benchmarks that compare with a plain read.
pub fn statefulset_from_str(text: &str) -> serde_json::Result<Option<StatefulSet>> {
    let seed = ObjectSeed {
        kind: Kind::StatefulSet,
        for_patch: true,
        partial: false,
    };
    Ok(match object_from_str(seed, text)? {
        Some(Object::StatefulSet(s)) => Some(*s),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(text: &str) -> serde_json::Result<Pod> {
        let seed = ObjectSeed {
            kind: Kind::Pod,
            for_patch: true,
            partial: false,
        };
        match object_from_str(seed, text)? {
            Some(Object::Pod(p)) => Ok(*p),
            _ => Err(serde_json::Error::custom("no pod")),
        }
    }

    fn sts(text: &str) -> serde_json::Result<Option<StatefulSet>> {
        statefulset_from_str(text)
    }

    #[test]
    fn a_partial_statefulset_holds_its_metadata_and_replicas_only() -> serde_json::Result<()> {
        let seed = ObjectSeed {
            kind: Kind::StatefulSet,
            for_patch: false,
            partial: true,
        };
        let text = r#"{"apiVersion":"apps/v1","kind":"StatefulSet",
            "metadata":{"name":"db","annotations":{"stsguard.io/protect":"true"},"managedFields":[{"manager":"x"}]},
            "spec":{"replicas":5,"serviceName":"db","selector":{"matchLabels":{"a":"b"}},
                    "template":{"spec":{"containers":[{"name":"c","image":"x"}]}},
                    "volumeClaimTemplates":[{"metadata":{"name":"data"}}]},
            "status":{"replicas":5}}"#;
        let Some(Object::StatefulSet(s)) = object_from_str(seed, text)? else {
            return Err(serde_json::Error::custom("a StatefulSet"));
        };
        assert_eq!(s.metadata.name.as_deref(), Some("db"));
        assert!(s.metadata.annotations.is_some_and(|a| a.len() == 1));
        assert!(s.metadata.managed_fields.is_none());
        let spec = s.spec.ok_or_else(|| serde_json::Error::custom("spec"))?;
        assert_eq!(spec.replicas, Some(5));
        assert_eq!(spec.service_name, None, "passed over");
        assert_eq!(spec.selector, Default::default(), "passed over");
        assert_eq!(spec.template, Default::default(), "passed over");
        assert!(spec.volume_claim_templates.is_none() && s.status.is_none());
        // Whatever the rest holds, it is not read.
        for (text, replicas) in [
            (r#"{"metadata":{"name":"a"},"spec":null}"#, None),
            (
                r#"{"metadata":{"name":"a"},"spec":{"replicas":null,"template":null}}"#,
                None,
            ),
            (
                r#"{"metadata":{"name":"a"},"spec":{"template":[],"selector":"x","replicas":2}}"#,
                Some(2),
            ),
        ] {
            let Some(Object::StatefulSet(s)) = object_from_str(seed, text)? else {
                return Err(serde_json::Error::custom("a StatefulSet"));
            };
            assert_eq!(s.spec.and_then(|sp| sp.replicas), replicas, "{text}");
        }
        Ok(())
    }

    #[test]
    fn skips_managed_fields_even_when_escaped() -> serde_json::Result<()> {
        let p = pod(
            r#"{"metadata":{"name":"a","managed\u0046ields":[{"manager":"x"}],"managedFields":[],"labels":{"k":"v"}},"spec":{"containers":[]}}"#,
        )?;
        assert_eq!(p.metadata.name.as_deref(), Some("a"));
        assert_eq!(p.metadata.managed_fields, None);
        let labels = p.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("k").map(String::as_str), Some("v"));
        Ok(())
    }

    #[test]
    fn managed_fields_elsewhere_are_read() -> serde_json::Result<()> {
        // Only the object's own metadata is skipped; the template's is read as it is.
        let s = sts(
            r#"{"spec":{"selector":{},"template":{"metadata":{"name":"t","managedFields":[{"manager":"m"}]}}}}"#,
        )?
        .ok_or_else(|| serde_json::Error::custom("none"))?;
        let t = s.spec.and_then(|s| s.template.metadata);
        assert_eq!(t.and_then(|m| m.managed_fields).map(|m| m.len()), Some(1));
        Ok(())
    }

    #[test]
    fn bad_metadata_is_an_error_not_a_panic() {
        for text in [
            r#"{"metadata":7,"spec":{}}"#,
            r#"{"metadata":[1],"spec":{}}"#,
            r#"{"metadata":{"name":7},"spec":{}}"#,
            r#"{"metadata":{"managedFields":7,"name":1},"spec":{}}"#,
        ] {
            assert!(pod(text).is_err(), "{text}");
        }
    }

    #[test]
    fn what_a_patch_adds_under_must_be_an_object() {
        for (text, why) in [
            (
                r#"{"metadata":null,"spec":{}}"#,
                "metadata is not an object",
            ),
            (r#"{"spec":{}}"#, "metadata is missing"),
            (r#"{"metadata":{},"spec":null}"#, "spec is not an object"),
            (r#"{"metadata":{}}"#, "spec is missing"),
        ] {
            let e = pod(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(why), "{text}: {e}");
        }
        for (text, why) in [
            (
                r#"{"spec":{"template":null}}"#,
                "spec.template is not an object",
            ),
            (r#"{"spec":{"replicas":1}}"#, "spec.template is missing"),
            (r#"{"spec":{"template":"x"}}"#, "invalid type"),
        ] {
            let e = sts(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(why), "{text}: {e}");
        }
        // A StatefulSet without a spec, and a null object, read fine.
        assert!(matches!(sts(r#"{"metadata":{"name":"a"}}"#), Ok(Some(_))));
        assert!(matches!(sts(r#"{"spec":null}"#), Ok(Some(_))));
        assert!(matches!(sts("null"), Ok(None)));
        // Read for validation only, a null template is the rules' business, not an error.
        let seed = ObjectSeed {
            kind: Kind::StatefulSet,
            for_patch: false,
            partial: false,
        };
        assert!(matches!(
            object_from_str(seed, r#"{"spec":{"template":null}}"#),
            Ok(Some(Object::StatefulSet(_)))
        ));
    }

    #[test]
    fn reads_like_a_plain_read_apart_from_managed_fields() -> Result<(), Box<dyn std::error::Error>>
    {
        let text = r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db","labels":{"a":"b"}},
            "spec":{"replicas":3,"serviceName":"db","selector":{"matchLabels":{"a":"b"}},
            "template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#;
        let plain: StatefulSet = serde_json::from_str(text)?;
        assert_eq!(sts(text)?, Some(plain));
        Ok(())
    }
}
