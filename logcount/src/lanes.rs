//! Byte lanes: masks of which bytes of a 16- or 64-byte block are a newline, a digit or a dot,
//! one bit per byte. These feed the hot loop's two questions, "where do lines end" and "where
//! are the dots of this dotted quad", without a branch per byte.
//!
//! On x86_64 they use SSE2, part of the x86_64 baseline and so always present: a compare and a
//! `movemask` per 16 bytes. Elsewhere, the same masks come from SWAR arithmetic on
//! `u64`/`u128`. Tests check the two against each other and against a byte-by-byte loop.
//!
//! The `unsafe` blocks here (nine) are of two kinds. Seven call a `#[target_feature]` function,
//! whose one requirement is that the CPU has the feature: SSE2 by the x86_64 baseline, SSSE3 and
//! AVX2 proven by an `Ssse3`/`Avx2` value, which only a positive CPU check makes. Two are
//! unaligned vector loads (`_mm256_loadu_si256`, `_mm_loadu_si128`) of 32 or 16 bytes through a
//! pointer into an array at least that long.
#![allow(unsafe_code)] // SIMD intrinsics behind CPU-feature proofs: see above

/// Bit `i` set iff `block[i] == b'\n'`.
#[inline]
pub(crate) fn newline_mask(block: &[u8; 64]) -> u64 {
    let mut mask = 0u64;
    for (index, part) in block.chunks_exact(16).enumerate() {
        let part: &[u8; 16] = part.try_into().expect("chunks_exact(16) yields 16 bytes");
        mask |= u64::from(equal_mask(part, b'\n')) << (16 * index);
    }
    mask
}

