//! Byte-exact layout and the sleep/wake of a mailbox.

use super::*;

#[test]
fn write_and_read_back_a_task() {
    let m = OwnedMailbox::new().unwrap();
    let mb = m.handle();
    assert_eq!(mb.state(), state::IDLE);
    let cfg = DistCallConfig {
        block_dim: 7,
        aicpu_thread_num: 2,
        enable_profiling: true,
        enable_dump_tensor: false,
    };
    mb.write_task(0xdead_beef_0000_0001, &cfg, &[1, 2, 3, 4], 7);
    mb.publish(state::TASK_READY);
    assert_eq!(mb.state(), state::TASK_READY);
    assert_eq!(mb.callable(), 0xdead_beef_0000_0001);
    assert_eq!(mb.config(), cfg);
    assert_eq!(&mb.blob()[..4], &[1, 2, 3, 4]);
    // Byte-exact offsets of the wire layout.
    // SAFETY: off + n stays inside the 4096 mapped bytes of `m`.
    let raw = |off: usize, n: usize| unsafe {
        std::slice::from_raw_parts(mb.as_ptr().add(off), n).to_vec()
    };
    assert_eq!(raw(0, 4), 1i32.to_le_bytes());
    assert_eq!(raw(8, 8), 0xdead_beef_0000_0001u64.to_le_bytes());
    assert_eq!(raw(16, 4), 7i32.to_le_bytes());
    assert_eq!(raw(20, 4), 2i32.to_le_bytes());
    assert_eq!(raw(24, 4), 1i32.to_le_bytes());
    assert_eq!(raw(28, 4), 0i32.to_le_bytes());
    assert!(mb.complete(-5, mb.launch_seq()));
    assert_eq!(mb.state(), state::TASK_DONE);
    assert_eq!(raw(44, 4), 7u32.to_le_bytes());
    assert_eq!(mb.error(), -5);
    assert_eq!(raw(4, 4), (-5i32).to_le_bytes());
}

#[test]
fn sleeper_is_woken_by_publish() {
    let m = OwnedMailbox::new().unwrap();
    let mb = m.handle();
    let nap = Duration::from_secs(20);
    let t = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        (
            mb.wait_for_work(Duration::ZERO, nap, || true),
            start.elapsed(),
        )
    });
    std::thread::sleep(Duration::from_millis(20));
    mb.publish(state::TASK_READY);
    let (seen, waited) = t.join().unwrap();
    assert_eq!(seen, Some(state::TASK_READY));
    // Woken by the publish, not by the end of its nap.
    assert!(waited < nap / 2, "sleeper was not woken: {waited:?}");
}
