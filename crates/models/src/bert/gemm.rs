//! Matrix products into caller-owned buffers, through the `gemm` crate.
//!
//! candle's CPU matmul allocates and zeroes a fresh output for every
//! product; on the encoder's activations (megabytes per pass) that zeroing
//! and the page faults behind it cost about a quarter of a projection. Here
//! the encoder keeps its activation buffers for the whole pass and the
//! products write into them.
//!
//! The views check their bounds when they are made, so [`matmul`] is safe
//! to call: every element a product reads or writes lies inside the slice
//! its view borrows, and a destination's rows never overlap.

#![allow(unsafe_code)]

/// A read-only strided matrix view: element `(i, j)` is
/// `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A view of `data`; panics when an element of the view lies outside it.
    pub(crate) fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        assert!(
            rows == 0
                || cols == 0
                || (rows - 1) * row_stride + (cols - 1) * col_stride < data.len(),
            "a {rows}x{cols} view with strides ({row_stride}, {col_stride}) overruns {} elements",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A dense row-major `rows x cols` view.
    pub(crate) fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The same elements read as the transpose.
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// A writable matrix view with unit column stride and rows that do not
/// overlap: row `i` is `data[i * row_stride..][..cols]`.
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> MatMut<'a> {
    /// A view of `data`; panics when rows overlap or overrun it.
    pub(crate) fn new(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            row_stride >= cols || rows <= 1,
            "rows of {cols} elements {row_stride} apart overlap"
        );
        assert!(
            rows == 0 || cols == 0 || (rows - 1) * row_stride + cols <= data.len(),
            "a {rows}x{cols} view with row stride {row_stride} overruns {} elements",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
        }
    }

    /// A dense row-major `rows x cols` view.
    pub(crate) fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols)
    }
}

/// `dst = a * b`, overwriting `dst` (its previous contents are not read).
/// `parallel` shares the product out over rayon's threads.
pub(crate) fn matmul(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, parallel: bool) {
    assert!(
        a.rows == dst.rows && b.cols == dst.cols && a.cols == b.rows,
        "product of {}x{} and {}x{} into {}x{}",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        dst.rows,
        dst.cols
    );
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for row in dst.data.chunks_mut(dst.row_stride).take(m) {
            row[..n].fill(0.0);
        }
        return;
    }
    let parallelism = match rayon::current_num_threads() {
        threads if parallel && threads > 1 => gemm::Parallelism::Rayon(threads),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the views' constructors checked that every element
    // `(i, j)` of `a` (`m x k`), `b` (`k x n`) and `dst` (`m x n`) lies
    // inside its slice; `dst`'s rows do not overlap (unit column stride,
    // row stride at least `n`), so no element is written twice, and the
    // exclusive borrow keeps `a` and `b` from aliasing it. With `read_dst`
    // false, gemm writes `dst = 1 * a * b` without reading it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.row_stride as isize,
            false,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &MatRef<'_>, b: &MatRef<'_>) -> Vec<f32> {
        let mut out = vec![0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = 0f64;
                for p in 0..a.cols {
                    s += a.data[i * a.row_stride + p * a.col_stride] as f64
                        * b.data[p * b.row_stride + j * b.col_stride] as f64;
                }
                out[i * b.cols + j] = s as f32;
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0)
            .collect()
    }

    /// Strided and transposed operands and a destination whose rows sit
    /// inside wider rows, as the attention products use them.
    #[test]
    fn strided_products_match_the_naive_loops() {
        let (m, n, k) = (37, 29, 19);
        // `a` is every third column of a wider matrix; `b` is read transposed.
        let a_data = values(m * 3 * k, 1);
        let a = MatRef::new(&a_data, m, k, 3 * k, 3);
        let b_data = values(n * k, 2);
        let b = MatRef::rows(&b_data, n, k).t();
        let want = naive(&a, &b);
        for parallel in [false, true] {
            let width = n + 11;
            let mut dst = vec![f32::NAN; m * width];
            matmul(MatMut::new(&mut dst[5..], m, n, width), a, b, parallel);
            for i in 0..m {
                for j in 0..n {
                    let got = dst[5 + i * width + j];
                    assert!((got - want[i * n + j]).abs() < 1e-4, "({i}, {j}): {got}");
                }
                // Elements outside the view are untouched.
                if i + 1 < m {
                    assert!(dst[5 + i * width + n..5 + (i + 1) * width]
                        .iter()
                        .all(|x| x.is_nan()));
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "overruns")]
    fn views_past_their_slice_are_refused() {
        let data = vec![0f32; 10];
        MatRef::new(&data, 3, 4, 4, 1);
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn overlapping_destination_rows_are_refused() {
        let mut data = vec![0f32; 100];
        MatMut::new(&mut data, 3, 4, 2);
    }
}
