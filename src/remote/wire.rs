//! What travels between rank 0 and a remote rank: control frames (one MPI
//! message each, tag `TAG_CTRL`) and tensor bytes (tag `TAG_DATA`, in chunks
//! of at most `chunk` bytes, so tensors past 2^31 bytes travel too).
//!
//! ```text
//! frame   0  u32 magic "DWMP"   4  u32 kind   8  u64 seq
//!        16  u64 a              24  u64 b     32  body
//! task body (kind TASK, rank 0 -> rank r):
//!         0  u64 callable       8  i32 block_dim   12 i32 aicpu_thread_num
//!        16  u32 flags (1 = profiling, 2 = dump)   20 u32 T
//!        24  u64 chunk bytes   32  T x u8 direction (padded to 8)
//!         .  the args blob (8 + 40T + 8S bytes, as in a mailbox)
//! ```
//!
//! A direction says which bytes travel: `OUT` (rank 0 sends the tensor's
//! bytes before the task runs: INPUT, INOUT, NO_DEP) and `BACK` (the remote
//! rank sends them back after it succeeded: OUTPUT, OUTPUT_EXISTING, INOUT,
//! NO_DEP). A tensor with `data == 0` carries no bytes. Chunks follow their
//! frame in tensor order, which both sides derive from the same task body.

use crate::abi::{self, DistCallConfig, DistTensor, DistTensorArgType};
use crate::blob;
use crate::status::{fail, Result, Status};

/// Control frames.
pub const TAG_CTRL: i32 = 0x4457;
/// Tensor bytes.
pub const TAG_DATA: i32 = 0x4458;

const MAGIC: u32 = u32::from_le_bytes(*b"DWMP");
/// Bytes of a frame header.
pub const HEADER: usize = 32;
/// Longest failure message a RESULT frame carries.
pub const MESSAGE_MAX: usize = 4096;
/// Default size of one data message (64 MiB): large enough for MPI's full
/// bandwidth, small enough that one message never holds the link for long.
pub const DEFAULT_CHUNK: u64 = 64 << 20;

/// Bytes go out before the task runs.
pub const OUT: u8 = 1;
/// Bytes come back after it succeeded.
pub const BACK: u8 = 2;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// Remote -> 0: its level is set up and started (a = pid, b = level;
    /// body = host name).
    Ready = 1,
    /// Remote -> 0: its setup failed (a = code; body = message).
    SetupFailed = 2,
    /// 0 -> remote: rank 0's DistWorker started; heartbeats flow from now on.
    Start = 3,
    /// Either way, every 100 ms: the sender is alive.
    Heartbeat = 4,
    /// 0 -> remote: run a task (body = task body).
    Task = 5,
    /// Remote -> 0: the task's outcome (a = error code; body = message),
    /// followed by its BACK bytes if a == 0.
    Result = 6,
    /// 0 -> remote: leave the serving loop.
    Shutdown = 7,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Ready,
            2 => Kind::SetupFailed,
            3 => Kind::Start,
            4 => Kind::Heartbeat,
            5 => Kind::Task,
            6 => Kind::Result,
            7 => Kind::Shutdown,
            _ => return None,
        })
    }
}

/// A decoded frame header and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// The task's number (TASK, RESULT).
    pub seq: u64,
    /// First value (see `Kind`).
    pub a: u64,
    /// Second value.
    pub b: u64,
    /// The rest.
    pub body: Vec<u8>,
}

impl Frame {
    /// A frame without body.
    pub fn new(kind: Kind, seq: u64, a: u64, b: u64) -> Frame {
        Frame {
            kind,
            seq,
            a,
            b,
            body: Vec::new(),
        }
    }

    /// With `body`.
    pub fn with_body(mut self, body: Vec<u8>) -> Frame {
        self.body = body;
        self
    }

