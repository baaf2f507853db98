//! Transposes of row-major blocks, 8 x 8 tiles in vector registers: the layout changes of the
//! spectral transforms' passes and of the Winograd tiles' channels-last planes.

/// Tiles per block of [`transpose_strided`] along the source's rows.
const BLOCK_ROWS: usize = 8;
/// Tiles per block of [`transpose_strided`] along the source's columns.
const BLOCK_COLS: usize = 2;

/// `dst` (`cols x rows`) = or += the transpose of `src` (`rows x cols`): 8 x 8 tiles in
/// vector registers where the CPU has AVX2 (edges as [`transpose_strided`] does them), one
/// value at a time elsewhere.
pub(super) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32], add: bool) {
    transpose_strided(src, (rows, cols), cols, dst, rows, add);
}

/// [`transpose`] of a `rows x cols` block whose rows lie `lds` apart in `src`, into a `cols x
/// rows` block whose rows lie `ldd` apart in `dst`. Without `add` a side of 8 or more that is
/// not a multiple of 8 ends in a tile overlapping the one before (it writes the same values
/// again) instead of single values.
pub(super) fn transpose_strided(
    src: &[f32],
    (rows, cols): (usize, usize),
    lds: usize,
    dst: &mut [f32],
    ldd: usize,
    add: bool,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        lds >= cols && ldd >= rows,
        "transpose: strides shorter than rows"
    );
    assert!(src.len() >= (rows - 1) * lds + cols && dst.len() >= (cols - 1) * ldd + rows);
    let (mut r8, mut c8) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2_fma() {
        // Tile starts along a side, and how much of the side they cover.
        let starts = |len: usize| {
            let whole = len / 8 * 8;
            let last = (!add && !len.is_multiple_of(8) && len >= 8).then(|| len - 8);
            let covered = if last.is_some() { len } else { whole };
            ((0..whole).step_by(8).chain(last), covered)
        };
        let (row_starts, rows_done) = starts(rows);
        let (col_starts, cols_done) = starts(cols);
        (r8, c8) = (rows_done, cols_done);
        // Tiles in blocks of 8 along the rows by 2 along the columns: a block reads 64-byte
        // lines of 64 source rows and writes 256 contiguous bytes of 16 destination rows. One
        // tile at a time touched half lines strided a power of two apart, which met in a few
        // cache sets and left before their other half came: the analysis of 256 planes of
        // 8x8 spent 29-35% of its time in the transpose, 11-21% in these blocks (2 x 2: 18-34%).
        let (row_tiles, col_tiles) = (row_starts.clone().count(), col_starts.clone().count());
        for rb in (0..row_tiles).step_by(BLOCK_ROWS) {
            for cb in (0..col_tiles).step_by(BLOCK_COLS) {
                for r in row_starts.clone().skip(rb).take(BLOCK_ROWS) {
                    for c in col_starts.clone().skip(cb).take(BLOCK_COLS) {
                        // SAFETY: the CPU has AVX; rows r..r + 8 and columns c..c + 8 lie
                        // inside both blocks (r + 8 <= rows, c + 8 <= cols and the asserts
                        // above).
                        unsafe {
                            tile8(
                                src.as_ptr().add(r * lds + c),
                                lds,
                                dst.as_mut_ptr().add(c * ldd + r),
                                ldd,
                                add,
                            );
                        }
                    }
                }
            }
        }
    }
    // What the tiles left: rows from r8 for all columns, then columns from c8.
    let mut one = |r: usize, c: usize| {
        let v = src[r * lds + c];
        let o = &mut dst[c * ldd + r];
        *o = if add { *o + v } else { v };
    };
    for c in 0..cols {
        for r in r8..rows {
            one(r, c);
        }
    }
    for c in c8..cols {
        for r in 0..r8 {
            one(r, c);
        }
    }
}

/// One 8 x 8 tile: `dst[j * ldd + i]` = or += `src[i * lds + j]`.
///
/// # Safety
/// The CPU must have AVX; eight rows of eight values at `src` (rows `lds` apart) and at `dst`
/// (rows `ldd` apart) must be readable, and those at `dst` writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn tile8(src: *const f32, lds: usize, dst: *mut f32, ldd: usize, add: bool) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * lds)));
    // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves swapped.
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // s[0..4] from rows 0-3, s[4..8] from rows 4-7: columns (0 4), (1 5), (2 6), (3 7).
    let s: [__m256; 8] = std::array::from_fn(|i| {
        let base = i / 4 * 4;
        let (a, b) = (t[base + (i % 4) / 2], t[base + 2 + (i % 4) / 2]);
        if i % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(a, b)
        } else {
            _mm256_shuffle_ps::<0xEE>(a, b)
        }
    });
    for j in 0..8 {
        let (lo, hi) = (s[j % 4], s[4 + j % 4]);
        let v = if j < 4 {
            _mm256_permute2f128_ps::<0x20>(lo, hi)
        } else {
            _mm256_permute2f128_ps::<0x31>(lo, hi)
        };
        let p = dst.add(j * ldd);
        let v = if add {
            _mm256_add_ps(v, _mm256_loadu_ps(p))
        } else {
            v
        };
        _mm256_storeu_ps(p, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Transposes of every shape around the tiles, written and added.
    #[test]
    fn transposes_match_the_definition() {
        for (rows, cols) in [
            (8, 8),
            (16, 64),
            (13, 25),
            (3, 5),
            (64, 9),
            (24, 16),
            (256, 64),
            (72, 40),
            (203, 13),
            (40, 137),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            for add in [false, true] {
                let mut dst = vec![1.0f32; rows * cols];
                transpose(&src, rows, cols, &mut dst, add);
                for r in 0..rows {
                    for c in 0..cols {
                        let want = src[r * cols + c] + if add { 1.0 } else { 0.0 };
                        assert_eq!(dst[c * rows + r], want, "{rows}x{cols} ({r}, {c})");
                    }
                }
            }
        }
    }

    /// Blocks inside larger matrices: only the block's values are written, with and without
    /// adding, on sides that are and are not multiples of the tiles.
    #[test]
    fn strided_transposes_touch_only_their_block() {
        for (rows, cols) in [
            (16, 28),
            (28, 16),
            (13, 9),
            (5, 3),
            (8, 8),
            (75, 33),
            (33, 150),
        ] {
            let (lds, ldd) = (cols + 3, rows + 5);
            let src: Vec<f32> = (0..rows * lds).map(|i| i as f32).collect();
            for add in [false, true] {
                let mut dst = vec![-1.0f32; cols * ldd];
                transpose_strided(&src, (rows, cols), lds, &mut dst, ldd, add);
                for c in 0..cols {
                    for r in 0..ldd {
                        let want = if r < rows {
                            src[r * lds + c] + if add { -1.0 } else { 0.0 }
                        } else {
                            -1.0
                        };
                        assert_eq!(dst[c * ldd + r], want, "{rows}x{cols} add {add} ({r}, {c})");
                    }
                }
            }
        }
    }
}
