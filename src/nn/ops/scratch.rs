//! Per-thread reuse of large scratch buffers (input copies, pooling winners, im2col matrices).
//!
//! A training step allocates the same few megabyte-sized buffers every time; getting them from
//! the allocator each time costs page faults and zeroing that rival the arithmetic. Buffers come
//! back here when an op's backward pass (or its forward pass, if nothing is saved) is done.

use std::cell::RefCell;

/// How many buffers of each kind a thread keeps; more than a network holds at once is waste.
const KEEP: usize = 24;

/// How much longer than a request a kept buffer may be and still serve it. A buffer cut to a
/// far shorter length forgets its tail, which must then be written again (zeroed) when a
/// request of its old length comes: a step of the trainer bench's CNN asks for buffers of ten
/// lengths, and with any buffer serving any shorter request it zeroed 1.2 G floats over a
/// 12,000-sample trial (about 11 buffers regrown a step).
const SLACK: usize = 2;

thread_local! {
    static F32: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static USIZE: RefCell<Vec<Vec<usize>>> = const { RefCell::new(Vec::new()) };
    static U8: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take<T: Copy + Default>(pool: &RefCell<Vec<Vec<T>>>, len: usize) -> Vec<T> {
    if len == 0 {
        return Vec::new();
    }
    let mut pool = pool.borrow_mut();
    // A buffer of exactly this length first: a step asks for the same lengths as the last one.
    // Else the shortest whose written length covers the request (nothing to zero), then the
    // smallest whose capacity does (only its tail is zeroed), each at most SLACK times the
    // request; else a new buffer, so that a long one is kept for the long requests.
    let fits = |n: usize| n >= len && n <= len.saturating_mul(SLACK);
    let pick = pool.iter().position(|v| v.len() == len).or_else(|| {
        let by_len = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| fits(v.len()))
            .min_by_key(|(_, v)| v.len());
        by_len
            .or_else(|| {
                pool.iter()
                    .enumerate()
                    .filter(|(_, v)| fits(v.capacity()))
                    .min_by_key(|(_, v)| v.capacity())
            })
            .map(|(i, _)| i)
    });
    let mut v = pick.map(|i| pool.swap_remove(i)).unwrap_or_default();
    // Truncating is free; only a grown tail is written.
    v.resize(len, T::default());
    v
}

fn give<T>(pool: &RefCell<Vec<Vec<T>>>, v: Vec<T>) {
    if v.capacity() == 0 {
        return;
    }
    let mut pool = pool.borrow_mut();
    pool.push(v);
    if pool.len() > KEEP {
        if let Some(i) = pool
            .iter()
            .enumerate()
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)
        {
            pool.swap_remove(i);
        }
    }
}

/// A buffer of `len` floats with unspecified contents: the caller overwrites all of it.
pub(crate) fn take_f32(len: usize) -> Vec<f32> {
    F32.with(|p| take(p, len))
}

/// A copy of `data` in a buffer of exactly its length: a pooled one whose capacity is that
/// length, else a new one (no zeroing: the copy writes every value).
pub(crate) fn exact_copy(data: &[f32]) -> Vec<f32> {
    let len = data.len();
    let kept = F32.with(|p| {
        let mut pool = p.borrow_mut();
        let i = pool.iter().position(|v| v.capacity() == len)?;
        Some(pool.swap_remove(i))
    });
    let mut v = kept.unwrap_or_else(|| Vec::with_capacity(len));
    v.clear();
    v.extend_from_slice(data);
    v
}

/// Hands a buffer from [`take_f32`] (or any other) back for reuse.
pub(crate) fn give_f32(v: Vec<f32>) {
    F32.with(|p| give(p, v));
}

/// A buffer of `len` indices with unspecified contents: the caller overwrites all of it.
pub(crate) fn take_usize(len: usize) -> Vec<usize> {
    USIZE.with(|p| take(p, len))
}

