//! JSON bodies read as the OpenAPI document describes them. serde's derived structs also accept an array of their
//! fields in order (`{"plan": [1, 2]}` for `{"plan": {"rate_per_sec": 1, "burst": 2}}`), which the document does not
//! allow and no client means: here a struct only comes from a JSON object, at any depth.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::{Map, Value};

/// A parsed JSON value that deserializes like `serde_json::Value`, except that structs need objects.
pub(crate) struct Strict(pub Value);

type Error = serde_json::Error;

impl<'de> de::Deserializer<'de> for Strict {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            Value::Object(map) => visitor.visit_map(Fields::new(map)),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Fields::new(map)),
            other => Err(de::Error::invalid_type(unexpected(&other), &visitor)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Strict(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    // Scalars and enums as serde_json reads them (enums carry no nested structs in request bodies).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_bool(v)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_i8(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_i16(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_i32(v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_i64(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_u8(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_u16(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_u32(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_u64(v)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_f32(v)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_f64(v)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_char(v)
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_str(v)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_string(v)
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_unit(v)
    }

    forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => n.as_f64().map_or(de::Unexpected::Other("number"), de::Unexpected::Float),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct Items(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Items {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.0.next().map(|v| seed.deserialize(Strict(v))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Fields {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl Fields {
    fn new(map: Map<String, Value>) -> Self {
        Self { entries: map.into_iter(), value: None }
    }
}

impl<'de> MapAccess<'de> for Fields {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self.value.take().ok_or_else(|| de::Error::custom("a value without its key"))?;
        seed.deserialize(Strict(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::Strict;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Plan {
        rate: Option<f64>,
        burst: Option<u32>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Key {
        name: String,
        #[serde(default)]
        plan: Option<Plan>,
        #[serde(default)]
        items: Vec<Plan>,
        #[serde(default)]
        extra: serde_json::Value,
    }

    fn read(v: serde_json::Value) -> Result<Key, String> {
        serde_path_to_error::deserialize(Strict(v)).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn structs_come_only_from_objects_at_any_depth() {
        let ok = read(json!({"name": "a", "plan": {"burst": 2}, "items": [{"rate": 1.5}], "extra": {"x": [1, {}]}}));
        assert_eq!(
            ok.unwrap(),
            Key {
                name: "a".into(),
                plan: Some(Plan { rate: None, burst: Some(2) }),
                items: vec![Plan { rate: Some(1.5), burst: None }],
                extra: json!({"x": [1, {}]}),
            }
        );
        assert!(read(json!(["a", null])).unwrap_err().contains("invalid type: sequence"));
        assert!(read(json!({"name": "a", "plan": [null, null]})).unwrap_err().starts_with("plan: invalid type"));
        assert!(read(json!({"name": "a", "items": [{}, [1.0, 2]]})).unwrap_err().starts_with("items[1]: invalid type"));
    }

    #[test]
    fn scalars_and_unknown_fields_behave_as_in_serde_json() {
        assert!(read(json!({"name": 1})).unwrap_err().starts_with("name: invalid type: integer `1`"));
        assert!(read(json!({"name": "a", "plan": {"burst": 1.0}}))
            .unwrap_err()
            .starts_with("plan.burst: invalid type"));
        assert!(read(json!({"name": "a", "plan": {"burst": -1}}))
            .unwrap_err()
            .starts_with("plan.burst: invalid value"));
        assert!(read(json!({"name": "a", "bogus": 1})).unwrap_err().contains("unknown field `bogus`"));
        assert!(read(json!({"plan": null})).unwrap_err().contains("missing field `name`"));
        assert_eq!(read(json!({"name": "a", "plan": null})).unwrap().plan, None);
    }
}
