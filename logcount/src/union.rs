//! Incremental unions of sorted, deduplicated key lists: how chunk results become a file's
//! distinct keys, and files' keys the distinct keys of the run, while the pool is still counting.
//!
//! [`SortedUnion`] takes lists one at a time and merges as it goes, with the run-stack rule of
//! merge sort (merge the top two while the lower one is at most twice the upper one): total
//! work stays O(n log k) for k lists whatever their overlap, and when lists overlap heavily
//! (every chunk of an access log sees most of its clients) each new list is merged into the
//! accumulated one on arrival, so that nothing but the last list is left to merge at the end.

use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::sync::{Mutex, PoisonError};

/// The number of distinct keys in the union of sorted, deduplicated lists, without building the
/// union: a k-way merge through a heap that only counts. For byte-string keys, where a merged
/// copy would cost as much memory again as the lists themselves.
pub(crate) fn union_len<T: Ord>(lists: &[Vec<T>]) -> u64 {
    let lists: Vec<&[T]> = lists
        .iter()
        .map(Vec::as_slice)
        .filter(|list| !list.is_empty())
        .collect();
    if let [only] = lists.as_slice() {
        return only.len() as u64;
    }
    let mut heap: BinaryHeap<Reverse<(&T, usize)>> = lists
        .iter()
        .enumerate()
        .map(|(index, list)| Reverse((&list[0], index)))
        .collect();
    let mut next = vec![1usize; lists.len()];
    let mut count = 0;
    let mut last: Option<&T> = None;
    while let Some(mut top) = heap.peek_mut() {
        let Reverse((key, index)) = *top;
        if last != Some(key) {
            count += 1;
            last = Some(key);
        }
        match lists[index].get(next[index]) {
            Some(following) => {
                next[index] += 1;
                *top = Reverse((following, index));
            }
            None => {
                PeekMut::pop(top);
            }
        }
    }
    count
}

/// Keys of many sets (a batch's files) appended in any order and with repeats, made sorted and
/// deduplicated (counts summed) by one sort when asked, and along the way whenever the pile
/// has doubled since it was last deduplicated: so the memory stays within about twice the
/// distinct keys (plus the last set appended) however many sets come, and the work is a few
/// sequential sorts instead of a merge per set.
#[derive(Debug)]
pub(crate) struct KeyPile<K> {
    keys: Vec<K>,
    /// Parallel to `keys`, when counting.
    counts: Option<Vec<u64>>,
    /// `keys.len()` after the last deduplication.
    settled: usize,
    /// [`PILE_SETTLE_FROM`] (smaller in tests).
    settle_from: usize,
    scratch: Vec<K>,
}

/// The pile is not deduplicated before it holds this many keys (16 MiB of IPv4 keys): most
/// batches are then sorted once, at the end, rather than again at every doubling.
const PILE_SETTLE_FROM: usize = 1 << 22;

/// A key type a [`KeyPile`] can sort.
pub(crate) trait PileKey: Copy + Ord + Default {
    /// Sorts `keys` ascending; `scratch` is spare room the sort may use.
    fn sort_keys(keys: &mut Vec<Self>, scratch: &mut Vec<Self>);
}

impl PileKey for u32 {
    fn sort_keys(keys: &mut Vec<u32>, scratch: &mut Vec<u32>) {
        <u32 as super::key_set::SlotKey>::sort(keys, scratch);
    }
}

impl PileKey for u128 {
    fn sort_keys(keys: &mut Vec<u128>, _scratch: &mut Vec<u128>) {
        keys.sort_unstable();
    }
}

impl<K: PileKey> KeyPile<K> {
    pub(crate) fn new(with_counts: bool) -> Self {
        Self {
            keys: Vec::new(),
            counts: with_counts.then(Vec::new),
            settled: 0,
            settle_from: PILE_SETTLE_FROM,
            scratch: Vec::new(),
        }
    }

    /// Where to append keys (and their counts, when counting; the two stay parallel).
    pub(crate) fn parts(&mut self) -> (&mut Vec<K>, Option<&mut Vec<u64>>) {
        (&mut self.keys, self.counts.as_mut())
    }

    /// Deduplicates if the pile has doubled since it last was.
    pub(crate) fn settle(&mut self) {
        if self.keys.len() > 2 * self.settled.max(self.settle_from / 2) {
            self.dedup();
        }
    }

