//! Standard base64 (padded, strict) of the envelope's ciphertext, 64 characters a step with
//! AVX-512 VBMI where the CPU has it (found at run time), `base64-simd` (AVX2 and others)
//! everywhere else and for the last block.
//!
//! VBMI's byte permutes do base64's two table lookups for a whole register: encoding, the 48
//! input bytes are spread into 4-byte lanes, cut into 6-bit groups by one multishift and
//! looked up in the alphabet; decoding, 64 characters are looked up in a 128-entry table (any
//! byte outside the alphabet gives a value with its top bit set, as does a byte beyond ASCII),
//! their groups merged by two multiply-adds and the 48 bytes packed by a permute. The last
//! block, where padding and the strict rules for the final characters live, is always
//! `base64-simd`'s, so both paths accept and refuse exactly the same texts.

use base64_simd::{Out, STANDARD};

/// Whether the vector steps run on this machine.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The standard alphabet.
#[cfg(any(target_arch = "x86_64", test))]
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Each ASCII byte's 6-bit value, 0x80 for a byte outside the alphabet ('=' included: padding
/// is the last block's, read by `base64-simd`).
#[cfg(any(target_arch = "x86_64", test))]
const fn decode_table() -> [u8; 128] {
    let mut table = [0x80u8; 128];
    let mut k = 0;
    while k < 64 {
        table[ALPHABET[k] as usize] = k as u8;
        k += 1;
    }
    table
}

/// The byte permute that spreads 48 input bytes into 16 lanes of 4, `[b1, b0, b2, b1]` for the
/// three bytes `b0 b1 b2` of each lane's group, so that one multishift cuts out its four 6-bit
/// groups.
#[cfg(any(target_arch = "x86_64", test))]
const fn spread_table() -> [u8; 64] {
    let mut table = [0u8; 64];
    let mut lane = 0;
    while lane < 16 {
        let first = 3 * lane as u8;
        table[4 * lane] = first + 1;
        table[4 * lane + 1] = first;
        table[4 * lane + 2] = first + 2;
        table[4 * lane + 3] = first + 1;
        lane += 1;
    }
    table
}

/// The byte permute that packs 16 lanes of 24 decoded bits (lowest byte last in the output)
/// into 48 bytes; the last 16 entries are unused.
#[cfg(any(target_arch = "x86_64", test))]
const fn pack_table() -> [u8; 64] {
    let mut table = [0u8; 64];
    let mut j = 0;
    while j < 48 {
        table[j] = (4 * (j / 3) + 2 - j % 3) as u8;
        j += 1;
    }
    table
}

/// The standard base64 of `src` into the start of `dst` (which must hold its encoded length,
/// as for `base64_simd::STANDARD.encode`, which it is beside); the encoded bytes.
pub fn encode<'d>(src: &[u8], mut dst: Out<'d, [u8]>) -> &'d mut [u8] {
    let len = STANDARD.encoded_length(src.len());
    assert!(dst.len() >= len, "base64: the output is too short");
    let out = dst.as_mut_ptr();
    #[allow(unused_mut)] // written only where the vector step exists
    let (mut read, mut written) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX-512F, BW and VBMI (checked just above); `out` points to `len`
        // writable bytes, the encoded length of `src`, the bound `avx512::encode` requires.
        (read, written) = unsafe { avx512::encode(src, out) };
    }
    // SAFETY: `written <= len <= dst.len()`: the rest of the room, for the rest of the input
    // (whole groups of three were read: the rest encodes to `len - written` bytes).
    let rest = unsafe {
        Out::new(std::ptr::slice_from_raw_parts_mut(
            out.add(written),
            len - written,
        ))
    };
    let tail = STANDARD.encode(&src[read..], rest).len();
    // SAFETY: the vector steps wrote `out[..written]`, `base64-simd` the next `tail` bytes.
    unsafe { std::slice::from_raw_parts_mut(out, written + tail) }
}

/// The bytes the strict standard base64 `src` stands for, into the start of `dst` (which must
/// hold its decoded length); `None` if `src` is not strict standard base64 (what is written
/// of `dst` then is unspecified).
pub fn decode<'d>(src: &[u8], mut dst: Out<'d, [u8]>) -> Option<&'d mut [u8]> {
    let len = STANDARD.decoded_length(src).ok()?;
    if dst.len() < len {
        return None;
    }
    // The last character's block is left out of the vector steps: padding is base64-simd's.
    let (read, written) = decode_blocks(&src[..src.len().saturating_sub(1)], dst.reborrow());
    let out = dst.as_mut_ptr();
    let room = len.checked_sub(written)?;
    // SAFETY: `written + room == len <= dst.len()`: the rest of the room, for the rest of the
    // text.
    let rest = unsafe { Out::new(std::ptr::slice_from_raw_parts_mut(out.add(written), room)) };
    let tail = STANDARD.decode(&src[read..], rest).ok()?.len();
    // SAFETY: the vector steps wrote `out[..written]`, `base64-simd` the next `tail` bytes.
    Some(unsafe { std::slice::from_raw_parts_mut(out, written + tail) })
}

