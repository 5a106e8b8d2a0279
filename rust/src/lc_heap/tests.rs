use super::gate::{close_gate, entries, AFTER_CHECK, AFTER_COUNT, FORK_UNIT, GATE};
use super::pool::class_of;
use super::*;

#[test]
fn size_classes() {
    assert_eq!(class_of(1), Some(0));
    assert_eq!(class_of(32), Some(0));
    assert_eq!(class_of(33), Some(1));
    assert_eq!(class_of(MAX_BLOCK), Some(CLASSES - 1));
    assert_eq!(class_of(MAX_BLOCK + 1), None);
}

/// Issue 10 finding 11: `enter` looked at the gate and then counted itself, so a `fork`
/// that saw a count of zero in between copied a count of 1 into the child, whose next fork
/// then waited forever. Here a thread stops right after its look at the open gate, the
/// gate closes (as `fork` closes it), and the thread resumes: it must not be counted
/// before the gate opens again.
#[test]
fn finding11_closed_gate_never_counts_an_entry() {
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::Mutex;
    use std::time::Duration;
    type Step = (Sender<&'static str>, Receiver<()>);
    static STEP: Mutex<Option<Step>> = Mutex::new(None);
    fn report(what: &'static str) {
        let guard = STEP.lock().unwrap();
        let (to_test, from_test) = guard.as_ref().unwrap();
        to_test.send(what).unwrap();
        from_test.recv().unwrap();
    }
    let (to_test, events) = channel();
    let (resume, from_test) = channel();
    *STEP.lock().unwrap() = Some((to_test, from_test));
    let thread = std::thread::spawn(|| {
        AFTER_CHECK.set(Some(|| report("checked")));
        AFTER_COUNT.set(Some(|| report("counted")));
        let _inside = enter();
    });
    assert_eq!(events.recv().unwrap(), "checked");
    close_gate();
    resume.send(()).unwrap();
    // A child forked now would inherit the count: the thread must wait at the gate.
    let while_closed = events.recv_timeout(Duration::from_secs(2));
    let count_while_closed = entries();
    GATE.fetch_sub(FORK_UNIT, Ordering::SeqCst);
    if while_closed.is_err() {
        // Opened: now it gets in.
        assert_eq!(events.recv().unwrap(), "counted");
    }
    resume.send(()).unwrap();
    thread.join().unwrap();
    assert!(while_closed.is_err(), "counted while the gate was closed");
    assert_eq!(count_while_closed, 0);
}

#[test]
fn blocks_are_wiped_and_reused_without_installing() {
    // The allocator works on its own (install is tested in its own test binary).
    // SAFETY: every pointer is one `allocate` or `lc_realloc` just returned, used within the
    // size asked for and released once.
    unsafe {
        let p = allocate(100);
        assert!(!p.is_null());
        assert_eq!(usable_size(p), 100);
        std::ptr::write_bytes(p, 0xAB, 100);
        let q = lc_realloc(p as *mut c_void, 5000, std::ptr::null(), 0) as *mut u8;
        assert_eq!(std::slice::from_raw_parts(q, 100), &[0xAB; 100][..]);
        release(q);
        let big = allocate(MAX_BLOCK * 2);
        std::ptr::write_bytes(big, 0xCD, MAX_BLOCK * 2);
        release(big);
    }
    assert!(free_blocks_are_wiped());
}
