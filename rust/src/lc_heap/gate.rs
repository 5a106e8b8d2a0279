//! The fork gate: every entry into aws-lc through the core is counted, and `fork` waits until
//! none is inside, so that a child never inherits a key whose state another thread was
//! updating; and the fork handlers (registered by `crate::fork`).

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(unix)]
use super::pool::{hold_for_fork, release_after_fork};
use super::*;

/// The gate's whole state in one word, so that checking for a fork and counting an entry are
/// one atomic step: the low bits count threads inside aws-lc, the bits from `FORK_UNIT` up
/// count threads in `fork`. An entry is counted only while no fork is pending (a CAS on a
/// state without fork bits), so once a fork's bit is set the count can only fall, and when the
/// fork sees it at zero no thread can be inside or on its way in: the child never inherits a
/// count of a thread it does not have.
pub(super) static GATE: AtomicUsize = AtomicUsize::new(0);
pub(super) const FORK_UNIT: usize = 1 << (usize::BITS - 8);
const ENTRIES: usize = FORK_UNIT - 1;

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Tests: run after `enter` saw the gate open, and after it was counted.
    #[cfg(test)]
    pub(super) static AFTER_CHECK: Cell<Option<fn()>> = const { Cell::new(None) };
    #[cfg(test)]
    pub(super) static AFTER_COUNT: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// Held while a thread is inside aws-lc through the core. `fork` waits until no thread holds
/// one: a child forked in the middle of an RSA operation inherits aws-lc state (blinding
/// slots, locks) that is half-updated, and aborts or hangs when it uses the key.
pub struct InsideLc {
    _not_send: PhantomData<*const ()>,
}

/// Enter aws-lc (re-entrant within a thread); blocks while a `fork` is in progress.
pub fn enter() -> InsideLc {
    DEPTH.with(|depth| {
        if depth.get() == 0 {
            let mut state = GATE.load(Ordering::SeqCst);
            loop {
                if state & !ENTRIES != 0 {
                    std::thread::yield_now();
                    state = GATE.load(Ordering::SeqCst);
                    continue;
                }
                #[cfg(test)]
                if let Some(hook) = AFTER_CHECK.take() {
                    hook();
                }
                match GATE.compare_exchange_weak(
                    state,
                    state + 1,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => break,
                    Err(now) => state = now,
                }
            }
            #[cfg(test)]
            if let Some(hook) = AFTER_COUNT.take() {
                hook();
            }
            relock_after_fork();
        }
        depth.set(depth.get() + 1);
    });
    InsideLc {
        _not_send: PhantomData,
    }
}

impl Drop for InsideLc {
    fn drop(&mut self) {
        DEPTH.with(|depth| {
            depth.set(depth.get() - 1);
            if depth.get() == 0 {
                GATE.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
}

/// Threads inside aws-lc right now (for tests and the fork handlers).
#[cfg(any(unix, test))] // no fork on Windows
pub(super) fn entries() -> usize {
    GATE.load(Ordering::SeqCst) & ENTRIES
}

/// Close the gate: no new entry from now on, and return once every thread inside has left.
#[cfg(any(unix, test))]
pub(super) fn close_gate() {
    GATE.fetch_add(FORK_UNIT, Ordering::SeqCst);
    while entries() != 0 {
        std::thread::yield_now();
    }
}

/// `fork` prepare handler (see `crate::fork`): let every thread inside aws-lc finish, then
/// hold the pool.
#[cfg(unix)]
pub(crate) fn before_fork() {
    close_gate();
    hold_for_fork();
}

/// `fork` parent handler: this fork is done (another thread's may still be pending).
#[cfg(unix)]
pub(crate) fn after_fork_parent() {
    release_after_fork();
    GATE.fetch_sub(FORK_UNIT, Ordering::SeqCst);
}

/// `fork` child handler: the child has one thread, this one, outside aws-lc. Its copies of
/// the heap's pages are not locked (locks are not inherited): they are locked again on the
/// next entry into aws-lc or status read (a system call per page is too much for every fork
/// that is followed by exec).
#[cfg(unix)]
pub(crate) fn after_fork_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    RELOCK_PENDING.store(true, Ordering::SeqCst);
    release_after_fork();
    GATE.store(0, Ordering::SeqCst);
}
