//! The distinct-key set of the hot loop: an open-addressing set of packed keys (`u32` dotted
//! quads, `u128` IPv6 addresses), fed through a small batch so that every key's slot is
//! prefetched well before it is probed, and sorted once, at the end of a chunk.
//!
//! Why not a `HashSet<Vec<u8>>`: one allocation and a SipHash of ~10 bytes per line made a
//! straightforward version only ~2x Python. Here a line costs an append to the batch; a full
//! batch goes into the table with each slot prefetched 32 keys ahead, so the probes (into a
//! table that misses L1, and for IPv6 L2) do not wait for the cache.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

use super::lanes;

/// Keys gathered before they are inserted into the table: small enough to stay in L1, long
/// enough that each key's slot can be prefetched [`PREFETCH_DISTANCE`] keys ahead.
const BATCH: usize = 4096;
/// Room in the batch beyond [`BATCH`]: the hot loop pushes a 64-byte block's keys (at most 64)
/// before it checks the batch.
const BATCH_SLACK: usize = 64;
/// How many keys ahead of the insert the table slot is prefetched: the table (512 KiB for
/// 100,000 IPv4 clients) misses L1, and without the prefetch every probe waited for the cache.
const PREFETCH_DISTANCE: usize = 32;
/// Radix digit width: 3 passes of 11 bits cover a `u32` with 2,048-entry (L1-sized) histograms.
const RADIX_BITS: u32 = 11;
const RADIX_BUCKETS: usize = 1 << RADIX_BITS;
const RADIX_PASSES: usize = 3;
/// Input bytes per distinct key assumed when a set is sized for its input
/// ([`KeySet::sized_for`]): access log lines are 100-300 bytes, and every line of a small file
/// may be a new client.
const BYTES_PER_KEY_HINT: u64 = 64;
/// The smallest table a size hint gives: 16 home slots.
const MIN_HINTED_TABLE_BITS: u32 = 4;
/// Below this many keys a comparison sort beats the radix sort, whose histograms alone are
/// 48 KiB to clear and scan.
const RADIX_SORT_FROM: usize = 2048;
/// Slots past the last home slot. Probes run forward and never wrap, so the 8 slots from any
/// home slot are one window (see [`SlotKey::window_masks`]); a probe run that reaches the end
/// adds this many more (so the tail holds at most the keys of that run, plus this many empty
/// slots).
const OVERFLOW_SLOTS: usize = 64;

/// A key type the set can hold. The key 0 marks an empty slot (the key 0 itself is counted
/// beside the table).
pub(crate) trait SlotKey: Copy + Ord + Default + std::fmt::Debug {
    /// Per-set random hashing state: client keys can be attacker-chosen (X-Forwarded-For), and
    /// with a fixed hash a crafted set of addresses could pile into one probe run.
    type Hasher: Clone + std::fmt::Debug;
    /// The smallest table's `table_bits`.
    const MIN_TABLE_BITS: u32;
    fn new_hasher() -> Self::Hasher;
    /// The key's home slot among `2^bits` (the top `bits` bits of its hash).
    fn home(self, hasher: &Self::Hasher, bits: u32) -> usize;
    /// `(found, empty)`: bit `i` set iff `window[i] == self`, resp. `window[i]` is empty.
    fn window_masks(self, window: &[Self; 8]) -> (u32, u32);
    /// Sorts `keys` ascending; `scratch` is spare room the sort may use and leave changed.
    fn sort(keys: &mut Vec<Self>, scratch: &mut Vec<Self>);
    /// The table and scratch buffer the last set of this type left on this thread, if the
    /// type keeps them (see [`SPARE`]).
    fn take_spare() -> Spare<Self>;
    fn keep_spare(spare: Spare<Self>);
}

impl SlotKey for u32 {
    /// An odd multiplier for multiply-shift hashing: one multiply per key in the hot loop (the
    /// random multiplier costs ~1.5% CPU against the fixed Fibonacci one, measured).
    type Hasher = u32;
    /// 64 Ki slots (256 KiB): starting smaller only added rehashes.
    const MIN_TABLE_BITS: u32 = 16;