/// `(digits, dots, zeros)`: bit `i` set iff `window[i]` is an ASCII digit, resp. `.`, `0`.
#[inline]
pub(crate) fn digit_dot_zero_masks(window: &[u8; 16]) -> (u32, u32, u32) {
    (
        digit_mask(window),
        equal_mask(window, b'.'),
        equal_mask(window, b'0'),
    )
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_set1_epi8, _mm_and_si128, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_cmpeq_epi8,
        _mm_cmpgt_epi32, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_cvtsi128_si32, _mm_loadu_si128,
        _mm_madd_epi16, _mm_maddubs_epi16, _mm_movemask_epi8, _mm_movemask_ps, _mm_set1_epi16,
        _mm_set1_epi32, _mm_set1_epi8, _mm_set_epi64x, _mm_setr_epi8, _mm_setzero_si128,
        _mm_shuffle_epi8, _mm_sub_epi8,
    };

    /// Proof that this CPU has SSSE3: only [`Ssse3::detect`] makes one, after asking the CPU.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Ssse3 {
        _proof: (),
    }

    impl Ssse3 {
        /// `Some` iff the CPU has SSSE3 (every x86_64 CPU since ~2006, but not the baseline).
        pub(crate) fn detect() -> Option<Self> {
            std::is_x86_feature_detected!("ssse3").then_some(Self { _proof: () })
        }

        /// Runs `task` inside a function compiled for SSSE3, so that [`Ssse3::quad_values`]
        /// inlines into the loop the task runs instead of being called per line. (A closure
        /// would not do: it is compiled, and may stay, outside the SSSE3 function.)
        #[inline]
        pub(crate) fn run<T: WithSsse3>(self, task: T) -> T::Output {
            // SAFETY: a `target_feature` function requires only that the CPU has the feature;
            // `self` exists only if `detect` found SSSE3.
            unsafe { run_with_ssse3(task, self) }
        }

        /// The four octet values of a dotted quad in `window` (octet lengths already checked),
        /// packed big-endian; `None` if an octet exceeds 255. `shuffle` (from the quad's shape)
        /// puts octet `k`'s hundreds, tens and ones digits in lanes `4k..4k+3` (0x80: zero);
        /// two multiply-adds weigh them.
        #[inline(always)]
        pub(crate) fn quad_values(self, window: &[u8; 16], shuffle: &[u8; 16]) -> Option<u32> {
            // SAFETY: as in `run`: `self` proves SSSE3 is present.
            unsafe { quad_values_ssse3(window, shuffle) }
        }
    }

    /// Work to run in code compiled for SSSE3; `call` should be `#[inline(always)]` so that
    /// its body is compiled inside [`run_with_ssse3`].
    pub(crate) trait WithSsse3 {
        type Output;
        fn call(self, ssse3: Ssse3) -> Self::Output;
    }

    #[target_feature(enable = "ssse3")]
    fn run_with_ssse3<T: WithSsse3>(task: T, ssse3: Ssse3) -> T::Output {
        task.call(ssse3)
    }

    /// Proof that this CPU has AVX2 (and SSSE3): only [`Avx2::detect`] makes one.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Avx2 {
        ssse3: Ssse3,
    }

    impl Avx2 {
        /// `Some` iff the CPU has AVX2 and SSSE3.
        pub(crate) fn detect() -> Option<Self> {
            let ssse3 = Ssse3::detect()?;
            std::is_x86_feature_detected!("avx2").then_some(Self { ssse3 })
        }

        /// The SSSE3 proof this one carries.
        pub(crate) fn ssse3(self) -> Ssse3 {
            self.ssse3
        }

        /// Runs `task` inside a function compiled for AVX2 (see [`Ssse3::run`]).
        #[inline]
        pub(crate) fn run<T: WithAvx2>(self, task: T) -> T::Output {
            // SAFETY: a `target_feature` function requires only that the CPU has the feature;
            // `self` exists only if `detect` found AVX2.
            unsafe { run_with_avx2(task, self) }
        }
    }

    impl super::NewlineMasks for Avx2 {
        /// Two 32-byte compares instead of four 16-byte ones.
        #[inline(always)]
        fn newline_mask(self, block: &[u8; 64]) -> u64 {
            // SAFETY: as in `run`: `self` proves AVX2 is present. The function reads nothing
            // but its 64-byte argument.
            unsafe { newline_mask_avx2(block) }
        }
    }

    /// Work to run in code compiled for AVX2, like [`WithSsse3`].
    pub(crate) trait WithAvx2 {
        type Output;
        fn call(self, avx2: Avx2) -> Self::Output;
    }

    #[target_feature(enable = "avx2")]
    fn run_with_avx2<T: WithAvx2>(task: T, avx2: Avx2) -> T::Output {
        task.call(avx2)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn newline_mask_avx2(block: &[u8; 64]) -> u64 {
        let newline = _mm256_set1_epi8(b'\n' as i8);
        let (low, high) = block.split_at(32);
        let half_mask = |half: &[u8]| {
            debug_assert_eq!(half.len(), 32);
            // SAFETY: `half` is 32 readable bytes (half of a 64-byte array), exactly what the
            // unaligned load reads. (`_mm256_set_epi64x` of four words, as the SSE2 code does,
            // compiled to blends rather than one load.)
            let lanes = unsafe { _mm256_loadu_si256(half.as_ptr().cast::<__m256i>()) };
            u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(lanes, newline)) as u32)
        };
        half_mask(low) | (half_mask(high) << 32)
    }

    #[inline]
    #[target_feature(enable = "ssse3")]
    fn quad_values_ssse3(window: &[u8; 16], shuffle: &[u8; 16]) -> Option<u32> {
        let digits = _mm_sub_epi8(load(window), _mm_set1_epi8(b'0' as i8));
        let placed = _mm_shuffle_epi8(digits, load(shuffle));
        let weights = _mm_setr_epi8(100, 10, 1, 0, 100, 10, 1, 0, 100, 10, 1, 0, 100, 10, 1, 0);
        // u8 x i8 pairs summed to i16 (100h + 10t, o), then i16 pairs summed to i32.
        let values = _mm_madd_epi16(_mm_maddubs_epi16(placed, weights), _mm_set1_epi16(1));
        if _mm_movemask_epi8(_mm_cmpgt_epi32(values, _mm_set1_epi32(255))) != 0 {
            return None;
        }
        // Low byte of each 32-bit lane, first octet most significant.
        let order = _mm_setr_epi8(12, 8, 4, 0, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
        Some(_mm_cvtsi128_si32(_mm_shuffle_epi8(values, order)) as u32)
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(bytes: &[u8; 16]) -> __m128i {
        let (low, high) = bytes.split_at(8);
        let low = i64::from_le_bytes(low.try_into().expect("8 bytes"));
        let high = i64::from_le_bytes(high.try_into().expect("8 bytes"));
        _mm_set_epi64x(high, low)
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn equal_mask_sse2(bytes: &[u8; 16], byte: u8) -> u32 {
        let equal = _mm_cmpeq_epi8(load(bytes), _mm_set1_epi8(byte as i8));
        _mm_movemask_epi8(equal) as u32
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn digit_mask_sse2(bytes: &[u8; 16]) -> u32 {
        // Signed compares: bytes >= 0x80 are negative, so never digits.
        let x = load(bytes);
        let digits = _mm_and_si128(
            _mm_cmpgt_epi8(x, _mm_set1_epi8(b'0' as i8 - 1)),
            _mm_cmplt_epi8(x, _mm_set1_epi8(b'9' as i8 + 1)),
        );
        _mm_movemask_epi8(digits) as u32
    }

    #[inline]
    pub(super) fn equal_mask(bytes: &[u8; 16], byte: u8) -> u32 {
        // SAFETY: the only requirement of a `target_feature` function is that the CPU has the
        // feature; SSE2 is part of the x86_64 baseline (every x86_64 CPU has it, and this module
        // is compiled for x86_64 only). The function reads nothing but its arguments.
        unsafe { equal_mask_sse2(bytes, byte) }
    }

    #[inline]
    pub(super) fn digit_mask(bytes: &[u8; 16]) -> u32 {
        // SAFETY: as in `equal_mask`: SSE2 is baseline on x86_64.
        unsafe { digit_mask_sse2(bytes) }
    }

    #[inline]
    pub(crate) fn key_and_empty_masks(window: &[u32; 8], key: u32) -> (u32, u32) {
        // SAFETY: as in `equal_mask`: SSE2 is baseline on x86_64. The function reads nothing
        // but its arguments.
        unsafe { key_and_empty_masks_sse2(window, key) }
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn key_and_empty_masks_sse2(window: &[u32; 8], key: u32) -> (u32, u32) {
        let (low, high) = window.split_at(4);
        // SAFETY: `low` and `high` are 4 readable `u32`s (16 bytes) each, the two halves of the
        // 8-slot window, exactly what the unaligned loads read.
        let (low, high) = unsafe {
            (
                _mm_loadu_si128(low.as_ptr().cast::<__m128i>()),
                _mm_loadu_si128(high.as_ptr().cast::<__m128i>()),
            )
        };
        let key = _mm_set1_epi32(key as i32);
        let zero = _mm_setzero_si128();
        let found_low = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(low, key)));
        let found_high = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(high, key)));
        let empty_low = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(low, zero)));
        let empty_high = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(high, zero)));
        (
            (found_low | found_high << 4) as u32,
            (empty_low | empty_high << 4) as u32,
        )
    }
}

