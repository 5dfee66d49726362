//! Money: integer minor units, never a float.
//!
//! Accepted as a JSON integer or a string of digits up to 2^63−1 (beyond JavaScript's
//! exact range a string is the safe way to send it), written back as a JSON integer.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MinorUnits(pub i64);

impl Serialize for MinorUnits {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

struct MinorUnitsVisitor;

const EXPECTING: &str = "an amount in integer minor units (a JSON integer or a string of digits, at most 9223372036854775807)";

impl Visitor<'_> for MinorUnitsVisitor {
    type Value = MinorUnits;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTING)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MinorUnits, E> {
        Ok(MinorUnits(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MinorUnits, E> {
        i64::try_from(v)
            .map(MinorUnits)
            .map_err(|_| E::custom(format!("amount {v} exceeds 9223372036854775807")))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<MinorUnits, E> {
        Err(E::custom(
            "amounts are integer minor units, never fractions or floats",
        ))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MinorUnits, E> {
        let digits = v.strip_prefix('-').unwrap_or(v);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::custom(format!("`{v}` is not an integer amount")));
        }
        v.parse::<i64>()
            .map(MinorUnits)
            .map_err(|_| E::custom(format!("amount {v} exceeds 9223372036854775807")))
    }
}

impl<'de> Deserialize<'de> for MinorUnits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MinorUnitsVisitor)
    }
}

impl fmt::Display for MinorUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<MinorUnits, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn accepts_integers_and_digit_strings_up_to_i64_max() {
        assert_eq!(parse("1250").unwrap(), MinorUnits(1250));
        assert_eq!(parse("\"1250\"").unwrap(), MinorUnits(1250));
        assert_eq!(
            parse("\"9223372036854775807\"").unwrap(),
            MinorUnits(i64::MAX)
        );
        assert_eq!(parse("9223372036854775807").unwrap(), MinorUnits(i64::MAX));
    }

    #[test]
    fn refuses_floats_overflow_and_junk() {
        for bad in [
            "12.5",
            "1e3",
            "\"12.5\"",
            "\"9223372036854775808\"",
            "9223372036854775808",
            "\"\"",
            "\"12a\"",
            "\" 12\"",
            "true",
            "null",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn writes_a_json_integer() {
        assert_eq!(serde_json::to_string(&MinorUnits(42)).unwrap(), "42");
    }
}
