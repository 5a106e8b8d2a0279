//! The counts a JSON string body's room estimates are made of (`UnitCounts`): character
//! starts, 4-byte leads, escapes, `\u` escapes and those of high surrogates. A body is read 64
//! bytes a block as bit masks, one bit a byte. In a run of backslashes every other one starts
//! an escape; each run's parity is found in the same pass by an addition whose carry runs
//! along the run (simdjson's scan for escaped quotes), so text full of escaped backslashes
//! costs no second look.
//!
//! The masks come from compares: AVX-512 or AVX2 where the CPU has them (found at run time:
//! the wheel is built for baseline x86-64), SSE2 on every other x86-64, NEON on aarch64, and
//! 64-bit words 8 bytes a step on other targets. Every CPU counts with the same `BlockCounter`.

use zeroize::Zeroize;

/// Bytes a block's masks cover.
const BLOCK: usize = 64;
/// A block and the three bytes after it (a `\u` escape's first digits lie that far ahead).
const WINDOW: usize = BLOCK + 3;

/// What a string body (from just after its opening quote to its closing quote) decodes to, as
/// far as its length goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitCounts {
    /// Bytes that start a UTF-8 character (ASCII or a lead byte: signed, from -64 up).
    pub starts: usize,
    /// Bytes from 0xF0 up (a 4-byte character's lead: two UTF-16 units, one code point).
    pub fours: usize,
    /// Escapes: backslashes that start one (in a run of backslashes, every other one).
    pub escapes: usize,
    /// The escapes among them that are `\u` escapes.
    pub u_escapes: usize,
    /// The `\u` escapes of a high surrogate (`d` or `D`, then one of `89abAB`): with the low
    /// surrogate's escape after it, one code point from twelve bytes.
    pub high_escapes: usize,
}

impl UnitCounts {
    /// The UTF-16 code units: one per character start, one more per 4-byte character, less
    /// one per escape (its two bytes give one unit) and four more per `\u` escape (six bytes).
    pub fn utf16_units(&self) -> usize {
        (self.starts + self.fours).saturating_sub(self.escapes + 4 * self.u_escapes)
    }

    /// The code points: as `utf16_units`, but a 4-byte character and an escaped surrogate pair
    /// give one each.
    pub fn code_points(&self) -> usize {
        self.starts
            .saturating_sub(self.escapes + 4 * self.u_escapes + self.high_escapes)
    }
}

/// A way to count a body (the tests' handle on each level).
#[cfg(test)]
type Count = fn(&[u8]) -> UnitCounts;

/// `UnitCounts` over `body`, with the widest compares this CPU has.
pub fn unit_counts(body: &[u8]) -> UnitCounts {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::avx512_available() {
            // SAFETY: the CPU has AVX-512F and BW, and POPCNT (checked just above).
            return unsafe { x86::counts_avx512(body) };
        }
        let popcnt = std::arch::is_x86_feature_detected!("popcnt");
        if popcnt && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 and POPCNT (checked just above).
            return unsafe { x86::counts_avx2(body) };
        }
        if popcnt {
            // SAFETY: the CPU has POPCNT (checked just above), and every x86-64 has SSE2.
            return unsafe { x86::counts_sse2_popcnt(body) };
        }
        // SAFETY: every x86-64 CPU has SSE2.
        unsafe { x86::counts_sse2(body) }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: every aarch64 CPU has NEON.
        unsafe { neon::counts(body) }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        count_blocks(body, masks_by_words)
    }
}

/// One 64-byte block of a body as bits (bit `k` for its byte `k`), what `BlockCounter` counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BlockMasks {
    /// Bytes that start a UTF-8 character (ASCII or a lead byte: signed, from -64 up).
    starts: u64,
    /// Bytes from 0xF0 up.
    fours: u64,
    /// Backslashes.
    backslashes: u64,
    /// Bytes followed by a `u`.
    before_u: u64,
    /// Bytes whose second and third bytes after begin a high surrogate's digits
    /// (D800 to DBFF: `d` or `D`, then one of `89abAB`).
    before_high: u64,
}

impl std::ops::BitOr for BlockMasks {
    type Output = Self;

