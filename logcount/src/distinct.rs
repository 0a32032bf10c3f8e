//! Distinct keys that are not packed, and the form distinct keys travel in: a map for the
//! byte-string keys (anything that is not a canonical dotted quad or IPv6 text), and the serde
//! forms of the sorted key lists a chunk returns (delta-encoded packed keys, see
//! [`sorted_delta`]; byte strings, see [`byte_strings`]). The packed keys' set is `key_set.rs`.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

/// Keys longer than this many bytes are counted by their SHA-256 digest rather than kept
/// whole, so that a worker's memory does not grow with the length of a line (a multi-GB line
/// with no separator is one key). Keys up to this length are compared byte for byte; two
/// different longer keys count as one only if their digests collide (probability about
/// 2^-128 for any realistic number of keys, and no known way to make one happen).
pub(crate) const LONG_KEY_BYTES: usize = 256;

/// How many leading bytes of a long key are kept to show it under `--top`.
pub(crate) const LONG_KEY_SHOWN_BYTES: usize = 32;

/// A long key's identity: the SHA-256 of all its bytes.
pub(crate) type KeyDigest = [u8; 32];

/// The digest of a whole long key at hand.
pub(crate) fn key_digest(key: &[u8]) -> KeyDigest {
    Sha256::digest(key).into()
}

/// A long key fed in pieces, for a line that crosses read buffers: its digest is the same as
/// [`key_digest`] of the whole key, but no more than its first bytes are ever held.
#[derive(Debug, Clone, Default)]
pub(crate) struct LongKeyHasher {
    hasher: Sha256,
    shown: Vec<u8>,
}

impl LongKeyHasher {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        if self.shown.len() < LONG_KEY_SHOWN_BYTES {
            let take = (LONG_KEY_SHOWN_BYTES - self.shown.len()).min(bytes.len());
            self.shown.extend_from_slice(&bytes[..take]);
        }
        self.hasher.update(bytes);
    }

    /// The key's digest and its first bytes.
    pub(crate) fn finish(self) -> (KeyDigest, Vec<u8>) {
        (self.hasher.finalize().into(), self.shown)
    }
}

/// Keys longer than [`LONG_KEY_BYTES`], by digest, with their counts and first bytes (what
/// `--top` shows of them).
#[derive(Debug, Default)]
pub(crate) struct LongKeys {
    counts: HashMap<KeyDigest, (u64, Box<[u8]>), foldhash::fast::RandomState>,
}

impl LongKeys {
    /// One line whose key has digest `digest` and begins with `shown` (at least its first
    /// [`LONG_KEY_SHOWN_BYTES`] bytes; only those are kept).
    pub(crate) fn insert(&mut self, digest: KeyDigest, shown: &[u8]) {
        self.counts
            .entry(digest)
            .or_insert_with(|| (0, shown[..shown.len().min(LONG_KEY_SHOWN_BYTES)].into()))
            .0 += 1;
    }

    /// The number of distinct keys.
    pub(crate) fn len(&self) -> u64 {
        self.counts.len() as u64
    }

    /// Adds every key of `other` with its count.
    pub(crate) fn absorb(&mut self, other: LongKeys) {
        if self.counts.is_empty() {
            *self = other;
            return;
        }
        for (digest, (count, shown)) in other.counts {
            self.counts.entry(digest).or_insert((0, shown)).0 += count;
        }
    }

    /// The digests sorted ascending, their counts and their first bytes in the same order.
    pub(crate) fn into_sorted(self) -> (Vec<KeyDigest>, Vec<u64>, Vec<Vec<u8>>) {
        let mut entries: Vec<_> = self.counts.into_iter().collect();
        entries.sort_unstable_by_key(|&(digest, _)| digest);
        let mut digests = Vec::with_capacity(entries.len());
        let mut counts = Vec::with_capacity(entries.len());
        let mut shown = Vec::with_capacity(entries.len());
        for (digest, (count, first)) in entries {
            digests.push(digest);
            counts.push(count);
            shown.push(first.into_vec());
        }
        (digests, counts, shown)
    }
}

