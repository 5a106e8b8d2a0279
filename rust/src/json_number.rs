//! The JSON number grammar (RFC 8259), shared by the two JSON readers: `json` (bytes to Python
//! objects) and `request_body` (an SDK's request bytes compacted into locked memory).

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

#[cfg(test)]
mod tests {
    use super::scan_number;

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
}