    /// The masks of two parts of a block (each shifted to its place) as one block's.
    #[inline(always)]
    fn bitor(self, other: Self) -> Self {
        Self {
            starts: self.starts | other.starts,
            fours: self.fours | other.fours,
            backslashes: self.backslashes | other.backslashes,
            before_u: self.before_u | other.before_u,
            before_high: self.before_high | other.before_high,
        }
    }
}

/// `UnitCounts` block after block, carrying whether the last block ended in a backslash that
/// escapes the next block's first byte.
#[derive(Default)]
struct BlockCounter {
    counts: UnitCounts,
    /// 1 when the next block's first byte is escaped.
    carry: u64,
}

impl BlockCounter {
    /// Count one block (the body's next 64 bytes; past its end, zero bits).
    #[inline(always)]
    fn add(&mut self, block: BlockMasks) {
        let escapes = if self.carry == 0 && block.backslashes & (block.backslashes << 1) == 0 {
            // No two backslashes meet (most blocks): each starts an escape, and the last
            // byte's, if one, escapes the next block's first.
            self.carry = block.backslashes >> 63;
            block.backslashes
        } else {
            self.escapes_of_runs(block.backslashes)
        };
        let u_escapes = escapes & block.before_u;
        let counts = &mut self.counts;
        counts.starts += block.starts.count_ones() as usize;
        counts.fours += block.fours.count_ones() as usize;
        counts.escapes += escapes.count_ones() as usize;
        counts.u_escapes += u_escapes.count_ones() as usize;
        counts.high_escapes += (u_escapes & block.before_high).count_ones() as usize;
    }

    /// The backslashes of a block that start an escape, where runs of them may meet: in a
    /// run every other one escapes the next byte. The escaped bytes of all runs are found at
    /// once by adding each run that starts at an odd bit to the backslashes: the sum's carry
    /// flips the parity of the bits it passes; the carry out of the top bit is the next
    /// block's.
    #[inline]
    fn escapes_of_runs(&mut self, block_backslashes: u64) -> u64 {
        const EVEN: u64 = 0x5555_5555_5555_5555;
        let backslashes = block_backslashes & !self.carry;
        let follows_backslash = (backslashes << 1) | self.carry;
        let odd_starts = backslashes & !EVEN & !follows_backslash;
        let (runs, overflow) = odd_starts.overflowing_add(backslashes);
        self.carry = u64::from(overflow);
        let escaped = (EVEN ^ (runs << 1)) & follows_backslash;
        block_backslashes & !escaped
    }
}

