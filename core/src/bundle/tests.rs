//! Unit tests of the bundle format.

use super::*;
use crate::region::ALL_REGIONS;
use alloc::vec;

fn sample(n: usize) -> Vec<u8> {
    let mut h = BundleHeader::new(4, 2, 3);
    h.scope = Scope::Personal;
    h.region = Region::new(3).ok();
    h.created_at_ms = 1_700_000_000_000;
    h.feature_schema_hash = 0xABCD;
    h.sources_contributed = 0b101;
    h.sources_timed_out = 0b010;
    let mut b = BundleBuilder::new(h).expect("header");
    for i in 0..n {
        let e = [i as f32, -1.0, 0.5, 0.25];
        b.push(&Candidate {
            id: 1000 + i as u64,
            embedding: &e,
            features: &[i as f32, 2.0],
            source_ranks: &[i as u16, NO_RANK, 7],
            creator: i as u32 % 3,
            category: 9,
            region_mask: ALL_REGIONS,
            retrieval_score: 0.5,
        })
        .expect("push");
    }
    b.finish()
}

#[test]
fn roundtrip_fields() {
    let bytes = sample(5);
    let b = Bundle::decode(&bytes).expect("decode");
    assert_eq!(b.len(), 5);
    assert_eq!(b.header().scope, Scope::Personal);
    assert_eq!(b.header().region, Region::new(3).ok());
    assert_eq!(b.header().created_at_ms, 1_700_000_000_000);
    assert_eq!(b.header().sources_timed_out, 0b010);
    assert_eq!(b.id(4), 1004);
    assert_eq!(b.feature(3, 0), 3.0);
    assert_eq!(b.source_rank(2, 0), Some(2));
    assert_eq!(b.source_rank(2, 1), None);
    assert_eq!(b.source_mask(2), 0b101);
    assert_eq!(b.creator(4), 1);
    assert_eq!(b.embedding(0)[1], -127);
    assert_eq!(reencode(&b), bytes);
}

#[test]
fn columns_are_aligned() {
    let bytes = sample(3);
    let l = *Bundle::decode(&bytes).expect("decode").layout();
    for (start, _) in [
        l.ids,
        l.scales,
        l.retrieval,
        l.creator,
        l.category,
        l.region_mask,
        l.features,
        l.source_ranks,
        l.source_mask,
        l.embeddings,
    ] {
        assert_eq!(start % 8, 0);
    }
    assert_eq!(l.total, bytes.len());
}

#[test]
fn empty_bundle_is_valid() {
    let bytes = sample(0);
    assert_eq!(Bundle::decode(&bytes).expect("decode").len(), 0);
}

#[test]
fn typed_errors() {
    let bytes = sample(2);
    assert!(matches!(Bundle::decode(&bytes[..10]), Err(BundleError::Format(FormatError::TooShort { .. }))));
    let mut b = bytes.clone();
    b[0] = b'X';
    assert_eq!(Bundle::decode(&b).unwrap_err(), BundleError::Format(FormatError::BadMagic { format: "bundle" }));
    let mut b = bytes.clone();
    b[8] = 9;
    assert!(matches!(Bundle::decode(&b), Err(BundleError::Format(FormatError::UnsupportedVersion { found: 9, .. }))));
    let mut b = bytes.clone();
    b[16] = 200;
    assert!(matches!(Bundle::decode(&b), Err(BundleError::Format(FormatError::LengthMismatch { .. }))));
    let mut b = bytes.clone();
    let last = b.len() - 12;
    b[last] ^= 1;
    assert!(matches!(Bundle::decode(&b), Err(BundleError::Format(FormatError::ChecksumMismatch { .. }))));
    let mut b = bytes.clone();
    b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(Bundle::decode(&b), Err(BundleError::Format(FormatError::OutOfRange { field: "n_rows", .. }))));
}

#[test]
fn prechecked_decode_skips_only_the_checksum() {
    let mut bytes = sample(3);
    let n = bytes.len();
    bytes[n - 8] ^= 0xFF; // corrupt the stored CRC
    assert!(matches!(Bundle::decode(&bytes), Err(BundleError::Format(FormatError::ChecksumMismatch { .. }))));
    assert!(matches!(verify_checksum(&bytes), Err(BundleError::Format(FormatError::ChecksumMismatch { .. }))));
    assert_eq!(Bundle::decode_prechecked(&bytes).expect("structure is fine").len(), 3);
    bytes[0] = b'X';
    assert_eq!(
        Bundle::decode_prechecked(&bytes).unwrap_err(),
        BundleError::Format(FormatError::BadMagic { format: "bundle" })
    );
    assert!(matches!(
        Bundle::decode_prechecked(&bytes[..n - 1]),
        Err(BundleError::Format(FormatError::BadMagic { format: "bundle" }))
    ));
    assert!(verify_checksum(&[1, 2, 3]).is_err());
}

