//! The vector step of `json_wide::decode_units` for code points (4-byte units: `wchar_t`
//! everywhere but Windows): 64 bytes of a JSON string body at a time with AVX-512 (VBMI's byte
//! permutes and AVX-512F's lane compression, found at run time: the wheel is built for
//! baseline x86-64).
//!
//! A server that escapes every non-ASCII character writes text where an escape starts every
//! few bytes; the scalar steps pay a branch per escape and per run of ASCII between them (~1.4
//! ms per MiB of mixed-script prose). Here a whole block is classified at once: the characters
//! JSON writes as they are, and the well-formed `\uXXXX` escapes (a high surrogate escape
//! followed by a low one joined into one code point). The positions that give a code point
//! are packed first, then taken 16 at a time into 32-bit lanes, each lane reading its
//! character or its escape's digits with one byte permute: escaped text, where a character
//! takes six bytes, needs one group of lanes a block, not four. A block is taken up to the
//! first byte that needs care (a quote, a control character, a byte beyond ASCII, another
//! escape, a lone surrogate, an escape or a pair running past the block's end); the scalar
//! steps read from there on, so every refusal and every unusual character is theirs, exactly
//! as before.

/// Whether the vector step runs on this machine.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vbmi")
            && std::arch::is_x86_feature_detected!("avx512vbmi2")
            && std::arch::is_x86_feature_detected!("popcnt")
            && std::arch::is_x86_feature_detected!("bmi1")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Where a run of clean blocks ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Input bytes read, from the start of `src`.
    pub read: usize,
    /// Output bytes written, from the start of `dst` (4 per code point).
    pub written: usize,
    /// The OR of the code points written.
    pub bits: u32,
}