/// Serde for a sorted list of digests as one byte string of 32-byte records.
pub(crate) mod digests {
    use std::fmt;

    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    use super::KeyDigest;

    pub(crate) fn serialize<S: Serializer>(
        keys: &[KeyDigest],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(keys.as_flattened())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<KeyDigest>, D::Error> {
        deserializer.deserialize_bytes(DigestsVisitor)
    }

    struct DigestsVisitor;

    impl Visitor<'_> for DigestsVisitor {
        type Value = Vec<KeyDigest>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string of 32-byte digests")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<KeyDigest>, E> {
            if bytes.len() % 32 != 0 {
                return Err(E::custom("digest list is not a whole number of digests"));
            }
            let records: Vec<KeyDigest> = bytes
                .chunks_exact(32)
                .map(|record| record.try_into().unwrap_or([0; 32]))
                .collect();
            if records.windows(2).any(|pair| pair[0] >= pair[1]) {
                return Err(E::custom("digest list is not sorted and deduplicated"));
            }
            Ok(records)
        }
    }
}

/// Byte-string keys (anything that is not a canonical dotted quad: IPv6 addresses, host names,
/// garbage) with their counts; lookups by `&[u8]` allocate only for a new key.
///
/// Hashed with foldhash, randomly seeded per map: client keys can be attacker-chosen
/// (X-Forwarded-For), and a per-run random seed keeps an attacker who writes log lines in
/// advance from crafting collisions (foldhash's caveat, an attacker who watches a long-running
/// process's timing, does not apply to a batch count). std's SipHash-1-3 made an all-IPv6 log
/// ~5x slower to count than an all-IPv4 one; foldhash hashes a ~20-byte key several times faster.
#[derive(Debug, Default)]
pub(crate) struct ByteKeys {
    counts: HashMap<Box<[u8]>, u64, foldhash::fast::RandomState>,
}

impl ByteKeys {
    pub(crate) fn insert(&mut self, key: &[u8]) {
        match self.counts.get_mut(key) {
            Some(count) => *count += 1,
            None => {
                self.counts.insert(key.into(), 1);
            }
        }
    }

    /// The number of distinct keys.
    pub(crate) fn len(&self) -> u64 {
        self.counts.len() as u64
    }

    /// Adds every key of `other` with its count (moving the keys, not copying them).
    pub(crate) fn absorb(&mut self, other: ByteKeys) {
        if self.counts.is_empty() {
            *self = other;
            return;
        }
        for (key, count) in other.counts {
            *self.counts.entry(key).or_insert(0) += count;
        }
    }

    /// The keys sorted ascending (bytewise), and their counts in the same order.
    pub(crate) fn into_sorted(self) -> (Vec<Vec<u8>>, Vec<u64>) {
        let mut pairs: Vec<(Vec<u8>, u64)> = self
            .counts
            .into_iter()
            .map(|(key, count)| (key.into_vec(), count))
            .collect();
        pairs.sort_unstable();
        pairs.into_iter().unzip()
    }
}

/// Serde for a sorted, deduplicated `Vec<u32>` or `Vec<u128>` as the gaps between consecutive
/// keys, each a LEB128 varint, in one byte string: 100,000 clients spread over the IPv4 space
/// travel in ~300 KB rather than 400 KB, dense ranges in ~1 byte a key, IPv6 clients of one
/// prefix in a few bytes each instead of 16. Encoded and decoded by the tight loops below
/// rather than as a serde sequence of integers, which went through postcard's serializer one
/// varint (and one `memcpy` call) at a time: ~1 ms per chunk each way, for a chunk whose whole
/// scan takes ~25 ms.
pub(crate) mod sorted_delta {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    /// A key type the gaps can be written for.
    pub(crate) trait GapKey: Copy + Ord {
        const ZERO: Self;
        /// The most LEB128 bytes a gap takes.
        const MAX_BYTES: usize;
        /// `self - previous`, the gap to `self` from the previous key.
        fn gap_from(self, previous: Self) -> Self;
        /// `self + gap`, if it fits.
        fn after(self, gap: Self) -> Option<Self>;
        /// The low 7 bits.
        fn low7(self) -> u8;
        fn shr7(self) -> Self;
        /// `self | group << shift`, if no bit of `group` falls off the key's width.
        fn with_group(self, group: u8, shift: u32) -> Option<Self>;
    }

