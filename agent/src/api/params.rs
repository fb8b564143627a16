//! OpenStack's common request parameter types, as typed values that refuse bad input while
//! deserializing (the APIs' JSON schemas accept these spellings): booleans that may come as
//! strings, and counts that may come as strings of digits.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// A boolean as OpenStack's schemas take it: `true`/`false`, or one of the strings
/// oslo's `bool_from_string` knows (`"True"`, `"1"`, `"yes"`, `"on"`, … in any case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag(pub bool);

impl Flag {
    /// The boolean a string spells, if any.
    pub fn parse(s: &str) -> Option<bool> {
        match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "y" | "t" => Some(true),
            "false" | "0" | "no" | "off" | "n" | "f" => Some(false),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean (true, false, or a string such as \"True\" or \"0\")")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Flag, E> {
                Ok(Flag(b))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Flag, E> {
                Flag::parse(s).map(Flag).ok_or_else(|| E::invalid_value(de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A non-negative integer that may come as a JSON number or a string of digits (Nova's flavor
/// fields, `min_count`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count(pub u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count, E> {
                Ok(Count(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count, E> {
                u64::try_from(n).map(Count).map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Count, E> {
                Err(E::invalid_value(de::Unexpected::Float(n), &self))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Count, E> {
                let digits = !s.trim().is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit());
                s.trim()
                    .parse()
                    .ok()
                    .filter(|_| digits)
                    .map(Count)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A field that may be given as `null` to clear it: with `#[serde(default, deserialize_with =
/// "nullable")]`, absent is `None`, `null` is `Some(None)` and a value `Some(Some(v))`.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_counts_take_openstacks_spellings_and_refuse_others() {
        for (text, want) in [("true", true), ("\"True\"", true), ("\"0\"", false), ("\"OFF\"", false), ("false", false)]
        {
            assert_eq!(serde_json::from_str::<Flag>(text).unwrap(), Flag(want), "{text}");
        }
        for text in ["\"maybe\"", "1", "null", "\"\""] {
            assert!(serde_json::from_str::<Flag>(text).is_err(), "{text}");
        }
        for (text, want) in [("5", 5), ("\"12\"", 12), ("0", 0)] {
            assert_eq!(serde_json::from_str::<Count>(text).unwrap(), Count(want), "{text}");
        }
        for text in ["-1", "1.5", "\"x\"", "\"\"", "\"-3\"", "true"] {
            assert!(serde_json::from_str::<Count>(text).is_err(), "{text}");
        }
    }
}