    fn dedup(&mut self) {
        match self.counts.take() {
            None => {
                K::sort_keys(&mut self.keys, &mut self.scratch);
                self.keys.dedup();
            }
            Some(counts) => {
                let mut pairs: Vec<(K, u64)> = self.keys.drain(..).zip(counts).collect();
                pairs.sort_unstable_by_key(|&(key, _)| key);
                let mut counts = Vec::with_capacity(pairs.len());
                for (key, count) in pairs {
                    if self.keys.last() == Some(&key) {
                        if let Some(last) = counts.last_mut() {
                            *last += count;
                        }
                    } else {
                        self.keys.push(key);
                        counts.push(count);
                    }
                }
                self.counts = Some(counts);
            }
        }
        self.settled = self.keys.len();
    }

    /// The distinct keys, sorted, and their summed counts when counting.
    pub(crate) fn finish(mut self) -> (Vec<K>, Option<Vec<u64>>) {
        self.dedup();
        (self.keys, self.counts)
    }
}

/// A key type with a two-way union of sorted, deduplicated lists.
pub(crate) trait UnionKey: Sized {
    /// The sorted, deduplicated union of two sorted, deduplicated lists, written into
    /// `spare` if it has room (a buffer a previous union left; its contents are dropped), so
    /// that a long run of unions reuses memory rather than faulting in fresh pages. Returns
    /// the union and a buffer left over for the next one.
    fn union(a: Vec<Self>, b: Vec<Self>, spare: Vec<Self>) -> (Vec<Self>, Vec<Self>);
    /// The number of keys in the union of two sorted, deduplicated lists, without making it.
    fn union_count(a: &[Self], b: &[Self]) -> u64;
}

/// Branch-light: each step writes the smaller head and advances the side(s) it came from, so
/// the data-dependent comparisons select values instead of steering branches (the generic
/// merge below mispredicted on every interleaving of the two lists).
fn union_of_integers<T: Copy + Ord + Default>(
    a: Vec<T>,
    b: Vec<T>,
    spare: Vec<T>,
) -> (Vec<T>, Vec<T>) {
    if a.is_empty() {
        return (b, spare);
    }
    if b.is_empty() {
        return (a, spare);
    }
    let mut out = if spare.capacity() >= a.len() + b.len() {
        spare
    } else {
        Vec::new()
    };
    out.clear();
    out.resize(a.len() + b.len(), T::default());
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        out[n] = x.min(y);
        n += 1;
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    let rest = if i < a.len() { &a[i..] } else { &b[j..] };
    out[n..n + rest.len()].copy_from_slice(rest);
    out.truncate(n + rest.len());
    let left = if a.capacity() >= b.capacity() { a } else { b };
    (out, left)
}

/// [`UnionKey::union_count`] for integer-like keys: the same branch-light walk, counting.
fn union_count_of_integers<T: Copy + Ord>(a: &[T], b: &[T]) -> u64 {
    let (mut i, mut j, mut n) = (0, 0, 0u64);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        n += 1;
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    n + (a.len() - i) as u64 + (b.len() - j) as u64
}

impl UnionKey for u32 {
    fn union(a: Vec<u32>, b: Vec<u32>, spare: Vec<u32>) -> (Vec<u32>, Vec<u32>) {
        union_of_integers(a, b, spare)
    }

    fn union_count(a: &[u32], b: &[u32]) -> u64 {
        union_count_of_integers(a, b)
    }
}

impl UnionKey for u128 {
    fn union(a: Vec<u128>, b: Vec<u128>, spare: Vec<u128>) -> (Vec<u128>, Vec<u128>) {
        union_of_integers(a, b, spare)
    }

    fn union_count(a: &[u128], b: &[u128]) -> u64 {
        union_count_of_integers(a, b)
    }
}

impl UnionKey for [u8; 32] {
    fn union(
        a: Vec<[u8; 32]>,
        b: Vec<[u8; 32]>,
        spare: Vec<[u8; 32]>,
    ) -> (Vec<[u8; 32]>, Vec<[u8; 32]>) {
        union_of_integers(a, b, spare)
    }

    fn union_count(a: &[[u8; 32]], b: &[[u8; 32]]) -> u64 {
        union_count_of_integers(a, b)
    }
}

