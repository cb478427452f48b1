//! Serde adapters that make our bodies exactly the JSON of the types wit-bindgen generates
//! from `api/*.wit` (with `additional_derives: [serde::Serialize, serde::Deserialize]`),
//! while the Rust types stay convenient. docs/api.md ("JSON and WIT") says why each exists.
//!
//! * [`WireEnum`] (request and response enums): a payload-less variant (`Ping {}` in Rust, a
//!   case without payload in WIT) is written as a bare string, `"Ping"`, as serde writes the
//!   generated type; `"Ping"` and `{"Ping": {}}` are both read. A strict enum (the local API)
//!   rejects fields its struct variants do not have, `{"Ping": {"x": 1}}` included; a tolerant
//!   one (protocol messages between nodes, responses) ignores them, so a newer peer can add
//!   fields.
//! * [`metadata`]: a string map (a JSON object cannot be a WIT type) written as a list of
//!   `{"key": .., "value": ..}` records, sorted by key; the old object form is still read.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, VariantAccess,
    Visitor,
};
use serde::ser::{self, Impossible, Serialize, SerializeStructVariant, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// An externally tagged enum with WIT's JSON shape; implement it with [`wire_enum!`] on an
/// enum that derives `Serialize, Deserialize` with `#[serde(remote = "Self")]`.
pub trait WireEnum: Sized {
    /// What a body of this type is, for error messages, e.g. "presence request".
    const WHAT: &'static str;
    /// Whether variant `tag` rejects fields it does not know.
    fn strict(tag: &str) -> bool;
    /// serde's derived reading of the enum (the `remote = "Self"` one).
    fn derived_deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
    /// serde's derived writing of the enum.
    fn derived_serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
}

/// Implements [`WireEnum`], `Serialize` and `Deserialize` for an enum deriving both with
/// `#[serde(remote = "Self")]`: `wire_enum!(Request, "presence request", |tag| strict)`.
macro_rules! wire_enum {
    ($t:ty, $what:expr, |$tag:ident| $strict:expr) => {
        impl $crate::api::wire::WireEnum for $t {
            const WHAT: &'static str = $what;
            fn strict($tag: &str) -> bool {
                $strict
            }
            fn derived_deserialize<'de, D: serde::Deserializer<'de>>(
                d: D,
            ) -> Result<Self, D::Error> {
                <$t>::deserialize(d)
            }
            fn derived_serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$t>::serialize(self, s)
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::api::wire::serialize(self, s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::api::wire::deserialize(d)
            }
        }
    };
}
pub(crate) use wire_enum;

/// A list of facts from a peer, read leniently: an entry this version cannot read (say a
/// newer peer's new member status) is skipped rather than failing the whole message, so a
/// rolling upgrade does not get nodes refused or declared dead.
pub fn lenient_facts<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let raw = <Vec<serde_json::Value> as serde::Deserialize>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

/// The names of `T`'s variants, as serde reads them (for tests comparing with WIT).
pub fn variant_names<T: WireEnum>() -> &'static [&'static str] {
    struct Names(Option<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for &mut Names {
        type Error = de::value::Error;
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(variants);
            Err(de::Error::custom("only the names were wanted"))
        }
        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not an enum"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }
    let mut names = Names(None);
    let _ = T::derived_deserialize(&mut names);
    names.0.unwrap_or_default()
}

/// `Serialize` of a [`WireEnum`]: the derived one, with payload-less struct variants as
/// bare strings.
pub fn serialize<T: WireEnum, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    v.derived_serialize(BareUnits(s))
}

/// `Deserialize` of a [`WireEnum`]: `"Variant"` or `{"Variant": payload}`.
pub fn deserialize<'de, T: WireEnum, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(Top(PhantomData, false))
}

// ----- writing -----

/// Passes the enum's own serializer calls through, except that a struct variant without
/// fields (`Ping {}`) becomes a unit variant (`"Ping"`). Only the enum itself goes through
/// it; payloads are written by the inner serializer.
struct BareUnits<S>(S);

fn not_an_enum<E: ser::Error>() -> E {
    E::custom("a wire enum writes only enum variants")
}

macro_rules! refuse {
    ($($f:ident($t:ty)),*) => {
        $(fn $f(self, _v: $t) -> Result<S::Ok, S::Error> { Err(not_an_enum()) })*
    };
}