/// Hands a buffer from [`take_usize`] back for reuse.
pub(crate) fn give_usize(v: Vec<usize>) {
    USIZE.with(|p| give(p, v));
}

/// A buffer of `len` bytes with unspecified contents: the caller overwrites all of it.
pub(crate) fn take_u8(len: usize) -> Vec<u8> {
    U8.with(|p| take(p, len))
}

/// Hands a buffer from [`take_u8`] back for reuse.
pub(crate) fn give_u8(v: Vec<u8>) {
    U8.with(|p| give(p, v));
}

/// Floats in a 64-byte cache line: one AVX-512 vector.
pub(crate) const LINE_FLOATS: usize = 16;

/// A buffer for [`lines_mut`] of `len` floats (unspecified contents): [`take_f32`] with a line
/// to spare.
pub(crate) fn take_lines(len: usize) -> Vec<f32> {
    take_f32(len + LINE_FLOATS)
}

/// How many floats into `v` a part must start for its float `lead` to start a 64-byte line
/// (below [`LINE_FLOATS`]). A buffer's heap block does not move when the `Vec` does, so every
/// call on the same buffer gives the same answer.
fn line_skew(v: &[f32], lead: usize) -> usize {
    v.as_ptr()
        .wrapping_add(lead)
        .align_offset(64)
        .min(LINE_FLOATS - 1)
}

/// The `len` floats of a [`take_lines`] buffer whose float `lead` starts a 64-byte line, so that
/// vector loads and stores at `lead` plus multiples of 16 floats never straddle two lines.
pub(crate) fn lines_after_mut(v: &mut [f32], len: usize, lead: usize) -> &mut [f32] {
    let at = line_skew(v, lead);
    &mut v[at..at + len]
}

/// The `len` floats of a [`take_lines`] buffer that start on a 64-byte line.
pub(crate) fn lines_mut(v: &mut [f32], len: usize) -> &mut [f32] {
    lines_after_mut(v, len, 0)
}

/// [`lines_mut`], read-only.
pub(crate) fn lines(v: &[f32], len: usize) -> &[f32] {
    let at = line_skew(v, 0);
    &v[at..at + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exact copy has the data's length as its capacity, from a pooled buffer of that
    /// capacity when there is one (whatever it held), else a new one; the pool's other buffers
    /// stay.
    #[test]
    fn exact_copies_have_no_spare_capacity() {
        let data: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let fresh = exact_copy(&data[..999]);
        assert_eq!((fresh.len(), fresh.capacity()), (999, 999));
        assert_eq!(fresh[..], data[..999]);
        let mut pooled = Vec::with_capacity(999);
        pooled.resize(3, 7.0);
        let at = pooled.as_ptr();
        give_f32(vec![1.0; 1998]);
        give_f32(pooled);
        let copy = exact_copy(&data[..999]);
        assert_eq!(copy.as_ptr(), at, "the pooled buffer of that capacity");
        assert_eq!((copy.len(), copy.capacity()), (999, 999));
        assert_eq!(copy[..], data[..999]);
        assert_eq!(
            take_f32(999).capacity(),
            1998,
            "the longer buffer is still there"
        );
    }

    /// The part handed out has the asked length, lies in the buffer, and its float `lead`
    /// starts a 64-byte line, whatever the buffer's own alignment.
    #[test]
    fn lines_start_on_a_64_byte_line() {
        for len in [1, 15, 16, 17, 1000] {
            for lead in [0, 1, 7, 62, 63] {
                let mut v = take_lines(len);
                let base = v.as_ptr() as usize;
                let part = lines_after_mut(&mut v, len, lead);
                assert_eq!(part.len(), len);
                let start = part.as_ptr() as usize;
                assert!(start >= base && start - base < LINE_FLOATS * 4);
                assert_eq!((start + lead * 4) % 64, 0, "len {len} lead {lead}");
                let read = lines(&v, len);
                assert_eq!(read.as_ptr() as usize % 64, 0, "len {len}");
                give_f32(v);
            }
        }
    }
}