/// The leading whole blocks of 64 characters of `src` that are all in the alphabet (no
/// padding), decoded into the start of `dst` while 48 bytes of room are left: the characters
/// read and bytes written, `(0, 0)` without the vector steps. The caller decodes the rest,
/// whose first block (if any) holds a byte outside the alphabet, or is short.
pub fn decode_blocks(src: &[u8], mut dst: Out<'_, [u8]>) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX-512F, BW and VBMI (checked just above); `dst` points to
        // `dst.len()` writable bytes, the bound `avx512::decode` requires.
        return unsafe { avx512::decode(src, dst.as_mut_ptr(), dst.len()) };
    }
    let _ = (src, &mut dst);
    (0, 0)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{decode_table, pack_table, spread_table, ALPHABET};

    static DECODE: [u8; 128] = decode_table();
    static SPREAD: [u8; 64] = spread_table();
    static PACK: [u8; 64] = pack_table();

    /// Whole groups of 48 bytes of `src` (while 64 can be loaded) encoded into `out`; the bytes
    /// read and written.
    ///
    /// # Safety
    /// The CPU has AVX-512F, BW and VBMI; `out` points to at least the encoded length of `src`
    /// in writable bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub unsafe fn encode(src: &[u8], out: *mut u8) -> (usize, usize) {
        // SAFETY: the alphabet is 64 bytes (unaligned load).
        let alphabet = unsafe { _mm512_loadu_si512(ALPHABET.as_ptr().cast()) };
        // SAFETY: the table is 64 bytes (unaligned load).
        let spread = unsafe { _mm512_loadu_si512(SPREAD.as_ptr().cast()) };
        // Per 64-bit word, the bit offsets of each lane's four groups (lanes at 0 and 32).
        let shifts = _mm512_set1_epi64(0x3036_242a_1016_040a);
        let (mut read, mut written) = (0, 0);
        while src.len() - read >= 64 {
            // SAFETY: `read + 64 <= src.len()` (unaligned load; the last 16 bytes are unused).
            let bytes = unsafe { _mm512_loadu_si512(src.as_ptr().add(read).cast()) };
            let groups =
                _mm512_multishift_epi64_epi8(shifts, _mm512_permutexvar_epi8(spread, bytes));
            let chars = _mm512_permutexvar_epi8(groups, alphabet);
            // SAFETY: 48 bytes read so far and these 48 encode to `written + 64` bytes, within
            // the encoded length `out` holds.
            unsafe { _mm512_storeu_si512(out.add(written).cast(), chars) };
            read += 48;
            written += 64;
        }
        (read, written)
    }

    /// `super::decode_blocks`: whole blocks of 64 characters of `src` decoded into `out` up to
    /// the first block holding a byte outside the alphabet, while 48 bytes of room are left;
    /// the characters read and bytes written.
    ///
    /// # Safety
    /// The CPU has AVX-512F, BW and VBMI; `out` points to `len` writable bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub unsafe fn decode(src: &[u8], out: *mut u8, len: usize) -> (usize, usize) {
        // SAFETY: `DECODE` is 128 bytes: its first 64 (unaligned load).
        let low = unsafe { _mm512_loadu_si512(DECODE.as_ptr().cast()) };
        // SAFETY: and its last 64.
        let high = unsafe { _mm512_loadu_si512(DECODE.as_ptr().add(64).cast()) };
        // SAFETY: `PACK` is 64 bytes (unaligned load).
        let pack = unsafe { _mm512_loadu_si512(PACK.as_ptr().cast()) };
        let (mut read, mut written) = (0, 0);
        while src.len() - read >= 64 && len - written >= 48 {
            // SAFETY: `read + 64 <= src.len()` (unaligned load).
            let chars = unsafe { _mm512_loadu_si512(src.as_ptr().add(read).cast()) };
            let values = _mm512_permutex2var_epi8(low, chars, high);
            if _mm512_movepi8_mask(_mm512_or_si512(values, chars)) != 0 {
                break;
            }
            // Four 6-bit values into 12 bits per 16-bit lane, two of those into 24 per lane.
            let twelve = _mm512_maddubs_epi16(values, _mm512_set1_epi32(0x0140_0140));
            let lanes = _mm512_madd_epi16(twelve, _mm512_set1_epi32(0x0001_1000));
            let bytes = _mm512_permutexvar_epi8(pack, lanes);
            // SAFETY: `written + 48 <= len`, the bytes `out` holds (masked store of 48).
            unsafe { _mm512_mask_storeu_epi8(out.add(written).cast(), (1 << 48) - 1, bytes) };
            read += 64;
            written += 48;
        }
        (read, written)
    }
}

#[cfg(test)]
mod tests {
    use base64_simd::AsOut;

    use super::*;

