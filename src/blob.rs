//! The args blob: validation and encoding of a task's arguments at submit
//! time, and decoding on the serving side (the layout of docs/protocol.md,
//! "The args blob").
//!
//! ```text
//! 0        int32 T, int32 S
//! 8        T x 40-byte tensor descriptors
//! 8 + 40T  S x uint64 scalars          (8 + 40T + 8S <= 4032)
//! ```

use crate::abi::{self, DistTensor, DistTensorArgType};
use crate::status::{fail, Result, Status};

/// Bytes of one tensor descriptor on the wire.
pub const TENSOR_BYTES: usize = 40;
/// Bytes of the blob header (T, S).
pub const HEADER_BYTES: usize = 8;

/// The arguments of one task or group member, borrowed from the submitter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Args<'a> {
    /// Tensor arguments.
    pub tensors: &'a [DistTensor],
    /// One tag per tensor, or None for all INPUT.
    pub tags: Option<&'a [DistTensorArgType]>,
    /// Scalar arguments.
    pub scalars: &'a [u64],
}

impl<'a> Args<'a> {
    /// Arguments of scalars alone (no tensors).
    pub fn scalars(scalars: &'a [u64]) -> Args<'a> {
        Args {
            tensors: &[],
            tags: None,
            scalars,
        }
    }
}

/// What a serving side decodes from a blob.
#[derive(Clone, Copy, Debug)]
pub struct TaskView<'a> {
    /// Tensor arguments.
    pub tensors: &'a [DistTensor],
    /// Scalar arguments.
    pub scalars: &'a [u64],
}

/// Encoded size of `t` tensors and `s` scalars, or ARGS_TOO_LARGE.
/// Computed in u64 so any count a caller passes is checked without overflow.
pub fn encoded_len(t: u64, s: u64) -> Result<usize> {
    let len = HEADER_BYTES as u64 + TENSOR_BYTES as u64 * t + 8 * s;
    if len > ARGS_LIMIT as u64 {
        return fail(
            Status::ArgsTooLarge,
            format!(
                "{t} tensors and {s} scalars need {len} bytes (8 + 40 per tensor + 8 per \
                 scalar); a blob may have {ARGS_LIMIT} bytes at most"
            ),
        );
    }
    Ok(len as usize)
}

/// Longest args blob: up to `ARGS_CAPACITY` bytes travel in the mailbox,
/// longer ones (to workers that speak the library's protocol) through the
/// shared heap ring.
pub const ARGS_LIMIT: usize = 1 << 20;

/// Checks a tag value.
pub fn check_tag(tag: DistTensorArgType) -> Result<()> {
    if (abi::DIST_ARG_INPUT..=abi::DIST_ARG_NO_DEP).contains(&tag) {
        Ok(())
    } else {
        fail(
            Status::InvalidArgument,
            format!("tensor tag {tag} is not a DistTensorArgType (0..4)"),
        )
    }
}

/// Checks ndims and dtype of a tensor.
pub fn check_tensor(t: &DistTensor) -> Result<()> {
    if t.ndims > abi::DIST_TENSOR_MAX_DIMS {
        return fail(
            Status::InvalidArgument,
            format!(
                "tensor ndims {} is out of range 0..5 (0 is a 0-d tensor)",
                t.ndims
            ),
        );
    }
    if t.dtype > abi::DIST_UINT64 {
        return fail(
            Status::InvalidArgument,
            format!("tensor dtype {} is not a DistDataType (0..8)", t.dtype),
        );
    }
    Ok(())
}

/// Bytes per element of a valid dtype.
pub fn dtype_size(dtype: u8) -> usize {
    match dtype {
        abi::DIST_FLOAT16 | abi::DIST_INT16 | abi::DIST_BFLOAT16 => 2,
        abi::DIST_INT8 | abi::DIST_UINT8 => 1,
        abi::DIST_INT64 | abi::DIST_UINT64 => 8,
        _ => 4,
    }
}

