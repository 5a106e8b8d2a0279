//! The process's `fork` handlers: one registration for the two locks a child must never inherit
//! held, in the one order that is safe.
//!
//! The prepare handler first closes aws-lc's gate and waits until no thread is inside aws-lc
//! (`lc_heap`), and only then takes the `LockedBuf` pool's lock (`secret`): a thread inside
//! aws-lc may still drop a buffer into the pool on its way out, so holding the pool first could
//! leave it waiting forever. The parent and child handlers release in the reverse order. A
//! child thus never starts with a half-updated key, heap or pool. The child handler also frees
//! the Rust allocator's shelves (`record_blocks`): they are only tried, never waited for, so the
//! prepare handler need not take them.

/// Register the handlers (once per process; later calls do nothing). Module initialisation
/// calls it before `lc_heap::install`; `lc_heap::install` and the pool call it too, so that
/// the pure-Rust tests, which have no module initialisation, are covered as well.
pub fn install() {
    #[cfg(unix)]
    {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            // SAFETY: plain functions without captured state, valid for the process lifetime.
            unsafe {
                libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
            }
        });
    }
}

#[cfg(unix)]
extern "C" fn prepare() {
    crate::lc_heap::before_fork();
    crate::secret::before_fork();
}

#[cfg(unix)]
extern "C" fn parent() {
    crate::secret::after_fork_parent();
    crate::lc_heap::after_fork_parent();
}

#[cfg(unix)]
extern "C" fn child() {
    crate::secret::after_fork_child();
    crate::lc_heap::after_fork_child();
    crate::record_blocks::after_fork_child();
}