/// Sorted, deduplicated byte-string keys, with their request counts when `--top` asks, packed
/// in one buffer: a key costs its length plus 8 bytes (16 with a count), where a `Vec<u8>` of
/// its own would cost ~70 bytes for a 28-byte host name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CountedKeys {
    bytes: Vec<u8>,
    /// Where each key ends in `bytes`.
    ends: Vec<usize>,
    /// One per key if counted, else empty.
    counts: Vec<u64>,
}

impl CountedKeys {
    /// Sorted, deduplicated `keys`, with `counts` (one per key) if given.
    pub(crate) fn new(keys: &[Vec<u8>], counts: Option<&[u64]>) -> Self {
        let mut out = Self {
            bytes: Vec::with_capacity(keys.iter().map(Vec::len).sum()),
            ends: Vec::with_capacity(keys.len()),
            counts: counts.map(<[u64]>::to_vec).unwrap_or_default(),
        };
        for key in keys {
            out.bytes.extend_from_slice(key);
            out.ends.push(out.bytes.len());
        }
        out
    }

    /// Appends a key greater than every key already in, with its count if counted.
    fn push(&mut self, key: &[u8], count: Option<u64>) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
        self.counts.extend(count);
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    fn key(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.bytes[start..self.ends[index]]
    }

    /// The count of key `index`, if counted.
    fn count(&self, index: usize) -> Option<u64> {
        self.counts.get(index).copied()
    }

    /// The union of two lists, a key in both with the sum of its counts (if counted).
    fn union(a: &CountedKeys, b: &CountedKeys) -> CountedKeys {
        let counted = !a.counts.is_empty() || !b.counts.is_empty();
        let mut out = CountedKeys {
            bytes: Vec::with_capacity(a.bytes.len().max(b.bytes.len())),
            ends: Vec::with_capacity(a.len().max(b.len())),
            counts: Vec::with_capacity(if counted { a.len().max(b.len()) } else { 0 }),
        };
        let sum = |x: Option<u64>, y: Option<u64>| counted.then(|| x.unwrap_or(0) + y.unwrap_or(0));
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let (x, y) = (a.key(i), b.key(j));
            match x.cmp(y) {
                std::cmp::Ordering::Less => {
                    out.push(x, sum(a.count(i), None));
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(y, sum(None, b.count(j)));
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(x, sum(a.count(i), b.count(j)));
                    i += 1;
                    j += 1;
                }
            }
        }
        for index in i..a.len() {
            out.push(a.key(index), sum(a.count(index), None));
        }
        for index in j..b.len() {
            out.push(b.key(index), sum(None, b.count(index)));
        }
        out
    }
}

/// The distinct keys of sorted lists, streamed in order by a k-way merge through a heap, with
/// the sum of each key's counts (0 where not counted): `each` sees every distinct key once.
/// Returns how many there are. Nothing merged is kept, so counting the keys of millions of
/// host names costs the lists themselves and a heap of one entry per list.
pub(crate) fn merge_counted(lists: &[&CountedKeys], mut each: impl FnMut(&[u8], u64)) -> u64 {
    let mut heap: BinaryHeap<Reverse<(&[u8], usize)>> = lists
        .iter()
        .enumerate()
        .filter(|(_, list)| list.len() > 0)
        .map(|(index, list)| Reverse((list.key(0), index)))
        .collect();
    let mut next = vec![1usize; lists.len()];
    let mut distinct = 0;
    let mut current: Option<(&[u8], u64)> = None;
    while let Some(mut top) = heap.peek_mut() {
        let Reverse((key, index)) = *top;
        let count = lists[index].count(next[index] - 1).unwrap_or(0);
        match &mut current {
            Some((last, sum)) if *last == key => *sum += count,
            _ => {
                if let Some((last, sum)) = current.take() {
                    each(last, sum);
                }
                distinct += 1;
                current = Some((key, count));
            }
        }
        let list = lists[index];
        if next[index] < list.len() {
            *top = Reverse((list.key(next[index]), index));
            next[index] += 1;
        } else {
            PeekMut::pop(top);
        }
    }
    if let Some((last, sum)) = current {
        each(last, sum);
    }
    distinct
}