/// Validates `args` completely (sizes, tags, tensors).
pub fn validate(args: &Args<'_>) -> Result<()> {
    encoded_len(args.tensors.len() as u64, args.scalars.len() as u64)?;
    if let Some(tags) = args.tags {
        if tags.len() != args.tensors.len() {
            return fail(Status::InvalidArgument, "one tag per tensor is required");
        }
        for &tag in tags {
            check_tag(tag)?;
        }
    }
    for t in args.tensors {
        check_tensor(t)?;
    }
    Ok(())
}

/// A growable byte buffer a blob is encoded into.
pub trait Out {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl<const N: usize> Out for smallvec::SmallVec<[u8; N]> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Appends the blob header (tensor and scalar counts) to `out`.
pub fn encode_header(tensors: usize, scalars: usize, out: &mut impl Out) {
    out.put(&(tensors as i32).to_le_bytes());
    out.put(&(scalars as i32).to_le_bytes());
}

/// Appends one tensor descriptor to `out`. Padding and dims past `ndims`
/// are written as zero.
pub fn encode_tensor(t: &DistTensor, out: &mut impl Out) {
    out.put(&t.data.to_le_bytes());
    for (d, &n) in t.shapes.iter().enumerate() {
        let n = if (d as u32) < t.ndims { n } else { 0 };
        out.put(&n.to_le_bytes());
    }
    out.put(&t.ndims.to_le_bytes());
    out.put(&[t.dtype]);
    out.put(&[0u8; 7]);
}

/// Appends scalars to `out`.
pub fn encode_scalars(scalars: &[u64], out: &mut impl Out) {
    for s in scalars {
        out.put(&s.to_le_bytes());
    }
}

/// Appends the wire encoding of `tensors` and `scalars` to `out`. Sizes
/// must have been validated.
pub fn encode(tensors: &[DistTensor], scalars: &[u64], out: &mut impl Out) {
    encode_header(tensors.len(), scalars.len(), out);
    for t in tensors {
        encode_tensor(t, out);
    }
    encode_scalars(scalars, out);
}

/// Reads tensor `index` of an encoded blob (any alignment); None if absent.
pub fn tensor_at(blob: &[u8], index: usize) -> Option<DistTensor> {
    let t = i32::from_le_bytes(blob.get(0..4)?.try_into().ok()?);
    if index >= t.max(0) as usize {
        return None;
    }
    let b = blob
        .get(HEADER_BYTES + TENSOR_BYTES * index..)?
        .get(..TENSOR_BYTES)?;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    Some(DistTensor {
        data: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
        shapes: [u32_at(8), u32_at(12), u32_at(16), u32_at(20), u32_at(24)],
        ndims: u32_at(28),
        dtype: b[32],
    })
}

/// Bytes a tensor's elements occupy, or None on overflow.
pub fn tensor_bytes(t: &DistTensor) -> Option<u64> {
    t.shapes[..t.ndims.min(5) as usize]
        .iter()
        .try_fold(dtype_size(t.dtype) as u64, |acc, &d| {
            acc.checked_mul(d as u64)
        })
}

/// Decodes a blob in place. `blob` must start 8-byte aligned (it does in a
/// mailbox). Counts are checked against the capacity before use.
pub fn decode(blob: &[u8]) -> Result<TaskView<'_>> {
    if blob.len() < HEADER_BYTES || !(blob.as_ptr() as usize).is_multiple_of(8) {
        return fail(Status::Protocol, "args blob is short or misaligned");
    }
    let t = i32::from_le_bytes(blob[0..4].try_into().expect("4 bytes"));
    let s = i32::from_le_bytes(blob[4..8].try_into().expect("4 bytes"));
    if t < 0 || s < 0 {
        return fail(
            Status::Protocol,
            format!("args blob header out of range: T={t} S={s}"),
        );
    }
    let len = encoded_len(t as u64, s as u64)
        .map_err(|e| crate::status::Error::new(Status::Protocol, e.message))?;
    if len > blob.len() {
        return fail(Status::Protocol, "args blob exceeds its buffer");
    }
    let (t, s) = (t as usize, s as usize);
    let tensor_ptr = blob[HEADER_BYTES..].as_ptr() as *const DistTensor;
    let scalar_ptr = blob[HEADER_BYTES + TENSOR_BYTES * t..].as_ptr() as *const u64;
    // SAFETY: both ranges lie within `blob` (len checked above), are 8-byte
    // aligned (base aligned, 8 and 40 are multiples of 8), and every bit
    // pattern is a valid DistTensor / u64 (plain integers; `dtype` is u8).
    let view = unsafe {
        TaskView {
            tensors: std::slice::from_raw_parts(tensor_ptr, t),
            scalars: std::slice::from_raw_parts(scalar_ptr, s),
        }
    };
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::ARGS_CAPACITY;