    fn new_hasher() -> u32 {
        RandomState::new().hash_one(0u8) as u32 | 1
    }

    #[inline(always)]
    fn home(self, multiplier: &u32, bits: u32) -> usize {
        (self.wrapping_mul(*multiplier) >> (32 - bits)) as usize
    }

    #[inline(always)]
    fn window_masks(self, window: &[u32; 8]) -> (u32, u32) {
        lanes::key_and_empty_masks(window, self)
    }

    fn sort(keys: &mut Vec<u32>, scratch: &mut Vec<u32>) {
        if keys.len() < RADIX_SORT_FROM {
            keys.sort_unstable();
        } else {
            radix_sort(keys, scratch);
        }
    }

    fn take_spare() -> Spare<u32> {
        SPARE.with(Cell::take)
    }

    fn keep_spare(spare: Spare<u32>) {
        // `try_with`: during thread teardown the slot may be gone; the buffers are then freed.
        let _ = SPARE.try_with(|slot| slot.set(spare));
    }
}

impl SlotKey for u128 {
    /// foldhash over all 128 bits, seeded at random per set (a multiply-shift of a folded
    /// 64-bit value would let crafted keys that fold alike collide whatever the multiplier).
    type Hasher = foldhash::fast::RandomState;
    /// 1 Ki slots (16 KiB): most logs have few IPv6 clients, and a set is made per chunk.
    const MIN_TABLE_BITS: u32 = 10;

    fn new_hasher() -> Self::Hasher {
        foldhash::fast::RandomState::default()
    }

    #[inline(always)]
    fn home(self, hasher: &Self::Hasher, bits: u32) -> usize {
        (hasher.hash_one(self) >> (64 - bits)) as usize
    }

    #[inline(always)]
    fn window_masks(self, window: &[u128; 8]) -> (u32, u32) {
        lanes::window_masks_by_slot(window, self)
    }

    fn sort(keys: &mut Vec<u128>, _scratch: &mut Vec<u128>) {
        keys.sort_unstable();
    }

    /// IPv6 clients are the rarer kind: their sets start small and keep nothing.
    fn take_spare() -> Spare<u128> {
        Spare::default()
    }

    fn keep_spare(_spare: Spare<u128>) {}
}

/// Distinct packed keys (optionally with counts): an open-addressing set (linear probing
/// without wrap-around, at most 3/4 full) fed through a small batch so that every key's slot is
/// prefetched well before it is probed. A probe compares the 8 slots from the key's home slot
/// at once and takes the first that holds the key or is empty, storing the key there either
/// way: no branch on the outcome, which was a coin flip per line (a new key or a repeat, the key
/// at its home slot or further on) and mispredicted on half the lines. Sorted once, at the end
/// of the chunk.
///
/// Memory is bounded by the distinct keys, not the lines: the table holds at most 8/3 home slots
/// per distinct key (at least [`SlotKey::MIN_TABLE_BITS`]) plus a tail of at most one slot per key and
/// [`OVERFLOW_SLOTS`], so a multi-GB `.gz` costs what its clients cost.
#[derive(Debug)]
pub(crate) struct KeySet<K: SlotKey> {
    batch: Vec<K>,
    /// `2^table_bits` home slots, then at least [`OVERFLOW_SLOTS`] more.
    table: Vec<K>,
    /// Per slot of `table`, when counting.
    counts: Option<Vec<u64>>,
    /// Occupied slots.
    len: usize,
    table_bits: u32,
    /// Occurrences of the key 0 (which marks empty slots).
    zeros: u64,
    hasher: K::Hasher,
    /// The sort's scratch buffer, kept for the next set on this thread.
    scratch: Vec<K>,
}