/// The bits below `n` (all of them from 64 on).
fn below(n: usize) -> u64 {
    if n >= BLOCK {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Count `body` with `masks`, which reads a block from its window: the body's 67 bytes from
/// the block on where they lie in it; for the last one or two blocks, a copy padded with zero
/// bytes (no lead, no backslash, no `u`, no hex digit; they would count as ASCII starts, which
/// `below` takes away), wiped afterwards: it is plaintext.
#[inline(always)]
fn count_blocks(body: &[u8], masks: impl Fn(&[u8; WINDOW]) -> BlockMasks) -> UnitCounts {
    let mut counter = BlockCounter::default();
    let mut at = 0;
    while let Some(window) = body.get(at..).and_then(|rest| rest.first_chunk::<WINDOW>()) {
        counter.add(masks(window));
        at += BLOCK;
    }
    let rest = body.get(at..).unwrap_or_default();
    if !rest.is_empty() {
        // Fewer than WINDOW bytes are left: at most two blocks.
        let mut padded = [0u8; BLOCK + WINDOW];
        padded[..rest.len()].copy_from_slice(rest);
        let mut from = 0;
        while from < rest.len() {
            if let Some(window) = padded[from..].first_chunk::<WINDOW>() {
                let mut block = masks(window);
                block.starts &= below(rest.len() - from);
                counter.add(block);
            }
            from += BLOCK;
        }
        padded.zeroize();
    }
    counter.counts
}

/// A block's masks 8 bytes a step in 64-bit words (targets without a vector step here): each
/// test leaves a byte's top bit set, and one multiplication gathers the 8 top bits.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), allow(dead_code))]
fn masks_by_words(window: &[u8; WINDOW]) -> BlockMasks {
    const TOPS: u64 = 0x8080_8080_8080_8080;
    const LOWS: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let splat = |b: u8| u64::from(b) * 0x0101_0101_0101_0101;
    // A byte's top bit where it equals `b` (exact: no borrow runs between bytes).
    let equal = |word: u64, b: u8| {
        let differ = word ^ splat(b);
        !(((differ & LOWS) + LOWS) | differ) & TOPS
    };
    // Top bits 7, 15, .., 63 to bits 0..8: each lands alone at 56 + its byte.
    let gather = |tops: u64| tops.wrapping_mul(0x0002_0408_1020_4081) >> 56;
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&window[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let mut masks = BlockMasks::default();
    for step in 0..BLOCK / 8 {
        let at = 8 * step;
        let (block, next1, next2, next3) = (word(at), word(at + 1), word(at + 2), word(at + 3));
        // A continuation byte is 10xxxxxx; every other byte starts a character.
        let continuation = block & !(block << 1) & TOPS;
        let four_lead = block & (block << 1) & (block << 2) & (block << 3) & TOPS;
        let lowered = next3 | splat(0x20);
        let digit =
            equal(next3, b'8') | equal(next3, b'9') | equal(lowered, b'a') | equal(lowered, b'b');
        let high = equal(next2 | splat(0x20), b'd') & digit;
        let shift = |tops: u64| gather(tops) << at;
        masks.starts |= shift(!continuation & TOPS);
        masks.fours |= shift(four_lead);
        masks.backslashes |= shift(equal(block, b'\\'));
        masks.before_u |= shift(equal(next1, b'u'));
        masks.before_high |= shift(high);
    }
    masks
}

/// A block's masks a byte at a time: the tests' reference for the other ways.
#[cfg(test)]
fn masks_by_bytes(window: &[u8; WINDOW]) -> BlockMasks {
    let mut masks = BlockMasks::default();
    for k in 0..BLOCK {
        let bit = 1u64 << k;
        let byte = window[k];
        let when = |yes: bool| if yes { bit } else { 0 };
        masks.starts |= when((byte as i8) >= -64);
        masks.fours |= when(byte >= 0xF0);
        masks.backslashes |= when(byte == b'\\');
        masks.before_u |= when(window[k + 1] == b'u');
        masks.before_high |= when(
            matches!(window[k + 2], b'd' | b'D')
                && matches!(window[k + 3], b'8' | b'9' | b'a' | b'b' | b'A' | b'B'),
        );
    }
    masks
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{count_blocks, BlockMasks, UnitCounts, WINDOW};
    use std::arch::x86_64::*;

    /// Whether the AVX-512 masks can be taken on this machine.
    pub fn avx512_available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("popcnt")
    }

    /// `super::unit_counts` with SSE2.
    ///
    /// # Safety
    /// The CPU has SSE2 (every x86-64 does).
    #[target_feature(enable = "sse2")]
    pub unsafe fn counts_sse2(body: &[u8]) -> UnitCounts {
        count_blocks(body, |window| masks_sse2(window))
    }

    /// `counts_sse2` with POPCNT for the counts (the bit arithmetic standing in for it costs
    /// more than the compares).
    ///
    /// # Safety
    /// The CPU has SSE2 and POPCNT.
    #[target_feature(enable = "sse2,popcnt")]
    pub unsafe fn counts_sse2_popcnt(body: &[u8]) -> UnitCounts {
        count_blocks(body, |window| masks_sse2(window))
    }

    /// `super::unit_counts` with AVX2.
    ///
    /// # Safety
    /// The CPU has AVX2 and POPCNT.
    #[target_feature(enable = "avx2,popcnt")]
    pub unsafe fn counts_avx2(body: &[u8]) -> UnitCounts {
        count_blocks(body, |window| masks_avx2(window))
    }

    /// `super::unit_counts` with AVX-512.
    ///
    /// # Safety
    /// The CPU has AVX-512F and BW, and POPCNT.
    #[target_feature(enable = "avx512f,avx512bw,popcnt")]
    pub unsafe fn counts_avx512(body: &[u8]) -> UnitCounts {
        count_blocks(body, |window| masks_avx512(window))
    }

    /// The masks of 16 bytes from `at` in `window` (`at` up to 48), shifted to their place.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn sixteen_sse2(window: &[u8; WINDOW], at: usize) -> BlockMasks {
        let from = &window[at..at + 19];
        // SAFETY: each load reads 16 bytes from `d` up to 3 into `from`'s 19.
        let load = |d: usize| unsafe { _mm_loadu_si128(from[d..].as_ptr().cast()) };
        let byte = |b: u8| _mm_set1_epi8(b as i8);
        // Unsigned compares by the byte minimum and maximum (SSE2 compares signed only).
        let at_most = |v: __m128i, b: u8| _mm_cmpeq_epi8(_mm_min_epu8(v, byte(b)), v);
        let at_least = |v: __m128i, b: u8| _mm_cmpeq_epi8(_mm_max_epu8(v, byte(b)), v);
        let bits = |v: __m128i| u64::from(_mm_movemask_epi8(v) as u16) << at;
        let (block, next1, next2, next3) = (load(0), load(1), load(2), load(3));
        // A high surrogate's first digits: `d` or `D` (OR 0x20 lowers a letter), then `8`
        // or `9`, or `a` or `b` in either case.
        let d = _mm_cmpeq_epi8(_mm_or_si128(next2, byte(0x20)), byte(b'd'));
        let digit = _mm_or_si128(
            at_most(_mm_sub_epi8(next3, byte(b'8')), 1),
            at_most(_mm_sub_epi8(_mm_or_si128(next3, byte(0x20)), byte(b'a')), 1),
        );
        BlockMasks {
            // Signed, above -65: ASCII or a lead byte.
            starts: bits(_mm_cmpgt_epi8(block, byte(0xBF))),
            fours: bits(at_least(block, 0xF0)),
            backslashes: bits(_mm_cmpeq_epi8(block, byte(b'\\'))),
            before_u: bits(_mm_cmpeq_epi8(next1, byte(b'u'))),
            before_high: bits(_mm_and_si128(d, digit)),
        }
    }

    /// A block's masks with SSE2, 16 bytes at a time.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn masks_sse2(window: &[u8; WINDOW]) -> BlockMasks {
        let (a, b) = (sixteen_sse2(window, 0), sixteen_sse2(window, 16));
        let (c, d) = (sixteen_sse2(window, 32), sixteen_sse2(window, 48));
        a | b | c | d
    }

    /// A block's masks with AVX2, 32 bytes at a time.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn masks_avx2(window: &[u8; WINDOW]) -> BlockMasks {
        let half = |at: usize| {
            let from = &window[at..at + 35];
            // SAFETY: each load reads 32 bytes from `d` up to 3 into `from`'s 35.
            let load = |d: usize| unsafe { _mm256_loadu_si256(from[d..].as_ptr().cast()) };
            let byte = |b: u8| _mm256_set1_epi8(b as i8);
            let at_most = |v: __m256i, b: u8| _mm256_cmpeq_epi8(_mm256_min_epu8(v, byte(b)), v);
            let at_least = |v: __m256i, b: u8| _mm256_cmpeq_epi8(_mm256_max_epu8(v, byte(b)), v);
            let bits = |v: __m256i| u64::from(_mm256_movemask_epi8(v) as u32) << at;
            let (block, next1, next2, next3) = (load(0), load(1), load(2), load(3));
            let d = _mm256_cmpeq_epi8(_mm256_or_si256(next2, byte(0x20)), byte(b'd'));
            let digit = _mm256_or_si256(
                at_most(_mm256_sub_epi8(next3, byte(b'8')), 1),
                at_most(
                    _mm256_sub_epi8(_mm256_or_si256(next3, byte(0x20)), byte(b'a')),
                    1,
                ),
            );
            BlockMasks {
                starts: bits(_mm256_cmpgt_epi8(block, byte(0xBF))),
                fours: bits(at_least(block, 0xF0)),
                backslashes: bits(_mm256_cmpeq_epi8(block, byte(b'\\'))),
                before_u: bits(_mm256_cmpeq_epi8(next1, byte(b'u'))),
                before_high: bits(_mm256_and_si256(d, digit)),
            }
        };
        half(0) | half(32)
    }

    /// A block's masks with AVX-512, by compares straight into mask registers.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    fn masks_avx512(window: &[u8; WINDOW]) -> BlockMasks {
        // SAFETY: each load reads 64 bytes from `d` up to 3 into the window's 67.
        let load = |d: usize| unsafe { _mm512_loadu_si512(window[d..].as_ptr().cast()) };
        let byte = |b: u8| _mm512_set1_epi8(b as i8);
        let (block, next1, next2, next3) = (load(0), load(1), load(2), load(3));
        let d = _mm512_cmpeq_epi8_mask(_mm512_or_si512(next2, byte(0x20)), byte(b'd'));
        let digit = _mm512_cmple_epu8_mask(_mm512_sub_epi8(next3, byte(b'8')), byte(1))
            | _mm512_cmple_epu8_mask(
                _mm512_sub_epi8(_mm512_or_si512(next3, byte(0x20)), byte(b'a')),
                byte(1),
            );
        BlockMasks {
            starts: _mm512_cmpge_epi8_mask(block, byte(0xC0)),
            fours: _mm512_cmpge_epu8_mask(block, byte(0xF0)),
            backslashes: _mm512_cmpeq_epi8_mask(block, byte(b'\\')),
            before_u: _mm512_cmpeq_epi8_mask(next1, byte(b'u')),
            before_high: d & digit,
        }
    }

    /// The levels this CPU has, for the tests: each counts only where it was found.
    #[cfg(test)]
    pub fn levels() -> Vec<(&'static str, super::Count)> {
        let mut found: Vec<(&'static str, super::Count)> = vec![
            // SAFETY: every x86-64 CPU has SSE2.
            ("sse2", |body| unsafe { counts_sse2(body) }),
        ];
        let popcnt = std::arch::is_x86_feature_detected!("popcnt");
        if popcnt {
            // SAFETY: the CPU has POPCNT (checked just above), and every x86-64 has SSE2.
            found.push(("sse2+popcnt", |body| unsafe { counts_sse2_popcnt(body) }));
        }
        if popcnt && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 and POPCNT (checked just above).
            found.push(("avx2", |body| unsafe { counts_avx2(body) }));
        }
        if avx512_available() {
            // SAFETY: the CPU has AVX-512F and BW, and POPCNT (checked just above).
            found.push(("avx512", |body| unsafe { counts_avx512(body) }));
        }
        found
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{count_blocks, BlockMasks, UnitCounts, WINDOW};
    use std::arch::aarch64::*;

    /// Each byte's weight in its half of a vector: its bit in a byte mask.
    const WEIGHTS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];

    /// `super::unit_counts` with NEON.
    ///
    /// # Safety
    /// The CPU has NEON (every aarch64 does).
    #[target_feature(enable = "neon")]
    pub unsafe fn counts(body: &[u8]) -> UnitCounts {
        count_blocks(body, |window| masks(window))
    }

    /// Four vectors of compare results (all ones or zero a byte) as 64 bits, one a byte:
    /// each byte keeps its weight, and three pairwise additions sum every 8 bytes into one.
    #[target_feature(enable = "neon")]
    #[inline]
    fn bits(compares: [uint8x16_t; 4]) -> u64 {
        // SAFETY: WEIGHTS holds the 16 bytes loaded.
        let weights = unsafe { vld1q_u8(WEIGHTS.as_ptr()) };
        let [a, b, c, d] = compares;
        let (a, b) = (vandq_u8(a, weights), vandq_u8(b, weights));
        let (c, d) = (vandq_u8(c, weights), vandq_u8(d, weights));
        let sums = vpaddq_u8(vpaddq_u8(a, b), vpaddq_u8(c, d));
        vgetq_lane_u64::<0>(vreinterpretq_u64_u8(vpaddq_u8(sums, sums)))
    }

    /// A block's masks with NEON, 16 bytes a vector.
    #[target_feature(enable = "neon")]
    #[inline]
    fn masks(window: &[u8; WINDOW]) -> BlockMasks {
        let byte = |b: u8| vdupq_n_u8(b);
        // Per mask, the compares of the block's four quarters.
        let mut compares = [[byte(0); 4]; 5];
        for (quarter, at) in [0, 16, 32, 48].into_iter().enumerate() {
            let from = &window[at..at + 19];
            // SAFETY: each load reads 16 bytes from `d` up to 3 into `from`'s 19.
            let load = |d: usize| unsafe { vld1q_u8(from[d..].as_ptr()) };
            let (block, next1, next2, next3) = (load(0), load(1), load(2), load(3));
            // A high surrogate's first digits: `d` or `D` (OR 0x20 lowers a letter), then
            // `8` or `9`, or `a` or `b` in either case.
            let d = vceqq_u8(vorrq_u8(next2, byte(0x20)), byte(b'd'));
            let digit = vorrq_u8(
                vcleq_u8(vsubq_u8(next3, byte(b'8')), byte(1)),
                vcleq_u8(vsubq_u8(vorrq_u8(next3, byte(0x20)), byte(b'a')), byte(1)),
            );
            // Signed, from -64 up: ASCII or a lead byte.
            compares[0][quarter] = vcgeq_s8(vreinterpretq_s8_u8(block), vdupq_n_s8(-64));
            compares[1][quarter] = vcgeq_u8(block, byte(0xF0));
            compares[2][quarter] = vceqq_u8(block, byte(b'\\'));
            compares[3][quarter] = vceqq_u8(next1, byte(b'u'));
            compares[4][quarter] = vandq_u8(d, digit);
        }
        let [starts, fours, backslashes, before_u, before_high] = compares;
        BlockMasks {
            starts: bits(starts),
            fours: bits(fours),
            backslashes: bits(backslashes),
            before_u: bits(before_u),
            before_high: bits(before_high),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `UnitCounts` as a reader goes: a backslash escapes the byte after it.
    pub(crate) fn read_plainly(body: &[u8]) -> UnitCounts {
        let mut counts = UnitCounts {
            starts: body.iter().filter(|&&b| (b as i8) >= -64).count(),
            fours: body.iter().filter(|&&b| b >= 0xF0).count(),
            ..UnitCounts::default()
        };
        let mut k = 0;
        while k < body.len() {
            if body[k] != b'\\' {
                k += 1;
                continue;
            }
            counts.escapes += 1;
            if body.get(k + 1) == Some(&b'u') {
                counts.u_escapes += 1;
                if matches!(body.get(k + 2), Some(b'd' | b'D'))
                    && matches!(
                        body.get(k + 3),
                        Some(b'8' | b'9' | b'a' | b'b' | b'A' | b'B')
                    )
                {
                    counts.high_escapes += 1;
                }
            }
            k += 2;
        }
        counts
    }

    /// Every way this machine can count, by name: the bytewise masks everywhere, the
    /// dispatch, and each vector level the CPU has.
    pub(crate) fn levels() -> Vec<(&'static str, Count)> {
        #[allow(unused_mut)]
        let mut found: Vec<(&'static str, Count)> = vec![
            ("bytes", |body| count_blocks(body, masks_by_bytes)),
            ("words", |body| count_blocks(body, masks_by_words)),
            ("dispatched", unit_counts),
        ];
        #[cfg(target_arch = "x86_64")]
        found.extend(x86::levels());
        #[cfg(target_arch = "aarch64")]
        // SAFETY: every aarch64 CPU has NEON.
        found.push(("neon", |body| unsafe { neon::counts(body) }));
        found
    }

    fn assert_every_level_reads(body: &[u8], expected: UnitCounts, what: &str) {
        for (level, count) in levels() {
            assert_eq!(count(body), expected, "{level}: {what}");
        }
    }

    #[test]
    fn every_level_agrees_with_the_definitions_at_every_length_and_offset() {
        // Pieces that count differently: ASCII, a backslash and `u`, continuation bytes, two-,
        // three- and four-byte leads, bytes that start nothing valid, high and low surrogate
        // escapes in both cases, escapes that only nearly begin a high surrogate (a byte either
        // side of each range the digits are taken from: 7 and `:`, `@` and C, a backtick and
        // c, then c and e before them; and `\u0D8`), runs of backslashes, bytes that a case
        // fold or a signed compare could confuse (0x18, 0x44, 0x64, 0xBF, 0x7F, 0xEF).
        // Separated by spaces (no piece holds one).
        const PIECES: &[u8] = b"a \\ u \x80 \xbf \xc0 \xc3 \xe2 \xef \xf0 \xf4 \xff \x00 \x7f \
            \\uD83D \\udbff \\uDc00 \\ud8 \\uDB \\uDC \\ud7 \\uE8 \\u0D8 \\\\uD8 \\\\\\uDa \
            \\\\ \\n d D 8 b \x18 \x44\x39 \x64\x41 \
            \\uD: \\uD@ \\uD` \\uDc \\uDC \\ucA \\ueA \\uDA \\udb";
        let pieces: Vec<&[u8]> = PIECES.split(|&b| b == b' ').collect();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut body = Vec::new();
        while body.len() < 700 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            body.extend_from_slice(pieces[(state >> 33) as usize % pieces.len()]);
        }
        let whole = read_plainly(&body);
        assert!(whole.high_escapes >= 10, "{whole:?}");
        assert!(body.windows(2).filter(|pair| pair == b"\\\\").count() >= 10);
        for len in 0..body.len() {
            for from in [0, 1, 2, 3, 63] {
                let part = body.get(from..len).unwrap_or_default();
                assert_every_level_reads(part, read_plainly(part), &format!("{from}..{len}"));
            }
        }
    }

    #[test]
    fn every_byte_value_counts_in_every_lane() {
        // Each byte value at each place of a block (and the next's first), so that each lane
        // of each vector compare sees it.
        for value in 0..=255u8 {
            for at in 0..66 {
                let mut body = vec![b'x'; 70];
                body[at] = value;
                assert_every_level_reads(&body, read_plainly(&body), &format!("{value} @{at}"));
            }
        }
    }

    #[test]
    fn a_high_surrogate_escape_counts_across_every_block_edge() {
        // A high surrogate's escape starting at each place around each 64-byte edge, so that
        // each of its four bytes is in turn the first of the next block; cut just after each
        // of its bytes, only the whole four make a high escape.
        for at in (58..=66).chain(124..=130) {
            let mut edges = vec![b'x'; 200];
            edges[at..at + 6].copy_from_slice(b"\\uDB7F");
            let whole = UnitCounts {
                starts: 200,
                fours: 0,
                escapes: 1,
                u_escapes: 1,
                high_escapes: 1,
            };
            assert_eq!(read_plainly(&edges), whole);
            assert_every_level_reads(&edges, whole, &format!("{at}"));
            for cut in at + 1..=at + 4 {
                let counts = UnitCounts {
                    starts: cut,
                    fours: 0,
                    escapes: 1,
                    u_escapes: usize::from(cut > at + 1),
                    high_escapes: usize::from(cut == at + 4),
                };
                assert_every_level_reads(&edges[..cut], counts, &format!("{at} cut {cut}"));
            }
        }
    }

    #[test]
    fn runs_of_backslashes_of_every_length_pair_up_across_block_edges() {
        // Each run's parity decides whether the `\uD83D` after it is an escape: across one,
        // two and three 64-byte edges, from every offset.
        for run in 1..=140 {
            for offset in 0..70 {
                let mut body = vec![b'a'; offset];
                body.extend(std::iter::repeat_n(b'\\', run));
                body.extend_from_slice(b"uD83Dx\\n");
                let plain = read_plainly(&body);
                assert_eq!(plain.u_escapes, run % 2, "{run} {offset}");
                assert_every_level_reads(&body, plain, &format!("{run} {offset}"));
            }
        }
    }

    #[test]
    fn text_of_escaped_backslashes_counts_each_pair_once() {
        // A Windows path every few bytes: pairs of backslashes in every block, some meeting
        // an edge, some before a `u` that they leave as text.
        let unit = br"C:\\Users\\me\\uD83D\\\uD83D\uDD10 ";
        let body: Vec<u8> = unit.iter().cycle().take(64 * 40 + 17).copied().collect();
        let plain = read_plainly(&body);
        assert!(plain.escapes > 300 && plain.high_escapes > 30, "{plain:?}");
        assert_every_level_reads(&body, plain, "paths");
    }
}