    /// The bytes of one message.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER + self.body.len());
        v.extend_from_slice(&MAGIC.to_le_bytes());
        v.extend_from_slice(&(self.kind as u32).to_le_bytes());
        v.extend_from_slice(&self.seq.to_le_bytes());
        v.extend_from_slice(&self.a.to_le_bytes());
        v.extend_from_slice(&self.b.to_le_bytes());
        v.extend_from_slice(&self.body);
        v
    }

    /// Reads one message; PROTOCOL if it is not a frame.
    pub fn decode(mut bytes: Vec<u8>) -> Result<Frame> {
        if bytes.len() < HEADER || u32_at(&bytes, 0) != MAGIC {
            return fail(
                Status::Protocol,
                format!("a {}-byte message is not a frame", bytes.len()),
            );
        }
        let Some(kind) = Kind::from_u32(u32_at(&bytes, 4)) else {
            return fail(
                Status::Protocol,
                format!("frame kind {} is unknown", u32_at(&bytes, 4)),
            );
        };
        let (seq, a, b) = (u64_at(&bytes, 8), u64_at(&bytes, 16), u64_at(&bytes, 24));
        let body = bytes.split_off(HEADER);
        Ok(Frame {
            kind,
            seq,
            a,
            b,
            body,
        })
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// Which bytes of a tensor with `tag` travel (0 for `data == 0`).
pub fn direction(tag: DistTensorArgType, data: u64) -> u8 {
    if data == 0 {
        return 0;
    }
    match tag {
        abi::DIST_ARG_INPUT => OUT,
        abi::DIST_ARG_OUTPUT | abi::DIST_ARG_OUTPUT_EXISTING => BACK,
        _ => OUT | BACK,
    }
}

/// A task as it travels.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// NEXT_LEVEL handle.
    pub callable: u64,
    /// Launch configuration.
    pub config: DistCallConfig,
    /// Tensors, with the sender's addresses.
    pub tensors: Vec<DistTensor>,
    /// One direction per tensor.
    pub dirs: Vec<u8>,
    /// Scalars.
    pub scalars: Vec<u64>,
    /// Bytes per data message.
    pub chunk: u64,
}

impl Task {
    /// The task body.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&self.callable.to_le_bytes());
        v.extend_from_slice(&self.config.block_dim.to_le_bytes());
        v.extend_from_slice(&self.config.aicpu_thread_num.to_le_bytes());
        let flags =
            self.config.enable_profiling as u32 | (self.config.enable_dump_tensor as u32) << 1;
        v.extend_from_slice(&flags.to_le_bytes());
        v.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        v.extend_from_slice(&self.chunk.to_le_bytes());
        v.extend_from_slice(&self.dirs);
        v.resize(v.len().next_multiple_of(8), 0);
        blob::encode(&self.tensors, &self.scalars, &mut v);
        v
    }

    /// Reads a task body, checking every count against the bytes present
    /// and every tensor (ndims, dtype, size) before use.
    pub fn decode(b: &[u8]) -> Result<Task> {
        let bad = |why: &str| {
            fail(
                Status::Protocol,
                format!("a task frame is malformed: {why}"),
            )
        };
        if b.len() < 32 {
            return bad("short");
        }
        let t = u32_at(b, 20) as usize;
        let chunk = u64_at(b, 24);
        if chunk == 0 || chunk > i32::MAX as u64 {
            return bad("chunk size out of range");
        }
        let blob_at = (32 + t).next_multiple_of(8);
        if b.len() < blob_at + blob::HEADER_BYTES {
            return bad("short");
        }
        let blob = &b[blob_at..];
        let (bt, bs) = (u32_at(blob, 0) as usize, u32_at(blob, 4) as usize);
        if bt != t || blob.len() != blob::HEADER_BYTES + blob::TENSOR_BYTES * t + 8 * bs {
            return bad("counts do not match its length");
        }
        let mut tensors = Vec::with_capacity(t);
        for i in 0..t {
            let tensor = blob::tensor_at(blob, i).expect("length checked");
            blob::check_tensor(&tensor)?;
            if blob::tensor_bytes(&tensor).is_none() {
                return bad("a tensor's size overflows");
            }
            tensors.push(tensor);
        }
        let at = blob::HEADER_BYTES + blob::TENSOR_BYTES * t;
        let scalars = (0..bs).map(|i| u64_at(blob, at + 8 * i)).collect();
        let flags = u32_at(b, 16);
        Ok(Task {
            callable: u64_at(b, 0),
            config: DistCallConfig {
                block_dim: u32_at(b, 8) as i32,
                aicpu_thread_num: u32_at(b, 12) as i32,
                enable_profiling: flags & 1 != 0,
                enable_dump_tensor: flags & 2 != 0,
            },
            tensors,
            dirs: b[32..32 + t].to_vec(),
            scalars,
            chunk,
        })
    }
}

