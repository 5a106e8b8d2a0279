//! Byte-level JSON scanning shared by the two JSON readers, `json` (bytes to Python objects)
//! and `request_body` (an SDK's request bytes compacted into locked memory), and the writer:
//! the number grammar (RFC 8259) and the search for the bytes a string must escape (SIMD
//! compares over chunks, a word at a time within one).

#![forbid(unsafe_code)]

/// The extent of a JSON number (RFC 8259 grammar), found by `scan_number`.
pub struct NumberScan {
    /// Index just past the number's last byte.
    pub end: usize,
    /// Digits of the integer part (sign excluded).
    pub int_digits: usize,
    /// Whether it has a fraction or an exponent.
    pub is_float: bool,
}

/// Match the JSON number grammar at `start` in `s`; `None` when the bytes there are not a
/// number. The one scanner of both JSON readers (`json`'s and `request_body`'s).
pub fn scan_number(s: &[u8], start: usize) -> Option<NumberScan> {
    let digits_from = |mut pos: usize| {
        while let Some(b'0'..=b'9') = s.get(pos) {
            pos += 1;
        }
        pos
    };
    let mut pos = start;
    if s.get(pos) == Some(&b'-') {
        pos += 1;
    }
    let int_start = pos;
    pos = match s.get(pos) {
        Some(b'0') => pos + 1,
        Some(b'1'..=b'9') => digits_from(pos),
        _ => return None,
    };
    let int_digits = pos - int_start;
    let mut is_float = false;
    if s.get(pos) == Some(&b'.') {
        is_float = true;
        pos += 1;
        if !matches!(s.get(pos), Some(b'0'..=b'9')) {
            return None;
        }
        pos = digits_from(pos);
    }
    if let Some(b'e' | b'E') = s.get(pos) {
        is_float = true;
        pos += 1;
        if let Some(b'+' | b'-') = s.get(pos) {
            pos += 1;
        }
        if !matches!(s.get(pos), Some(b'0'..=b'9')) {
            return None;
        }
        pos = digits_from(pos);
    }
    Some(NumberScan {
        end: pos,
        int_digits,
        is_float,
    })
}

/// Most digits CPython reads into an `int` by default (`sys.int_max_str_digits`, there against
/// this very cost: its conversion grows faster than the digits). The request's writer refuses
/// longer integers (`json.loads` on the endpoint would), and the response's reader does too,
/// whatever limit the application set: a server's 100,000-digit integer would hold the GIL for
/// ~50 ms, a million digits for seconds.
pub const MAX_INT_DIGITS: usize = 4300;

/// A bound on the work of building a JSON text's Python objects beyond copying its strings:
/// one per byte that opens a container or separates values or keys (`[`, `{`, `,`, `:`; a value
/// or key follows each, or the text's first value), one per backslash (an escape, decoded
/// apart from the plain text around it: a string of nothing but `\"` or `\u0001` costs the
/// reader 10-20 ns an escape), and eight per 8-byte word of digits (at an offset that is a
/// multiple of 8: any run of 15 digits holds one). Converting a long integer
/// costs CPython more than linearly in its digits (~75 us for 4300, the most the reader takes),
/// so a number's digits count once it is that long; shorter runs, such as the hex digits of
/// `\u` escapes, do not. Bytes inside strings count too: a bound, not a count. Counted a block
/// at a time, stopping once past `limit` (the figure is then above `limit`, not the whole
/// count).
pub fn build_cost(json: &[u8], limit: usize) -> usize {
    crate::avx2_steps::build_cost::<true>(json, limit)
}

/// `build_cost` without the backslashes: a bound on the build's work beyond its strings (the
/// work of a string, escapes and all, a build within a deadline bounds by the clock).
pub fn structure_cost(json: &[u8], limit: usize) -> usize {
    crate::avx2_steps::build_cost::<false>(json, limit)
}

