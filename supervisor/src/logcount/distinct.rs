//! Distinct counting: an open-addressing set of packed IPv4 keys tuned for the hot loop, a map
//! for the rare byte-string keys, and the sorted-vector form both travel in and are merged in.
//!
//! Why not `HashSet<Vec<u8>>`: one allocation and a SipHash of ~10 bytes per line made a
//! straightforward version only ~2x Python. Here a line whose key is a dotted quad costs an
//! append to a small batch whose keys then go into a `u32` open-addressing set, each slot
//! prefetched well ahead of its probe; the set is sorted once, at the end of a chunk.
//! Partial results leave a chunk as sorted, deduplicated vectors: small (delta-encoded on the
//! wire, see [`sorted_u32_delta`]) and merged by linear unions rather than rehashing.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// Keys gathered before they are inserted into the table: small enough to stay in L1, long
/// enough that each key's slot can be prefetched [`PREFETCH_DISTANCE`] keys ahead.
const BATCH: usize = 4096;
/// How many keys ahead of the insert the table slot is prefetched: the table (512 KiB for
/// 100,000 clients) misses L1, and without the prefetch every probe waited for the cache.
const PREFETCH_DISTANCE: usize = 32;
/// Radix digit width: 3 passes of 11 bits cover a `u32` with 2,048-entry (L1-sized) histograms.
const RADIX_BITS: u32 = 11;
const RADIX_BUCKETS: usize = 1 << RADIX_BITS;
const RADIX_PASSES: usize = 3;
/// Smallest table: 64 Ki slots (256 KiB); starting smaller only added rehashes.
const MIN_TABLE_BITS: u32 = 16;
/// Marks an empty slot; the key 0 itself is counted beside the table.
const EMPTY: u32 = 0;

/// Distinct packed IPv4 keys (optionally with counts): an open-addressing `u32` set (linear
/// probing, multiplicative hash, at most 3/4 full) fed through a small batch so that every
/// key's slot is prefetched well before it is probed. Sorted once, at the end of the chunk.
///
/// Memory is bounded by the distinct keys, not the lines: the table holds at most 8/3 slots per
/// distinct key (at least 64 Ki), so a multi-GB `.gz` costs what its clients cost.
#[derive(Debug)]
pub(crate) struct PackedKeys {
    batch: Vec<u32>,
    table: Vec<u32>,
    /// Per slot of `table`, when counting.
    counts: Option<Vec<u64>>,
    /// Occupied slots.
    len: usize,
    table_bits: u32,
    /// Occurrences of the key 0 (which `EMPTY` cannot store).
    zeros: u64,
    /// Odd, random per set: client keys can be attacker-chosen (X-Forwarded-For), and with a
    /// fixed multiplier a crafted set of addresses could pile into one probe run.
    multiplier: u32,
}

impl PackedKeys {
    pub(crate) fn new(with_counts: bool) -> Self {
        let slots = 1 << MIN_TABLE_BITS;
        Self {
            batch: Vec::with_capacity(BATCH),
            table: vec![EMPTY; slots],
            counts: with_counts.then(|| vec![0; slots]),
            len: 0,
            table_bits: MIN_TABLE_BITS,
            zeros: 0,
            multiplier: RandomState::new().hash_one(0u8) as u32 | 1,
        }
    }