    #[test]
    fn the_tables_are_the_alphabet_s() {
        let table = decode_table();
        for (k, &c) in ALPHABET.iter().enumerate() {
            assert_eq!(table[usize::from(c)], k as u8);
        }
        assert_eq!(table.iter().filter(|&&v| v == 0x80).count(), 128 - 64);
        assert_eq!(table[usize::from(b'=')], 0x80);
        assert_eq!(spread_table()[4..8], [4, 3, 5, 4]);
        assert_eq!(pack_table()[..6], [2, 1, 0, 6, 5, 4]);
    }

    /// Bytes from a fixed xorshift sequence.
    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn encodes_as_base64_simd_does_at_every_length() {
        for len in (0..300).chain([1000, 4095, 65_536, 100_001]) {
            let data = bytes(len, len as u64);
            let want = STANDARD.encode_to_string(&data);
            let mut room = vec![0u8; want.len() + 7];
            let got = encode(&data, room.as_mut_slice().as_out());
            assert_eq!(got, want.as_bytes(), "length {len}");
        }
    }

    #[test]
    fn decodes_as_base64_simd_does_at_every_length() {
        for len in (0..300).chain([1000, 4095, 65_536, 100_001]) {
            let data = bytes(len, 3 * len as u64);
            let text = STANDARD.encode_to_string(&data);
            let mut room = vec![0u8; len + 5];
            let got = decode(text.as_bytes(), room.as_mut_slice().as_out());
            assert_eq!(got.as_deref(), Some(&data[..]), "length {len}");
        }
    }

    #[test]
    fn refuses_what_base64_simd_refuses_wherever_it_lies() {
        let text = STANDARD.encode_to_string(bytes(3000, 5)).into_bytes();
        // Every byte that is not in the alphabet, in the first block, a middle one, the last.
        let outside = (0..=255u8).filter(|b| !ALPHABET.contains(b));
        for (k, bad) in outside.enumerate() {
            for at in [k % 64, 1000 + k, text.len() - 1 - k % 4] {
                let mut broken = text.clone();
                broken[at] = bad;
                let mut room = vec![0u8; 3000];
                let theirs = STANDARD
                    .decode(&broken, room.as_mut_slice().as_out())
                    .is_ok();
                let ours = decode(&broken, room.as_mut_slice().as_out()).is_some();
                assert_eq!(ours, theirs, "{bad:#x} at {at}");
            }
        }
        // Lengths that are no base64, and padding short of the end.
        for cut in [1, 2, 3, 65, 129] {
            let mut room = vec![0u8; 3000];
            assert!(decode(&text[..text.len() - cut], room.as_mut_slice().as_out()).is_none());
        }
        let mut padded = text.clone();
        padded[200..204].copy_from_slice(b"AA==");
        let mut room = vec![0u8; 3000];
        assert!(decode(&padded, room.as_mut_slice().as_out()).is_none());
        // Non-canonical final bits are the last block's: refused as base64-simd refuses them.
        let mut loose = STANDARD.encode_to_string(bytes(100, 9)).into_bytes();
        let last = loose.len() - 3; // "xy==": the second character's low bits must be zero
        loose[last] = b'B';
        let mut room = vec![0u8; 200];
        let theirs = STANDARD
            .decode(&loose, room.as_mut_slice().as_out())
            .is_ok();
        assert_eq!(
            decode(&loose, room.as_mut_slice().as_out()).is_some(),
            theirs
        );
    }

    #[test]
    fn a_short_output_is_refused() {
        let text = STANDARD.encode_to_string(bytes(500, 1));
        let mut room = vec![0u8; 499];
        assert!(decode(text.as_bytes(), room.as_mut_slice().as_out()).is_none());
    }
}

#[cfg(test)]
mod timing {
    use base64_simd::AsOut;

    use super::*;

    #[test]
    #[ignore = "timing, by hand"]
    fn time_against_base64_simd() {
        let best = |f: &mut dyn FnMut()| crate::timing::best_of(50, f);
        // The ciphertexts of the 1 MiB rows: ASCII prose, and prose escaped by json.dumps.
        for len in [1 << 20, 2_285_311] {
            let data: Vec<u8> = (0..len).map(|k| (k * 7 + k / 3) as u8).collect();
            let text = STANDARD.encode_to_string(&data);
            let mut room = vec![0u8; text.len()];
            let theirs_encode = best(&mut || {
                std::hint::black_box(STANDARD.encode(&data, room.as_mut_slice().as_out()));
            });
            let ours_encode = best(&mut || {
                std::hint::black_box(encode(&data, room.as_mut_slice().as_out()));
            });
            let theirs_decode = best(&mut || {
                let decoded = STANDARD.decode(text.as_bytes(), room.as_mut_slice().as_out());
                std::hint::black_box(decoded.is_ok());
            });
            let ours_decode = best(&mut || {
                std::hint::black_box(decode(text.as_bytes(), room.as_mut_slice().as_out()));
            });
            println!(
                "{len} bytes: encode {theirs_encode:?} -> {ours_encode:?}, decode {theirs_decode:?} -> {ours_decode:?}"
            );
        }
    }
}