/// `build_cost`'s loop (`ESCAPES`; `structure_cost`'s without), inlined where it is compiled:
/// for baseline x86-64 (and every other target) here, for AVX2 in `avx2_steps`.
#[inline(always)]
pub(crate) fn build_cost_steps<const ESCAPES: bool>(json: &[u8], limit: usize) -> usize {
    // A word at a time: the costly bytes flagged in byte lanes (exactly: no borrow between
    // lanes) and added up in them, summed every 255 words, before a lane could overflow, and
    // the limit looked at then; four words a step, which the compiler can vectorise.
    const WORD: usize = 8;
    const STEP: usize = 4 * WORD;
    const WORDS: usize = 255;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // The high bit of each zero byte of `x`.
    let zeros = |x: u64| !(((x & (ONES * 0x7F)) + ONES * 0x7F) | x) & (ONES * 0x80);
    let costly = |word: u64| {
        // '[' and '{' differ only in 0x20, which no other byte that ORs to '{' lacks.
        let brackets = zeros((word | (ONES * 0x20)) ^ (ONES * u64::from(b'{')));
        let separators =
            zeros(word ^ (ONES * u64::from(b','))) | zeros(word ^ (ONES * u64::from(b':')));
        let backslashes = if ESCAPES {
            zeros(word ^ (ONES * u64::from(b'\\')))
        } else {
            0
        };
        (brackets | separators | backslashes) >> 7
    };
    // Every byte '0'..='9': high nibble 3, and the low one still under 10 with 6 added (no
    // byte carries into the next once every high nibble is 3).
    let digits = |word: u64| {
        let high = word & (ONES * 0xF0) == ONES * 0x30;
        let low = word.wrapping_add(ONES * 6) & (ONES * 0xF0) == ONES * 0x30;
        u64::from(high & low)
    };
    let lanes_sum = |lanes: u64| {
        let pairs = (lanes & 0x00FF_00FF_00FF_00FF) + ((lanes >> 8) & 0x00FF_00FF_00FF_00FF);
        (pairs.wrapping_mul(0x0001_0001_0001_0001) >> 48) as usize
    };
    let word_at = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or([0; WORD]));
    let mut cost = 1usize;
    for block in json.chunks(WORDS * STEP) {
        let (mut lanes, mut words) = ([0u64; 4], [0u64; 4]);
        let mut steps = block.chunks_exact(STEP);
        for step in steps.by_ref() {
            for k in 0..4 {
                let word = word_at(&step[k * WORD..(k + 1) * WORD]);
                lanes[k] += costly(word);
                words[k] += digits(word);
            }
        }
        cost += lanes.iter().map(|&l| lanes_sum(l)).sum::<usize>();
        cost += WORD * words.iter().sum::<u64>() as usize;
        // The last block's last bytes (its words still start at multiples of 8).
        let rest = steps.remainder();
        let mut whole = rest.chunks_exact(WORD);
        for word in whole.by_ref() {
            let word = word_at(word);
            cost += lanes_sum(costly(word)) + WORD * digits(word) as usize;
        }
        cost += whole
            .remainder()
            .iter()
            .map(|&b| usize::from(matches!(b, b'[' | b'{' | b',' | b':') || ESCAPES && b == b'\\'))
            .sum::<usize>();
        if cost > limit {
            return cost;
        }
    }
    cost
}

/// A run of string bytes that need no escape, as `plain_run` finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainRun {
    /// Length of the run: up to the first control character, '"' or '\\', or the end.
    pub len: usize,
    /// Whether every byte of the run is ASCII: then it is UTF-8 without a check.
    pub ascii: bool,
}

/// Length of the longest prefix of `bytes` with no control character, '"' or '\\' (the
/// bytes a JSON string body must escape).
pub fn plain_prefix(bytes: &[u8]) -> usize {
    scan::<false>(bytes).len
}

/// The longest prefix of `bytes` with no control character, '"' or '\\', and whether it is
/// ASCII, learnt in the same pass (the reader then need not check it is UTF-8).
pub fn plain_run(bytes: &[u8]) -> PlainRun {
    scan::<true>(bytes)
}

/// Strings at least this long are scanned by `avx2_steps::plain_blocks` first.
const VECTOR_SCAN_FROM: usize = 256;