/// The data messages of `len` bytes at `at`: (offset, length) pieces of at
/// most `chunk` bytes (none for 0 bytes).
pub fn chunks(len: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let chunk = chunk.max(1);
    (0..len.div_ceil(chunk)).map(move |i| (i * chunk, chunk.min(len - i * chunk)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = Frame::new(Kind::Result, 7, u64::MAX, 3).with_body(b"why".to_vec());
        assert_eq!(Frame::decode(f.encode()).unwrap(), f);
        assert_eq!(
            Frame::decode(vec![0; 40]).unwrap_err().status,
            Status::Protocol
        );
        let mut bad = f.encode();
        bad[4] = 99;
        assert_eq!(Frame::decode(bad).unwrap_err().status, Status::Protocol);
    }

    #[test]
    fn tasks_round_trip_and_are_checked() {
        let t = Task {
            callable: 0x1234,
            config: DistCallConfig {
                block_dim: 24,
                aicpu_thread_num: 3,
                enable_profiling: true,
                enable_dump_tensor: false,
            },
            tensors: vec![
                DistTensor {
                    data: 0x1000,
                    shapes: [4, 2, 0, 0, 0],
                    ndims: 2,
                    dtype: abi::DIST_FLOAT32,
                },
                DistTensor {
                    data: 0,
                    shapes: [0; 5],
                    ndims: 0,
                    dtype: abi::DIST_INT8,
                },
                DistTensor {
                    data: 0x2000,
                    shapes: [3, 0, 0, 0, 0],
                    ndims: 1,
                    dtype: abi::DIST_UINT64,
                },
            ],
            dirs: vec![OUT, 0, OUT | BACK],
            scalars: vec![1, 2, 3],
            chunk: DEFAULT_CHUNK,
        };
        let body = t.encode();
        assert_eq!(Task::decode(&body).unwrap(), t);
        assert!(Task::decode(&body[..body.len() - 1]).is_err());
        let mut bad = body.clone();
        let dtype_at = (32 + 3usize).next_multiple_of(8) + 8 + 32;
        bad[dtype_at] = 77;
        assert_eq!(
            Task::decode(&bad).unwrap_err().status,
            Status::InvalidArgument
        );
    }

    #[test]
    fn directions_follow_tags() {
        assert_eq!(direction(abi::DIST_ARG_INPUT, 8), OUT);
        assert_eq!(direction(abi::DIST_ARG_OUTPUT, 8), BACK);
        assert_eq!(direction(abi::DIST_ARG_OUTPUT_EXISTING, 8), BACK);
        assert_eq!(direction(abi::DIST_ARG_INOUT, 8), OUT | BACK);
        assert_eq!(direction(abi::DIST_ARG_NO_DEP, 8), OUT | BACK);
        assert_eq!(direction(abi::DIST_ARG_INOUT, 0), 0);
    }

    #[test]
    fn chunks_cover_counts_past_two_gib() {
        let len = (5u64 << 30) + 17;
        let pieces: Vec<_> = chunks(len, DEFAULT_CHUNK).collect();
        assert_eq!(pieces.len(), 81);
        assert!(pieces
            .iter()
            .all(|&(_, n)| n <= DEFAULT_CHUNK && n < i32::MAX as u64));
        assert_eq!(pieces.iter().map(|p| p.1).sum::<u64>(), len);
        assert_eq!(pieces.last().unwrap(), &(80 * DEFAULT_CHUNK, 17));
        assert_eq!(chunks(0, 8).count(), 0);
        assert_eq!(chunks(8, 8).collect::<Vec<_>>(), vec![(0, 8)]);
    }
}