    #[repr(C, align(8))]
    struct Aligned([u8; ARGS_CAPACITY]);

    fn tensor(data: u64, ndims: u32, dtype: u8) -> DistTensor {
        DistTensor {
            data,
            shapes: [2, 3, 4, 5, 6],
            ndims,
            dtype,
        }
    }

    #[test]
    fn round_trip() {
        let ts = [
            tensor(0x1000, 2, abi::DIST_FLOAT16),
            tensor(0x2000, 5, abi::DIST_UINT64),
        ];
        let ss = [7u64, u64::MAX];
        let mut v = Vec::new();
        encode(&ts, &ss, &mut v);
        assert_eq!(v.len(), encoded_len(2, 2).unwrap());
        assert_eq!(v.len(), 8 + 80 + 16);
        // dims past ndims and padding are zero on the wire
        assert_eq!(&v[8 + 16..8 + 28], &[0u8; 12]);
        assert_eq!(&v[8 + 33..8 + 40], &[0u8; 7]);
        let mut buf = Aligned([0xAA; ARGS_CAPACITY]);
        buf.0[..v.len()].copy_from_slice(&v);
        let view = decode(&buf.0).unwrap();
        assert_eq!(view.tensors.len(), 2);
        assert_eq!(view.tensors[0].data, 0x1000);
        assert_eq!(view.tensors[0].shapes, [2, 3, 0, 0, 0]);
        assert_eq!(view.tensors[1], ts[1]);
        assert_eq!(view.scalars, &ss);
        assert_eq!(tensor_at(&v, 1), Some(ts[1]));
        assert_eq!(tensor_at(&v, 2), None);
        assert_eq!(tensor_bytes(&ts[0]), Some(2 * 3 * 2));
    }

    #[test]
    fn capacity_limits() {
        // 100 tensors + 3 scalars fill a mailbox exactly; longer blobs are
        // allowed up to ARGS_LIMIT (they travel through the heap).
        assert_eq!(encoded_len(100, 3).unwrap(), ARGS_CAPACITY);
        assert_eq!(encoded_len(100, 4).unwrap(), 4040);
        assert_eq!(
            encoded_len(0, (ARGS_LIMIT as u64 - 8) / 8).unwrap(),
            ARGS_LIMIT
        );
        assert_eq!(
            encoded_len(0, (ARGS_LIMIT as u64 - 8) / 8 + 1)
                .unwrap_err()
                .status,
            Status::ArgsTooLarge
        );
        assert!(encoded_len(u32::MAX as u64, u32::MAX as u64).is_err());
    }

    #[test]
    fn decode_rejects_bad_headers() {
        let mut buf = Aligned([0; ARGS_CAPACITY]);
        buf.0[0..4].copy_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(decode(&buf.0).unwrap_err().status, Status::Protocol);
        buf.0[0..4].copy_from_slice(&101i32.to_le_bytes());
        assert_eq!(decode(&buf.0).unwrap_err().status, Status::Protocol);
    }

    #[test]
    fn validation() {
        assert!(check_tensor(&tensor(1, 0, 0)).is_ok()); // a 0-d tensor
        assert!(check_tensor(&tensor(1, 6, 0)).is_err());
        assert!(check_tensor(&tensor(1, 1, 9)).is_err());
        assert!(check_tensor(&tensor(1, 5, 8)).is_ok());
        assert!(check_tag(5).is_err());
        assert!(check_tag(-1).is_err());
        let ts = [tensor(1, 1, 0)];
        let tags = [abi::DIST_ARG_INOUT, abi::DIST_ARG_INPUT];
        let a = Args {
            tensors: &ts,
            tags: Some(&tags),
            scalars: &[],
        };
        assert_eq!(validate(&a).unwrap_err().status, Status::InvalidArgument);
    }
}