impl<S: Serializer> Serializer for BareUnits<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Impossible<S::Ok, S::Error>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = S::SerializeTupleVariant;
    type SerializeMap = Impossible<S::Ok, S::Error>;
    type SerializeStruct = Impossible<S::Ok, S::Error>;
    type SerializeStructVariant = StructVariant<S>;

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str)
    );
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _v: &T) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _v: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, value)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Err(not_an_enum())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(not_an_enum())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(not_an_enum())
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0.serialize_tuple_variant(name, index, variant, len)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Err(not_an_enum())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Err(not_an_enum())
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        // Our variants skip no fields, so `len` is the number of fields the variant has.
        if len == 0 {
            Ok(StructVariant::Bare {
                ser: self.0,
                name,
                index,
                variant,
            })
        } else {
            self.0
                .serialize_struct_variant(name, index, variant, len)
                .map(StructVariant::Fields)
        }
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

enum StructVariant<S: Serializer> {
    Bare {
        ser: S,
        name: &'static str,
        index: u32,
        variant: &'static str,
    },
    Fields(S::SerializeStructVariant),
}

impl<S: Serializer> SerializeStructVariant for StructVariant<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        match self {
            StructVariant::Fields(s) => s.serialize_field(key, value),
            StructVariant::Bare { variant, .. } => Err(ser::Error::custom(format!(
                "{variant} announced no fields but wrote {key}"
            ))),
        }
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        match self {
            StructVariant::Fields(s) => s.end(),
            StructVariant::Bare {
                ser,
                name,
                index,
                variant,
            } => ser.serialize_unit_variant(name, index, variant),
        }
    }
}

// ----- reading -----

/// The reading of a wire enum; `.1`: the body is a bare variant name, re-read as
/// `{"Variant": {}}` (see `visit_str`).
struct Top<T>(PhantomData<T>, bool);

impl<'de, T: WireEnum> Visitor<'de> for Top<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "a {}: an object with one key, the variant, such as {{\"Ping\": {{}}}}, or the \
             name of a variant without payload, such as \"Ping\"",
            T::WHAT
        )
    }

    /// `"Variant"` is read as `{"Variant": {}}`, through the same code as the object form,
    /// so each variant's fields have one reader in the build, not a second one for the bare
    /// form (about 30 KB of sync.wasm); a variant that needs a payload is refused as before.
    fn visit_str<E: de::Error>(self, tag: &str) -> Result<T, E> {
        let mut body = b"{".to_vec();
        body.extend(serde_json::to_vec(tag).map_err(E::custom)?);
        body.extend(b":{}}");
        let mut d = serde_json::Deserializer::from_slice(&body);
        de::Deserializer::deserialize_any(&mut d, Top(PhantomData, true)).map_err(|e| {
            // The position is in the made-up body; the caller's deserializer adds its own.
            let at = format!(" at line {} column {}", e.line(), e.column());
            let message = e.to_string();
            E::custom(message.strip_suffix(&at).unwrap_or(&message))
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let v = T::derived_deserialize(Tagged {
            map: &mut map,
            strict: T::strict,
            what: T::WHAT,
            bare: self.1,
        })?;
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format!(
                "a {} is an object with exactly one key, the variant",
                T::WHAT
            )));
        }
        Ok(v)
    }
}

/// The error for a bare variant name whose variant has a payload.
fn needs_payload<E: de::Error>(tag: &str) -> E {
    E::custom(format!(
        "`{tag}` has a payload: send {{\"{tag}\": {{...}}}}, not \"{tag}\""
    ))
}

/// `{"Variant": payload}`, read through the outer map.
struct Tagged<'m, A> {
    map: &'m mut A,
    strict: fn(&str) -> bool,
    what: &'static str,
    /// Read from a bare variant name (`Top::visit_str`).
    bare: bool,
}

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Tagged<'_, A> {
    type Error = A::Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_enum(self)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de, 'm, A: MapAccess<'de>> EnumAccess<'de> for Tagged<'m, A> {
    type Error = A::Error;
    type Variant = Payload<'m, A>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let Some(tag) = self.map.next_key::<String>()? else {
            return Err(de::Error::custom(format!(
                "an empty object is not a {}: name the variant, e.g. {{\"Ping\": {{}}}}",
                self.what
            )));
        };
        let v = seed.deserialize(tag.as_str().into_deserializer())?;
        let strict = (self.strict)(&tag);
        Ok((
            v,
            Payload {
                map: self.map,
                strict,
                bare: self.bare.then_some(tag),
            },
        ))
    }
}

