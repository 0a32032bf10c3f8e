//! Canonical IPv6 keys packed into a `u128`: the counterpart, for IPv6 clients, of the dotted
//! quads packed into a `u32` (`keys.rs`), so that an IPv6-heavy log is not counted through a hash
//! map of byte strings (a miss for the map's slot and another for the key's heap bytes per line).
//!
//! Packing must stay exact: keys are compared byte for byte, and `2001:db8::1`,
//! `2001:0db8::1` and `2001:db8:0:0:0:0:0:1` are three different keys of one address. So a key
//! is packed only if it is *the* canonical text of its address, and every other spelling stays a
//! byte-string key; since each address has exactly one canonical text, packing is injective.
//! Canonical here is RFC 5952's form written in hex only: 8 groups of lowercase hex without
//! leading zeros, and `::` in place of the longest run of two or more zero groups (the first such
//! run on a tie), nowhere else. (RFC 5952 writes IPv4-mapped addresses as `::ffff:1.2.3.4`; that
//! text contains dots, so it is never packed and stays a byte key, as does every other form.)
//! [`format_ipv6`] writes this form back, for `--top`.

/// The address whose canonical text `key` is, or `None` for any other bytes.
pub(crate) fn parse_canonical_ipv6(key: &[u8]) -> Option<u128> {
    // `::` is the shortest canonical text, 8 groups of 4 digits and 7 colons the longest.
    if !(2..=39).contains(&key.len()) {
        return None;
    }
    let mut groups = [0u16; 8];
    let mut count = 0;
    // Where `::` stands: the number of groups written before it.
    let mut gap_at = None;
    let mut value = 0u16;
    let mut digits = 0;
    // One pass, one table lookup a byte: this runs on every line whose key is not a dotted
    // quad, and a parse by slices and iterators cost ~50 ns a key.
    for (index, &byte) in key.iter().enumerate() {
        match BYTE_CLASS[usize::from(byte)] {
            COLON if digits > 0 => {
                // `count == 8` here means a ninth group follows.
                *groups.get_mut(count)? = value;
                count += 1;
                (value, digits) = (0, 0);
            }
            // A colon right after a colon (or at the start, if another follows): `::`, once.
            COLON if gap_at.is_none() && key.get(index + 1) != Some(&b':') => {
                if index == 0 || key[index - 1] != b':' {
                    return None;
                }
                gap_at = Some(count);
            }
            // The first colon of a leading `::`.
            COLON if index == 0 => {}
            // A third colon in a row, a second `::`, or a single leading colon.
            COLON => return None,
            // A fifth digit, or a digit after a leading `0`.
            _ if digits == 4 || (digits == 1 && value == 0) => return None,
            digit if digit < 16 => {
                value = value << 4 | u16::from(digit);
                digits += 1;
            }
            _ => return None,
        }
    }
    if digits > 0 {
        *groups.get_mut(count)? = value;
        count += 1;
    } else if gap_at != Some(count) {
        // Ends in a single `:`.
        return None;
    }
    let mut address = [0u16; 8];
    match gap_at {
        None if count == 8 => address = groups,
        // `::` stands for two or more zero groups.
        Some(gap) if count <= 6 => {
            address[..gap].copy_from_slice(&groups[..gap]);
            let after = count - gap;
            address[8 - after..].copy_from_slice(&groups[gap..count]);
        }
        _ => return None,
    }
    // The compression must be the canonical one: exactly the first longest run of 2+ zero
    // groups (a run that an explicit `0` next to the `::` extends is not exactly the gap).
    let expected = gap_at.map(|gap| (gap, 8 - count));
    if longest_zero_run(&address) != expected {
        return None;
    }
    Some(
        address
            .iter()
            .fold(0u128, |packed, &group| packed << 16 | u128::from(group)),
    )
}

