//! `request_body::compact_request` (what `_core.RequestBody` runs on an openai SDK's request
//! bytes) on hostile input. The first byte picks the cap: the plaintext limit, or half the
//! body (so that the cap is hit mid-value). Any refusal is fine; a panic, abort, hang or runaway
//! allocation is not, and neither is an accepted body whose compact form
//! - is longer than the body or the cap (compacting only removes whitespace),
//! - is not accepted again, unchanged (a fixed point: nothing but whitespace outside strings
//!   was removed, and what the core seals is itself valid under the same rules).
#![no_main]

use _core::envelope::MAX_PLAINTEXT_BYTES;
use _core::request_body::compact_request;
use _core::secret::LockedBuf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let cap = if mode % 2 == 0 {
        MAX_PLAINTEXT_BYTES
    } else {
        body.len() / 2
    };
    let mut out = LockedBuf::with_capacity(0).expect("locked buffer");
    if compact_request(body, &mut out, cap).is_err() {
        return;
    }
    let compact = out.as_slice().to_vec();
    assert!(
        compact.len() <= body.len().min(cap),
        "compact form outgrew its body or cap"
    );
    let mut again = LockedBuf::with_capacity(0).expect("locked buffer");
    compact_request(&compact, &mut again, cap).expect("the compact form is accepted again");
    assert_eq!(
        again.as_slice(),
        &compact[..],
        "the compact form is a fixed point"
    );
});
