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
    fn union(a: Vec<[u8; 32]>, b: Vec<[u8; 32]>, spare: Vec<[u8; 32]>) -> (Vec<[u8; 32]>, Vec<[u8; 32]>) {
        union_of_integers(a, b, spare)
    }

    fn union_count(a: &[[u8; 32]], b: &[[u8; 32]]) -> u64 {
        union_count_of_integers(a, b)
    }
}

impl UnionKey for Vec<u8> {
    fn union_count(a: &[Vec<u8>], b: &[Vec<u8>]) -> u64 {
        let (mut i, mut j, mut n) = (0, 0, 0u64);
        while i < a.len() && j < b.len() {
            n += 1;
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
            }
        }
        n + (a.len() - i) as u64 + (b.len() - j) as u64
    }

    fn union(a: Vec<Vec<u8>>, b: Vec<Vec<u8>>, spare: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        (union_of_byte_strings(a, b), spare)
    }
}

fn union_of_byte_strings(a: Vec<Vec<u8>>, b: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    {
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
}

/// Sorted, deduplicated byte-string keys with their request counts, for `--top`, packed in
/// one buffer: a key costs its length plus 16 bytes, where a `Vec<u8>` of its own would cost
/// ~70 bytes for a 28-byte host name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CountedKeys {
    bytes: Vec<u8>,
    /// Where each key ends in `bytes`.
    ends: Vec<usize>,
    counts: Vec<u64>,
}

impl CountedKeys {
    /// Appends a key greater than every key already in.
    pub(crate) fn push(&mut self, key: &[u8], count: u64) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
        self.counts.push(count);
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    fn key(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.bytes[start..self.ends[index]]
    }

    /// The keys and their counts, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        (0..self.len()).map(|index| (self.key(index), self.counts[index]))
    }

    /// The union of two lists, a key in both with the sum of its counts.
    fn union(a: &CountedKeys, b: &CountedKeys) -> CountedKeys {
        let mut out = CountedKeys {
            bytes: Vec::with_capacity(a.bytes.len().max(b.bytes.len())),
            ends: Vec::with_capacity(a.len().max(b.len())),
            counts: Vec::with_capacity(a.len().max(b.len())),
        };
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let (x, y) = (a.key(i), b.key(j));
            match x.cmp(y) {
                std::cmp::Ordering::Less => {
                    out.push(x, a.counts[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(y, b.counts[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(x, a.counts[i] + b.counts[j]);
                    i += 1;
                    j += 1;
                }
            }
        }
        for index in i..a.len() {
            out.push(a.key(index), a.counts[index]);
        }
        for index in j..b.len() {
            out.push(b.key(index), b.counts[index]);
        }
        out
    }
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
    /// largest runs, only counts (no output to allocate and fault in).
    pub(crate) fn count(mut self) -> u64 {
        while self.runs.len() > 2 {
            self.merge_top_two();
        }
        match self.runs.as_slice() {
            [] => 0,
            [only] => only.len() as u64,
            [a, b, ..] => T::union_count(a, b),
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
        let bytes = vec![
            vec![b"b".to_vec(), b"d".to_vec()],
            vec![b"a".to_vec(), b"d".to_vec()],
        ];
        assert_eq!(
            union_sorted(bytes),
            vec![b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]
        );
    }

    #[test]
    fn counted_keys_sum_their_counts() {
        let counted = |pairs: &[(&str, u64)]| {
            let mut keys = CountedKeys::default();
            for &(key, count) in pairs {
                keys.push(key.as_bytes(), count);
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
        assert_eq!(all.iter().nth(4), Some((&b"dd"[..], 2)));
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
        for parts in [vec![], vec![vec![1u32, 5]], vec![vec![1, 5], vec![2, 5, 9], vec![0]]] {
            let expected: BTreeSet<u32> = parts.iter().flatten().copied().collect();
            let mut union = SortedUnion::default();
            for part in parts {
                union.push(part);
            }
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
