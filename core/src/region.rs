//! Regions: where an item may be shown.
//!
//! An item carries a 32-bit mask with bit `r` set for each region `r` it may
//! be shown in; a request names at most one [`Region`]. "Any region" (no
//! filter) is `Option::<Region>::None`; the bundle and context formats spell it
//! [`REGION_ANY`]. The eligibility rule lives in [`Region::eligible`] and
//! nowhere else.

use core::fmt;
use core::str::FromStr;

/// How many regions there are (the width of a region mask).
pub const COUNT: u8 = 32;

/// The wire byte for "any region".
pub const REGION_ANY: u8 = u8::MAX;

/// A mask with every region set.
pub const ALL_REGIONS: u32 = u32::MAX;

/// A region index in `0..32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(u8);

/// A region index out of range, or not a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// A number outside `0..=31`.
    #[error("region {0} is out of range (0..=31)")]
    OutOfRange(u8),
    /// Text that is not a decimal number in `0..=31`.
    #[error("region {0:?} is not an integer in 0..=31")]
    NotANumber(alloc::string::String),
}

impl Region {
    /// The region `r`, if it is in `0..32`.
    pub const fn new(r: u8) -> Result<Self, RegionError> {
        if r < COUNT { Ok(Self(r)) } else { Err(RegionError::OutOfRange(r)) }
    }

    /// The index.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Whether an item with region mask `mask` may be shown here.
    pub const fn eligible(self, mask: u32) -> bool {
        mask & (1u32 << self.0) != 0
    }

    /// Whether an item with `mask` may be shown for a request in `region`
    /// (`None`: any region, so every item).
    pub fn allows(region: Option<Self>, mask: u32) -> bool {
        region.is_none_or(|r| r.eligible(mask))
    }

    /// The single-region mask.
    pub const fn mask(self) -> u32 {
        1u32 << self.0
    }

    /// The regions set in `mask`, in order.
    pub fn in_mask(mask: u32) -> impl Iterator<Item = Self> {
        (0..COUNT).filter(move |&r| mask & (1u32 << r) != 0).map(Self)
    }

    /// The wire byte of an optional region ([`REGION_ANY`] for `None`).
    pub fn to_wire(r: Option<Self>) -> u8 {
        r.map_or(REGION_ANY, Self::get)
    }

    /// Reads a wire byte: [`REGION_ANY`] or an index in `0..32`.
    pub fn from_wire(b: u8) -> Result<Option<Self>, RegionError> {
        if b == REGION_ANY { Ok(None) } else { Self::new(b).map(Some) }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Region {
    type Err = RegionError;

    /// Decimal digits only (no sign, no spaces, no leading zero), in `0..=31`.
    fn from_str(s: &str) -> Result<Self, RegionError> {
        let bad = || RegionError::NotANumber(alloc::string::String::from(s));
        // One spelling per region: no sign, no spaces, no leading zero.
        if s.is_empty() || s.len() > 2 || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        s.parse::<u8>().map_err(|_| bad()).and_then(Self::new)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Region {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Region {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = <u8 as serde::Deserialize>::deserialize(d)?;
        Self::new(r).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_bounds() {
        assert_eq!("0".parse::<Region>().map(Region::get), Ok(0));
        assert_eq!("31".parse::<Region>().map(Region::get), Ok(31));
        for bad in ["32", "255", "256", "-1", "+1", " 1", "", "1a", "01", "031", "0031", "any"] {
            assert!(bad.parse::<Region>().is_err(), "{bad:?}");
        }
        assert!(Region::new(32).is_err());
        assert_eq!(Region::from_wire(REGION_ANY), Ok(None));
        assert!(Region::from_wire(40).is_err());
    }

    proptest! {
        /// Against the naive rule: bit r of the mask.
        #[test]
        fn eligible_is_bit_test(r in 0u8..32, mask in any::<u32>()) {
            let reg = Region::new(r).expect("in range");
            prop_assert_eq!(reg.eligible(mask), (mask >> r) & 1 == 1);
            prop_assert!(Region::allows(None, mask));
            prop_assert_eq!(Region::in_mask(mask).count(), mask.count_ones() as usize);
        }
    }
}
