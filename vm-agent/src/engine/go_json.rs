//! JSON as dockerd's Go decoder reads it: object keys match struct fields without regard to
//! case (`{"detachKeys": …}`, `{"global": {}}`, `CPURealtimePeriod`), which clients rely on.

use serde::de::DeserializeOwned;

/// Renames the keys of `map` that match one of `fields` but for case to that field (an exact
/// spelling already present wins).
pub fn fold_keys(map: &mut serde_json::Map<String, serde_json::Value>, fields: &[&str]) {
    let odd: Vec<(String, &str)> = map
        .keys()
        .filter(|k| !fields.contains(&k.as_str()))
        .filter_map(|k| fields.iter().find(|f| f.eq_ignore_ascii_case(k)).map(|f| (k.clone(), *f)))
        .collect();
    for (key, field) in odd {
        if let Some(v) = map.remove(&key) {
            map.entry(field).or_insert(v);
        }
    }
}

/// The JSON names of struct `T`'s fields, as its `Deserialize` asks for them (empty for
/// anything but a plain struct): read from serde itself, so they never drift from the type.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor};

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names read")
        }
    }
    impl std::error::Error for Stop {}
    impl Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    struct Names<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Names<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut fields));
    fields
}