/// [`BYTE_CLASS`] of `:`; lower-case hex digits map to their value, anything else to `OTHER`.
const COLON: u8 = 16;
const OTHER: u8 = 255;
static BYTE_CLASS: [u8; 256] = {
    let mut classes = [OTHER; 256];
    let mut digit = 0;
    while digit < 10 {
        classes[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    let mut letter = 0;
    while letter < 6 {
        classes[b'a' as usize + letter] = 10 + letter as u8;
        letter += 1;
    }
    classes[b':' as usize] = COLON;
    classes
};

/// The canonical text of `address` (the inverse of [`parse_canonical_ipv6`]).
pub(crate) fn format_ipv6(address: u128) -> String {
    let groups: [u16; 8] = std::array::from_fn(|index| (address >> (112 - 16 * index)) as u16);
    let hex = |groups: &[u16]| {
        groups
            .iter()
            .map(|group| format!("{group:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    match longest_zero_run(&groups) {
        Some((start, len)) => format!("{}::{}", hex(&groups[..start]), hex(&groups[start + len..])),
        None => hex(&groups),
    }
}

/// `(start, length)` of the first longest run of two or more zero groups, if any.
fn longest_zero_run(groups: &[u16; 8]) -> Option<(usize, usize)> {
    let (mut best, mut best_len) = (0, 1);
    let (mut start, mut len) = (0, 0);
    for (index, &group) in groups.iter().enumerate() {
        if group == 0 {
            if len == 0 {
                start = index;
            }
            len += 1;
            if len > best_len {
                (best, best_len) = (start, len);
            }
        } else {
            len = 0;
        }
    }
    (best_len >= 2).then_some((best, best_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    fn parse(text: &str) -> Option<u128> {
        parse_canonical_ipv6(text.as_bytes())
    }

    #[test]
    fn canonical_texts_are_packed() {
        for (text, address) in [
            ("::", 0u128),
            ("::1", 1),
            ("1::", 1 << 112),
            ("2001:db8::1", 0x2001_0db8_0000_0000_0000_0000_0000_0001),
            ("2001:db8:1::3e8", 0x2001_0db8_0001_0000_0000_0000_0000_03e8),
            ("1:2:3:4:5:6:7:8", 0x0001_0002_0003_0004_0005_0006_0007_0008),
            (
                "2001:db8:0:1:1:1:1:1",
                0x2001_0db8_0000_0001_0001_0001_0001_0001,
            ),
            (
                "2001:db8::1:0:0:1",
                0x2001_0db8_0000_0000_0001_0000_0000_0001,
            ),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", u128::MAX),
            ("fe80::", 0xfe80 << 112),
        ] {
            assert_eq!(parse(text), Some(address), "{text}");
            assert_eq!(format_ipv6(address), text);
        }
    }

    #[test]
    fn other_spellings_stay_byte_keys() {
        for text in [
            "",
            ":",
            ":::",
            "1:",
            ":1",
            "1:::2",
            "1::2::3",
            "2001:0db8::1",         // leading zero
            "2001:DB8::1",          // upper case
            "2001:db8:0:0:0:0:0:1", // compressible, not compressed
            "2001:db8::1:1:1:1:1",  // `::` for a single zero group
            "2001:db8:0:0:1::1",    // not the first longest run
            "0::1",                 // an explicit zero next to the gap
            "1:0::",                // ... on the other side
            "1:2:3:4:5:6:7:8:9",    // nine groups
            "1:2:3:4:5:6:7",        // seven groups, no gap
            "12345::",              // five digits
            "::ffff:1.2.3.4",       // mixed notation
            "fe80::1%eth0",         // zone
            "1:2:3:4:5:6:7:8 ",     // trailing byte
            "host.example",
            "1.2.3.4",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    /// Addresses with many zero groups, so that runs, ties and compression all come up.
    fn addresses() -> impl Strategy<Value = u128> {
        prop::array::uniform8(prop_oneof![3 => Just(0u16), 1 => Just(1u16), 2 => any::<u16>()])
            .prop_map(|groups| groups.iter().fold(0u128, |a, &g| a << 16 | u128::from(g)))
    }

    proptest! {
        #[test]
        fn format_and_parse_are_inverse(address in addresses()) {
            let text = format_ipv6(address);
            prop_assert_eq!(parse(&text), Some(address));
            // std writes the same RFC 5952 text, except IPv4-mapped addresses in dotted form.
            let std_text = Ipv6Addr::from(address).to_string();
            if !std_text.contains('.') {
                prop_assert_eq!(&text, &std_text);
            }
        }

        /// What makes packing exact: any bytes that pack are the canonical text of their
        /// address, so no two different keys pack to one address.
        #[test]
        fn only_the_canonical_text_packs(
            text in prop::collection::vec(prop::sample::select(b"0010aF::::.".to_vec()), 0..24)
        ) {
            if let Some(address) = parse_canonical_ipv6(&text) {
                let canonical = format_ipv6(address);
                prop_assert_eq!(canonical.as_bytes(), &text[..]);
            }
        }

        #[test]
        fn near_canonical_texts_pack_iff_canonical(address in addresses(), mutation in 0usize..4) {
            // Other spellings of the same address: fully expanded, upper case, zero-padded.
            let groups: Vec<String> = (0..8)
                .map(|index| format!("{:x}", (address >> (112 - 16 * index)) as u16))
                .collect();
            let text = match mutation {
                0 => groups.join(":"),
                1 => format_ipv6(address).to_uppercase(),
                2 => groups.iter().map(|g| format!("{g:0>4}")).collect::<Vec<_>>().join(":"),
                _ => format_ipv6(address),
            };
            let canonical = text == format_ipv6(address);
            prop_assert_eq!(parse(&text).is_some(), canonical, "{}", text);
        }
    }
}