/// Packed canonical dotted quads (`keys.rs`).
pub(crate) type PackedKeys = KeySet<u32>;
/// Packed canonical IPv6 texts (`ipv6.rs`).
pub(crate) type WideKeys = KeySet<u128>;

impl<K: SlotKey> KeySet<K> {
    #[cfg(test)]
    pub(crate) fn new(with_counts: bool) -> Self {
        Self::sized_for(with_counts, None)
    }

    /// A set for the keys of at most `bytes` bytes of input, if known: its table then starts
    /// at most as large as such input is likely to need (one key per [`BYTES_PER_KEY_HINT`]
    /// bytes), since clearing the table and collecting its keys cost its size, which for a
    /// file of a few lines would dwarf the file's own cost. More keys than that just grow it.
    pub(crate) fn sized_for(with_counts: bool, bytes: Option<u64>) -> Self {
        let Spare { mut table, scratch } = K::take_spare();
        // The capacity, not the length: a small hinted set leaves the large table it was
        // carved from for the next set.
        let mut table_bits = table
            .capacity()
            .saturating_sub(OVERFLOW_SLOTS)
            .checked_ilog2()
            .unwrap_or(0)
            .max(K::MIN_TABLE_BITS);
        if let Some(bytes) = bytes {
            // Room for the hinted keys at most 3/4 full.
            let keys = (bytes / BYTES_PER_KEY_HINT).max(1);
            let hinted = (keys * 4 / 3 + 1)
                .next_power_of_two()
                .ilog2()
                .max(MIN_HINTED_TABLE_BITS);
            table_bits = table_bits.min(hinted);
        }
        let slots = (1 << table_bits) + OVERFLOW_SLOTS;
        table.clear();
        table.resize(slots, K::default());
        Self {
            batch: Vec::with_capacity(BATCH + BATCH_SLACK),
            counts: with_counts.then(|| vec![0; slots]),
            table_bits,
            table,
            len: 0,
            zeros: 0,
            hasher: K::new_hasher(),
            scratch,
        }
    }

    /// Adds one occurrence of `key`.
    #[inline]
    pub(crate) fn insert(&mut self, key: K) {
        self.push(key);
        self.flush_if_full();
    }

    /// Adds one occurrence of `key` to the batch only: the caller calls [`Self::flush_if_full`]
    /// at least every [`BATCH_SLACK`] pushes, or the batch reallocates.
    #[inline(always)]
    pub(crate) fn push(&mut self, key: K) {
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
        let hasher = self.hasher.clone();
        let mut bits = self.table_bits;
        for (index, &key) in batch.iter().enumerate() {
            if let Some(&ahead) = batch.get(index + PREFETCH_DISTANCE) {
                prefetch(&self.table, ahead.home(&hasher, bits));
            }
            if self.insert_one(key, key.home(&hasher, bits)) {
                bits = self.table_bits;
            }
        }
        self.batch = batch;
        self.batch.clear();
    }

