//! Client keys: the rule that turns one log line into the key it is counted under, and the
//! canonical-IPv4 fast path that packs the overwhelmingly common key, a dotted quad, into a `u32`.
//!
//! The rule: the key is the bytes before the first ` - -` (the whole line if there is
//! none), then before the first `,`. Equivalently: the line up to the first `,` or ` - -`,
//! whichever comes first, because neither pattern can overlap the other.
//!
//! Packing is exact: a key is packed if and only if its bytes are a canonical dotted quad (four
//! decimal octets <= 255, no leading zeros, nothing else), so `01.2.3.4` and `1.2.3.4` stay two
//! keys, and a packed key never equals a byte-string key.

use std::sync::LazyLock;

use memchr::{memchr, memchr2, memmem};

use super::lanes;

/// The separator between the client key and the identity/user fields of a combined log line.
const IDENT_SEPARATOR: &[u8] = b" - -";

/// A line's client key, as `&line[..key_len(line)]`.
pub(crate) fn client_key(line: &[u8]) -> &[u8] {
    &line[..key_len(line)]
}

/// The length of the client key of `line` (which has already lost its `\n` and trailing `\r`).
pub(crate) fn key_len(line: &[u8]) -> usize {
    // The usual line has its first space or comma right after the key: one short `memchr2`
    // settles it, where two searches over the line (for ` - -`, then for `,`) cost several
    // times more on every line whose key is not a dotted quad (IPv6 clients, host names).
    match memchr2(b' ', b',', line) {
        None => line.len(),
        Some(at) if line[at] == b',' || line[at..].starts_with(IDENT_SEPARATOR) => at,
        // A space that does not start ` - -`: both patterns can only occur after it.
        Some(at) => at + 1 + key_len_by_search(&line[at + 1..]),
    }
}

/// [`key_len`] by searching for each pattern over the whole line.
fn key_len_by_search(line: &[u8]) -> usize {
    // `memmem::find` would build a searcher per line.
    static IDENT_FINDER: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(IDENT_SEPARATOR));
    let before_ident = IDENT_FINDER.find(line).unwrap_or(line.len());
    memchr(b',', &line[..before_ident]).unwrap_or(before_ident)
}

/// Whether a line is skipped: empty or only ASCII whitespace (space, `\t`, `\n`, `\x0C`, `\r`,
/// the WHATWG/Rust definition: vertical tab is data).
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The fast path for one line (without its `\n`, but with its trailing `\r` if it has one):
/// if the line starts with a canonical dotted quad that is its whole client key (it is followed
/// by the end of the line, a last `\r`, `,` or ` - -`), that quad packed big-endian (`1.2.3.4`
/// -> `0x01020304`). `None` means "take the general path", never "no key".
#[inline(always)]
pub(crate) fn packed_ipv4_key<V: QuadValues>(line: &[u8], values: V) -> Option<u32> {
    let (ip, len) = match line.first_chunk::<16>() {
        Some(window) => ipv4_prefix_window(window, values)?,
        None => ipv4_prefix(line)?,
    };
    let rest = &line[len..];
    match rest.first() {
        None | Some(b',') => Some(ip),
        // The one trailing `\r` the rules remove (here rather than before the parse: one
        // compare on the rare path instead of a strip on every line).
        Some(b'\r') if rest.len() == 1 => Some(ip),
        Some(b' ') if rest.starts_with(IDENT_SEPARATOR) => Some(ip),
        _ => None,
    }
}

/// `key` packed if its bytes are exactly a canonical dotted quad.
pub(crate) fn parse_canonical_ipv4(key: &[u8]) -> Option<u32> {
    match ipv4_prefix(key)? {
        (ip, len) if len == key.len() => Some(ip),
        _ => None,
    }
}

