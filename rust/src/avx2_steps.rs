//! Steps written for AVX2, where the CPU has it (found at run time, as `memchr` and
//! `base64-simd` find it: the wheel is built for baseline x86-64, which has only SSE2). Every
//! other machine runs the portable code these stand in for.

/// `json_scan::build_cost` (`ESCAPES`; `structure_cost` without), 32 bytes a step with AVX2
/// where the CPU has it.
pub fn build_cost<const ESCAPES: bool>(json: &[u8], limit: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { build_cost_avx2::<ESCAPES>(json, limit) };
    }
    crate::json_scan::build_cost_steps::<ESCAPES>(json, limit)
}

/// `build_cost` on AVX2: per 32 bytes, the brackets, separators and backslashes (`ESCAPES`)
/// counted in byte lanes (summed every 255 steps, before a lane could overflow, when the limit
/// is looked at), and the words of 8 digits in 64-bit ones.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn build_cost_avx2<const ESCAPES: bool>(json: &[u8], limit: usize) -> usize {
    use std::arch::x86_64::*;
    const BLOCK: usize = 32;
    const STEPS: usize = 255;
    // '[' and '{' differ only in 0x20, which no other byte that ORs to '{' lacks.
    let (bracket, fold) = (_mm256_set1_epi8(b'{' as i8), _mm256_set1_epi8(0x20));
    let (comma, colon) = (_mm256_set1_epi8(b',' as i8), _mm256_set1_epi8(b':' as i8));
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    // Signed compares: a byte from 0x80 on is negative, so no digit.
    let (below_zero, past_nine) = (_mm256_set1_epi8(b'/' as i8), _mm256_set1_epi8(b':' as i8));
    let all_ones = _mm256_set1_epi8(-1);
    let mut cost = 1usize;
    let mut at = 0;
    while json.len() - at >= BLOCK {
        let steps = ((json.len() - at) / BLOCK).min(STEPS);
        let mut lanes = _mm256_setzero_si256();
        let mut words = _mm256_setzero_si256();
        for _ in 0..steps {
            // SAFETY: `at + BLOCK <= json.len()`: `steps` blocks fit from where this run began.
            let v = unsafe { _mm256_loadu_si256(json.as_ptr().add(at).cast()) };
            let escape = if ESCAPES {
                _mm256_cmpeq_epi8(v, backslash)
            } else {
                _mm256_setzero_si256()
            };
            let hit = _mm256_or_si256(
                _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_or_si256(v, fold), bracket), escape),
                _mm256_or_si256(_mm256_cmpeq_epi8(v, comma), _mm256_cmpeq_epi8(v, colon)),
            );
            lanes = _mm256_sub_epi8(lanes, hit); // a hit is -1
            let digit = _mm256_and_si256(
                _mm256_cmpgt_epi8(v, below_zero),
                _mm256_cmpgt_epi8(past_nine, v),
            );
            // A word of 8 digits is a 64-bit lane of all ones.
            words = _mm256_sub_epi64(words, _mm256_cmpeq_epi64(digit, all_ones));
            at += BLOCK;
        }
        // The 32 byte lanes summed into four 64-bit ones, each word worth 8.
        let summed = _mm256_add_epi64(
            _mm256_sad_epu8(lanes, _mm256_setzero_si256()),
            _mm256_slli_epi64::<3>(words),
        );
        let mut sums = [0u64; 4];
        // SAFETY: `sums` is 32 bytes; an unaligned store.
        unsafe { _mm256_storeu_si256(sums.as_mut_ptr().cast(), summed) };
        cost += sums.iter().map(|&n| n as usize).sum::<usize>();
        if cost > limit {
            return cost;
        }
    }
    // The last bytes, from a multiple of 32 (so of 8: the same words), less the text's one.
    cost + crate::json_scan::build_cost_steps::<ESCAPES>(&json[at..], usize::MAX) - 1
}

/// `json_scan`'s plain-run scan, 64 bytes a step with AVX2 where the CPU has it: the length of
/// the longest prefix of `bytes` made of whole 64-byte blocks with no control character, '"'
/// or '\\', and whether any byte in it is beyond ASCII. Without AVX2, `(0, false)`: the
/// portable steps then read it all.
pub fn plain_blocks(bytes: &[u8]) -> (usize, bool) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { plain_blocks_avx2(bytes) };
    }
    let _ = bytes;
    (0, false)
}

/// `plain_blocks` on AVX2.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn plain_blocks_avx2(bytes: &[u8]) -> (usize, bool) {
    use std::arch::x86_64::*;
    const BLOCK: usize = 64;
    let (quote, backslash) = (_mm256_set1_epi8(b'"' as i8), _mm256_set1_epi8(b'\\' as i8));
    let below_space = _mm256_set1_epi8(0x1F);
    // A byte is a control character exactly when its unsigned minimum with 0x1F is itself.
    let special = |v: __m256i| {
        _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(v, quote), _mm256_cmpeq_epi8(v, backslash)),
            _mm256_cmpeq_epi8(_mm256_min_epu8(v, below_space), v),
        )
    };
    let mut ored = _mm256_setzero_si256();
    let mut at = 0;
    while bytes.len() - at >= BLOCK {
        // SAFETY: `at + 64 <= bytes.len()`: both halves lie within it (unaligned loads).
        let (first, second) = unsafe {
            let start = bytes.as_ptr().add(at);
            (
                _mm256_loadu_si256(start.cast()),
                _mm256_loadu_si256(start.add(32).cast()),
            )
        };
        if _mm256_movemask_epi8(_mm256_or_si256(special(first), special(second))) != 0 {
            break;
        }
        ored = _mm256_or_si256(ored, _mm256_or_si256(first, second));
        at += BLOCK;
    }
    (at, _mm256_movemask_epi8(ored) != 0)
}