    /// Adds one occurrence of `key`.
    #[inline]
    pub(crate) fn insert(&mut self, key: u32) {
        self.batch.push(key);
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    #[inline]
    fn slot(&self, key: u32) -> usize {
        (key.wrapping_mul(self.multiplier) >> (32 - self.table_bits)) as usize
    }

    /// Inserts the batch into the table, prefetching each key's slot ahead of its probe.
    #[cold]
    fn flush(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        // In locals: the table's stores could alias `self` as far as the compiler knows, so
        // reading the fields per key reloaded them (measured: ~2% of CPU).
        let (multiplier, shift) = (self.multiplier, 32 - self.table_bits);
        for (index, &key) in batch.iter().enumerate() {
            if let Some(&ahead) = batch.get(index + PREFETCH_DISTANCE) {
                prefetch(
                    &self.table,
                    (ahead.wrapping_mul(multiplier) >> shift) as usize,
                );
            }
            self.insert_one(key);
        }
        self.batch = batch;
        self.batch.clear();
    }

    #[inline]
    fn insert_one(&mut self, key: u32) {
        if key == EMPTY {
            self.zeros += 1;
            return;
        }
        let mask = self.table.len() - 1;
        let mut slot = self.slot(key);
        loop {
            let held = self.table[slot];
            if held == key {
                break;
            }
            if held == EMPTY {
                self.table[slot] = key;
                self.len += 1;
                break;
            }
            slot = (slot + 1) & mask;
        }
        if let Some(counts) = &mut self.counts {
            counts[slot] += 1;
        }
        // At most 3/4 full: the smaller table (512 KiB for 100,000 clients) stays in L2, which
        // measured 4% less CPU than at most half full despite longer probes.
        if self.len * 4 > self.table.len() * 3 {
            self.grow();
        }
    }

    #[cold]
    fn grow(&mut self) {
        self.table_bits += 1;
        let slots = 1 << self.table_bits;
        let old_table = std::mem::replace(&mut self.table, vec![EMPTY; slots]);
        let old_counts = self.counts.replace(vec![0; slots]);
        let mask = slots - 1;
        for (index, &key) in old_table.iter().enumerate() {
            if key == EMPTY {
                continue;
            }
            let mut slot = self.slot(key);
            while self.table[slot] != EMPTY {
                slot = (slot + 1) & mask;
            }
            self.table[slot] = key;
            if let (Some(counts), Some(old)) = (&mut self.counts, &old_counts) {
                counts[slot] = old[index];
            }
        }
        if old_counts.is_none() {
            self.counts = None;
        }
    }

    /// The keys, sorted ascending, and their counts in the same order if counted.
    pub(crate) fn into_sorted(mut self) -> (Vec<u32>, Option<Vec<u64>>) {
        if !self.batch.is_empty() {
            self.flush();
        }
        let zero = (self.zeros > 0).then_some(0u32);
        match self.counts.take() {
            None => {
                let mut keys: Vec<u32> = zero
                    .into_iter()
                    .chain(self.table.iter().copied().filter(|&key| key != EMPTY))
                    .collect();
                radix_sort(&mut keys, &mut Vec::new());
                (keys, None)
            }
            Some(counts) => {
                let mut pairs: Vec<(u32, u64)> = zero
                    .map(|zero| (zero, self.zeros))
                    .into_iter()
                    .chain(
                        self.table
                            .iter()
                            .zip(&counts)
                            .filter(|(&key, _)| key != EMPTY)
                            .map(|(&key, &count)| (key, count)),
                    )
                    .collect();
                pairs.sort_unstable_by_key(|&(key, _)| key);
                let (keys, counts) = pairs.into_iter().unzip();
                (keys, Some(counts))
            }
        }
    }
}

/// Starts loading `table[slot]` into cache ahead of its probe (measured: a plain load kept
/// alive by `black_box` instead cost 2% more CPU in all).
#[cfg(target_arch = "x86_64")]
#[inline]
fn prefetch(table: &[u32], slot: usize) {
    let address = table[slot..].as_ptr().cast();
    // SAFETY: `_mm_prefetch` needs only SSE, which every x86_64 CPU has; a prefetch is a hint
    // that never faults and never changes memory (the address is in bounds anyway).
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address) };
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn prefetch(_table: &[u32], _slot: usize) {}

/// LSD radix sort of `keys` in 3 passes of 11 bits; `scratch` is reused between calls.
/// A pass whose digit is the same for every key is skipped.
fn radix_sort(keys: &mut Vec<u32>, scratch: &mut Vec<u32>) {
    let mut histograms = [[0usize; RADIX_BUCKETS]; RADIX_PASSES];
    for &key in keys.iter() {
        for (pass, histogram) in histograms.iter_mut().enumerate() {
            histogram[digit(key, pass)] += 1;
        }
    }
    scratch.clear();
    scratch.resize(keys.len(), 0);
    for (pass, histogram) in histograms.iter_mut().enumerate() {
        if histogram.contains(&keys.len()) {
            continue;
        }
        let mut offset = 0;
        for slot in histogram.iter_mut() {
            let n = *slot;
            *slot = offset;
            offset += n;
        }
        for &key in keys.iter() {
            let slot = &mut histogram[digit(key, pass)];
            scratch[*slot] = key;
            *slot += 1;
        }
        std::mem::swap(keys, scratch);
    }
}

#[inline]
fn digit(key: u32, pass: usize) -> usize {
    ((key >> (RADIX_BITS * pass as u32)) as usize) & (RADIX_BUCKETS - 1)
}

/// Byte-string keys (anything that is not a canonical dotted quad) with their counts. Rare in
/// real logs, so std's hasher is fine; lookups by `&[u8]` allocate only for a new key.
#[derive(Debug, Default)]
pub(crate) struct ByteKeys {
    counts: HashMap<Box<[u8]>, u64>,
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

/// The union of sorted, deduplicated vectors, sorted and deduplicated: pairwise merges in a
/// balanced tree, O(n log k) with sequential memory access.
pub(crate) fn union_sorted<T: Ord>(mut parts: Vec<Vec<T>>) -> Vec<T> {
    while parts.len() > 1 {
        let mut next = Vec::with_capacity(parts.len().div_ceil(2));
        let mut iter = parts.into_iter();
        while let Some(a) = iter.next() {
            next.push(match iter.next() {
                Some(b) => union_two(a, b),
                None => a,
            });
        }
        parts = next;
    }
    parts.pop().unwrap_or_default()
}

fn union_two<T: Ord>(a: Vec<T>, b: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => {
                    b.next();
                    true
                }
            },
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
}