/// `plain_prefix`, and with `ASCII` whether the run is ASCII too (without, `ascii` is
/// meaningless and costs nothing). 32 bytes at a time by a test the compiler turns into SIMD
/// compares on every target (SSE2 on x86-64, NEON on aarch64), with no unsafe code; the rest
/// (under 32 bytes, or from the chunk holding a special byte) a word at a time.
#[inline(always)]
fn scan<const ASCII: bool>(bytes: &[u8]) -> PlainRun {
    const CHUNK: usize = 32;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Long runs (a megabyte prompt) 64 bytes a step with AVX2 where the CPU has it, then the
    // baseline SSE2 steps below; short strings skip the dispatch. (A prompt read cold from
    // memory is bound by memory either way: its share of the 1 MiB row's profile stayed
    // ~2.7-2.9%.)
    let (mut at, mut wide) = if bytes.len() >= VECTOR_SCAN_FROM {
        crate::avx2_steps::plain_blocks(bytes)
    } else {
        (0, false)
    };
    for chunk in bytes[at..].chunks_exact(CHUNK) {
        // No early exit inside the chunk: a branch-free fold vectorises. Bools rather than
        // byte masks or an OR of the bytes: LLVM keeps these in vector registers, and
        // scalarised both of the others (measured 2-3x slower).
        let (special, chunk_wide) = if ASCII {
            chunk.iter().fold((false, false), |(special, wide), &b| {
                (special | is_special(b), wide | (b >= 0x80))
            })
        } else {
            let special = chunk
                .iter()
                .fold(false, |special, &b| special | is_special(b));
            (special, false)
        };
        if special {
            break;
        }
        wide |= chunk_wide;
        at += CHUNK;
    }
    // The OR of the bytes read a word (or a byte) at a time.
    let mut ored = 0u64;
    while let Some(word) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        let mask = word_escape_mask(word);
        if mask != 0 {
            // The bytes below the first special one (at most 7 of them).
            let plain = mask.trailing_zeros() / 8;
            ored |= word & ((1u64 << (8 * plain)) - 1);
            return PlainRun {
                len: at + plain as usize,
                ascii: !wide && ored & HIGH == 0,
            };
        }
        ored |= word;
        at += 8;
    }
    while let Some(&b) = bytes.get(at) {
        if is_special(b) {
            break;
        }
        ored |= u64::from(b);
        at += 1;
    }
    PlainRun {
        len: at,
        ascii: !wide && ored & HIGH == 0,
    }
}

/// A control character, '"' or '\\': the bytes a JSON string body must escape.
#[inline(always)]
fn is_special(b: u8) -> bool {
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

/// The high bit of each byte of `word` that is a control character, '"' or '\\', read as
/// little-endian (first byte lowest). Lanes above the first flagged one may be flagged falsely
/// (a borrow runs upwards), so only the lowest set bit is exact: `trailing_zeros() / 8` is the
/// index of the first such byte.
pub fn word_escape_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = word ^ (ONES * u64::from(b'"'));
    let has_quote = quote.wrapping_sub(ONES) & !quote & HIGH;
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let has_backslash = backslash.wrapping_sub(ONES) & !backslash & HIGH;
    below_space | has_quote | has_backslash
}

#[cfg(test)]
mod tests {
    use super::{
        build_cost, build_cost_steps, plain_prefix, plain_run, scan_number, structure_cost,
        word_escape_mask, PlainRun, VECTOR_SCAN_FROM,
    };

    #[test]
    fn the_escape_mask_finds_each_special_byte_in_each_lane() {
        assert_eq!(word_escape_mask(u64::from_le_bytes(*b"abcd 7~\x7f")), 0);
        assert_eq!(
            word_escape_mask(u64::from_le_bytes([
                0xC3, 0xA9, 0x80, 0xFF, b' ', b'a', b'z', b'0'
            ])),
            0
        );
        for special in [0u8, 0x1F, b'\n', b'"', b'\\'] {
            for lane in 0..8 {
                let mut bytes = *b"abcdefgh";
                bytes[lane] = special;
                assert_ne!(
                    word_escape_mask(u64::from_le_bytes(bytes)),
                    0,
                    "{special:#x} at {lane}"
                );
            }
        }
    }