/// The union of [`CountedKeys`] lists pushed one at a time, by the run-stack rule of
/// [`SortedUnion`].
#[derive(Debug, Default)]
pub(crate) struct CountedUnion {
    runs: Vec<CountedKeys>,
}

impl CountedUnion {
    pub(crate) fn push(&mut self, keys: CountedKeys) {
        self.runs.push(keys);
        while let [.., below, top] = self.runs.as_slice() {
            if below.len() > 2 * top.len() {
                break;
            }
            self.merge_top_two();
        }
    }

    pub(crate) fn finish(mut self) -> CountedKeys {
        while self.runs.len() > 1 {
            self.merge_top_two();
        }
        self.runs.pop().unwrap_or_default()
    }

    fn merge_top_two(&mut self) {
        if let (Some(top), Some(below)) = (self.runs.pop(), self.runs.pop()) {
            self.runs.push(CountedKeys::union(&below, &top));
        }
    }
}

/// From this many keys in the last two runs on, [`SortedUnion::count`] counts their union in
/// two halves side by side (below, starting a thread costs more than it saves).
const SPLIT_COUNT_FROM: usize = 1 << 20;

/// `first(input)` on a second thread while `second` runs on this one (both inline if no thread
/// can be started). For the supervisor's last merges, which run after the last worker is done,
/// on the run's critical path, with the cores the workers used idle: with millions of keys
/// they took tens of milliseconds there on one core.
pub(crate) fn side_by_side<I: Send, A: Send, B>(
    input: I,
    first: impl FnOnce(I) -> A + Send,
    second: impl FnOnce() -> B,
) -> (A, B) {
    // The input stays reachable here if the thread cannot be started (which drops the
    // closure unrun), so it can then be used inline.
    let slot = Mutex::new(Some((input, first)));
    let take = || slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("merge".into())
            .spawn_scoped(scope, || take().map(|(input, first)| first(input)));
        let b = second();
        let a = match thread.map(|thread| thread.join()) {
            Ok(Ok(Some(a))) => a,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Ok(Ok(None)) | Err(_) => {
                let (input, first) = take().expect("the thread did not take the input");
                first(input)
            }
        };
        (a, b)
    })
}

/// The union of sorted, deduplicated lists pushed one at a time (see the module docs).
#[derive(Debug)]
pub(crate) struct SortedUnion<T> {
    /// Merged runs, each at most half as long as the one below it (after `push` returns).
    runs: Vec<Vec<T>>,
    /// A buffer the last merge left, for the next (see [`UnionKey::union`]).
    spare: Vec<T>,
}

impl<T> Default for SortedUnion<T> {
    fn default() -> Self {
        Self {
            runs: Vec::new(),
            spare: Vec::new(),
        }
    }
}

impl<T: UnionKey> SortedUnion<T> {
    /// Adds one sorted, deduplicated list.
    pub(crate) fn push(&mut self, keys: Vec<T>) {
        self.runs.push(keys);
        while let [.., below, top] = self.runs.as_slice() {
            if below.len() > 2 * top.len() {
                break;
            }
            self.merge_top_two();
        }
    }

    /// The union of everything pushed.
    pub(crate) fn finish(mut self) -> Vec<T> {
        while self.runs.len() > 1 {
            self.merge_top_two();
        }
        self.runs.pop().unwrap_or_default()
    }

    /// The number of keys in the union, without making it: the last merge, of the two
    /// largest runs, only counts (no output to allocate and fault in), from
    /// [`SPLIT_COUNT_FROM`] keys on in two halves by key, one on a second thread.
    pub(crate) fn count(mut self) -> u64
    where
        T: Ord + Sync,
    {
        while self.runs.len() > 2 {
            self.merge_top_two();
        }
        match self.runs.as_slice() {
            [] => 0,
            [only] => only.len() as u64,
            [a, b, ..] if a.is_empty() || a.len() + b.len() < SPLIT_COUNT_FROM => {
                T::union_count(a, b)
            }
            [a, b, ..] => {
                // Every key below `a[middle]` is in the first halves, every other one in the
                // second.
                let middle = a.len() / 2;
                let split = b.partition_point(|key| *key < a[middle]);
                let (low, high) = side_by_side(
                    (&a[..middle], &b[..split]),
                    |(a, b)| T::union_count(a, b),
                    || T::union_count(&a[middle..], &b[split..]),
                );
                low + high
            }
        }
    }