#[test]
fn both_versions_decode_and_each_checks_its_own_checksum() {
    let v2 = sample(5);
    assert_eq!(u16::from_le_bytes([v2[8], v2[9]]), PLAIN_VERSION);
    let b = Bundle::decode(&v2).expect("v2 decodes");
    let v1 = BundleBuilder::new(*b.header()).and_then(|x| x.version(1)).map(|mut x| {
        let (mut f, mut r) = (Vec::new(), Vec::new());
        for i in 0..b.len() {
            x.push_quantized(&b.row(i, &mut f, &mut r)).expect("row");
        }
        x.finish()
    });
    let v1 = v1.expect("version 1 is writable");
    let body = v1.len() - TRAILER_LEN;
    assert_eq!(u16::from_le_bytes([v1[8], v1[9]]), 1);
    assert_eq!(v1[10..body], v2[10..body], "the versions differ in version and checksum only");
    assert_eq!(v1[body..body + 4], crc32fast::hash(&v1[..body]).to_le_bytes(), "v1: CRC-32");
    assert_eq!(
        v2[body..body + 4],
        (xxhash_rust::xxh3::xxh3_64(&v2[..body]) as u32).to_le_bytes(),
        "v2: XXH3's low half"
    );
    for bytes in [&v1, &v2] {
        let d = Bundle::decode(bytes).expect("decodes");
        assert_eq!(reencode(&d), *bytes, "re-encoded in its own version");
        verify_checksum(bytes).expect("checksum");
        // A flipped bit anywhere in the body, or a checksum computed the
        // other version's way, is a mismatch.
        let mut bad = bytes.clone();
        bad[body - 1] ^= 0x10;
        assert!(matches!(verify_checksum(&bad), Err(BundleError::Format(FormatError::ChecksumMismatch { .. }))));
        let mut other = bytes.clone();
        let swapped = if d.header().version == 1 {
            xxhash_rust::xxh3::xxh3_64(&bytes[..body]) as u32
        } else {
            crc32fast::hash(&bytes[..body])
        };
        other[body..body + 4].copy_from_slice(&swapped.to_le_bytes());
        assert!(matches!(Bundle::decode(&other), Err(BundleError::Format(FormatError::ChecksumMismatch { .. }))));
    }
    // A version this build does not know is refused by name, before any checksum.
    let mut v4 = v2.clone();
    v4[8] = 4;
    assert!(matches!(verify_checksum(&v4), Err(BundleError::Format(FormatError::UnsupportedVersion { found: 4, .. }))));
    // Version 3 is the user embedding's, never chosen for a plain bundle.
    for bad in [0, 3] {
        assert!(matches!(
            BundleBuilder::new(BundleHeader::new(2, 0, 0)).and_then(|b| b.version(bad)),
            Err(BuildError::OutOfRange { field: "version", .. })
        ));
    }
}

#[test]
fn builder_rejects_bad_rows() {
    let mut b = BundleBuilder::new(BundleHeader::new(2, 1, 0)).expect("header");
    let bad = Candidate {
        id: 1,
        embedding: &[1.0, f32::NAN],
        features: &[0.0],
        source_ranks: &[],
        creator: 0,
        category: 0,
        region_mask: 0,
        retrieval_score: 0.0,
    };
    assert_eq!(b.push(&bad), Err(BuildError::NonFinite { what: "embedding" }));
    let short = Candidate { embedding: &[1.0], ..bad };
    assert!(matches!(b.push(&short), Err(BuildError::Shape { what: "embedding", .. })));
    assert!(BundleBuilder::new(BundleHeader::new(0, 1, 0)).is_err());
    let _ = vec![0u8];
}