    macro_rules! gap_key {
        ($key:ty, $max_bytes:expr) => {
            impl GapKey for $key {
                const ZERO: Self = 0;
                const MAX_BYTES: usize = $max_bytes;
                #[inline(always)]
                fn gap_from(self, previous: Self) -> Self {
                    self.wrapping_sub(previous)
                }
                #[inline(always)]
                fn after(self, gap: Self) -> Option<Self> {
                    self.checked_add(gap)
                }
                #[inline(always)]
                fn low7(self) -> u8 {
                    self as u8 & 0x7F
                }
                #[inline(always)]
                fn shr7(self) -> Self {
                    self >> 7
                }
                #[inline(always)]
                fn with_group(self, group: u8, shift: u32) -> Option<Self> {
                    let group = <$key>::from(group);
                    (shift < <$key>::BITS && (group << shift) >> shift == group)
                        .then(|| self | group << shift)
                }
            }
        };
    }
    gap_key!(u32, 5);
    gap_key!(u128, 19);

    pub(crate) fn serialize<K: GapKey, S: Serializer>(
        keys: &[K],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&encode(keys))
    }

    pub(crate) fn deserialize<'de, K: GapKey, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<K>, D::Error> {
        deserializer.deserialize_bytes(GapsVisitor(PhantomData))
    }

    struct GapsVisitor<K>(PhantomData<K>);

    impl<K: GapKey> Visitor<'_> for GapsVisitor<K> {
        type Value = Vec<K>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string of LEB128 gaps between sorted keys")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<K>, E> {
            decode(bytes).map_err(E::custom)
        }
    }

    /// The gaps (the first key as its gap from 0) as LEB128 varints.
    pub(crate) fn encode<K: GapKey>(keys: &[K]) -> Vec<u8> {
        // At most `MAX_BYTES` a key; writing by index into the zeroed buffer keeps the loop
        // free of capacity checks.
        let mut bytes = vec![0u8; keys.len() * K::MAX_BYTES];
        let mut at = 0;
        let mut previous = K::ZERO;
        for &key in keys {
            let mut gap = key.gap_from(previous);
            previous = key;
            while gap.shr7() != K::ZERO {
                bytes[at] = gap.low7() | 0x80;
                gap = gap.shr7();
                at += 1;
            }
            bytes[at] = gap.low7();
            at += 1;
        }
        bytes.truncate(at);
        bytes
    }

    /// The keys back from [`encode`]'s bytes; an error for anything `encode` cannot produce
    /// from a sorted, deduplicated list (so a corrupt result is refused, never half-believed).
    pub(crate) fn decode<K: GapKey>(bytes: &[u8]) -> Result<Vec<K>, &'static str> {
        // One key per byte whose continuation bit is clear.
        let count = bytes.iter().filter(|&&byte| byte < 0x80).count();
        let mut keys: Vec<K> = Vec::with_capacity(count);
        let mut at = 0;
        while at < bytes.len() {
            let mut gap = K::ZERO;
            let mut shift = 0;
            loop {
                let byte = *bytes.get(at).ok_or("sorted key list ends inside a gap")?;
                at += 1;
                gap = gap
                    .with_group(byte & 0x7F, shift)
                    .ok_or("sorted key list has a gap wider than its keys")?;
                if byte < 0x80 {
                    break;
                }
                shift += 7;
            }
            let key = match keys.last() {
                None => gap,
                Some(_) if gap == K::ZERO => return Err("sorted key list repeats a key"),
                Some(&previous) => previous.after(gap).ok_or("sorted key list overflows")?,
            };
            keys.push(key);
        }
        Ok(keys)
    }
}

