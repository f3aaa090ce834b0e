//! CRC-32C (Castagnoli; reflected polynomial `0x82F63B78`, as in RFC 4960 Appendix B,
//! which the specification cites), for the checksum a v2 header may carry (§2.2.3).
//!
//! Table-driven, in software: std has no CRC32c, the crate takes no dependencies, and the
//! SSE4.2 / ARMv8 CRC instructions need `unsafe` intrinsics, which the crate forbids. A
//! header is at most 64 KiB and checked once per connection, so a byte-at-a-time 1 KiB
//! table computed at compile time is plenty; a bit-at-a-time loop would be 8x slower for
//! no saving worth having.

const CRC32C_TABLE: [u32; 256] = crc32c_table();

#[allow(
    clippy::indexing_slicing,
    reason = "compile-time loop over 0..256 into a 256-entry array; cannot run on input"
)]
const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

#[allow(clippy::indexing_slicing, reason = "the index is a u8 and the table has 256 entries")]
fn crc32c_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &byte in bytes {
        let [low, ..] = crc.to_le_bytes();
        crc = CRC32C_TABLE[usize::from(low ^ byte)] ^ (crc >> 8);
    }
    crc
}

pub(super) fn crc32c(bytes: &[u8]) -> u32 {
    !crc32c_update(!0, bytes)
}

/// The CRC32c of `header` with the 4 bytes at `value_offset` read as zeros, as
/// the specification defines the checksum (§2.2.3), without copying the header.
pub(super) fn crc32c_zeroing(header: &[u8], value_offset: usize) -> u32 {
    let (before, rest) = header.split_at_checked(value_offset).unwrap_or((header, &[]));
    let after = rest.get(4..).unwrap_or_default();
    let crc = crc32c_update(!0, before);
    let crc = crc32c_update(crc, &[0; 4]);
    !crc32c_update(crc, after)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_published_check_values() {
        let ascending: Vec<u8> = (0..32).collect();
        let cases: [(&str, &[u8], u32); 5] = [
            ("empty", b"", 0),
            ("check value of \"123456789\"", b"123456789", 0xE306_9283),
            ("RFC 3720 B.4: 32 zeros", &[0; 32], 0x8A91_36AA),
            ("RFC 3720 B.4: 32 x 0xFF", &[0xFF; 32], 0x62A8_AB43),
            ("RFC 3720 B.4: 0..32", &ascending, 0x46DD_794E),
        ];
        for (name, input, expected) in cases {
            assert_eq!(crc32c(input), expected, "{name}");
        }
    }
}