    #[test]
    fn the_lowest_flagged_lane_is_the_first_special_byte() {
        // Every special byte in every lane, behind every mix of bytes that could borrow.
        let fillers = [b'a', 0x21, 0x80, 0xFF, 0x20, 0x23, 0x5D, 0x5B];
        for special in [0u8, 0x01, 0x1F, b'"', b'\\'] {
            for lane in 0..8 {
                for &filler in &fillers {
                    let mut bytes = [filler; 8];
                    bytes[lane] = special;
                    // Anything may follow the first special byte, specials included.
                    for tail in [filler, special, 0x00, b'"'] {
                        bytes[lane + 1..].fill(tail);
                        let mask = word_escape_mask(u64::from_le_bytes(bytes));
                        assert_eq!(mask.trailing_zeros() / 8, lane as u32, "{bytes:?}");
                    }
                }
            }
        }
        assert_eq!(word_escape_mask(u64::from_le_bytes(*b"plain ~\x7f")), 0);
    }

    #[test]
    fn the_plain_prefix_ends_at_the_first_special_byte() {
        // Every special byte at every offset of a few chunks, behind bytes of every class;
        // past `VECTOR_SCAN_FROM`, where the vector steps read the blocks of 64 first.
        for special in [0u8, 0x1F, b'\n', b'"', b'\\'] {
            for filler in [b'a', 0x20, 0x7F, 0x80, 0xFF, 0x21, 0x5B, 0x5D] {
                for len in (0..100).chain([VECTOR_SCAN_FROM, 333]) {
                    let mut bytes = vec![filler; len];
                    assert_eq!(plain_prefix(&bytes), len);
                    for at in 0..len {
                        bytes[at] = special;
                        assert_eq!(plain_prefix(&bytes), at, "{special} {filler} {len}");
                        assert_eq!(plain_run(&bytes).ascii, at == 0 || filler < 0x80);
                        bytes[at] = filler;
                    }
                }
            }
        }
    }

    #[test]
    fn the_plain_run_knows_whether_it_is_ascii() {
        // A non-ASCII byte at every offset of a few chunks, the run ending at every offset
        // before, at or after it (or at the end), against a byte-by-byte reference.
        let reference = |bytes: &[u8]| {
            let len = bytes
                .iter()
                .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
                .unwrap_or(bytes.len());
            PlainRun {
                len,
                ascii: bytes[..len].is_ascii(),
            }
        };
        for wide in [0x80u8, 0xC3, 0xFF] {
            for len in [
                0,
                1,
                7,
                8,
                31,
                32,
                33,
                63,
                64,
                65,
                96,
                130,
                VECTOR_SCAN_FROM,
                333,
            ] {
                let mut bytes = vec![b'a'; len];
                for at in 0..len {
                    bytes[at] = wide;
                    assert_eq!(plain_run(&bytes), reference(&bytes), "{wide:#x} {len} {at}");
                    for end in (0..len).step_by(3) {
                        let kept = bytes[end];
                        bytes[end] = b'"';
                        assert_eq!(plain_run(&bytes), reference(&bytes), "{len} {at} {end}");
                        bytes[end] = kept;
                    }
                    bytes[at] = b'a';
                }
                assert_eq!(plain_run(&bytes), PlainRun { len, ascii: true });
            }
        }
    }