/// Serde for a list of byte strings, each as a byte string (serde's `Vec<u8>` is a sequence
/// of `u8`s, which postcard handles one call per byte).
pub(crate) mod byte_strings {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub(crate) fn serialize<S: Serializer>(
        keys: &[Vec<u8>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(keys.len()))?;
        for key in keys {
            seq.serialize_element(Bytes::new(key))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let keys = Vec::<ByteBuf>::deserialize(deserializer)?;
        Ok(keys.into_iter().map(ByteBuf::into_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_keys_sorted_with_counts() {
        let mut keys = ByteKeys::default();
        for key in [&b"b"[..], b"a", b"b", b"\xff", b""] {
            keys.insert(key);
        }
        let (sorted, counts) = keys.into_sorted();
        assert_eq!(
            sorted,
            vec![b"".to_vec(), b"a".to_vec(), b"b".to_vec(), b"\xff".to_vec()]
        );
        assert_eq!(counts, vec![1, 1, 2, 1]);
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Wrapped(#[serde(with = "sorted_delta")] Vec<u32>);

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct WrappedWide(#[serde(with = "sorted_delta")] Vec<u128>);

    #[test]
    fn delta_encoding_round_trips_and_rejects_garbage() {
        let keys = Wrapped(vec![0, 1, 7, 127, 128, 1000, 1 << 28, u32::MAX]);
        let bytes = postcard::to_stdvec(&keys).unwrap();
        assert_eq!(postcard::from_bytes::<Wrapped>(&bytes).unwrap(), keys);
        let empty = postcard::to_stdvec(&Wrapped(Vec::new())).unwrap();
        assert_eq!(
            postcard::from_bytes::<Wrapped>(&empty).unwrap().0,
            Vec::<u32>::new()
        );
        // postcard keeps no text of a custom error: the reasons are checked on `decode`.
        let refused = |gaps: &[u8], reason: &str| {
            let bytes = postcard::to_stdvec(&serde_bytes_of(gaps)).unwrap();
            assert!(postcard::from_bytes::<Wrapped>(&bytes).is_err(), "{gaps:?}");
            let error = sorted_delta::decode::<u32>(gaps).unwrap_err();
            assert!(error.contains(reason), "{gaps:?}: {error}");
        };
        refused(&[5, 0], "repeats");
        refused(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 1], "overflows");
        refused(&[0x80, 0x80, 0x80, 0x80, 0x10], "wider than its keys");
        refused(&[0x80], "ends inside");
    }

    /// A byte string as postcard writes one (what `serialize_bytes` produces).
    fn serde_bytes_of(bytes: &[u8]) -> impl serde::Serialize + '_ {
        struct Bytes<'a>(&'a [u8]);
        impl serde::Serialize for Bytes<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bytes(bytes)
    }

    proptest::proptest! {
        #[test]
        fn delta_encoding_round_trips_any_sorted_set(
            keys in proptest::collection::btree_set(
                proptest::prop_oneof![0u32..300, proptest::num::u32::ANY],
                0..500,
            ),
        ) {
            let keys: Vec<u32> = keys.into_iter().collect();
            let bytes = sorted_delta::encode(&keys);
            proptest::prop_assert_eq!(sorted_delta::decode(&bytes), Ok(keys));
        }

        #[test]
        fn delta_encoding_round_trips_wide_keys(
            keys in proptest::collection::btree_set(
                proptest::prop_oneof![0u128..300, (u128::MAX - 300)..=u128::MAX, proptest::num::u128::ANY],
                0..300,
            ),
        ) {
            let keys = WrappedWide(keys.into_iter().collect());
            let bytes = postcard::to_stdvec(&keys).unwrap();
            proptest::prop_assert_eq!(postcard::from_bytes::<WrappedWide>(&bytes).unwrap(), keys);
        }
    }
}