#[test]
fn union_keeps_the_first_bundles_rows_then_the_seconds_new_ones() {
    let (a_bytes, b_bytes) = (sample(3), sample(6));
    let (a, b) = (Bundle::decode(&a_bytes).expect("a"), Bundle::decode(&b_bytes).expect("b"));
    let u_bytes = union(&a, &b, 42).expect("union");
    let u = Bundle::decode(&u_bytes).expect("the union is a valid bundle");
    assert_eq!((0..u.len()).map(|i| u.id(i)).collect::<Vec<_>>(), vec![1000, 1001, 1002, 1003, 1004, 1005]);
    let (mut f1, mut r1, mut f2, mut r2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..3 {
        assert_eq!(
            alloc::format!("{:?}", u.row(i, &mut f1, &mut r1)),
            alloc::format!("{:?}", a.row(i, &mut f2, &mut r2))
        );
    }
    for i in 3..6 {
        assert_eq!(
            alloc::format!("{:?}", u.row(i, &mut f1, &mut r1)),
            alloc::format!("{:?}", b.row(i, &mut f2, &mut r2))
        );
    }
    assert_eq!(u.header().scope, Scope::Personal);
    assert_eq!(u.header().created_at_ms, 42);
    assert_eq!(u.header().region, Region::new(3).ok(), "both name region 3");
    assert_eq!(u.header().sources_contributed, 0b101);

    let mut h = BundleHeader::new(4, 1, 3);
    h.feature_schema_hash = 0xABCD;
    let other = BundleBuilder::new(h).expect("header").finish();
    let other = Bundle::decode(&other).expect("decodes");
    assert_eq!(union(&a, &other, 0), Err(BuildError::Mismatch { what: "feature count" }));
}

fn with_user(rows: usize, user: &[f32]) -> Vec<u8> {
    let plain = sample(rows);
    let b = Bundle::decode(&plain).expect("decodes");
    let mut x = BundleBuilder::new(*b.header()).expect("header");
    let (mut f, mut r) = (Vec::new(), Vec::new());
    for i in 0..b.len() {
        x.push_quantized(&b.row(i, &mut f, &mut r)).expect("row");
    }
    x.user_embedding(user).expect("a personal bundle takes a user embedding");
    x.finish()
}

#[test]
fn a_user_embedding_is_version_3_after_the_rows_and_nothing_else_changes() {
    let user = [0.5, -1.25, 3.0, 0.0];
    let (plain, v3) = (sample(5), with_user(5, &user));
    let b = Bundle::decode(&v3).expect("version 3 decodes");
    assert_eq!(b.header().version, USER_VERSION);
    assert!(b.header().user_embedding);
    assert_eq!(b.user_embedding().map(Iterator::collect::<Vec<f32>>), Some(user.to_vec()));
    assert_eq!(Bundle::decode(&plain).expect("plain").user_embedding().map(|_| ()), None);
    let l = *b.layout();
    assert_eq!((l.user.0 % 8, l.user.1 - l.user.0), (0, 16), "an aligned f32 column of d values");
    assert_eq!(l.total, v3.len());
    // Everything up to the embeddings is the plain bundle's, but the version and the flag.
    assert_eq!(v3[12..l.embeddings.1], plain[12..l.embeddings.1]);
    assert_eq!((v3[8], v3[10]), (3, 0b11));
    assert_eq!(reencode(&b), v3);
    assert_eq!(crate::check::bundle_bytes(&v3), Ok(5));
}

#[test]
fn a_user_embedding_is_refused_where_it_does_not_belong() {
    let mut h = BundleHeader::new(2, 0, 0);
    let mut regional = BundleBuilder::new(h).expect("header");
    assert_eq!(regional.user_embedding(&[1.0, 2.0]), Err(BuildError::UserInRegional));
    h.scope = Scope::Personal;
    let mut personal = BundleBuilder::new(h).expect("header");
    assert_eq!(personal.user_embedding(&[1.0, f32::INFINITY]), Err(BuildError::NonFinite { what: "user embedding" }));
    assert!(matches!(personal.user_embedding(&[1.0]), Err(BuildError::Shape { what: "user embedding", .. })));

    let v3 = with_user(2, &[1.0, 2.0, 3.0, 4.0]);
    let resealed = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = v3.clone();
        f(&mut b);
        crate::check::fix_bundle_crc(&mut b);
        Bundle::decode(&b).map(|_| ())
    };
    let malformed = |r: Result<(), BundleError>| matches!(r, Err(BundleError::Format(FormatError::Malformed { .. })));
    // A regional bundle carrying someone's embedding.
    assert!(malformed(resealed(&|b| b[10] = 0b10)), "{:?}", resealed(&|b| b[10] = 0b10));
    // Version 3 without the flag, and the flag in version 2.
    assert!(malformed(resealed(&|b| b[10] = 0b01)));
    assert!(malformed(resealed(&|b| b[8] = 2)));
    // A NaN in the user's embedding.
    let at = Bundle::decode(&v3).expect("decodes").layout().user.0;
    assert_eq!(
        resealed(&|b| b[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes())),
        Err(BundleError::NonFinite { column: "user embedding", row: 0 })
    );
}

#[test]
fn a_union_carries_the_kept_bundles_user_embedding() {
    let user = [0.25, 0.5, -0.75, 1.0];
    let (kept, regional) = (with_user(3, &user), sample(6));
    let (k, g) = (Bundle::decode(&kept).expect("kept"), Bundle::decode(&regional).expect("regional"));
    let u = union(&k, &g, 7).expect("union");
    let u = Bundle::decode(&u).expect("decodes");
    assert_eq!(u.user_embedding().map(Iterator::collect::<Vec<f32>>), Some(user.to_vec()));
    assert_eq!(u.len(), 6);
    let plain = union(&g, &k, 7).expect("union");
    assert!(Bundle::decode(&plain).expect("decodes").user_embedding().is_none(), "only the first's embedding is kept");
}
