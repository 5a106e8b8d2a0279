//! aws-lc's allocations routed to the locked heap: one test, so `install` runs before aws-lc
//! allocates anything in this process.

use _core::envelope::{open, seal};
use _core::keys::ClientKeyPair;
use _core::lc_heap;
use _core::secret::LockedBuf;

#[test]
fn aws_lc_lives_in_locked_wiped_memory() {
    assert!(lc_heap::install(), "CRYPTO_set_mem_functions refused");
    assert!(lc_heap::install(), "install is idempotent");
    let before = lc_heap::stats();
    assert!(before.installed);

    let kp = ClientKeyPair::generate(2048).unwrap();
    let holding = lc_heap::stats();
    // The private key's numbers and contexts are pooled blocks in our slabs.
    assert!(
        holding.live_pool_blocks > before.live_pool_blocks,
        "{holding:?}"
    );
    assert!(holding.slab_bytes > 0);
    assert!(
        holding.locked_bytes > 0 || holding.lock_failures > 0,
        "{holding:?}"
    );
    assert!(holding.locked_bytes <= lc_heap::MAX_LOCKED_BYTES);

    // Everything still works on top of it: keys, PEM with PBES2, seal and open.
    let pem = kp.private_pem(Some(b"long enough password")).unwrap();
    let again = ClientKeyPair::from_pem(&pem, Some(b"long enough password")).unwrap();
    assert_eq!(again.fingerprint(), kp.fingerprint());
    let server = kp.public_key().unwrap();
    for size in [0usize, 1, 1000, 200_000] {
        let mut plain = LockedBuf::from_slice(&vec![b'x'; size]).unwrap();
        let body = seal(&mut plain, &server).unwrap();
        assert_eq!(
            open(&body, &again).unwrap().plaintext.as_slice(),
            vec![b'x'; size]
        );
    }
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let server = kp.public_key().unwrap();
            let pem = kp.private_pem(None).unwrap();
            std::thread::spawn(move || {
                let kp = ClientKeyPair::from_pem(&pem, None).unwrap();
                for j in 0..20 {
                    let msg = format!("{i}-{j}");
                    let mut plain = LockedBuf::from_slice(msg.as_bytes()).unwrap();
                    let body = seal(&mut plain, &server).unwrap();
                    assert_eq!(
                        open(&body, &kp).unwrap().plaintext.as_slice(),
                        msg.as_bytes()
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    drop((kp, again, server));
    // Freed blocks are zero: nothing of the keys or AES contexts is left in the slabs.
    assert!(lc_heap::free_blocks_are_wiped());
    let after = lc_heap::stats();
    assert!(
        after.live_pool_blocks < holding.live_pool_blocks,
        "{after:?} vs {holding:?}"
    );
}