/// The canonical dotted quad at the start of `bytes` and its length. The quad must not be
/// followed by another digit (`1.2.3.45` is not `1.2.3.4` followed by `5`).
#[inline]
fn ipv4_prefix(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut at = 0;
    let mut ip = 0u32;
    for index in 0..4 {
        if index > 0 {
            if bytes.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        ip = (ip << 8) | octet(bytes, &mut at)?;
    }
    Some((ip, at))
}

/// How the octet values of a validated dotted quad are computed: [`ScalarValues`] anywhere,
/// [`lanes::Ssse3`] with one shuffle where the CPU has SSSE3 (the values were ~30% of the hot
/// loop's CPU time when computed digit by digit).
pub(crate) trait QuadValues: Copy {
    /// The quad in `window` laid out as `shape` says (octet lengths already checked), packed
    /// big-endian; `None` if an octet exceeds 255.
    fn quad_values(self, window: &[u8; 16], shape: &QuadShape) -> Option<u32>;
}

/// Octet values digit by digit, without branches on the lengths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScalarValues;

impl QuadValues for ScalarValues {
    #[inline(always)]
    fn quad_values(self, window: &[u8; 16], shape: &QuadShape) -> Option<u32> {
        let digit = |i: usize| u32::from(window[i & 15].wrapping_sub(b'0'));
        let mut ip = 0u32;
        let mut too_big = false;
        let mut end = 0;
        for len in shape.lengths {
            let len = usize::from(len);
            end += len;
            let has_tens = u32::from(len >= 2).wrapping_neg();
            let has_hundreds = u32::from(len == 3).wrapping_neg();
            let value = (digit(end.wrapping_sub(3)) & has_hundreds) * 100
                + (digit(end.wrapping_sub(2)) & has_tens) * 10
                + digit(end - 1);
            too_big |= value > 255;
            ip = (ip << 8) | value;
            end += 1;
        }
        (!too_big).then_some(ip)
    }
}

#[cfg(target_arch = "x86_64")]
impl QuadValues for lanes::Ssse3 {
    #[inline(always)]
    fn quad_values(self, window: &[u8; 16], shape: &QuadShape) -> Option<u32> {
        lanes::Ssse3::quad_values(self, window, &shape.shuffle)
    }
}

/// One of the 81 layouts of a dotted quad (octet lengths 1..=3 each) in a 16-byte window.
#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
pub(crate) struct QuadShape {
    /// Bit `i` set iff byte `i` is one of the three dots or the byte right after the quad: the
    /// "shape code" of the window (see [`ipv4_prefix_window`]). 0 marks an unused table slot
    /// (no window has code 0: its terminator bit is always set).
    code: u32,
    /// The octets' lengths, first octet first.
    lengths: [u8; 4],
    /// For `pshufb`: moves octet `k`'s hundreds, tens and ones digits to lanes `4k..4k+3`
    /// (missing digits and lane `4k+3` zeroed by index 0x80).
    shuffle: [u8; 16],
}

/// Multiplier of the perfect hash `(code * SHAPE_HASH) >> 24` of the 81 shape codes into 256
/// slots (found by a search over random odd multipliers; `shape_table` checks it at compile time).
const SHAPE_HASH: u32 = 0x86e5_b70d;

/// The shapes, by the hash of their code.
static QUAD_SHAPES: [QuadShape; 256] = shape_table();

const fn shape_slot(code: u32) -> usize {
    (code.wrapping_mul(SHAPE_HASH) >> 24) as usize
}

const fn shape_table() -> [QuadShape; 256] {
    let mut table = [QuadShape {
        code: 0,
        lengths: [0; 4],
        shuffle: [0x80; 16],
    }; 256];
    let mut index = 0;
    while index < 81 {
        let lengths = [
            (index / 27 % 3 + 1) as u8,
            (index / 9 % 3 + 1) as u8,
            (index / 3 % 3 + 1) as u8,
            (index % 3 + 1) as u8,
        ];
        let mut shape = QuadShape {
            code: 0,
            lengths,
            shuffle: [0x80; 16],
        };
        let mut start = 0;
        let mut octet = 0;
        while octet < 4 {
            let len = lengths[octet] as usize;
            if len == 3 {
                shape.shuffle[4 * octet] = start as u8;
            }
            if len >= 2 {
                shape.shuffle[4 * octet + 1] = (start + len - 2) as u8;
            }
            shape.shuffle[4 * octet + 2] = (start + len - 1) as u8;
            shape.code |= 1 << (start + len);
            start += len + 1;
            octet += 1;
        }
        let slot = shape_slot(shape.code);
        assert!(table[slot].code == 0, "SHAPE_HASH is not perfect");
        table[slot] = shape;
        index += 1;
    }
    table
}

/// [`ipv4_prefix`] on a 16-byte window (every dotted quad and its terminator fit in 16 bytes),
/// without the data-dependent branches of a digit loop: octet lengths vary from line to line,
/// and a mispredicted branch per octet was the largest cost of the hot loop. Digit, dot and
/// zero positions come from lane masks. The window's shape code (its dots up to the first byte
/// that is neither digit nor dot, and that byte) is a window of digits and dots that ends
/// there; it is a dotted quad of 1..=3-digit octets iff the code is one of the 81 in
/// [`QUAD_SHAPES`], found by one multiplicative hash and checked by one compare (instead of a
/// chain of four bit scans and length checks). One difference from [`ipv4_prefix`]: a quad
/// followed by `.` is rejected here (a dot is part of the shape), where `ipv4_prefix` accepts
/// `1.2.3.4` out of `1.2.3.4.5`; no caller accepts a quad followed by `.` as a key.
#[inline(always)]
fn ipv4_prefix_window<V: QuadValues>(window: &[u8; 16], values: V) -> Option<(u32, usize)> {
    let (digits, dots, zeros) = lanes::digit_dot_zero_masks(window);
    // Bytes that are neither digit nor dot, with a sentinel at 16 so that a window of digits
    // and dots ends there.
    let others = (!(digits | dots) & 0xFFFF) | 0x1_0000;
    // Every bit up to and including the first such byte.
    let through_end = others ^ (others - 1);
    let code = (dots | others) & through_end;
    let shape = &QUAD_SHAPES[shape_slot(code)];
    if shape.code != code {
        return None;
    }
    // A leading zero (`01`): an octet that starts with `0` followed by another digit.
    let starts = 1 | ((dots & through_end) << 1);
    if zeros & starts & (digits >> 1) != 0 {
        return None;
    }
    let end = code.ilog2() as usize;
    Some((values.quad_values(window, shape)?, end))
}

/// One canonical decimal octet at `bytes[*at..]`: 1 to 3 digits, no leading zero, <= 255,
/// not followed by a further digit. Advances `at` past it.
#[inline]
fn octet(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let digit = |i: usize| -> Option<u32> {
        let d = bytes.get(i)?.wrapping_sub(b'0');
        (d <= 9).then_some(u32::from(d))
    };
    let first = digit(*at)?;
    let mut value = first;
    let mut len = 1;
    if first != 0 {
        while len < 3 {
            match digit(*at + len) {
                Some(d) => {
                    value = value * 10 + d;
                    len += 1;
                }
                None => break,
            }
        }
    }
    // A digit right after `0`, or a fourth digit, makes the octet non-canonical.
    if digit(*at + len).is_some() || value > 255 {
        return None;
    }
    *at += len;
    Some(value)
}

/// The dotted-quad text of a packed key.
pub(crate) fn format_ipv4(ip: u32) -> String {
    std::net::Ipv4Addr::from(ip).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_before_ident_separator() {
        assert_eq!(client_key(b"1.2.3.4 - - [x] \"GET /\""), b"1.2.3.4");
        assert_eq!(client_key(b"host.example - - [x]"), b"host.example");
    }

    #[test]
    fn key_is_whole_line_without_separator() {
        assert_eq!(client_key(b"just some text"), b"just some text");
        assert_eq!(client_key(b"a - b - c"), b"a - b - c");
        assert_eq!(client_key(b"a --"), b"a --");
    }

    #[test]
    fn key_stops_at_first_comma_before_separator() {
        assert_eq!(client_key(b"10.0.0.1, 192.168.1.1 - - [x]"), b"10.0.0.1");
        assert_eq!(client_key(b"a,b,c"), b"a");
        // A comma after the separator does not matter.
        assert_eq!(client_key(b"abc - - x,y"), b"abc");
        assert_eq!(client_key(b",lead - -"), b"");
    }

    #[test]
    fn key_is_not_trimmed() {
        assert_eq!(client_key(b"  1.2.3.4  - - x"), b"  1.2.3.4 ");
        assert_eq!(client_key(b"\t1.2.3.4 - -"), b"\t1.2.3.4");
    }

    #[test]
    fn key_of_separator_at_start_is_empty() {
        assert_eq!(client_key(b" - - [x]"), b"");
    }

    #[test]
    fn blank_is_ascii_whitespace_only() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \t\r\x0c "));
        assert!(!is_blank(b"\x0b"));
        assert!(!is_blank(b" x "));
        assert!(!is_blank("\u{a0}".as_bytes()));
    }

    #[test]
    fn canonical_ipv4_is_packed() {
        assert_eq!(parse_canonical_ipv4(b"1.2.3.4"), Some(0x0102_0304));
        assert_eq!(parse_canonical_ipv4(b"0.0.0.0"), Some(0));
        assert_eq!(parse_canonical_ipv4(b"255.255.255.255"), Some(u32::MAX));
        assert_eq!(parse_canonical_ipv4(b"10.200.30.0"), Some(0x0AC8_1E00));
    }

    #[test]
    fn non_canonical_ipv4_is_not_packed() {
        for key in [
            &b"01.2.3.4"[..],
            b"1.2.3.04",
            b"1.2.3.00",
            b"256.1.1.1",
            b"1.2.3.4567",
            b"1.2.3",
            b"1.2.3.4.5",
            b"1.2.3.",
            b".1.2.3",
            b"1..2.3",
            b" 1.2.3.4",
            b"1.2.3.4 ",
            b"1.2.3.4x",
            b"",
            b"::1",
            b"\xff1.2.3.4",
        ] {
            assert_eq!(
                parse_canonical_ipv4(key),
                None,
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn fast_path_agrees_with_general_rule() {
        let lines: &[&[u8]] = &[
            b"1.2.3.4 - - [x]",
            b"1.2.3.4, 5.6.7.8 - - [x]",
            b"1.2.3.4,x",
            b"1.2.3.4",
            b"1.2.3.4 - x",
            b"1.2.3.4 -",
            b"1.2.3.45 - -",
            b"1.2.3.4x - -",
            b"01.2.3.4 - -",
            b"1.2.3.4  - -",
            b"1.2.3.4\t- -",
            b"1.2.3.4\r",
            b"1.2.3.4\r\r",
            b"1.2.3.4\rx",
            b"1.2.3.4 - -\r",
            b"1.2.3.4,\r",
        ];
        for line in lines {
            let shown = String::from_utf8_lossy(line);
            // The general rule removes one trailing `\r` first; the fast path sees it.
            let general =
                parse_canonical_ipv4(client_key(line.strip_suffix(b"\r").unwrap_or(line)));
            assert_eq!(packed_ipv4_key(line, ScalarValues), general, "{shown}");
            // Long enough for the 16-byte window path too.
            let padded = [*line, &b" and some more text"[..]].concat();
            let padded_general = parse_canonical_ipv4(client_key(&padded));
            assert_eq!(
                packed_ipv4_key(&padded, ScalarValues),
                padded_general,
                "{shown}"
            );
            #[cfg(target_arch = "x86_64")]
            if let Some(ssse3) = lanes::Ssse3::detect() {
                assert_eq!(packed_ipv4_key(&padded, ssse3), padded_general, "{shown}");
            }
        }
        assert_eq!(
            packed_ipv4_key(b"1.2.3.45 - -", ScalarValues),
            Some(0x0102_032D)
        );
        assert_eq!(packed_ipv4_key(b"1.2.3.4 - x", ScalarValues), None);
        assert_eq!(
            packed_ipv4_key(b"1.2.3.4\r", ScalarValues),
            Some(0x0102_0304)
        );
        assert_eq!(packed_ipv4_key(b"1.2.3.4\r\r", ScalarValues), None);
    }

    /// What [`ipv4_prefix_window`] must answer: [`ipv4_prefix`], except for a quad followed by
    /// `.`.
    fn expected_window_parse(bytes: &[u8]) -> Option<(u32, usize)> {
        ipv4_prefix(bytes).filter(|&(_, len)| bytes.get(len) != Some(&b'.'))
    }

    /// The rule as the issue states it, by the slowest means.
    fn naive_key_len(line: &[u8]) -> usize {
        let before_ident = line
            .windows(IDENT_SEPARATOR.len())
            .position(|window| window == IDENT_SEPARATOR)
            .unwrap_or(line.len());
        line[..before_ident]
            .iter()
            .position(|&byte| byte == b',')
            .unwrap_or(before_ident)
    }

    proptest::proptest! {
        #[test]
        fn key_len_follows_the_rule(
            line in proptest::collection::vec(proptest::sample::select(b" -,a:1".to_vec()), 0..40)
        ) {
            proptest::prop_assert_eq!(key_len(&line), naive_key_len(&line));
        }

        #[test]
        fn window_parse_agrees_with_scalar(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"0123456789012345678..., -x\xff".to_vec()), 16..20)
        ) {
            let window: &[u8; 16] = bytes.first_chunk().unwrap();
            let expected = expected_window_parse(&bytes);
            proptest::prop_assert_eq!(ipv4_prefix_window(window, ScalarValues), expected);
            #[cfg(target_arch = "x86_64")]
            if let Some(ssse3) = lanes::Ssse3::detect() {
                proptest::prop_assert_eq!(ipv4_prefix_window(window, ssse3), expected);
            }
        }
    }

    proptest::proptest! {
        /// Quad-like windows: four runs of 1..=4 digits (so every octet length combination,
        /// leading zeros, values > 255 and over-long octets), each followed by a dot or, now
        /// and then, another byte (non-digits where a dot or the terminator belongs), then
        /// random bytes. `0` and `.` are drawn more often, so that leading zeros inside
        /// otherwise valid quads are common.
        #[test]
        fn window_parse_of_quad_like_windows_agrees_with_scalar(
            octets in proptest::collection::vec(
                (proptest::collection::vec(proptest::sample::select(b"000123456789".to_vec()), 1..5),
                 proptest::sample::select(b"................,- x/:\xff0".to_vec())),
                4),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 16),
        ) {
            let mut bytes = Vec::new();
            for (digits, separator) in &octets {
                bytes.extend_from_slice(digits);
                bytes.push(*separator);
            }
            bytes.pop();
            bytes.extend_from_slice(&tail);
            let window: &[u8; 16] = bytes.first_chunk().unwrap();
            let expected = expected_window_parse(&bytes);
            proptest::prop_assert_eq!(ipv4_prefix_window(window, ScalarValues), expected);
            #[cfg(target_arch = "x86_64")]
            if let Some(ssse3) = lanes::Ssse3::detect() {
                proptest::prop_assert_eq!(ipv4_prefix_window(window, ssse3), expected);
            }
            // What the line loop asks: the whole fast path against the general rule.
            let general = parse_canonical_ipv4(client_key(&bytes));
            proptest::prop_assert_eq!(packed_ipv4_key(&bytes, ScalarValues), general);
            #[cfg(target_arch = "x86_64")]
            if let Some(ssse3) = lanes::Ssse3::detect() {
                proptest::prop_assert_eq!(packed_ipv4_key(&bytes, ssse3), general);
            }
        }
    }

    #[test]
    fn shape_table_holds_each_layout_once() {
        let used: Vec<&QuadShape> = QUAD_SHAPES.iter().filter(|s| s.code != 0).collect();
        assert_eq!(used.len(), 81);
        let mut seen = std::collections::HashSet::new();
        for shape in used {
            assert!(shape.lengths.iter().all(|l| (1..=3).contains(l)));
            assert!(seen.insert(shape.lengths), "{:?} twice", shape.lengths);
            let text: Vec<String> = shape
                .lengths
                .iter()
                .map(|&l| "1".repeat(usize::from(l)))
                .collect();
            let text = format!("{} - - [padding.....]", text.join("."));
            let window: &[u8; 16] = text.as_bytes().first_chunk().unwrap();
            assert_eq!(
                ipv4_prefix_window(window, ScalarValues),
                ipv4_prefix(text.as_bytes()),
                "{text}"
            );
        }
    }

    #[test]
    fn a_quad_followed_by_a_dot_is_not_a_key() {
        let line = b"1.2.3.4.5 - - [24/Nov/2026]";
        assert_eq!(ipv4_prefix(line), Some((0x0102_0304, 7)));
        assert_eq!(
            ipv4_prefix_window(line.first_chunk().unwrap(), ScalarValues),
            None
        );
        assert_eq!(packed_ipv4_key(line, ScalarValues), None);
        assert_eq!(parse_canonical_ipv4(client_key(line)), None);
    }

    #[test]
    fn window_parse_on_typical_windows() {
        for (text, expected) in [
            (&b"1.2.3.4 - - [24/N"[..], Some((0x0102_0304, 7))),
            (b"255.255.255.255 - -", Some((u32::MAX, 15))),
            (b"255.255.255.2555 -", None),
            (b"10.0.0.1, 10.0.0.", Some((0x0A00_0001, 8))),
            (b"01.2.3.4 - - [24/N", None),
            (b"1.2.3.00 - - [24/N", None),
            (b"256.2.3.4 - - [24/", None),
            (b"1.2.3 - - [24/Nov/", None),
            (b"2001:db8::1 - - [2", None),
            (b"0.0.0.0 - - [24/No", Some((0, 7))),
            (b"0123456789012345678", None),
            (b"1.2.3.4567890123456", None),
            (b"................", None),
        ] {
            let window: &[u8; 16] = text.first_chunk().unwrap();
            let shown = String::from_utf8_lossy(text);
            assert_eq!(
                ipv4_prefix_window(window, ScalarValues),
                expected,
                "{shown}"
            );
            #[cfg(target_arch = "x86_64")]
            if let Some(ssse3) = lanes::Ssse3::detect() {
                assert_eq!(ipv4_prefix_window(window, ssse3), expected, "{shown}");
            }
            assert_eq!(
                ipv4_prefix(text),
                expected,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn every_octet_length_combination() {
        let octets = ["7", "42", "199", "0", "255", "256", "10", "100", "999"];
        for a in octets {
            for b in octets {
                for c in octets {
                    for d in octets {
                        let text = format!("{a}.{b}.{c}.{d} - - [padding]");
                        let window: &[u8; 16] = text.as_bytes().first_chunk().unwrap();
                        let expected = expected_window_parse(text.as_bytes());
                        assert_eq!(ipv4_prefix_window(window, ScalarValues), expected, "{text}");
                        #[cfg(target_arch = "x86_64")]
                        if let Some(ssse3) = lanes::Ssse3::detect() {
                            assert_eq!(ipv4_prefix_window(window, ssse3), expected, "{text}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn format_round_trips() {
        assert_eq!(format_ipv4(0x0102_0304), "1.2.3.4");
        assert_eq!(
            parse_canonical_ipv4(format_ipv4(0xC0A8_0001).as_bytes()),
            Some(0xC0A8_0001)
        );
    }
}