/// The portable version: on x86_64 it is compiled for the tests only, which hold SSE2 to it.
#[cfg(any(test, not(target_arch = "x86_64")))]
mod swar {
    const LANES_01: u128 = u128::from_le_bytes([0x01; 16]);
    const LANES_7F: u128 = u128::from_le_bytes([0x7F; 16]);
    const LANES_80: u128 = u128::from_le_bytes([0x80; 16]);

    /// Lanes (bytes) of `x` equal to `byte`, as their high bit.
    fn lanes_equal(x: u128, byte: u8) -> u128 {
        let t = x ^ (LANES_01 * u128::from(byte));
        !(((t & LANES_7F) + LANES_7F) | t) & LANES_80
    }

    /// Lanes of `x` below `limit` (<= 0x80), as their high bit.
    fn lanes_below(x: u128, limit: u8) -> u128 {
        let t = (x & LANES_7F) + LANES_01 * u128::from(0x80 - limit);
        !t & !x & LANES_80
    }

    /// The high bits of the 8 lanes of `x` as an 8-bit mask (lane `k` -> bit `k`): the
    /// multiplier places lane `k`'s bit at position `56 + k`, and no two partial products share
    /// a bit, so nothing carries.
    fn lane_mask(x: u64) -> u32 {
        (((x >> 7) & 0x0101_0101_0101_0101).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
    }

    fn lane_mask_16(x: u128) -> u32 {
        lane_mask(x as u64) | (lane_mask((x >> 64) as u64) << 8)
    }

    pub(super) fn equal_mask(bytes: &[u8; 16], byte: u8) -> u32 {
        lane_mask_16(lanes_equal(u128::from_le_bytes(*bytes), byte))
    }

    pub(super) fn digit_mask(bytes: &[u8; 16]) -> u32 {
        let x = u128::from_le_bytes(*bytes);
        lane_mask_16(lanes_below(x, b'9' + 1) & !lanes_below(x, b'0'))
    }
}

/// `(found, empty)` for an 8-slot window, slot by slot: bit `i` set iff `window[i] == key`, resp.
/// `window[i]` is the empty value (`T::default()`, i.e. 0). The portable form of
/// [`key_and_empty_masks`], and the form for keys wider than a SIMD lane.
#[inline(always)]
pub(crate) fn window_masks_by_slot<T: Copy + PartialEq + Default>(
    window: &[T; 8],
    key: T,
) -> (u32, u32) {
    let mut found = 0;
    let mut empty = 0;
    for (index, &held) in window.iter().enumerate() {
        found |= u32::from(held == key) << index;
        empty |= u32::from(held == T::default()) << index;
    }
    (found, empty)
}

/// `(found, empty)` for an 8-slot window of the distinct-key table: bit `i` set iff
/// `window[i] == key`, resp. `window[i] == 0` (an empty slot).
#[cfg(target_arch = "x86_64")]
pub(crate) use imp::key_and_empty_masks;
#[cfg(target_arch = "x86_64")]
use imp::{digit_mask, equal_mask};
#[cfg(target_arch = "x86_64")]
pub(crate) use imp::{Avx2, Ssse3, WithAvx2, WithSsse3};
#[cfg(not(target_arch = "x86_64"))]
use swar::{digit_mask, equal_mask};
#[cfg(not(target_arch = "x86_64"))]
pub(crate) use window_masks_by_slot as key_and_empty_masks;

/// How a 64-byte block's newline mask is computed: [`Baseline`] anywhere, [`Avx2`] with two
/// 32-byte compares where the CPU has it.
pub(crate) trait NewlineMasks: Copy {
    /// Bit `i` set iff `block[i] == b'\n'`.
    fn newline_mask(self, block: &[u8; 64]) -> u64;
}

/// [`newline_mask`]: 16 bytes at a time (SSE2 on x86_64, SWAR elsewhere), on every CPU.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Baseline;

impl NewlineMasks for Baseline {
    #[inline(always)]
    fn newline_mask(self, block: &[u8; 64]) -> u64 {
        newline_mask(block)
    }
}

/// The `\n` positions of `data` as one 64-bit mask per 64-byte block: `(offset, mask)`, bit `i`
/// of `mask` set iff `data[offset + i] == b'\n'`. The hot loop walks each mask's bits itself,
/// so that per-block work (the key batch's fullness check) runs once per block, not per line.
/// For ~150-byte log lines, masks measured slightly cheaper than restarting `memchr` at every
/// line.
#[derive(Debug)]
pub(crate) struct NewlineBlocks<'a, M> {
    data: &'a [u8],
    masks: M,
    /// Offset of the next block.
    offset: usize,
}

