//! Exact money: an integer count of femto-dollars (1e-15 USD).
//!
//! A price of $0.0375 per million tokens is 37,500 femto-dollars per token, so every
//! price with up to nine decimals per million tokens is an exact integer per token,
//! and sums over any number of events stay exact (i128 holds ±1.7e23 USD).

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul};
use std::str::FromStr;

/// Femto-dollars per dollar.
pub const SCALE: i128 = 1_000_000_000_000_000;
const SCALE_DIGITS: usize = 15;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i128);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_femto(femto: i128) -> Money {
        Money(femto)
    }

    pub const fn femto(self) -> i128 {
        self.0
    }

    /// Parses a decimal USD amount such as `"0.0058704"`, `"2.5"`, `"1e-7"` is refused.
    /// Digits beyond femto resolution are an error rather than silently rounded.
    pub fn parse_usd(s: &str) -> Result<Money, MoneyError> {
        s.parse()
    }

    /// A USD amount per million tokens, as a price per single token.
    pub fn per_token_from_per_million(per_million: Money) -> Result<Money, MoneyError> {
        if per_million.0 % 1_000_000 != 0 {
            return Err(MoneyError::TooPrecise);
        }
        Ok(Money(per_million.0 / 1_000_000))
    }

    /// `self × n / d`, rounded half away from zero (used for percentage multipliers).
    pub fn mul_ratio(self, n: i128, d: i128) -> Money {
        let prod = self.0 * n;
        let q = prod / d;
        let r = prod % d;
        if 2 * r.abs() >= d.abs() {
            Money(q + prod.signum() * d.signum())
        } else {
            Money(q)
        }
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, o: Money) -> Money {
        Money(self.0 + o.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, o: Money) {
        self.0 += o.0;
    }
}

impl Mul<u64> for Money {
    type Output = Money;
    fn mul(self, n: u64) -> Money {
        Money(self.0 * i128::from(n))
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

/// Plain decimal, no trailing zeros, at least one digit before the point:
/// `0.0002832`, `12`, `1234.5`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.0 < 0;
        let abs = self.0.unsigned_abs();
        let scale = SCALE as u128;
        let whole = abs / scale;
        let frac = abs % scale;
        if neg {
            f.write_str("-")?;
        }
        write!(f, "{whole}")?;
        if frac != 0 {
            let digits = format!("{frac:0width$}", width = SCALE_DIGITS);
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal number")]
    Invalid,
    #[error("more decimal places than femto-dollar resolution")]
    TooPrecise,
    #[error("amount out of range")]
    Overflow,
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Money, MoneyError> {
        let s = s.trim();
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(MoneyError::Invalid);
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Invalid);
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > SCALE_DIGITS {
            return Err(MoneyError::TooPrecise);
        }
        let whole_v: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| MoneyError::Overflow)?
        };
        let frac_v: i128 = if frac.is_empty() {
            0
        } else {
            let padded = format!("{frac:0<width$}", width = SCALE_DIGITS);
            padded.parse().map_err(|_| MoneyError::Invalid)?
        };
        let v = whole_v
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(frac_v))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money(if neg { -v } else { v }))
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        // Accept "0.15" and 0.15 alike: a TOML/JSON number is read through its text form.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal USD amount")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Money, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Money, E> {
                Ok(Money(i128::from(v) * SCALE))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Money, E> {
                Ok(Money(i128::from(v) * SCALE))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Money, E> {
                // Shortest round-trip text of the float, then exact decimal parsing.
                format!("{v}").parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        for s in [
            "0",
            "0.0002832",
            "12",
            "1234.5",
            "0.000000000000001",
            "-3.25",
        ] {
            assert_eq!(s.parse::<Money>().unwrap().to_string(), s);
        }
        assert_eq!("0.150".parse::<Money>().unwrap().to_string(), "0.15");
        assert_eq!(".5".parse::<Money>().unwrap().to_string(), "0.5");
        assert!("0.0000000000000001".parse::<Money>().is_err());
        assert!("1e-7".parse::<Money>().is_err());
        assert!("".parse::<Money>().is_err());
    }

    #[test]
    fn design_example_is_exact() {
        // gpt-4o-mini: 176 fresh × $0.15/M + 1024 cached × $0.075/M + 300 out × $0.60/M.
        let per = |s: &str| Money::per_token_from_per_million(s.parse().unwrap()).unwrap();
        let cost = per("0.15") * 176 + per("0.075") * 1024 + per("0.60") * 300;
        assert_eq!(cost.to_string(), "0.0002832");
    }

    #[test]
    fn ratio_rounds_half_away_from_zero() {
        assert_eq!(Money::from_femto(5).mul_ratio(1, 2), Money::from_femto(3));
        assert_eq!(Money::from_femto(4).mul_ratio(1, 2), Money::from_femto(2));
        assert_eq!(Money::from_femto(-5).mul_ratio(1, 2), Money::from_femto(-3));
    }
}
