//! Content addresses: the sha256 [`Digest`] of a model or a module.
//!
//! A digest travels as 64 lower-case hex characters in URLs, ETags, manifests
//! and headers, and as 32 raw bytes inside bundles. Parsing and printing live
//! here and nowhere else. "No model" is `Option::<Digest>::None`; only the
//! bundle format spells it as 32 zero bytes ([`Digest::from_wire`]).

use core::fmt;
use core::str::FromStr;

use sha2::Digest as _;

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum DigestError {
    /// Not exactly 64 characters.
    #[error("a digest is 64 hex characters, got {0}")]
    Length(usize),
    /// A character outside `0-9a-f` (upper case is refused: digests have one spelling).
    #[error("a digest is lower-case hex; byte {0} is not")]
    NotHex(usize),
}

impl Digest {
    /// The sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// A digest from its raw bytes.
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The bundle header's field: all zero means "no particular model".
    pub fn from_wire(b: [u8; 32]) -> Option<Self> {
        (b != [0; 32]).then_some(Self(b))
    }

    /// The inverse of [`from_wire`](Self::from_wire).
    pub fn to_wire(d: Option<Self>) -> [u8; 32] {
        d.map_or([0; 32], |d| d.0)
    }

    /// The 64-character lower-case hex form.
    pub fn to_hex(&self) -> alloc::string::String {
        alloc::format!("{self}")
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // 64 bytes hold the hex of 32, so encoding cannot fail.
        let hex = base16ct::lower::encode_str(&self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Exactly 64 lower-case hex characters (RustCrypto's `base16ct`, which
    /// decodes in constant time and accepts lower case only).
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(DigestError::Length(b.len()));
        }
        let mut out = [0u8; 32];
        match base16ct::lower::decode(b, &mut out) {
            Ok(_) => Ok(Self(out)),
            Err(_) => {
                Err(DigestError::NotHex(b.iter().position(|c| !matches!(c, b'0'..=b'9' | b'a'..=b'f')).unwrap_or(0)))
            }
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sha256 digest, 64 lower-case hex characters")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Digest, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use proptest::prelude::*;

    #[test]
    fn known_value() {
        let d = Digest::of(b"abc");
        assert_eq!(d.to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn refuses_bad_strings() {
        assert_eq!("ab".parse::<Digest>(), Err(DigestError::Length(2)));
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(upper.parse::<Digest>(), Err(DigestError::NotHex(0)));
        let mut s = Digest::of(b"x").to_string();
        s.replace_range(63..64, "g");
        assert_eq!(s.parse::<Digest>(), Err(DigestError::NotHex(63)));
        // A multi-byte character of the right byte length is refused, not sliced.
        let mut s = "é".to_string();
        s.push_str(&"0".repeat(62));
        assert!(s.parse::<Digest>().is_err());
    }

    #[test]
    fn wire_zero_is_none() {
        assert_eq!(Digest::from_wire([0; 32]), None);
        let d = Digest::of(b"m");
        assert_eq!(Digest::from_wire(Digest::to_wire(Some(d))), Some(d));
        assert_eq!(Digest::to_wire(None), [0; 32]);
    }

    proptest! {
        #[test]
        fn hex_round_trips(b in any::<[u8; 32]>()) {
            let d = Digest::from_bytes(b);
            prop_assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
            prop_assert_eq!(d.to_string().len(), 64);
        }
    }
}
