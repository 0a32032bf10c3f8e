//! Distinct counting: an open-addressing set of packed IPv4 keys tuned for the hot loop, a map
//! for the rare byte-string keys, and the sorted-vector form both travel in and are merged in.
//!
//! Why not `HashSet<Vec<u8>>`: one allocation and a SipHash of ~10 bytes per line made a
//! straightforward version only ~2x Python. Here a line whose key is a dotted quad costs one
//! multiply and (for a few hundred thousand clients) an L2-resident probe in a `Vec<u32>`.
//! Partial results leave a chunk as sorted, deduplicated vectors: small (delta-encoded on the
//! wire, see [`sorted_u32_delta`]) and merged by linear unions rather than rehashing.

use std::collections::HashMap;

/// Fibonacci hashing constant (2^32 / golden ratio, odd): spreads the low, fast-varying octets
/// of an address over the high bits that pick the slot.
const FIBONACCI_32: u32 = 0x9E37_79B1;
/// Initial slots (64 KiB): a chunk with few clients stays in L1/L2.
const INITIAL_SLOTS_LOG2: u32 = 14;

/// A set of `u32` keys, optionally with a count per key, by linear probing. Slot value 0 marks
/// an empty slot, so key 0 (`0.0.0.0`) is held apart in `zero`.
#[derive(Debug)]
pub(crate) struct U32Set {
    slots: Vec<u32>,
    counts: Option<Vec<u64>>,
    shift: u32,
    len: usize,
    zero: Option<u64>,
}

impl U32Set {
    pub(crate) fn new(with_counts: bool) -> Self {
        let slots = 1usize << INITIAL_SLOTS_LOG2;
        Self {
            slots: vec![0; slots],
            counts: with_counts.then(|| vec![0; slots]),
            shift: 32 - INITIAL_SLOTS_LOG2,
            len: 0,
            zero: None,
        }
    }

    #[inline]
    fn slot_of(&self, key: u32) -> usize {
        (key.wrapping_mul(FIBONACCI_32) >> self.shift) as usize
    }

    /// Adds one occurrence of `key`.
    #[inline]
    pub(crate) fn insert(&mut self, key: u32) {
        if key == 0 {
            *self.zero.get_or_insert(0) += 1;
            return;
        }
        let mask = self.slots.len() - 1;
        let mut at = self.slot_of(key);
        loop {
            let slot = self.slots[at];
            if slot == key {
                if let Some(counts) = &mut self.counts {
                    counts[at] += 1;
                }
                return;
            }
            if slot == 0 {
                self.slots[at] = key;
                if let Some(counts) = &mut self.counts {
                    counts[at] = 1;
                }
                self.len += 1;
                // Load factor <= 1/2 keeps probe runs short.
                if self.len * 2 > self.slots.len() {
                    self.grow();
                }
                return;
            }
            at = (at + 1) & mask;
        }
    }

    #[cold]
    fn grow(&mut self) {
        let old_slots = std::mem::take(&mut self.slots);
        let old_counts = self.counts.take();
        let new_len = old_slots.len() * 2;
        self.slots = vec![0; new_len];
        self.counts = old_counts.as_ref().map(|_| vec![0; new_len]);
        self.shift -= 1;
        let mask = new_len - 1;
        for (index, key) in old_slots.into_iter().enumerate() {
            if key == 0 {
                continue;
            }
            let mut at = self.slot_of(key);
            while self.slots[at] != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = key;
            if let (Some(new), Some(old)) = (&mut self.counts, &old_counts) {
                new[at] = old[index];
            }
        }
    }

    /// The keys, sorted ascending, and their counts in the same order if counted.
    pub(crate) fn into_sorted(self) -> (Vec<u32>, Option<Vec<u64>>) {
        let Self {
            slots,
            counts,
            zero,
            ..
        } = self;
        match counts {
            None => {
                let mut keys: Vec<u32> = zero.map(|_| 0).into_iter().collect();
                keys.extend(slots.into_iter().filter(|&key| key != 0));
                keys.sort_unstable();
                (keys, None)
            }
            Some(counts) => {
                let mut pairs: Vec<(u32, u64)> = zero.map(|count| (0, count)).into_iter().collect();
                pairs.extend(slots.into_iter().zip(counts).filter(|&(key, _)| key != 0));
                pairs.sort_unstable_by_key(|&(key, _)| key);
                let (keys, counts) = pairs.into_iter().unzip();
                (keys, Some(counts))
            }
        }
    }
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
    fn u32_set_counts_through_growth_and_zero() {
        let keys: Vec<u32> = (0..200_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) % 70_001)
            .chain([0, 0, u32::MAX, 1])
            .collect();
        let mut set = U32Set::new(true);
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
    fn u32_set_without_counts_is_sorted_distinct() {
        let mut set = U32Set::new(false);
        for key in [5, 3, 5, 0, 9, 3, 0] {
            set.insert(key);
        }
        assert_eq!(set.into_sorted(), (vec![0, 3, 5, 9], None));
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
