//! A seeded random driver: a million random cases thrown at the args-blob
//! decoder and at the C API (random values in every field, NULLs, random
//! counts within the arrays given, random tags, dtypes, dims, group sizes,
//! scopes, allocations, waits on random ids). Nothing may crash or hang;
//! every refusal must be a known status with a message; and once everything
//! is drained and every scope closed, nothing is left behind.

mod common;

use common::{Rng, Watchdog};
use dist_worker::abi::*;
use dist_worker::ffi::*;
use dist_worker::wire::ARGS_CAPACITY;
use std::os::raw::c_void;
use std::ptr;

#[repr(C, align(8))]
struct Aligned([u8; ARGS_CAPACITY]);

#[test]
fn the_blob_decoder_takes_any_bytes() {
    let mut rng = Rng(0xb10b);
    let mut buf = Aligned([0; ARGS_CAPACITY]);
    for _ in 0..1_000_000 {
        let t = rng.int() as i32;
        let s = rng.int() as i32;
        buf.0[0..4].copy_from_slice(&t.to_le_bytes());
        buf.0[4..8].copy_from_slice(&s.to_le_bytes());
        let at = 8 + rng.below(ARGS_CAPACITY as u64 - 8) as usize;
        buf.0[at] = rng.next() as u8;
        if let Ok(v) = dist_worker::wire::decode(&buf.0) {
            assert!(8 + 40 * v.tensors.len() + 8 * v.scalars.len() <= ARGS_CAPACITY);
            assert_eq!((v.tensors.len(), v.scalars.len()), (t as usize, s as usize));
        }
    }
}

unsafe extern "C" fn callable(
    _: *mut c_void,
    c: u64,
    a: *const DistTaskView,
    _: *const DistCallConfig,
) -> i32 {
    // SAFETY: the library passes a valid view for the call.
    let a = unsafe { &*a };
    assert!(a.tensor_count >= 0 && a.scalar_count >= 0);
    (c % 7 == 3) as i32
}