/// Serde for a sorted, deduplicated `Vec<u32>` as the gaps between consecutive keys: postcard
/// writes each gap as a varint, so 100,000 clients spread over the address space travel in
/// ~300 KB rather than 400 KB, and dense ranges in ~1 byte a key.
pub(crate) mod sorted_u32_delta {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(keys: &[u32], serializer: S) -> Result<S::Ok, S::Error> {
        let mut previous = 0u32;
        let gaps: Vec<u32> = keys
            .iter()
            .map(|&key| {
                let gap = key.wrapping_sub(previous);
                previous = key;
                gap
            })
            .collect();
        gaps.serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u32>, D::Error> {
        let gaps = Vec::<u32>::deserialize(deserializer)?;
        let mut keys = Vec::with_capacity(gaps.len());
        let mut previous: Option<u32> = None;
        for gap in gaps {
            let key = match previous {
                None => gap,
                Some(previous) if gap > 0 => previous
                    .checked_add(gap)
                    .ok_or_else(|| D::Error::custom("sorted key list overflows u32"))?,
                Some(_) => return Err(D::Error::custom("sorted key list repeats a key")),
            };
            keys.push(key);
            previous = Some(key);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn reference(keys: &[u32]) -> BTreeMap<u32, u64> {
        let mut map = BTreeMap::new();
        for &key in keys {
            *map.entry(key).or_insert(0) += 1;
        }
        map
    }

    #[test]
    fn packed_keys_count_through_many_flushes() {
        let keys: Vec<u32> = (0..200_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) % 70_001)
            .chain([0, 0, u32::MAX, 1])
            .collect();
        let mut set = PackedKeys::new(true);
        for &key in &keys {
            set.insert(key);
        }
        let (sorted, counts) = set.into_sorted();
        let expected = reference(&keys);
        assert_eq!(sorted, expected.keys().copied().collect::<Vec<_>>());
        assert_eq!(
            counts.unwrap(),
            expected.values().copied().collect::<Vec<_>>()
        );
    }

    #[test]
    fn packed_keys_without_counts_are_sorted_distinct() {
        let mut set = PackedKeys::new(false);
        for key in [5, 3, 5, 0, 9, 3, 0] {
            set.insert(key);
        }
        assert_eq!(set.into_sorted(), (vec![0, 3, 5, 9], None));
        let keys: Vec<u32> = (0..300_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let mut set = PackedKeys::new(false);
        for &key in keys.iter().chain(&keys) {
            set.insert(key);
        }
        let mut expected = keys;
        expected.sort_unstable();
        assert_eq!(set.into_sorted(), (expected, None));
    }

    proptest::proptest! {
        #[test]
        fn packed_keys_match_a_naive_count(
            // Small keys repeat (and include 0, which the table cannot hold); any `u32` mostly
            // does not: both ends of the probe logic.
            keys in proptest::collection::vec(
                proptest::prop_oneof![0u32..64, proptest::num::u32::ANY],
                0..3000,
            ),
            with_counts in proptest::bool::ANY,
        ) {
            let mut set = PackedKeys::new(with_counts);
            for &key in &keys {
                set.insert(key);
            }
            let (sorted, counts) = set.into_sorted();
            let expected = reference(&keys);
            proptest::prop_assert_eq!(sorted, expected.keys().copied().collect::<Vec<_>>());
            proptest::prop_assert_eq!(
                counts,
                with_counts.then(|| expected.values().copied().collect::<Vec<_>>())
            );
        }
    }

    #[test]
    fn radix_sort_sorts() {
        let mut keys: Vec<u32> = (0..10_000u32)
            .map(|i| i.wrapping_mul(0x9E37_79B1) ^ (i >> 3))
            .collect();
        keys.extend([0, u32::MAX, 7, 7]);
        let mut expected = keys.clone();
        expected.sort_unstable();
        radix_sort(&mut keys, &mut Vec::new());
        assert_eq!(keys, expected);
        let mut same = vec![42u32; 100];
        radix_sort(&mut same, &mut Vec::new());
        assert_eq!(same, vec![42u32; 100]);
    }

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

    #[test]
    fn union_of_sorted_parts() {
        let parts = vec![vec![1, 4, 9], vec![], vec![2, 4, 10], vec![1], vec![0, 11]];
        assert_eq!(union_sorted(parts), vec![0, 1, 2, 4, 9, 10, 11]);
        assert_eq!(union_sorted::<u32>(vec![]), Vec::<u32>::new());
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Wrapped(#[serde(with = "sorted_u32_delta")] Vec<u32>);

    #[test]
    fn delta_encoding_round_trips_and_rejects_garbage() {
        let keys = Wrapped(vec![0, 1, 7, 1000, u32::MAX]);
        let bytes = postcard::to_stdvec(&keys).unwrap();
        assert_eq!(postcard::from_bytes::<Wrapped>(&bytes).unwrap(), keys);
        let repeated = postcard::to_stdvec(&vec![5u32, 0]).unwrap();
        assert!(postcard::from_bytes::<Wrapped>(&repeated).is_err());
        let overflow = postcard::to_stdvec(&vec![u32::MAX, 1]).unwrap();
        assert!(postcard::from_bytes::<Wrapped>(&overflow).is_err());
    }
}
