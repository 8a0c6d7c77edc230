//! Exact `u64` sizes from pinejs "Big Integer" columns, which arrive as JSON
//! strings (v7) or numbers (v6), without the precision loss of a float parse.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

/// Why a size value is not a valid `u64`.
fn invalid<E: de::Error>(what: &str) -> E {
    E::custom(format_args!(
        "expected a whole number of bytes between 0 and 18446744073709551615, got {what}"
    ))
}

/// Parses the string form: ASCII digits only (an optional leading `+` is not
/// accepted either, pinejs never writes one).
fn parse_digits<E: de::Error>(s: &str) -> Result<u64, E> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = s.chars().take(40).collect();
        return Err(invalid(&format!("`{}`", shown.escape_debug())));
    }
    s.parse::<u64>()
        .map_err(|_| invalid(&format!("`{s}`, which is too large")))
}

struct SizeVisitor;

impl<'de> Visitor<'de> for SizeVisitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size as a number, a string of digits or null")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Some)
            .map_err(|_| invalid(&format!("the negative number `{v}`")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Some)
            .map_err(|_| invalid(&format!("`{v}`, which is too large")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(invalid(&format!(
            "the non-integer or out-of-range number `{v}`"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_digits(v).map(Some)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(SizeVisitor)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Err(invalid(&format!("the boolean `{v}`")))
    }
}

/// `Option<u64>`: `null` is `None`; numbers and digit strings are exact.
pub(crate) mod option {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(SizeVisitor)
    }

    pub(crate) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_u64(*v),
            None => s.serialize_none(),
        }
    }
}

/// `u64` that reads `null` as `0`, as the npm tool prints it.
pub(crate) mod zero_if_null {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Ok(d.deserialize_any(SizeVisitor)?.unwrap_or(0))
    }

    pub(crate) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Row {
        #[serde(with = "super::option")]
        size: Option<u64>,
    }

    fn size(json: &str) -> Result<Option<u64>, String> {
        serde_json::from_str::<Row>(&format!(r#"{{"size":{json}}}"#))
            .map(|r| r.size)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn strings_numbers_and_null() {
        assert_eq!(size(r#""310905195""#), Ok(Some(310905195)));
        assert_eq!(size("310905195"), Ok(Some(310905195)));
        assert_eq!(size("0"), Ok(Some(0)));
        assert_eq!(size("null"), Ok(None));
    }

    #[test]
    fn the_whole_u64_range_is_exact() {
        assert_eq!(size(r#""18446744073709551615""#), Ok(Some(u64::MAX)));
        assert_eq!(size("18446744073709551615"), Ok(Some(u64::MAX)));
        // Beyond 2^53 a float parse would round this.
        assert_eq!(size(r#""9007199254740993""#), Ok(Some(9007199254740993)));
    }

    #[test]
    fn beyond_u64_negative_and_fractional_values_fail() {
        for bad in [
            r#""18446744073709551616""#,
            "18446744073709551616",
            "-1",
            r#""-1""#,
            "1.5",
            "1e3",
            r#""1.5""#,
            r#""""#,
            r#"" 12""#,
            r#""+12""#,
            "true",
            "[]",
        ] {
            let err = size(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(
            size(r#""18446744073709551616""#)
                .unwrap_err()
                .contains("too large")
        );
        assert!(size("-1").unwrap_err().contains("negative"));
    }
}