fn message() -> String {
    // SAFETY: always a valid NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(dist_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_million_random_calls_to_the_c_api() {
    let watchdog = Watchdog::new(std::time::Duration::from_secs(600), "the random driver");
    let mut rng = Rng(0xc0ffee);
    let mut w = ptr::null_mut();
    let mut opts = unsafe { std::mem::zeroed::<DistWorkerOptions>() };
    // SAFETY: valid pointers throughout; the worker is shut down at the end.
    unsafe {
        dist_worker_options_init(&mut opts);
        opts.heap_ring_size = 1 << 20;
        opts.alloc_timeout_ms = 0;
        assert_eq!(dist_worker_create(&opts, &mut w), DIST_OK);
        for ty in [DIST_WORKER_NEXT_LEVEL, DIST_WORKER_SUB, DIST_WORKER_SUB] {
            assert_eq!(
                dist_worker_add_thread(w, ty, Some(callable), ptr::null_mut()),
                DIST_OK
            );
        }
    }
    let mut ids: Vec<DistTaskId> = Vec::new();
    let mut depth = 0u32;
    let mut ok = 0u64;
    for case in 0..1_000_000u64 {
        let tensors: Vec<DistTensor> = (0..rng.below(6))
            .map(|_| DistTensor {
                data: if rng.below(3) == 0 {
                    0
                } else {
                    0x1000 + 64 * rng.below(16)
                },
                shapes: [rng.below(9) as u32, rng.below(4) as u32, 1, 2, 3],
                ndims: rng.int() as u32,
                dtype: rng.int() as u8,
            })
            .collect();
        let tags: Vec<i32> = tensors.iter().map(|_| rng.int() as i32).collect();
        let scalars: Vec<u64> = (0..rng.below(4)).map(|_| rng.next()).collect();
        let big = rng.below(50) == 0;
        let members: Vec<DistTaskArgs> = (0..1 + rng.below(3))
            .map(|_| DistTaskArgs {
                tensors: if tensors.is_empty() && rng.below(2) == 0 {
                    ptr::null()
                } else {
                    tensors.as_ptr()
                },
                tags: if rng.below(3) == 0 {
                    ptr::null()
                } else {
                    tags.as_ptr()
                },
                tensor_count: if big {
                    1 << (15 + rng.below(15)) // past the 1 MiB blob limit
                } else {
                    rng.below(tensors.len() as u64 + 1) as u32
                },
                scalars: scalars.as_ptr(),
                scalar_count: rng.below(scalars.len() as u64 + 1) as u32,
            })
            .collect();
        // SAFETY: every pointer is NULL or valid for the counts given, except
        // the "big" counts, which the library refuses before reading.
        let op = rng.below(20);
        let started = std::time::Instant::now();
        let status = unsafe {
            match op {
                0..=11 => {
                    let task = DistTask {
                        worker_type: rng.int() as i32,
                        callable: rng.below(10),
                        config: DistCallConfig {
                            block_dim: rng.int() as i32,
                            aicpu_thread_num: 3,
                            enable_profiling: false,
                            enable_dump_tensor: true,
                        },
                        args: if rng.below(8) == 0 {
                            ptr::null()
                        } else {
                            members.as_ptr()
                        },
                        group_size: rng.below(members.len() as u64 + 1) as u32,
                    };
                    let mut id = 0;
                    let s = dist_worker_dispatch(
                        w,
                        if rng.below(50) == 0 {
                            ptr::null()
                        } else {
                            &task
                        },
                        &mut id,
                    );
                    if s == DIST_OK {
                        assert_ne!(id, 0);
                        ids.push(id);
                    }
                    s
                }
                12 => dist_worker_wait(
                    w,
                    ids.get(rng.below(ids.len() as u64 + 1) as usize)
                        .copied()
                        .unwrap_or(rng.next()),
                ),
                13 => {
                    let s = dist_worker_scope_begin(w);
                    depth += (s == DIST_OK) as u32;
                    s
                }
                14 => {
                    let s = dist_worker_scope_end(w);
                    depth -= (s == DIST_OK) as u32;
                    s
                }
                15 => {
                    let shape = [rng.below(300) as u32, rng.below(3) as u32 + 1, 1, 1, 1];
                    let mut t = DistTensor::default();
                    dist_worker_alloc(w, shape.as_ptr(), rng.int() as u32, rng.int() as u8, &mut t)
                }
                16 => {
                    let mut t = DistTensor::default();
                    let id = ids.last().copied().unwrap_or(0);
                    dist_worker_task_tensor(w, id, rng.below(3) as u32, rng.below(4) as u32, &mut t)
                }
                17 => {
                    let s = dist_worker_drain(w);
                    ids.clear();
                    s
                }
                18 => {
                    let name = dist_status_str(rng.int() as i32);
                    assert!(!name.is_null());
                    DIST_OK
                }
                _ => dist_worker_add_thread(w, rng.int() as i32, Some(callable), ptr::null_mut()),
            }
        };
        // Every task is a no-op on a thread: a call that sleeps through a
        // whole idle tick (500 ms) missed its wake-up.
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_millis(400),
            "case {case}: op {op} slept {took:?}: a missed wake-up"
        );
        if status == DIST_OK {
            ok += 1;
        } else {
            assert!(
                (1..=14).contains(&status),
                "case {case}: unknown status {status}"
            );
            assert!(
                !message().is_empty(),
                "case {case}: status {status} without a message"
            );
        }
    }
    // SAFETY: as above.
    unsafe {
        while depth > 0 {
            assert_eq!(dist_worker_scope_end(w), DIST_OK);
            depth -= 1;
        }
        let _ = dist_worker_drain(w);
        assert_eq!(dist_worker_scope_end(w), DIST_ERR_BAD_STATE);
        let _ = dist_worker_shutdown(w);
    }
    assert!(
        ok > 100_000,
        "the driver mostly hit refusals: {ok} calls succeeded"
    );
    drop(watchdog);
}