/// The value under the variant's key.
struct Payload<'m, A> {
    map: &'m mut A,
    strict: bool,
    /// The variant's name if the body was that name alone: a variant with a payload is
    /// then an error.
    bare: Option<String>,
}

impl<'de, A: MapAccess<'de>> VariantAccess<'de> for Payload<'_, A> {
    type Error = A::Error;
    fn unit_variant(self) -> Result<(), A::Error> {
        self.map.next_value_seed(StructSeed {
            fields: &[],
            visitor: NoFields,
            strict: self.strict,
        })
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        if let Some(tag) = &self.bare {
            return Err(needs_payload(tag));
        }
        self.map.next_value_seed(seed)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        if let Some(tag) = &self.bare {
            return Err(needs_payload(tag));
        }
        self.map.next_value_seed(TupleSeed(len, visitor))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let read = self.map.next_value_seed(StructSeed {
            fields,
            visitor,
            strict: self.strict,
        });
        match (read, self.bare) {
            // A variant whose fields may all be left out (`{"Stats": {}}`) may be bare too.
            (Err(_), Some(tag)) if !fields.is_empty() => Err(needs_payload(&tag)),
            (read, _) => read,
        }
    }
}

struct TupleSeed<V>(usize, V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for TupleSeed<V> {
    type Value = V::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_tuple(self.0, self.1)
    }
}

/// A struct variant's fields; unknown ones are an error if `strict`.
struct StructSeed<V> {
    fields: &'static [&'static str],
    visitor: V,
    strict: bool,
}

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for StructSeed<V> {
    type Value = V::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_struct("", self.fields, self)
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StructSeed<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Checked {
            map,
            fields: self.fields,
            strict: self.strict,
        })
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(seq)
    }
}

struct Checked<A> {
    map: A,
    fields: &'static [&'static str],
    strict: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Checked<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.map.next_key::<String>()? else {
            return Ok(None);
        };
        if self.strict && !self.fields.contains(&key.as_str()) {
            return Err(de::Error::unknown_field(&key, self.fields));
        }
        seed.deserialize(key.into_deserializer()).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// The payload of a unit variant: `{}` (unknown fields ignored unless strict) or `null`.
struct NoFields;

impl<'de> Visitor<'de> for NoFields {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("{}")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(())
    }
}

/// `BTreeMap<String, String>` as a list of `{"key": .., "value": ..}` records sorted by key
/// (WIT has no map type). Reads that list, or the object form bodies and saved state had
/// before; a duplicate key is an error. `strict` rejects unknown fields in the records.
pub mod metadata {
    use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde::{Deserialize, Serialize, Serializer};
    use std::collections::BTreeMap;
    use std::fmt;

    #[derive(Serialize)]
    struct EntryRef<'a> {
        key: &'a str,
        value: &'a str,
    }

    #[derive(Deserialize)]
    struct Entry {
        key: String,
        value: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct StrictEntry {
        key: String,
        value: String,
    }

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter().map(|(key, value)| EntryRef { key, value }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        d.deserialize_any(Entries { strict: false })
    }

    /// For the local API: unknown fields in an entry are an error.
    pub fn deserialize_strict<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        d.deserialize_any(Entries { strict: true })
    }

    struct Entries {
        strict: bool,
    }

    fn insert<E: de::Error>(
        m: &mut BTreeMap<String, String>,
        k: String,
        v: String,
    ) -> Result<(), E> {
        if m.contains_key(&k) {
            return Err(E::custom(format!("duplicate metadata key {k:?}")));
        }
        m.insert(k, v);
        Ok(())
    }

    impl<'de> Visitor<'de> for Entries {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of {\"key\": \"...\", \"value\": \"...\"} records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut m = BTreeMap::new();
            loop {
                let next = if self.strict {
                    seq.next_element::<StrictEntry>()?.map(|e| (e.key, e.value))
                } else {
                    seq.next_element::<Entry>()?.map(|e| (e.key, e.value))
                };
                let Some((k, v)) = next else {
                    return Ok(m);
                };
                insert(&mut m, k, v)?;
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut m = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                insert(&mut m, k, v)?;
            }
            Ok(m)
        }
    }
}