    fn merge_top_two(&mut self) {
        if let (Some(top), Some(below)) = (self.runs.pop(), self.runs.pop()) {
            let spare = std::mem::take(&mut self.spare);
            let (union, left) = T::union(below, top, spare);
            self.runs.push(union);
            self.spare = left;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn union_sorted<T: UnionKey>(parts: Vec<Vec<T>>) -> Vec<T> {
        let mut union = SortedUnion::default();
        for part in parts {
            union.push(part);
        }
        union.finish()
    }

    #[test]
    fn union_of_sorted_parts() {
        let parts = vec![vec![1, 4, 9], vec![], vec![2, 4, 10], vec![1], vec![0, 11]];
        assert_eq!(union_sorted(parts), vec![0u32, 1, 2, 4, 9, 10, 11]);
        assert_eq!(union_sorted::<u32>(vec![]), Vec::<u32>::new());
        let digests = vec![vec![[2u8; 32], [4; 32]], vec![[1; 32], [4; 32]]];
        assert_eq!(union_sorted(digests), vec![[1u8; 32], [2; 32], [4; 32]]);
    }

    #[test]
    fn counted_keys_sum_their_counts() {
        let counted = |pairs: &[(&str, u64)]| {
            let mut keys = CountedKeys::default();
            for &(key, count) in pairs {
                keys.push(key.as_bytes(), Some(count));
            }
            keys
        };
        let mut union = CountedUnion::default();
        for part in [
            counted(&[("a", 1), ("c", 2)]),
            counted(&[]),
            counted(&[("b", 5), ("c", 1)]),
            counted(&[("c", 4), ("d", 1), ("dd", 2)]),
        ] {
            union.push(part);
        }
        let all = union.finish();
        assert_eq!(
            all,
            counted(&[("a", 1), ("b", 5), ("c", 7), ("d", 1), ("dd", 2)])
        );
        // Without counts, the same keys and no counts.
        let plain = |keys: &[&str]| {
            let keys: Vec<Vec<u8>> = keys.iter().map(|key| key.as_bytes().to_vec()).collect();
            CountedKeys::new(&keys, None)
        };
        let union = CountedKeys::union(&plain(&["a", "c"]), &plain(&["b", "c"]));
        assert_eq!(union, plain(&["a", "b", "c"]));
    }

    proptest::proptest! {
        #[test]
        fn merge_counted_streams_the_summed_union(
            lists in proptest::collection::vec(
                proptest::collection::btree_map(
                    proptest::collection::vec(0u8..4, 0..4),
                    1u64..9,
                    0..40,
                ),
                0..12,
            ),
            with_counts: bool,
        ) {
            let mut expected = std::collections::BTreeMap::new();
            let runs: Vec<CountedKeys> = lists
                .iter()
                .map(|list| {
                    let keys: Vec<Vec<u8>> = list.keys().cloned().collect();
                    let counts: Vec<u64> = list.values().copied().collect();
                    for (key, &count) in list {
                        *expected.entry(key.clone()).or_insert(0) +=
                            if with_counts { count } else { 0 };
                    }
                    CountedKeys::new(&keys, with_counts.then_some(&counts[..]))
                })
                .collect();
            let mut seen = Vec::new();
            let runs: Vec<&CountedKeys> = runs.iter().collect();
            let distinct = merge_counted(&runs, |key, count| seen.push((key.to_vec(), count)));
            proptest::prop_assert_eq!(distinct, expected.len() as u64);
            proptest::prop_assert_eq!(seen, expected.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn overlapping_lists_merge_on_arrival() {
        let mut union = SortedUnion::default();
        for shift in 0..8u32 {
            union.push((shift..1000 + shift).collect::<Vec<u32>>());
            assert_eq!(union.runs.len(), 1, "after list {shift}");
        }
        assert_eq!(union.finish(), (0..1007).collect::<Vec<u32>>());
    }

    #[test]
    fn count_is_the_union_length() {
        for parts in [
            vec![],
            vec![vec![1u32, 5]],
            vec![vec![1, 5], vec![2, 5, 9], vec![0]],
        ] {
            let expected: BTreeSet<u32> = parts.iter().flatten().copied().collect();
            let mut union = SortedUnion::default();
            for part in parts {
                union.push(part);
            }
            assert_eq!(union.count(), expected.len() as u64);
        }
    }

    #[test]
    fn count_of_long_runs_is_split_in_halves_by_key() {
        // Two runs left (the lower one more than twice the upper, so they stay apart), together
        // past the split threshold: overlapping, the upper one reaching beyond the lower one's
        // last key or below its first, or lying wholly above the split key.
        let evens: Vec<u32> = (0..900_000).map(|i| i * 2).collect();
        let from_1000: Vec<u32> = (1_000..901_000).collect();
        for (below, top) in [
            (
                evens.clone(),
                (0..300_000).map(|i| i * 3 + 1_000_000).collect(),
            ),
            (from_1000, (0..300_000).collect()),
            (
                evens,
                (0..300_000)
                    .map(|i| u32::MAX - i)
                    .rev()
                    .collect::<Vec<u32>>(),
            ),
        ] {
            assert!(below.len() > 2 * top.len() && below.len() + top.len() >= SPLIT_COUNT_FROM);
            let expected: BTreeSet<u32> = below.iter().chain(&top).copied().collect();
            let mut union = SortedUnion::default();
            union.push(below);
            union.push(top);
            assert_eq!(union.count(), expected.len() as u64);
        }
    }

    proptest::proptest! {
        #[test]
        fn a_pile_sums_like_a_map(
            sets in proptest::collection::vec(
                proptest::collection::btree_map(
                    proptest::prop_oneof![0u32..40, proptest::num::u32::ANY],
                    1u64..5,
                    0..300,
                ),
                0..30,
            ),
            with_counts: bool,
        ) {
            let mut expected = std::collections::BTreeMap::new();
            let mut pile = KeyPile::<u32>::new(with_counts);
            // Deduplicated along the way, as a batch of millions of keys is.
            pile.settle_from = 64;
            for set in &sets {
                let (keys, counts) = pile.parts();
                // Sets come in no order (a hash table's): reversed here.
                keys.extend(set.keys().rev());
                if let Some(counts) = counts {
                    counts.extend(set.values().rev());
                }
                pile.settle();
                proptest::prop_assert!(pile.keys.len() <= 2 * expected.len().max(32) + set.len());
                for (&key, &count) in set {
                    *expected.entry(key).or_insert(0) += count;
                }
            }
            let (keys, counts) = pile.finish();
            proptest::prop_assert_eq!(&keys, &expected.keys().copied().collect::<Vec<_>>());
            match counts {
                Some(counts) => {
                    proptest::prop_assert!(with_counts);
                    proptest::prop_assert_eq!(counts, expected.values().copied().collect::<Vec<_>>());
                }
                None => proptest::prop_assert!(!with_counts),
            }
        }

        #[test]
        fn union_matches_a_set(
            parts in proptest::collection::vec(
                proptest::collection::btree_set(
                    proptest::prop_oneof![0u32..50, proptest::num::u32::ANY],
                    0..200,
                ),
                0..20,
            ),
        ) {
            let expected: BTreeSet<u32> = parts.iter().flatten().copied().collect();
            let mut union = SortedUnion::default();
            for part in &parts {
                union.push(part.iter().copied().collect());
                // The run-stack rule holds after every push: O(n log k) work.
                for pair in union.runs.windows(2) {
                    proptest::prop_assert!(pair[0].len() > 2 * pair[1].len());
                }
            }
            let runs = union.runs.clone();
            proptest::prop_assert_eq!(union.finish(), expected.iter().copied().collect::<Vec<_>>());
            let again = SortedUnion { runs, spare: Vec::new() };
            proptest::prop_assert_eq!(again.count(), expected.len() as u64);
        }

        #[test]
        fn union_len_counts_a_set(
            parts in proptest::collection::vec(
                proptest::collection::btree_set(
                    proptest::collection::vec(0u8..4, 0..4),
                    0..50,
                ),
                0..12,
            ),
        ) {
            let expected: BTreeSet<Vec<u8>> = parts.iter().flatten().cloned().collect();
            let lists: Vec<Vec<Vec<u8>>> =
                parts.into_iter().map(|part| part.into_iter().collect()).collect();
            proptest::prop_assert_eq!(union_len(&lists), expected.len() as u64);
        }
    }
}