impl<'a, M: NewlineMasks> NewlineBlocks<'a, M> {
    #[inline(always)]
    pub(crate) fn new(data: &'a [u8], masks: M) -> Self {
        Self {
            data,
            masks,
            offset: 0,
        }
    }
}

/// Newline mask of the first (up to) 64 bytes of `data`.
#[inline(always)]
fn block_mask<M: NewlineMasks>(data: &[u8], masks: M) -> u64 {
    match data.first_chunk::<64>() {
        Some(block) => masks.newline_mask(block),
        None => data
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .fold(0, |mask, (i, _)| mask | (1 << i)),
    }
}

impl<M: NewlineMasks> Iterator for NewlineBlocks<'_, M> {
    type Item = (usize, u64);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, u64)> {
        let offset = self.offset;
        let rest = self.data.get(offset..).filter(|rest| !rest.is_empty())?;
        self.offset += 64;
        Some((offset, block_mask(rest, self.masks)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slow_mask(bytes: &[u8], wanted: impl Fn(u8) -> bool) -> u64 {
        bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| wanted(b))
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    proptest! {
        #[test]
        fn avx2_newline_mask_agrees_byte_by_byte(
            bytes in prop::collection::vec(prop::sample::select(b"\n\n\nab\x8a\x0a\xff".to_vec()), 64..=64)
        ) {
            let block: &[u8; 64] = bytes.first_chunk().expect("64 bytes");
            let expected = slow_mask(block, |b| b == b'\n');
            prop_assert_eq!(newline_mask(block), expected);
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = Avx2::detect() {
                prop_assert_eq!(avx2.newline_mask(block), expected);
            }
        }

        #[test]
        fn key_and_empty_masks_agree_slot_by_slot(
            window in prop::array::uniform8(prop::sample::select(vec![0u32, 1, 7, 0x8000_0000, u32::MAX])),
            key in prop::sample::select(vec![1u32, 7, 0x8000_0000, u32::MAX]),
        ) {
            let found = window.iter().enumerate().filter(|&(_, &held)| held == key).fold(0, |m, (i, _)| m | 1 << i);
            let empty = window.iter().enumerate().filter(|&(_, &held)| held == 0).fold(0, |m, (i, _)| m | 1 << i);
            prop_assert_eq!(key_and_empty_masks(&window, key), (found, empty));
            prop_assert_eq!(window_masks_by_slot(&window, key), (found, empty));
        }

        #[test]
        fn masks_agree_byte_by_byte(bytes in prop::array::uniform16(any::<u8>())) {
            let digits = slow_mask(&bytes, |b| b.is_ascii_digit()) as u32;
            let dots = slow_mask(&bytes, |b| b == b'.') as u32;
            let zeros = slow_mask(&bytes, |b| b == b'0') as u32;
            prop_assert_eq!(digit_dot_zero_masks(&bytes), (digits, dots, zeros));
            prop_assert_eq!((swar::digit_mask(&bytes), swar::equal_mask(&bytes, b'.')), (digits, dots));
            prop_assert_eq!(u64::from(equal_mask(&bytes, b'\n')), slow_mask(&bytes, |b| b == b'\n'));
        }

        #[test]
        fn newlines_are_memchr(bytes in prop::collection::vec(prop::sample::select(b"ab\n.9\xff".to_vec()), 0..300)) {
            let expected: Vec<usize> = memchr::memchr_iter(b'\n', &bytes).collect();
            prop_assert_eq!(&positions(NewlineBlocks::new(&bytes, Baseline)), &expected);
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = Avx2::detect() {
                prop_assert_eq!(&positions(NewlineBlocks::new(&bytes, avx2)), &expected);
            }
        }
    }

    fn positions<M: NewlineMasks>(blocks: NewlineBlocks<'_, M>) -> Vec<usize> {
        let mut positions = Vec::new();
        for (offset, mut mask) in blocks {
            while mask != 0 {
                positions.push(offset + mask.trailing_zeros() as usize);
                mask &= mask - 1;
            }
        }
        positions
    }
}
