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

use super::lanes;

/// Keys gathered before they are inserted into the table: small enough to stay in L1, long
/// enough that each key's slot can be prefetched [`PREFETCH_DISTANCE`] keys ahead.
const BATCH: usize = 4096;
/// Room in the batch beyond [`BATCH`]: the hot loop pushes a 64-byte block's keys (at most 64)
/// before it checks the batch.
const BATCH_SLACK: usize = 64;
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
/// Slots past the last home slot. Probes run forward and never wrap, so the 8 slots from any
/// home slot are one unaligned window (see [`lanes::key_and_empty_masks`]); a probe run that
/// reaches the end adds this many more (so the tail holds at most the keys of that run, plus
/// this many empty slots).
const OVERFLOW_SLOTS: usize = 64;

/// Distinct packed IPv4 keys (optionally with counts): an open-addressing `u32` set (linear
/// probing without wrap-around, multiplicative hash, at most 3/4 full) fed through a small
/// batch so that every key's slot is prefetched well before it is probed. A probe compares the
/// 8 slots from the key's home slot at once and takes the first that holds the key or is
/// empty: no branch on the outcome, which was a coin flip per line (a new key or a repeat, the
/// key at its home slot or further on) and mispredicted on half the lines. Sorted once, at
/// the end of the chunk.
///
/// Memory is bounded by the distinct keys, not the lines: the table holds at most 8/3 home slots
/// per distinct key (at least 64 Ki) plus a tail of at most one slot per key and
/// [`OVERFLOW_SLOTS`], so a multi-GB `.gz` costs what its clients cost.
#[derive(Debug)]
pub(crate) struct PackedKeys {
    batch: Vec<u32>,
    /// `2^table_bits` home slots, then at least [`OVERFLOW_SLOTS`] more.
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
        let mut table = SPARE.with(|spare| spare.table.take());
        let table_bits = table
            .len()
            .saturating_sub(OVERFLOW_SLOTS)
            .checked_ilog2()
            .unwrap_or(0)
            .max(MIN_TABLE_BITS);
        let slots = (1 << table_bits) + OVERFLOW_SLOTS;
        table.clear();
        table.resize(slots, EMPTY);
        Self {
            batch: Vec::with_capacity(BATCH + BATCH_SLACK),
            counts: with_counts.then(|| vec![0; slots]),
            table_bits,
            table,
            len: 0,
            zeros: 0,
            multiplier: RandomState::new().hash_one(0u8) as u32 | 1,
        }
    }

    /// Adds one occurrence of `key`.
    #[inline]
    pub(crate) fn insert(&mut self, key: u32) {
        self.push(key);
        self.flush_if_full();
    }

    /// Adds one occurrence of `key` to the batch only: the caller calls [`Self::flush_if_full`]
    /// at least every [`BATCH_SLACK`] pushes, or the batch reallocates.
    #[inline(always)]
    pub(crate) fn push(&mut self, key: u32) {
        self.batch.push(key);
    }

    /// Inserts the batch into the table if it holds [`BATCH`] keys or more.
    #[inline(always)]
    pub(crate) fn flush_if_full(&mut self) {
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    /// Inserts the batch into the table, prefetching each key's slot ahead of its probe.
    #[cold]
    fn flush(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        // In locals: the table's stores could alias `self` as far as the compiler knows, so
        // reading the fields per key reloaded them (measured: ~2% of CPU).
        let multiplier = self.multiplier;
        let mut shift = 32 - self.table_bits;
        for (index, &key) in batch.iter().enumerate() {
            if let Some(&ahead) = batch.get(index + PREFETCH_DISTANCE) {
                prefetch(
                    &self.table,
                    (ahead.wrapping_mul(multiplier) >> shift) as usize,
                );
            }
            if self.insert_one(key, (key.wrapping_mul(multiplier) >> shift) as usize) {
                shift = 32 - self.table_bits;
            }
        }
        self.batch = batch;
        self.batch.clear();
    }

    /// Adds `key`, whose home slot is `home`. Returns whether the table grew (and so the home
    /// slots of later keys moved).
    #[inline]
    fn insert_one(&mut self, key: u32, home: usize) -> bool {
        if key == EMPTY {
            self.zeros += 1;
            return false;
        }
        let window: &[u32; 8] = self.table[home..home + 8]
            .try_into()
            .expect("a home slot has 8 slots after it");
        let (found, empty) = lanes::key_and_empty_masks(window, key);
        // Linear probing without deletions: the key, if present, lies before the first empty
        // slot of its run, so the first slot holding the key or empty is where it belongs.
        let first = found | empty;
        let slot = if first != 0 {
            let offset = first.trailing_zeros();
            self.len += ((empty >> offset) & 1) as usize;
            home + offset as usize
        } else {
            self.probe_past_window(key, home)
        };
        // A repeat stores the key over itself: one store instead of a branch.
        self.table[slot] = key;
        if let Some(counts) = &mut self.counts {
            counts[slot] += 1;
        }
        // At most 3/4 full: the smaller table (512 KiB for 100,000 clients) stays in L2, which
        // measured 4% less CPU than at most half full despite longer probes.
        if self.len * 4 > (1 << self.table_bits) * 3 {
            self.grow();
            return true;
        }
        false
    }

    #[cfg(test)]
    fn home(&self, key: u32) -> usize {
        (key.wrapping_mul(self.multiplier) >> (32 - self.table_bits)) as usize
    }

    /// The rare probe beyond the first 8 slots: the slot holding `key`, or the first empty one
    /// (then counted as occupied), adding slots at the end if the run reaches it.
    #[cold]
    fn probe_past_window(&mut self, key: u32, home: usize) -> usize {
        let (slot, new) = place(&mut self.table, &mut self.counts, home + 8, key);
        self.len += usize::from(new);
        slot
    }

    /// Doubles the home slots and re-inserts every key (with its count).
    #[cold]
    fn grow(&mut self) {
        self.table_bits += 1;
        let slots = (1 << self.table_bits) + OVERFLOW_SLOTS;
        let old_table = std::mem::replace(&mut self.table, vec![EMPTY; slots]);
        let old_counts = self.counts.take();
        let mut counts = old_counts.as_ref().map(|_| vec![0u64; slots]);
        let shift = 32 - self.table_bits;
        for (index, &key) in old_table.iter().enumerate() {
            if key == EMPTY {
                continue;
            }
            let home = (key.wrapping_mul(self.multiplier) >> shift) as usize;
            let (slot, _) = place(&mut self.table, &mut counts, home, key);
            if let (Some(counts), Some(old)) = (&mut counts, &old_counts) {
                counts[slot] = old[index];
            }
        }
        self.counts = counts;
    }

    /// The keys, sorted ascending, and their counts in the same order if counted.
    pub(crate) fn into_sorted(mut self) -> (Vec<u32>, Option<Vec<u64>>) {
        if !self.batch.is_empty() {
            self.flush();
        }
        let zero = (self.zeros > 0).then_some(0u32);
        match self.counts.take() {
            None => {
                let mut keys = Vec::with_capacity(self.len + 1);
                keys.extend(zero);
                keys.extend(self.table.iter().copied().filter(|&key| key != EMPTY));
                let mut scratch = SPARE.with(|spare| spare.scratch.take());
                radix_sort(&mut keys, &mut scratch);
                let _ = SPARE.try_with(|spare| spare.scratch.set(scratch));
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

/// Buffers a thread keeps between sets (see [`SPARE`]).
struct Spare {
    table: std::cell::Cell<Vec<u32>>,
    /// The radix sort's scratch space.
    scratch: std::cell::Cell<Vec<u32>>,
}

/// The first slot from `from` on that holds `key` or is empty, and whether it was empty (and so
/// now holds `key`); a probe run that reaches the end of the table adds [`OVERFLOW_SLOTS`].
fn place(
    table: &mut Vec<u32>,
    counts: &mut Option<Vec<u64>>,
    from: usize,
    key: u32,
) -> (usize, bool) {
    let slot = match table[from..]
        .iter()
        .position(|&held| held == key || held == EMPTY)
    {
        Some(offset) => from + offset,
        None => {
            let end = table.len();
            table.resize(end + OVERFLOW_SLOTS, EMPTY);
            if let Some(counts) = counts {
                counts.resize(end + OVERFLOW_SLOTS, 0);
            }
            end
        }
    };
    let new = table[slot] == EMPTY;
    table[slot] = key;
    (slot, new)
}

thread_local! {
    /// The buffers of the last set this thread dropped, for the next one: a worker's next chunk
    /// then starts at the table size the last one reached, in memory already mapped, instead
    /// of growing from 64 Ki slots through fresh pages (two rehashes and ~450 page faults,
    /// ~0.5 ms a chunk), and sorts without mapping a fresh scratch buffer. So a thread keeps
    /// at most its largest table and key list besides the live ones.
    static SPARE: Spare = const {
        Spare {
            table: std::cell::Cell::new(Vec::new()),
            scratch: std::cell::Cell::new(Vec::new()),
        }
    };
}

impl Drop for PackedKeys {
    fn drop(&mut self) {
        let table = std::mem::take(&mut self.table);
        // `try_with`: during thread teardown the slot may be gone; the table is then freed.
        let _ = SPARE.try_with(|spare| spare.table.set(table));
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

/// Serde for a sorted, deduplicated `Vec<u32>` as the gaps between consecutive keys, each a
/// LEB128 varint, in one byte string: 100,000 clients spread over the address space travel in
/// ~300 KB rather than 400 KB, dense ranges in ~1 byte a key. Encoded and decoded by the tight
/// loops below rather than as a serde sequence of `u32`s, which went through postcard's
/// serializer one varint (and one `memcpy` call) at a time: ~1 ms per chunk each way, for a
/// chunk whose whole scan takes ~25 ms.
pub(crate) mod sorted_u32_delta {
    use std::fmt;

    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(keys: &[u32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&encode(keys))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u32>, D::Error> {
        deserializer.deserialize_bytes(GapsVisitor)
    }

    struct GapsVisitor;

    impl Visitor<'_> for GapsVisitor {
        type Value = Vec<u32>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string of LEB128 gaps between sorted u32 keys")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u32>, E> {
            decode(bytes).map_err(E::custom)
        }
    }

    /// The gaps (the first key as its gap from 0) as LEB128 varints.
    pub(crate) fn encode(keys: &[u32]) -> Vec<u8> {
        // At most 5 bytes a key; writing by index into the zeroed buffer keeps the loop free of
        // capacity checks.
        let mut bytes = vec![0u8; keys.len() * 5];
        let mut at = 0;
        let mut previous = 0u32;
        for &key in keys {
            let mut gap = key.wrapping_sub(previous);
            previous = key;
            while gap >= 0x80 {
                bytes[at] = gap as u8 | 0x80;
                gap >>= 7;
                at += 1;
            }
            bytes[at] = gap as u8;
            at += 1;
        }
        bytes.truncate(at);
        bytes
    }

    /// The keys back from [`encode`]'s bytes; an error for anything `encode` cannot produce
    /// from a sorted, deduplicated list (so a corrupt result is refused, never half-believed).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<u32>, &'static str> {
        // One key per byte whose continuation bit is clear.
        let count = bytes.iter().filter(|&&byte| byte < 0x80).count();
        let mut keys = Vec::with_capacity(count);
        let mut at = 0;
        while at < bytes.len() {
            let mut gap = 0u32;
            let mut shift = 0;
            loop {
                let byte = *bytes.get(at).ok_or("sorted key list ends inside a gap")?;
                at += 1;
                if shift == 28 && byte > 0x0F {
                    return Err("sorted key list has a gap beyond u32");
                }
                gap |= u32::from(byte & 0x7F) << shift;
                if byte < 0x80 {
                    break;
                }
                shift += 7;
            }
            let key = match keys.last() {
                None => gap,
                Some(_) if gap == 0 => return Err("sorted key list repeats a key"),
                Some(&previous) => {
                    u32::checked_add(previous, gap).ok_or("sorted key list overflows u32")?
                }
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

    /// Keys whose home slot is `home` in a table of `2^bits` home slots under `multiplier`.
    fn keys_at_home(multiplier: u32, bits: u32, home: u32, count: u32) -> Vec<u32> {
        // The inverse of the odd multiplier mod 2^32 (Newton's iteration doubles the bits).
        let mut inverse = multiplier;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u32.wrapping_sub(multiplier.wrapping_mul(inverse)));
        }
        assert_eq!(multiplier.wrapping_mul(inverse), 1);
        (0..count)
            .map(|j| ((home << (32 - bits)) + j).wrapping_mul(inverse))
            .collect()
    }

    #[test]
    fn long_probe_runs_and_runs_off_the_end() {
        for home_from_end in [1u32, 40, 5000] {
            for with_counts in [false, true] {
                let mut set = PackedKeys::new(with_counts);
                let bits = set.table_bits;
                let home = (1 << bits) - home_from_end;
                // 100 keys on one home slot: past the 8-slot window, and (near the end) past
                // the overflow slots.
                let mut keys = keys_at_home(set.multiplier, bits, home, 100);
                for &key in &keys {
                    assert_eq!(set.home(key), home as usize);
                }
                keys.extend(keys.clone());
                keys.extend([0, 5, 0]);
                for &key in &keys {
                    set.insert(key);
                }
                // A long run adds slots at the end; it does not grow the table.
                assert_eq!(set.table_bits, bits);
                assert!(set.table.len() <= (1 << bits) + 2 * OVERFLOW_SLOTS + 100);
                let (sorted, counts) = set.into_sorted();
                let expected = reference(&keys);
                assert_eq!(sorted, expected.keys().copied().collect::<Vec<_>>());
                assert_eq!(
                    counts,
                    with_counts.then(|| expected.values().copied().collect::<Vec<_>>())
                );
            }
        }
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

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Wrapped(#[serde(with = "sorted_u32_delta")] Vec<u32>);

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
            let error = sorted_u32_delta::decode(gaps).unwrap_err();
            assert!(error.contains(reason), "{gaps:?}: {error}");
        };
        refused(&[5, 0], "repeats");
        refused(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 1], "overflows");
        refused(&[0x80, 0x80, 0x80, 0x80, 0x10], "beyond u32");
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
            let bytes = sorted_u32_delta::encode(&keys);
            proptest::prop_assert_eq!(sorted_u32_delta::decode(&bytes), Ok(keys));
        }
    }
}