/// Decode the string body `src[read..]` as native-endian code points into `dst[written..]`,
/// a block of 64 input bytes at a time, for as long as blocks start with something it takes;
/// it stops before the first byte it leaves to the scalar steps, or where fewer than 64 bytes
/// of input or 256 of room are left. Without the vector step (`available()` false), or with
/// bounds outside the slices, nothing is done.
pub fn clean_blocks(src: &[u8], read: usize, dst: &mut [u8], written: usize) -> Run {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX-512F, BW, VBMI and VBMI2, POPCNT and BMI1 (checked just
        // above).
        return unsafe { bounded_step(avx512::clean_blocks, src, read, dst, written) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (src, dst); // no vector step on this target
    Run::unmoved(read, written)
}

impl Run {
    /// Where a step that did nothing leaves its input and output.
    pub(crate) fn unmoved(read: usize, written: usize) -> Self {
        Run {
            read,
            written,
            bits: 0,
        }
    }
}

/// A vector step over raw bounds: `src` points to `src_len` readable bytes, from `read` on,
/// and `dst` to `dst_len` writable ones, from `written` on.
#[cfg(target_arch = "x86_64")]
pub(crate) type BlockStep = unsafe fn(*const u8, usize, usize, *mut u8, usize, usize) -> Run;

/// `step` over `src[read..]` into `dst[written..]`, or nothing done where those bounds lie
/// outside the slices.
///
/// # Safety
/// The CPU has the features `step` is compiled for.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn bounded_step(
    step: BlockStep,
    src: &[u8],
    read: usize,
    dst: &mut [u8],
    written: usize,
) -> Run {
    if read > src.len() || written > dst.len() {
        return Run::unmoved(read, written);
    }
    // SAFETY: the pointers and lengths describe the slices, and `read` and `written` lie
    // within them (checked just above); the CPU has `step`'s features (the caller's promise).
    unsafe {
        step(
            src.as_ptr(),
            src.len(),
            read,
            dst.as_mut_ptr(),
            dst.len(),
            written,
        )
    }
}

/// For group `g` of 16 packed positions, the byte permute that puts position `16 * g + k` in
/// each byte of 32-bit lane `k` (shared with `utf8_avx512`).
#[cfg(any(target_arch = "x86_64", test))]
const fn spread(group: usize) -> [u8; 64] {
    let mut table = [0u8; 64];
    let mut k = 0;
    while k < 64 {
        table[k] = (16 * group + k / 4) as u8;
        k += 1;
    }
    table
}

#[cfg(target_arch = "x86_64")]
pub(crate) static SPREAD: [[u8; 64]; 4] = [spread(0), spread(1), spread(2), spread(3)];

/// Each byte's own position in a block, for packing the positions of a mask's bits.
#[cfg(target_arch = "x86_64")]
pub(crate) static POSITIONS: [u8; 64] = {
    let mut table = [0u8; 64];
    let mut k = 0;
    while k < 64 {
        table[k] = k as u8;
        k += 1;
    }
    table
};

/// Added to a lane's position (in each of its four bytes): the four hex digits of an escape
/// starting there, least significant first, `shift` bytes further on (0: the escape's own, 6:
/// the next escape's). Indices past the block wrap as the permute reads them; only escapes
/// whose digits lie inside the block are used.
#[cfg(any(target_arch = "x86_64", test))]
const fn digit_offsets(shift: u32) -> i32 {
    // Byte k of the lane: the digit at `at + 5 - k` (the last digit is the lowest).
    i32::from_le_bytes([
        (shift + 5) as u8,
        (shift + 4) as u8,
        (shift + 3) as u8,
        (shift + 2) as u8,
    ])
}

/// The value of each hex digit, indexed by its byte's low six bits ('0'-'9' at 48-57, 'A'-'F'
/// at 1-6, 'a'-'f' at 33-38: no two collide); other entries are never read for a digit.
#[cfg(any(target_arch = "x86_64", test))]
const fn nibble_table() -> [u8; 64] {
    let mut table = [0u8; 64];
    let mut k = 0;
    while k < 10 {
        table[(b'0' + k) as usize % 64] = k;
        k += 1;
    }
    k = 0;
    while k < 6 {
        table[(b'A' + k) as usize % 64] = 10 + k;
        table[(b'a' + k) as usize % 64] = 10 + k;
        k += 1;
    }
    table
}

/// The positions below `n` (0 to 64) as a mask.
#[cfg(any(target_arch = "x86_64", test))]
fn below(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Block masks (bit p for the byte at p) to the length of the block's prefix the vector step
/// takes, and the positions in it that give a code point each.
#[cfg(any(target_arch = "x86_64", test))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// Bytes taken from the block's start.
    taken: u32,
    /// Positions that give a code point: characters as they are, escape starts (a pair's at
    /// its high half, the low half's dropped).
    keep: u64,
    /// Positions of the high halves of pairs taken.
    pairs: u64,
}

/// Where a block's prefix ends and what it gives, from its masks: `backslash`, `escapes` (the
/// backslashes that start a well-formed `\uXXXX` whose six bytes lie in the block), `care`
/// (quotes, control characters and bytes beyond ASCII), `high` and `low` (the escapes of
/// surrogates of either half). Plain bit arithmetic, tested on its own.
#[cfg(any(target_arch = "x86_64", test))]
fn plan(backslash: u64, escapes: u64, care: u64, high: u64, low: u64) -> Plan {
    // A low half right after a high half makes a pair with it; every other surrogate is left
    // to the scalar steps, which keep it as it is.
    // A pair running past the block's end has a low half that is no whole escape here: its
    // high half counts as lone, and the pair waits, whole, for the next block.
    let paired_low = low & (high << 6);
    let lone = (high & !(low >> 6)) | (low & !paired_low);
    let taken = ((backslash & !escapes) | care | lone).trailing_zeros();
    // Every escape before `taken` lies wholly before it (its other five bytes are a `u` and
    // hex digits, none of which stops the block), and so does a pair's low half.
    let inside = escapes << 1 | escapes << 2 | escapes << 3 | escapes << 4 | escapes << 5;
    let kept = below(taken);
    Plan {
        taken,
        keep: kept & !inside & !paired_low,
        pairs: high & kept,
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{digit_offsets, nibble_table, plan, Run, POSITIONS, SPREAD};

    static NIBBLES: [u8; 64] = nibble_table();

    /// Each 32-bit lane's escape value, for an escape whose four digits `indices` picks from
    /// `nibbles` (least significant first).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt,bmi1")]
    fn escape_values(nibbles: __m512i, indices: __m512i) -> __m512i {
        let picked = _mm512_permutexvar_epi8(indices, nibbles);
        // Adjacent nibbles into bytes' worth (low + 16 * high) in 16-bit lanes, then those
        // into 32-bit lanes (low + 256 * high).
        let pairs = _mm512_maddubs_epi16(picked, _mm512_set1_epi16(0x1001));
        _mm512_madd_epi16(pairs, _mm512_set1_epi32(0x0100_0001))
    }

    /// The code points of group `group` of a block's packed positions `packed` (`count` of
    /// them from the group's start; lanes at and past it are zero): the byte at each, or at
    /// an escape's start the escape's value, joined with the next escape's where it is a
    /// pair's high half (`with_pairs`: the block holds a pair; every high half it takes is
    /// one).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt,bmi1")]
    fn code_points(
        block: __m512i,
        nibbles: __m512i,
        packed: __m512i,
        group: usize,
        count: u32,
        with_pairs: bool,
    ) -> __m512i {
        let dword = _mm512_set1_epi32;
        // SAFETY: the table is 64 bytes (unaligned load).
        let spread = unsafe { _mm512_loadu_si512(SPREAD[group].as_ptr().cast()) };
        let at = _mm512_permutexvar_epi8(spread, packed);
        // Byte 0 of each lane: the byte at its position, zero-extended.
        let chars = _mm512_maskz_permutexvar_epi8(0x1111_1111_1111_1111, at, block);
        let escape = _mm512_cmpeq_epi32_mask(chars, dword(i32::from(b'\\')));
        let values = escape_values(nibbles, _mm512_add_epi8(at, dword(digit_offsets(0))));
        let mut code = _mm512_mask_mov_epi32(chars, escape, values);
        if with_pairs {
            // 0x10000 + (high - 0xD800) * 0x400 + (low - 0xDC00), wrapping.
            let high = escape
                & _mm512_cmpeq_epi32_mask(_mm512_and_si512(values, dword(0xFC00)), dword(0xD800));
            let next = escape_values(nibbles, _mm512_add_epi8(at, dword(digit_offsets(6))));
            let joined = _mm512_add_epi32(
                _mm512_add_epi32(_mm512_slli_epi32::<10>(values), next),
                dword(0x1_0000 - (0xD800 << 10) - 0xDC00),
            );
            code = _mm512_mask_mov_epi32(code, high, joined);
        }
        _mm512_maskz_mov_epi32(((1u32 << count.min(16)) - 1) as u16, code)
    }

    /// `super::clean_blocks` on AVX-512.
    ///
    /// # Safety
    /// The CPU has AVX-512F, BW, VBMI and VBMI2, POPCNT and BMI1; `src` points to `src_len`
    /// readable bytes and `dst` to `dst_len` writable ones; `read <= src_len`,
    /// `written <= dst_len`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt,bmi1")]
    pub unsafe fn clean_blocks(
        src: *const u8,
        src_len: usize,
        mut read: usize,
        dst: *mut u8,
        dst_len: usize,
        mut written: usize,
    ) -> Run {
        let byte = |b: u8| _mm512_set1_epi8(b as i8);
        // SAFETY: the tables are 64 bytes (unaligned loads).
        let (nibble_table, positions) = unsafe {
            (
                _mm512_loadu_si512(NIBBLES.as_ptr().cast()),
                _mm512_loadu_si512(POSITIONS.as_ptr().cast()),
            )
        };
        let mut bits = _mm512_setzero_si512();
        // A block gives at most 64 code points, 256 bytes, written in up to four stores of 64.
        while src_len - read >= 64 && dst_len - written >= 256 {
            // SAFETY: `read + 64 <= src_len`: the block lies within the input (unaligned load).
            let block = unsafe { _mm512_loadu_si512(src.add(read).cast()) };
            let backslash = _mm512_cmpeq_epi8_mask(block, byte(b'\\'));
            let u = _mm512_cmpeq_epi8_mask(block, byte(b'u'));
            let care = _mm512_cmpeq_epi8_mask(block, byte(b'"'))
                | _mm512_cmplt_epu8_mask(block, byte(0x20))
                | _mm512_movepi8_mask(block);
            let digit = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(block, byte(b'0')), byte(10));
            let folded = _mm512_or_si512(block, byte(0x20));
            let letter = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(folded, byte(b'a')), byte(6));
            let hex = digit | letter;
            // The shifts bring in zeros: an escape running past the block's end is none here.
            let escapes = backslash & (u >> 1) & (hex >> 2) & (hex >> 3) & (hex >> 4) & (hex >> 5);
            let stop = (backslash & !escapes) | care;
            if stop & 1 != 0 {
                break; // the scalar steps' at once
            }
            if backslash == 0 {
                // Plain text up to the first byte that needs care: every byte a code point,
                // written in place (what lies past `taken` is overwritten next). ASCII leaves
                // `bits` as it is.
                let taken = stop.trailing_zeros() as usize;
                let quarters = [
                    _mm512_extracti32x4_epi32::<0>(block),
                    _mm512_extracti32x4_epi32::<1>(block),
                    _mm512_extracti32x4_epi32::<2>(block),
                    _mm512_extracti32x4_epi32::<3>(block),
                ];
                for (k, quarter) in quarters.into_iter().enumerate() {
                    // SAFETY: `written + 256 <= dst_len`: the four stores of 64 bytes fit.
                    unsafe {
                        _mm512_storeu_si512(
                            dst.add(written + 64 * k).cast(),
                            _mm512_cvtepu8_epi32(quarter),
                        )
                    };
                }
                read += taken;
                written += 4 * taken;
                continue;
            }
            let nibbles = _mm512_permutexvar_epi8(block, nibble_table);
            // A surrogate's escape: first digit 'd', second 8-b (a high half) or c-f (a low
            // one), read from the bytes, so that where the block ends never waits for the
            // escapes' values.
            let d = _mm512_cmpeq_epi8_mask(folded, byte(b'd'));
            let eight_to_b = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(block, byte(b'8')), byte(2))
                | _mm512_cmplt_epu8_mask(_mm512_sub_epi8(folded, byte(b'a')), byte(2));
            let c_to_f = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(folded, byte(b'c')), byte(4));
            let high = escapes & (d >> 2) & (eight_to_b >> 3);
            let low = escapes & (d >> 2) & (c_to_f >> 3);
            let plan = plan(backslash, escapes, care, high, low);
            if plan.taken == 0 {
                break;
            }
            // The positions that give a code point, packed, then read 16 at a time.
            let packed = _mm512_maskz_compress_epi8(plan.keep, positions);
            let count = plan.keep.count_ones();
            let with_pairs = plan.pairs != 0;
            for group in 0..count.div_ceil(16) {
                let left = count - 16 * group;
                let code = code_points(block, nibbles, packed, group as usize, left, with_pairs);
                // SAFETY: this block's stores start below `written + 192` as it was on entry,
                // and `written + 256 <= dst_len` then: 64 bytes fit (unaligned store).
                unsafe { _mm512_storeu_si512(dst.add(written).cast(), code) };
                written += 4 * left.min(16) as usize;
                bits = _mm512_or_si512(bits, code);
            }
            read += plan.taken as usize;
        }
        Run {
            read,
            written,
            bits: _mm512_reduce_or_epi32(bits) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_offsets_pick_each_escape_s_digits_lowest_first() {
        // An escape at position 17: digits at 19..=22, read as 22, 21, 20, 19.
        let own = digit_offsets(0).to_le_bytes().map(|offset| 17 + offset);
        assert_eq!(own, [22, 21, 20, 19]);
        assert_eq!(digit_offsets(6).to_le_bytes(), [11, 10, 9, 8]);
    }

    #[test]
    fn spread_gives_each_lane_its_packed_position() {
        // Lane 1 of group 1 reads packed position 17 in all four of its bytes; the last lane
        // of the last group position 63.
        assert_eq!(spread(0)[..8], [0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(spread(1)[4..8], [17; 4]);
        assert_eq!(spread(3)[60..], [63; 4]);
    }

    #[test]
    fn the_nibble_table_reads_every_hex_digit() {
        let table = nibble_table();
        for (digit, value) in (b'0'..=b'9').zip(0..).chain((b'a'..=b'f').zip(10..)) {
            assert_eq!(table[usize::from(digit) % 64], value);
            assert_eq!(table[usize::from(digit.to_ascii_uppercase()) % 64], value);
        }
    }

    /// The masks of `block` as the vector step builds them, written out byte by byte.
    fn masks(block: &[u8; 64]) -> (u64, u64, u64, u64, u64) {
        let (mut backslash, mut escapes, mut care, mut high, mut low) = (0u64, 0, 0, 0, 0);
        for (p, &b) in block.iter().enumerate() {
            let bit = 1u64 << p;
            if b == b'\\' {
                backslash |= bit;
                let digits = block
                    .get(p + 2..p + 6)
                    .and_then(|d| std::str::from_utf8(d).ok());
                let value = digits.and_then(|d| u16::from_str_radix(d, 16).ok());
                if block.get(p + 1) == Some(&b'u') && digits.is_some_and(|d| !d.starts_with('+')) {
                    if let Some(value) = value {
                        escapes |= bit;
                        high |= u64::from((0xD800..0xDC00).contains(&value)) << p;
                        low |= u64::from((0xDC00..0xE000).contains(&value)) << p;
                    }
                }
            }
            if b == b'"' || !(0x20..0x80).contains(&b) {
                care |= bit;
            }
        }
        (backslash, escapes, care, high, low)
    }

    fn plan_of(text: &str) -> Plan {
        // The first 64 bytes: what runs past them is not in the block.
        let text = &text.as_bytes()[..text.len().min(64)];
        let mut block = [b'.'; 64];
        block[..text.len()].copy_from_slice(text);
        let (backslash, escapes, care, high, low) = masks(&block);
        plan(backslash, escapes, care, high, low)
    }

    #[test]
    fn a_block_is_taken_up_to_the_first_byte_that_needs_care() {
        assert_eq!(plan_of("").taken, 64);
        assert_eq!(plan_of("").keep, u64::MAX);
        assert_eq!(plan_of("abc\"").taken, 3);
        assert_eq!(plan_of("ab\ncd").taken, 2);
        assert_eq!(plan_of("ab\\ncd").taken, 2);
        assert_eq!(plan_of("ab\\u00g1").taken, 2);
        assert_eq!(plan_of("é").taken, 0);
        let escaped = plan_of("a\\u00e9b\\\\");
        assert_eq!(escaped.taken, 8);
        assert_eq!(escaped.keep, 0b1000_0011);
    }

    #[test]
    fn pairs_are_joined_and_lone_or_cut_surrogates_left() {
        let pair = plan_of("\\ud83d\\udd10x");
        assert_eq!(
            (pair.taken, pair.keep & 0x1FFF, pair.pairs),
            (64, 0b1_0000_0000_0001, 1)
        );
        // A lone high half, a lone low half, two high halves: taken up to the lone one.
        assert_eq!(plan_of("ab\\ud83dx").taken, 2);
        assert_eq!(plan_of("ab\\udd10x").taken, 2);
        assert_eq!(plan_of("ab\\ud83d\\ud83d\\udd10").taken, 2);
        // A pair, then a low half that belongs to none.
        assert_eq!(plan_of("\\ud83d\\udd10\\udd10").taken, 12);
        // A pair whose low half runs past the block waits for the next block, whole; one that
        // ends on the block's last byte is taken.
        let mut text = ".".repeat(54);
        text.push_str("\\ud83d\\udd10");
        assert_eq!(plan_of(&text).taken, 54);
        let mut text = ".".repeat(52);
        text.push_str("\\ud83d\\udd10");
        assert_eq!(plan_of(&text).taken, 64);
        // An escape running past the end is cut before its backslash.
        let mut text = ".".repeat(60);
        text.push_str("\\u00");
        assert_eq!(plan_of(&text).taken, 60);
    }

    #[test]
    fn whole_blocks_of_escaped_text_are_taken_where_the_cpu_has_the_vector_step() {
        let text = "h\\u00e9llo w\\u00F6rld \\u0395\\u03bb\\u03bb\\u03ac\\u03b4\\u03b1 \\u6f22\\u5b57 \\ud83d\\udd10 ";
        let expected: Vec<u32> = "héllo wörld Ελλάδα 漢字 🔐 "
            .repeat(9)
            .chars()
            .map(u32::from)
            .collect();
        let body = text.repeat(9);
        // From the start, from an escape, from the plain text after one: 0, 1 and 2 characters
        // skipped.
        for (start, skipped) in [(0, 0), (1, 1), (7, 2)] {
            let mut dst = vec![0u8; 4 * body.len()];
            let run = clean_blocks(body.as_bytes(), start, &mut dst, 4);
            if !available() {
                assert_eq!(run, Run::unmoved(start, 4));
                eprintln!("no AVX-512 VBMI here: the vector step is not exercised");
                return;
            }
            // Only the last block, less than 64 bytes, is left.
            assert!(run.read + 64 > body.len() && run.read > start, "{run:?}");
            let units: Vec<u32> = dst[4..run.written]
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(units, expected[skipped..skipped + units.len()]);
            assert_eq!(run.bits, units.iter().fold(0, |all, &c| all | c));
        }
    }

    #[test]
    fn nothing_is_done_outside_the_bounds() {
        let body = b"plain".repeat(40);
        let mut dst = vec![0u8; 1024];
        let unmoved = Run::unmoved;
        // Both vector steps share the bounds check (`bounded_step`).
        type Step = fn(&[u8], usize, &mut [u8], usize) -> Run;
        for step in [clean_blocks as Step, crate::utf8_avx512::text_blocks] {
            assert_eq!(
                step(&body, body.len() + 1, &mut dst, 0),
                unmoved(body.len() + 1, 0)
            );
            assert_eq!(step(&body, 0, &mut dst, 1025), unmoved(0, 1025));
            // Less than 64 bytes of input or 256 of room left: the scalar steps' part.
            assert_eq!(
                step(&body, body.len() - 63, &mut dst, 0),
                unmoved(body.len() - 63, 0)
            );
            assert_eq!(step(&body, 0, &mut dst, 1024 - 255), unmoved(0, 1024 - 255));
        }
    }

    #[test]
    fn below_covers_every_count() {
        assert_eq!(below(0), 0);
        assert_eq!(below(3), 0b111);
        assert_eq!(below(64), u64::MAX);
        assert_eq!(below(70), u64::MAX);
    }
}