    /// Adds `key`, whose home slot is `home`. Returns whether the table grew (and so the home
    /// slots of later keys moved).
    #[inline]
    fn insert_one(&mut self, key: K, home: usize) -> bool {
        if key == K::default() {
            self.zeros += 1;
            return false;
        }
        let window: &[K; 8] = self.table[home..home + 8]
            .try_into()
            .expect("a home slot has 8 slots after it");
        let (found, empty) = key.window_masks(window);
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

    /// The rare probe beyond the first 8 slots: the slot holding `key`, or the first empty one
    /// (then counted as occupied), adding slots at the end if the run reaches it.
    #[cold]
    fn probe_past_window(&mut self, key: K, home: usize) -> usize {
        let (slot, new) = place(&mut self.table, &mut self.counts, home + 8, key);
        self.len += usize::from(new);
        slot
    }

    /// Doubles the home slots and re-inserts every key (with its count).
    #[cold]
    fn grow(&mut self) {
        self.table_bits += 1;
        let slots = (1 << self.table_bits) + OVERFLOW_SLOTS;
        let old_table = std::mem::replace(&mut self.table, vec![K::default(); slots]);
        let old_counts = self.counts.take();
        let mut counts = old_counts.as_ref().map(|_| vec![0u64; slots]);
        for (index, &key) in old_table.iter().enumerate() {
            if key == K::default() {
                continue;
            }
            let home = key.home(&self.hasher, self.table_bits);
            let (slot, _) = place(&mut self.table, &mut counts, home, key);
            if let (Some(counts), Some(old)) = (&mut counts, &old_counts) {
                counts[slot] = old[index];
            }
        }
        self.counts = counts;
    }

    /// The number of distinct keys so far.
    pub(crate) fn len(&mut self) -> u64 {
        if !self.batch.is_empty() {
            self.flush();
        }
        self.len as u64 + u64::from(self.zeros > 0)
    }

    /// Appends the keys, in no particular order, to `keys` (and their counts to `counts`, if
    /// both count): cheaper than [`Self::into_sorted`] where the keys are sorted later anyway,
    /// together with other sets' keys.
    pub(crate) fn append_to(mut self, keys: &mut Vec<K>, counts: Option<&mut Vec<u64>>) {
        if !self.batch.is_empty() {
            self.flush();
        }
        let empty = K::default();
        if self.zeros > 0 {
            keys.push(empty);
        }
        match (self.counts.take(), counts) {
            (Some(own), Some(counts)) => {
                if self.zeros > 0 {
                    counts.push(self.zeros);
                }
                for (&key, &count) in self.table.iter().zip(&own) {
                    if key != empty {
                        keys.push(key);
                        counts.push(count);
                    }
                }
            }
            _ => {
                // Without a branch per slot (whether a slot is empty is a coin flip at the
                // fill a set is left with): every slot is written, and only a key advances.
                let start = keys.len();
                keys.resize(start + self.table.len(), empty);
                let mut next = start;
                for &key in &self.table {
                    keys[next] = key;
                    next += usize::from(key != empty);
                }
                keys.truncate(next);
            }
        }
    }

    /// The keys, sorted ascending, and their counts in the same order if counted (the tests'
    /// view; a job piles its sets' keys up with [`Self::append_to`] and sorts them once).
    #[cfg(test)]
    pub(crate) fn into_sorted(mut self) -> (Vec<K>, Option<Vec<u64>>) {
        if !self.batch.is_empty() {
            self.flush();
        }
        let empty = K::default();
        let zero = (self.zeros > 0).then_some(empty);
        match self.counts.take() {
            None => {
                let mut keys = Vec::with_capacity(self.len + 1);
                keys.extend(zero);
                keys.extend(self.table.iter().copied().filter(|&key| key != empty));
                K::sort(&mut keys, &mut self.scratch);
                (keys, None)
            }
            Some(counts) => {
                let mut pairs: Vec<(K, u64)> = zero
                    .map(|zero| (zero, self.zeros))
                    .into_iter()
                    .chain(
                        self.table
                            .iter()
                            .zip(&counts)
                            .filter(|(&key, _)| key != empty)
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

impl<K: SlotKey> Drop for KeySet<K> {
    fn drop(&mut self) {
        K::keep_spare(Spare {
            table: std::mem::take(&mut self.table),
            scratch: std::mem::take(&mut self.scratch),
        });
    }
}

/// Buffers a thread keeps between sets (see [`SPARE`]).
#[derive(Debug, Default)]
pub(crate) struct Spare<K> {
    table: Vec<K>,
    /// The sort's scratch space.
    scratch: Vec<K>,
}

thread_local! {
    /// The buffers of the last `u32` set this thread dropped, for the next one: a worker's next
    /// chunk then starts at the table size the last one reached, in memory already mapped,
    /// instead of growing from 64 Ki slots through fresh pages (two rehashes and ~450 page
    /// faults, ~0.5 ms a chunk), and sorts without mapping a fresh scratch buffer. So a thread
    /// keeps at most its largest table and key list besides the live ones.
    static SPARE: Cell<Spare<u32>> = const {
        Cell::new(Spare {
            table: Vec::new(),
            scratch: Vec::new(),
        })
    };
}

/// The first slot from `from` on that holds `key` or is empty, and whether it was empty (and so
/// now holds `key`); a probe run that reaches the end of the table adds [`OVERFLOW_SLOTS`].
fn place<K: SlotKey>(
    table: &mut Vec<K>,
    counts: &mut Option<Vec<u64>>,
    from: usize,
    key: K,
) -> (usize, bool) {
    let empty = K::default();
    let slot = match table[from..]
        .iter()
        .position(|&held| held == key || held == empty)
    {
        Some(offset) => from + offset,
        None => {
            let end = table.len();
            table.resize(end + OVERFLOW_SLOTS, empty);
            if let Some(counts) = counts {
                counts.resize(end + OVERFLOW_SLOTS, 0);
            }
            end
        }
    };
    let new = table[slot] == empty;
    table[slot] = key;
    (slot, new)
}

/// Starts loading `table[slot]` into cache ahead of its probe (measured: a plain load kept
/// alive by `black_box` instead cost 2% more CPU in all).
#[cfg(target_arch = "x86_64")]
#[inline]
#[allow(unsafe_code)] // the prefetch intrinsic, a hint that cannot fault
fn prefetch<K>(table: &[K], slot: usize) {
    let address = table[slot..].as_ptr().cast();
    // SAFETY: `_mm_prefetch` needs only SSE, which every x86_64 CPU has; a prefetch is a hint
    // that never faults and never changes memory (the address is in bounds anyway).
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address) };
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn prefetch<K>(_table: &[K], _slot: usize) {}

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
                let mut keys = keys_at_home(set.hasher, bits, home, 100);
                for &key in &keys {
                    assert_eq!(key.home(&set.hasher, bits), home as usize);
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

    /// The set's sorted keys and counts against a `BTreeMap` count of `keys`.
    fn matches_a_naive_count<K: SlotKey>(
        keys: &[K],
        with_counts: bool,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut set = KeySet::<K>::new(with_counts);
        for &key in keys {
            set.insert(key);
        }
        let (sorted, counts) = set.into_sorted();
        let mut expected = BTreeMap::new();
        for &key in keys {
            *expected.entry(key).or_insert(0u64) += 1;
        }
        proptest::prop_assert_eq!(sorted, expected.keys().copied().collect::<Vec<_>>());
        proptest::prop_assert_eq!(
            counts,
            with_counts.then(|| expected.values().copied().collect::<Vec<_>>())
        );
        Ok(())
    }

    // Small keys repeat (and include 0, which the table cannot hold); random keys mostly do
    // not: both ends of the probe logic.
    proptest::proptest! {
        #[test]
        fn packed_keys_match_a_naive_count(
            keys in proptest::collection::vec(
                proptest::prop_oneof![0u32..64, proptest::num::u32::ANY],
                0..3000,
            ),
            with_counts in proptest::bool::ANY,
        ) {
            matches_a_naive_count(&keys, with_counts)?;
        }

        #[test]
        fn wide_keys_match_a_naive_count(
            keys in proptest::collection::vec(
                proptest::prop_oneof![0u128..64, proptest::num::u128::ANY],
                0..3000,
            ),
            with_counts in proptest::bool::ANY,
        ) {
            matches_a_naive_count(&keys, with_counts)?;
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
    fn wide_keys_grow_past_the_smallest_table() {
        let keys: Vec<u128> = (0..200_000u128)
            .map(|i| i << 64 | i.wrapping_mul(0x9E37_79B9))
            .collect();
        let mut set = WideKeys::new(false);
        for &key in keys.iter().chain(&keys) {
            set.insert(key);
        }
        let mut expected = keys;
        expected.sort_unstable();
        assert_eq!(set.into_sorted(), (expected, None));
    }
}