    #[test]
    fn scans_the_grammar_and_reports_its_shape() {
        for (text, end, int_digits, is_float) in [
            ("0", 1, 1, false),
            ("-12,", 3, 2, false),
            ("3.25]", 4, 1, true),
            ("1e9", 3, 1, true),
            ("-0.5E-3}", 7, 1, true),
            ("01", 1, 1, false),
        ] {
            let scan = scan_number(text.as_bytes(), 0).unwrap();
            assert_eq!(
                (scan.end, scan.int_digits, scan.is_float),
                (end, int_digits, is_float),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_number() {
        for text in ["", "-", "+1", ".5", "1.", "1.e3", "1e", "1e+", "-x", "x"] {
            assert!(scan_number(text.as_bytes(), 0).is_none(), "{text:?}");
        }
    }

    #[test]
    fn the_build_cost_counts_every_costly_byte_at_every_length_and_stops_past_the_limit() {
        the_costs_count_every_costly_byte([build_cost, build_cost_steps::<true>], b"[{,:\\");
    }

    #[test]
    fn the_structure_cost_counts_the_same_bytes_but_backslashes() {
        the_costs_count_every_costly_byte([structure_cost, build_cost_steps::<false>], b"[{,:");
    }

    /// `counters` (this machine's way, AVX2 where it has it, and the portable one) against
    /// their definition: one for the text, one per byte of `costly`, eight per 8-byte word of
    /// digits.
    fn the_costs_count_every_costly_byte(counters: [fn(&[u8], usize) -> usize; 2], costly: &[u8]) {
        let naive = |json: &[u8]| {
            let structural = json.iter().filter(|&&b| costly.contains(&b)).count();
            let words = json
                .chunks_exact(8)
                .filter(|w| w.iter().all(u8::is_ascii_digit))
                .count();
            1 + structural + 8 * words
        };
        let escapes = costly.contains(&b'\\');
        let unit = b"{\"a\":[1,22,{\"b\":\"x:y,z\"}],\"c\":-3.5e+7,\"d\":12345678901234567}\xff\x00\\u0395/;@`\xfb\xbb\xac\xba"
            .as_slice();
        for count in counters {
            // Past one block of 255 x 32 bytes (every byte of a lane costly), around it.
            for len in (0..300).chain(8100..8200).chain([32 * 255 * 3 + 17]) {
                let json: Vec<u8> = unit.iter().cycle().take(len).copied().collect();
                assert_eq!(count(&json, usize::MAX), naive(&json), "{len}");
            }
            for len in [0, 7, 8, 9, 15, 16, 31, 32, 33, 8160, 8161, 8168, 20_000] {
                for byte in [b'7', b',', b'[', b'{', b':', b'\\'] {
                    let same = vec![byte; len];
                    assert_eq!(count(&same, usize::MAX), naive(&same), "{len} {byte}");
                }
            }
            // Runs of up to 7 digits (escapes' hex digits) count nothing, wherever they fall:
            // only the escapes' backslashes do.
            let short_runs = b"\\u0395\\u03bb1234567x".repeat(2_000);
            let backslashes = if escapes { 2 * 2_000 } else { 0 };
            assert_eq!(count(&short_runs, usize::MAX), 1 + backslashes);
            let all_costly = vec![b','; 32 * 255 * 4 + 5];
            for limit in [0, 1, 100, 8160, 8161, 20_000, 40_000] {
                let cost = count(&all_costly, limit);
                assert_eq!(cost > limit, all_costly.len() + 1 > limit, "{limit}");
                assert!(cost <= all_costly.len() + 1);
            }
            // Text without a costly byte costs one (the text's value).
            assert_eq!(count(&b"abc".repeat(10_000), 5), 1);
        }
        // Every byte value in every lane of a word, beside each costly kind.
        for byte in 0..=255u8 {
            for lane in 0..32 {
                for fill in [b'5', b'a', b','] {
                    let mut json = vec![fill; 64];
                    json[lane] = byte;
                    for count in counters {
                        assert_eq!(count(&json, usize::MAX), naive(&json), "{byte} {lane}");
                    }
                }
            }
        }
    }

    /// `cargo test --release --no-default-features --lib json_scan::tests::time_build_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "timing, by hand"]
    fn time_build_cost() {
        let text =
            "h\\u00e9llo w\\u00f6rld \\u0395\\u03bb\\u03bb\\u03ac\\u03b4\\u03b1 ".repeat(40_000);
        let best = |f: &dyn Fn() -> usize| {
            (0..30)
                .map(|_| {
                    let start = std::time::Instant::now();
                    std::hint::black_box(f());
                    start.elapsed()
                })
                .min()
                .unwrap_or_default()
        };
        let json = text.as_bytes();
        let dispatched = best(&|| build_cost(json, usize::MAX));
        let baseline = best(&|| build_cost_steps::<true>(json, usize::MAX));
        println!(
            "{} bytes: dispatched {dispatched:?} baseline {baseline:?}",
            json.len()
        );
    }
}
