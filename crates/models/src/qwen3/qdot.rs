//! Matrix × vector products straight from GGUF k-quant bytes (Q4_K, Q6_K),
//! for one token at a time.
//!
//! The activations are quantized once to 8 bits per 256-value block; each
//! weight row is then read in its compact file layout (4.5 or 6.6 bits a
//! weight), its integer dot products are taken block by block and scaled
//! back to f32. The loops are plain integer arithmetic, compiled for the
//! best vector extension the CPU offers (`pulp` dispatch), which LLVM
//! vectorizes; no `unsafe` is needed.

use candle_core::quantized::GgmlDType;

/// Values per k-quant super-block.
const QK: usize = 256;
/// Bytes of one Q4_K block: f16 d, f16 dmin, 12 bytes of 6-bit scales and
/// mins, 128 bytes of 4-bit quants.
const Q4K_BYTES: usize = 144;
/// Bytes of one Q6_K block: 128 bytes of low nibbles, 64 of high 2-bit
/// pairs, 16 signed 8-bit scales, f16 d.
const Q6K_BYTES: usize = 210;

/// Whether [`matvec`] reads this weight type.
pub(crate) fn supports(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K)
}

/// Activations quantized to 8 bits per 256-value block.
#[derive(Debug, Clone)]
pub(crate) struct Q8Vec {
    /// Scale per block.
    d: Vec<f32>,
    /// Quantized values, `-127..=127`.
    qs: Vec<i8>,
    /// Sums of each run of 16 quantized values.
    sums16: Vec<i16>,
    /// Sums of each run of 32 quantized values.
    sums32: Vec<i16>,
    /// `qs` with each run of 128 values reordered as runs 0, 2, 1, 3 of 32:
    /// the order in which a 64-byte Q4_K load's low and then high nibbles
    /// meet them.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    qs_nibbles: Vec<i8>,
}

impl Q8Vec {
    /// Quantizes `x`, whose length must be a multiple of 256.
    pub(crate) fn new(x: &[f32]) -> Self {
        debug_assert!(x.len().is_multiple_of(QK));
        let blocks = x.len() / QK;
        let mut out = Self {
            d: vec![0.0; blocks],
            qs: vec![0; x.len()],
            sums16: vec![0; x.len() / 16],
            sums32: vec![0; x.len() / 32],
            // Only the AVX-512 kernels read it.
            qs_nibbles: if Kernel::Avx512.available() {
                vec![0; x.len()]
            } else {
                Vec::new()
            },
        };
        pulp::Arch::new().dispatch(Quantize { x, out: &mut out });
        for (to, from) in out
            .qs_nibbles
            .chunks_exact_mut(128)
            .zip(out.qs.chunks_exact(128))
        {
            for (i, run) in [0, 2, 1, 3].into_iter().enumerate() {
                to[32 * i..32 * i + 32].copy_from_slice(&from[32 * run..32 * run + 32]);
            }
        }
        out
    }

    /// Values held.
    pub(crate) fn len(&self) -> usize {
        self.qs.len()
    }
}

/// [`Q8Vec::new`]'s loop, compiled per vector extension.
struct Quantize<'a> {
    x: &'a [f32],
    out: &'a mut Q8Vec,
}

impl pulp::WithSimd for Quantize<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Self { x, out } = self;
        {
            for (b, xs) in x.chunks_exact(QK).enumerate() {
                let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                if amax == 0.0 {
                    continue;
                }
                let d = amax / 127.0;
                let id = 127.0 / amax;
                out.d[b] = d;
                let qs = &mut out.qs[b * QK..(b + 1) * QK];
                for (q, &v) in qs.iter_mut().zip(xs) {
                    let s = v * id;
                    // Round half away from zero without a libm call.
                    *q = (s + 0.5f32.copysign(s)).clamp(-127.0, 127.0) as i8;
                }
                for (sum, run) in out.sums16[b * 16..(b + 1) * 16]
                    .iter_mut()
                    .zip(qs.chunks_exact(16))
                {
                    *sum = run.iter().map(|&q| q as i16).sum();
                }
                for (sum, pair) in out.sums32[b * 8..(b + 1) * 8]
                    .iter_mut()
                    .zip(out.sums16[b * 16..(b + 1) * 16].chunks_exact(2))
                {
                    *sum = pair[0] + pair[1];
                }
            }
        }
    }
}

/// IEEE half precision bits to f32, without branches: the exponent and
/// mantissa are moved into place and rescaled by 2^112 (which also turns
/// subnormal halves into the right normal floats), then infinities and NaNs
/// get the all-ones exponent back.
#[inline(always)]
fn f16_to_f32(lo: u8, hi: u8) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([lo, hi]))
}

/// [`f16_to_f32`] from the half's bits; plain arithmetic that vectorizes.
#[inline(always)]
pub(crate) fn f16_bits_to_f32(bits: u16) -> f32 {
    const RESCALE: f32 = f32::from_bits(0x7780_0000); // 2^112
    let bits = bits as u32;
    let sign = (bits & 0x8000) << 16;
    let magnitude = (bits & 0x7fff) << 13;
    let scaled = (f32::from_bits(magnitude) * RESCALE).to_bits();
    let special = if bits & 0x7c00 == 0x7c00 {
        0x7f80_0000 | (magnitude & 0x007f_ffff)
    } else {
        scaled
    };
    f32::from_bits(sign | special)
}

/// Dot product of 32 unsigned quants with 32 signed activations.
#[inline(always)]
fn dot32(q: &[u8; 32], y: &[i8; 32]) -> i32 {
    let mut s = 0i32;
    for l in 0..32 {
        s += q[l] as i32 * y[l] as i32;
    }
    s
}

/// Dot product of 16 unsigned quants with 16 signed activations.
#[inline(always)]
fn dot16(q: &[u8; 16], y: &[i8; 16]) -> i32 {
    let mut s = 0i32;
    for l in 0..16 {
        s += q[l] as i32 * y[l] as i32;
    }
    s
}

/// One Q4_K row · `x`.
#[inline(always)]
fn dot_q4k(row: &[u8], x: &Q8Vec) -> f32 {
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(Q4K_BYTES).enumerate() {
        let d = f16_to_f32(blk[0], blk[1]);
        let dmin = f16_to_f32(blk[2], blk[3]);
        let (scales, mins) = q4k_scales(&blk[4..16]);
        let qs = &blk[16..Q4K_BYTES];
        let y = &x.qs[b * QK..(b + 1) * QK];
        let sums = &x.sums16[b * 16..(b + 1) * 16];
        let mut sumi = 0i32;
        let mut summ = 0i32;
        for j in 0..4 {
            let packed = &qs[32 * j..32 * j + 32];
            let mut lo = [0u8; 32];
            let mut hi = [0u8; 32];
            for l in 0..32 {
                lo[l] = packed[l] & 0x0f;
                hi[l] = packed[l] >> 4;
            }
            let ylo: &[i8; 32] = y[64 * j..64 * j + 32].try_into().unwrap_or(&[0; 32]);
            let yhi: &[i8; 32] = y[64 * j + 32..64 * j + 64].try_into().unwrap_or(&[0; 32]);
            sumi += scales[2 * j] as i32 * dot32(&lo, ylo);
            sumi += scales[2 * j + 1] as i32 * dot32(&hi, yhi);
            summ += mins[2 * j] as i32 * (sums[4 * j] as i32 + sums[4 * j + 1] as i32);
            summ += mins[2 * j + 1] as i32 * (sums[4 * j + 2] as i32 + sums[4 * j + 3] as i32);
        }
        acc += x.d[b] * (d * sumi as f32 - dmin * summ as f32);
    }
    acc
}

/// One Q6_K row · `x`.
#[inline(always)]
fn dot_q6k(row: &[u8], x: &Q8Vec) -> f32 {
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(Q6K_BYTES).enumerate() {
        let ql = &blk[0..128];
        let qh = &blk[128..192];
        let scales = &blk[192..208];
        let d = f16_to_f32(blk[208], blk[209]);
        // The 6-bit quants (0..63, value - 32) in natural order.
        let mut q = [0u8; QK];
        for n in 0..2 {
            let (ql, qh) = (&ql[64 * n..64 * n + 64], &qh[32 * n..32 * n + 32]);
            let out = &mut q[128 * n..128 * n + 128];
            for l in 0..32 {
                let h = qh[l];
                out[l] = (ql[l] & 0x0f) | ((h & 3) << 4);
                out[l + 32] = (ql[l + 32] & 0x0f) | (((h >> 2) & 3) << 4);
                out[l + 64] = (ql[l] >> 4) | (((h >> 4) & 3) << 4);
                out[l + 96] = (ql[l + 32] >> 4) | (((h >> 6) & 3) << 4);
            }
        }
        let y = &x.qs[b * QK..(b + 1) * QK];
        let sums = &x.sums16[b * 16..(b + 1) * 16];
        let mut sumi = 0i32;
        for sub in 0..16 {
            let qs: &[u8; 16] = q[16 * sub..16 * sub + 16].try_into().unwrap_or(&[0; 16]);
            let ys: &[i8; 16] = y[16 * sub..16 * sub + 16].try_into().unwrap_or(&[0; 16]);
            let scale = scales[sub] as i8 as i32;
            sumi += scale * (dot16(qs, ys) - 32 * sums[sub] as i32);
        }
        acc += x.d[b] * d * sumi as f32;
    }
    acc
}

/// `out[r] = W[r] · x` for the rows of `w`, a `(out.len(), x.len())` matrix
/// of `dtype` in GGUF block layout. Fails on a type [`supports`] rejects or
/// on sizes that do not match.
pub(crate) fn matvec(
    dtype: GgmlDType,
    w: &[u8],
    x: &Q8Vec,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let cols = x.len();
    let block_bytes = match dtype {
        GgmlDType::Q4K => Q4K_BYTES,
        GgmlDType::Q6K => Q6K_BYTES,
        other => candle_core::bail!("no direct kernel for {other:?} weights"),
    };
    let row_bytes = cols / QK * block_bytes;
    if !cols.is_multiple_of(QK) || w.len() != row_bytes * out.len() {
        candle_core::bail!(
            "{dtype:?} matrix of {} bytes does not hold {} rows of {cols}",
            w.len(),
            out.len()
        );
    }
    let q6k = dtype == GgmlDType::Q6K;
    let best = Kernel::ALL.into_iter().find(|k| k.available());
    best.unwrap_or(Kernel::Portable)
        .run(q6k, w, row_bytes, x, out);
    Ok(())
}

/// The kernel sets, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// AVX-512 with VNNI.
    Avx512,
    /// AVX2 and FMA.
    Avx2,
    /// Plain integer loops, vectorized by the compiler.
    Portable,
}

impl Kernel {
    const ALL: [Kernel; 3] = [Kernel::Avx512, Kernel::Avx2, Kernel::Portable];

    /// Whether this CPU runs the set.
    fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => avx512::available(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => pulp::x86::V3::is_available(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx512 | Kernel::Avx2 => false,
            Kernel::Portable => true,
        }
    }

    /// `out[r] = W[r] · x`; the caller has checked the sizes and that the
    /// set is [`available`](Self::available).
    fn run(self, q6k: bool, w: &[u8], row_bytes: usize, x: &Q8Vec, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        match self {
            Kernel::Avx512 => return avx512::matvec(q6k, w, row_bytes, x, out),
            Kernel::Avx2 => {
                if let Some(simd) = pulp::x86::V3::try_new() {
                    let job = avx2::MatVec {
                        simd,
                        q6k,
                        w,
                        row_bytes,
                        x,
                        out,
                    };
                    return pulp::Simd::vectorize(simd, job);
                }
            }
            Kernel::Portable => {}
        }
        pulp::Arch::new().dispatch(MatVec {
            q6k,
            w,
            row_bytes,
            x,
            out,
        });
    }
}

/// [`matvec`]'s loop, compiled per vector extension.
struct MatVec<'a> {
    q6k: bool,
    w: &'a [u8],
    row_bytes: usize,
    x: &'a Q8Vec,
    out: &'a mut [f32],
}

impl pulp::WithSimd for MatVec<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let rows = self.out.iter_mut().zip(self.w.chunks_exact(self.row_bytes));
        if self.q6k {
            for (o, row) in rows {
                *o = dot_q6k(row, self.x);
            }
        } else {
            for (o, row) in rows {
                *o = dot_q4k(row, self.x);
            }
        }
    }
}

/// The 6-bit scales and mins of a Q4_K block.
#[inline(always)]
fn q4k_scales(sc: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..4 {
        scales[j] = sc[j] & 63;
        mins[j] = sc[j + 4] & 63;
        scales[j + 4] = (sc[j + 8] & 0x0f) | ((sc[j] >> 6) << 4);
        mins[j + 4] = (sc[j + 8] >> 4) | ((sc[j + 4] >> 6) << 4);
    }
    (scales, mins)
}

#[inline(always)]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The eight 6-bit scales and eight 6-bit mins of a Q4_K block, one per
/// byte, from its 12 packed bytes, with 32-bit mask arithmetic.
#[inline(always)]
fn q4k_scales_mins(sc: &[u8]) -> (u64, u64) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let (a, b, c) = (u32_at(sc, 0), u32_at(sc, 4), u32_at(sc, 8));
    let scales_lo = a & LOW6;
    let scales_hi = (c & LOW4) | (((a >> 6) & LOW2) << 4);
    let mins_lo = b & LOW6;
    let mins_hi = ((c >> 4) & LOW4) | (((b >> 6) & LOW2) << 4);
    (
        scales_lo as u64 | (scales_hi as u64) << 32,
        mins_lo as u64 | (mins_hi as u64) << 32,
    )
}

/// The same kernels written with AVX2 integer multiply-adds.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::{__m128, __m128i, __m256, __m256i};

    use pulp::bytemuck::cast;
    use pulp::x86::V3;

    use super::{f16_to_f32, q4k_scales_mins, Q8Vec, Q4K_BYTES, Q6K_BYTES, QK};

    /// [`super::matvec`]'s loop for AVX2 machines.
    pub(super) struct MatVec<'a> {
        pub(super) simd: V3,
        pub(super) q6k: bool,
        pub(super) w: &'a [u8],
        pub(super) row_bytes: usize,
        pub(super) x: &'a Q8Vec,
        pub(super) out: &'a mut [f32],
    }

    impl pulp::WithSimd for MatVec<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) {
            let simd = self.simd;
            let rows = self.out.iter_mut().zip(self.w.chunks_exact(self.row_bytes));
            // Shuffle controls, built once per product.
            let words: [__m256i; 8] = WORDS.map(cast);
            let pairs: [__m128i; 8] = PAIRS.map(cast);
            if self.q6k {
                for (o, row) in rows {
                    *o = dot_q6k(simd, row, self.x, &pairs);
                }
            } else {
                for (o, row) in rows {
                    *o = dot_q4k(simd, row, self.x, &words);
                }
            }
        }
    }

    #[inline(always)]
    fn hsum(v: __m256) -> f32 {
        let a: [f32; 8] = cast(v);
        (a[0] + a[4]) + (a[1] + a[5]) + ((a[2] + a[6]) + (a[3] + a[7]))
    }

    /// Word shuffles that broadcast 16-bit lane `i` of each 128-bit half.
    const fn word_broadcast(i: usize) -> [u8; 32] {
        let mut c = [0u8; 32];
        let mut k = 0;
        while k < 32 {
            c[k] = (2 * i + k % 2) as u8;
            k += 1;
        }
        c
    }

    /// Byte shuffles putting byte `i` in bytes 0..8 and byte `i + 1` in
    /// bytes 8..16.
    const fn pair_bytes(i: usize) -> [u8; 16] {
        let mut c = [0u8; 16];
        let mut k = 0;
        while k < 16 {
            c[k] = (i + k / 8) as u8;
            k += 1;
        }
        c
    }

    const WORDS: [[u8; 32]; 8] = [
        word_broadcast(0),
        word_broadcast(1),
        word_broadcast(2),
        word_broadcast(3),
        word_broadcast(4),
        word_broadcast(5),
        word_broadcast(6),
        word_broadcast(7),
    ];

    const PAIRS: [[u8; 16]; 8] = [
        pair_bytes(0),
        pair_bytes(2),
        pair_bytes(4),
        pair_bytes(6),
        pair_bytes(8),
        pair_bytes(10),
        pair_bytes(12),
        pair_bytes(14),
    ];

    #[inline(always)]
    fn hsum128(v: __m128) -> f32 {
        let a: [f32; 4] = cast(v);
        (a[0] + a[2]) + (a[1] + a[3])
    }

    #[inline(always)]
    fn dot_q4k(simd: V3, row: &[u8], x: &Q8Vec, words: &[__m256i; 8]) -> f32 {
        let (sse, sse2, sse4, avx, avx2) = (simd.sse, simd.sse2, simd.sse4_1, simd.avx, simd.avx2);
        let m4 = avx._mm256_set1_epi8(0x0f);
        let mut accv = avx._mm256_setzero_ps();
        let mut accm = sse._mm_setzero_ps();
        let blocks = row.as_chunks::<Q4K_BYTES>().0;
        let ys = x.qs.as_chunks::<QK>().0;
        let bsums = x.sums32.as_chunks::<8>().0;
        for (((blk, y), bsums), &xd) in blocks.iter().zip(ys).zip(bsums).zip(&x.d) {
            let d = f16_to_f32(blk[0], blk[1]);
            let dmin = f16_to_f32(blk[2], blk[3]);
            let (scales, mins) = q4k_scales_mins(&blk[4..16]);
            // Mins against the activations' 32-value sums.
            let mins16 = sse4._mm_cvtepu8_epi16(sse2._mm_set1_epi64x(mins as i64));
            let m = sse2._mm_madd_epi16(mins16, cast(*bsums));
            accm = simd
                .fma
                ._mm_fmadd_ps(sse2._mm_cvtepi32_ps(m), sse._mm_set1_ps(xd * dmin), accm);
            // Scales as 16-bit words in both halves, broadcast per sub-block.
            let sc = avx2._mm256_cvtepu8_epi16(sse2._mm_set1_epi64x(scales as i64));
            let qs = blk[16..].as_chunks::<32>().0;
            let y = y.as_chunks::<32>().0;
            let mut sum = avx._mm256_setzero_si256();
            for j in 0..4 {
                let q: __m256i = cast(qs[j]);
                let lo = avx2._mm256_and_si256(q, m4);
                let hi = avx2._mm256_and_si256(avx2._mm256_srli_epi16::<4>(q), m4);
                let plo = avx2._mm256_maddubs_epi16(lo, cast(y[2 * j]));
                let phi = avx2._mm256_maddubs_epi16(hi, cast(y[2 * j + 1]));
                let slo = avx2._mm256_shuffle_epi8(sc, words[2 * j]);
                let shi = avx2._mm256_shuffle_epi8(sc, words[2 * j + 1]);
                sum = avx2._mm256_add_epi32(
                    sum,
                    avx2._mm256_add_epi32(
                        avx2._mm256_madd_epi16(plo, slo),
                        avx2._mm256_madd_epi16(phi, shi),
                    ),
                );
            }
            accv = simd.fma._mm256_fmadd_ps(
                avx._mm256_cvtepi32_ps(sum),
                avx._mm256_set1_ps(xd * d),
                accv,
            );
        }
        hsum(accv) - hsum128(accm)
    }

    #[inline(always)]
    fn dot_q6k(simd: V3, row: &[u8], x: &Q8Vec, pairs: &[__m128i; 8]) -> f32 {
        let (ssse3, avx, avx2) = (simd.ssse3, simd.avx, simd.avx2);
        let m4 = avx._mm256_set1_epi8(0x0f);
        let m30 = avx._mm256_set1_epi8(0x30);
        let mut accv = avx._mm256_setzero_ps();
        let blocks = row.as_chunks::<Q6K_BYTES>().0;
        let ys = x.qs.as_chunks::<QK>().0;
        let sums = x.sums16.as_chunks::<16>().0;
        for (((blk, y), sums), &xd) in blocks.iter().zip(ys).zip(sums).zip(&x.d) {
            let scales: __m128i = cast(blk[192..].as_chunks::<16>().0[0]);
            let d = f16_to_f32(blk[208], blk[209]);
            // The stored quants are value + 32: take 32 × Σ scale × sum off.
            let off = avx2._mm256_madd_epi16(avx2._mm256_cvtepi8_epi16(scales), cast(*sums));
            let mut sum =
                avx2._mm256_sub_epi32(avx._mm256_setzero_si256(), avx2._mm256_slli_epi32::<5>(off));
            let bytes = blk.as_chunks::<32>().0;
            let y = y.as_chunks::<32>().0;
            for n in 0..2 {
                let ql0: __m256i = cast(bytes[2 * n]);
                let ql1: __m256i = cast(bytes[2 * n + 1]);
                let qh: __m256i = cast(bytes[4 + n]);
                let and = |a, b| avx2._mm256_and_si256(a, b);
                let or = |a, b| avx2._mm256_or_si256(a, b);
                let q = [
                    or(and(ql0, m4), and(avx2._mm256_slli_epi16::<4>(qh), m30)),
                    or(and(ql1, m4), and(avx2._mm256_slli_epi16::<2>(qh), m30)),
                    or(and(avx2._mm256_srli_epi16::<4>(ql0), m4), and(qh, m30)),
                    or(
                        and(avx2._mm256_srli_epi16::<4>(ql1), m4),
                        and(avx2._mm256_srli_epi16::<2>(qh), m30),
                    ),
                ];
                for (g, q) in q.into_iter().enumerate() {
                    let p = avx2._mm256_maddubs_epi16(q, cast(y[4 * n + g]));
                    let sv =
                        avx2._mm256_cvtepi8_epi16(ssse3._mm_shuffle_epi8(scales, pairs[4 * n + g]));
                    sum = avx2._mm256_add_epi32(sum, avx2._mm256_madd_epi16(p, sv));
                }
            }
            accv = simd.fma._mm256_fmadd_ps(
                avx._mm256_cvtepi32_ps(sum),
                avx._mm256_set1_ps(d * xd),
                accv,
            );
        }
        hsum(accv)
    }
}

/// The kernels for CPUs with AVX-512 and its 8/16-bit dot-product
/// instructions (VNNI): 64 quants a step, and each step's 16-bit products
/// scaled and summed in one `vpdpwssd`.
///
/// The only unsafe code in the workspace lives here: calling a function
/// compiled for those extensions, after checking at run time that the CPU
/// has them, and unaligned vector loads from fixed-size arrays.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::sync::OnceLock;

    use core::arch::x86_64::{
        __m128i, __m256i, __m512i, _mm256_cvtepi8_epi16, _mm256_loadu_si256, _mm256_madd_epi16,
        _mm256_slli_epi32, _mm512_and_si512, _mm512_broadcast_i32x4, _mm512_broadcast_i64x4,
        _mm512_cvtepi32_ps, _mm512_dpwssd_epi32, _mm512_fmadd_ps, _mm512_loadu_si512,
        _mm512_maddubs_epi16, _mm512_or_si512, _mm512_permutexvar_epi16, _mm512_reduce_add_ps,
        _mm512_set1_epi8, _mm512_set1_ps, _mm512_setr_epi64, _mm512_setzero_ps,
        _mm512_setzero_si512, _mm512_shuffle_epi8, _mm512_sllv_epi64, _mm512_srli_epi16,
        _mm512_srlv_epi64, _mm512_sub_epi32, _mm512_zextsi256_si512, _mm_cvtepi32_ps,
        _mm_cvtepu8_epi16, _mm_cvtph_ps, _mm_cvtsi32_si128, _mm_cvtsi64_si128, _mm_cvtss_f32,
        _mm_hadd_ps, _mm_loadu_si128, _mm_madd_epi16, _mm_mul_ps, _mm_set1_ps, _mm_shuffle_ps,
    };

    use super::{q4k_scales_mins, Q8Vec, Q4K_BYTES, Q6K_BYTES, QK};

    /// Whether this CPU runs these kernels; checked once.
    pub(super) fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        })
    }

    /// `out[r] = W[r] · x` over rows of `row_bytes` bytes; does nothing
    /// where [`available`] is false.
    pub(super) fn matvec(q6k: bool, w: &[u8], row_bytes: usize, x: &Q8Vec, out: &mut [f32]) {
        if !available() {
            return;
        }
        // SAFETY: the CPU has every extension `rows` is compiled for,
        // checked just above.
        unsafe { rows(q6k, w, row_bytes, x, out) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    fn rows(q6k: bool, w: &[u8], row_bytes: usize, x: &Q8Vec, out: &mut [f32]) {
        let rows = out.iter_mut().zip(w.chunks_exact(row_bytes));
        if q6k {
            // Word indices that spread scale `4h + lane / 8` (of the eight
            // for one half block) over 8 words each.
            let spread = |h: i64| {
                let word = |i: i64| (4 * h + i) * 0x0001_0001_0001_0001;
                _mm512_setr_epi64(
                    word(0),
                    word(0),
                    word(1),
                    word(1),
                    word(2),
                    word(2),
                    word(3),
                    word(3),
                )
            };
            let idx = [spread(0), spread(1), spread(2), spread(3)];
            for (o, row) in rows {
                *o = dot_q6k(row, x, &idx);
            }
        } else {
            // Byte shuffles that broadcast, within each 128-bit lane, word
            // `a` into lanes 0-1 and word `b` into lanes 2-3.
            let ctl = |a: i64, b: i64| {
                let pair = |w: i64| {
                    let lo = 2 * w;
                    let bytes = lo | (lo + 1) << 8;
                    bytes * 0x0001_0001_0001_0001
                };
                let (a, b) = (pair(a), pair(b));
                _mm512_setr_epi64(a, a, a, a, b, b, b, b)
            };
            let ctl = [ctl(0, 2), ctl(1, 3), ctl(4, 6), ctl(5, 7)];
            for (o, row) in rows {
                *o = dot_q4k(row, x, &ctl);
            }
        }
    }

    /// The `M` values of `b` from `at`; `at + M <= N` holds at every call
    /// (constant offsets into fixed-size blocks), so the check folds away.
    #[inline(always)]
    fn sub<T, const N: usize, const M: usize>(b: &[T; N], at: usize) -> &[T; M] {
        b[at..at + M]
            .try_into()
            .unwrap_or_else(|_| unreachable!("a sub-array of a fixed-size block"))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load512(b: &[u8; 64]) -> __m512i {
        // SAFETY: 64 readable bytes.
        unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load512_i8(b: &[i8; 64]) -> __m512i {
        // SAFETY: 64 readable bytes.
        unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load256(b: &[u8; 32]) -> __m256i {
        // SAFETY: 32 readable bytes.
        unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load128_i16(b: &[i16; 8]) -> __m128i {
        // SAFETY: 16 readable bytes.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load256_i16(b: &[i16; 16]) -> __m256i {
        // SAFETY: 32 readable bytes.
        unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load128(b: &[u8; 16]) -> __m128i {
        // SAFETY: 16 readable bytes.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    fn dot_q4k(row: &[u8], x: &Q8Vec, ctl: &[__m512i; 4]) -> f32 {
        let m4 = _mm512_set1_epi8(0x0f);
        let mut acc = _mm512_setzero_ps();
        let mut accm = _mm_set1_ps(0.0);
        let blocks = row.as_chunks::<Q4K_BYTES>().0;
        let ys = x.qs_nibbles.as_chunks::<QK>().0;
        let bsums = x.sums32.as_chunks::<8>().0;
        for (((blk, y), bsums), &xd) in blocks.iter().zip(ys).zip(bsums).zip(&x.d) {
            // [d, dmin] × the activations' scale.
            let head = i32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
            let dd = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(head)), _mm_set1_ps(xd));
            let (scales, mins) = q4k_scales_mins(&blk[4..16]);
            // Mins against the activations' 32-value sums.
            let m = _mm_madd_epi16(
                _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mins as i64)),
                load128_i16(bsums),
            );
            let dmin = _mm_shuffle_ps::<0b0101_0101>(dd, dd);
            accm = core::arch::x86_64::_mm_fmadd_ps(_mm_cvtepi32_ps(m), dmin, accm);
            // The eight scales as words, repeated in every 128-bit lane.
            let sc = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(scales as i64)));
            let qs = [load512(sub(blk, 16)), load512(sub(blk, 80))];
            let mut sum = _mm512_setzero_si512();
            for k in 0..2 {
                let lo = _mm512_and_si512(qs[k], m4);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(qs[k]), m4);
                let plo = _mm512_maddubs_epi16(lo, load512_i8(sub(y, 128 * k)));
                let phi = _mm512_maddubs_epi16(hi, load512_i8(sub(y, 128 * k + 64)));
                sum = _mm512_dpwssd_epi32(sum, plo, _mm512_shuffle_epi8(sc, ctl[2 * k]));
                sum = _mm512_dpwssd_epi32(sum, phi, _mm512_shuffle_epi8(sc, ctl[2 * k + 1]));
            }
            acc = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(sum),
                _mm512_set1_ps(_mm_cvtss_f32(dd)),
                acc,
            );
        }
        let m = _mm_hadd_ps(accm, accm);
        _mm512_reduce_add_ps(acc) - _mm_cvtss_f32(_mm_hadd_ps(m, m))
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    fn dot_q6k(row: &[u8], x: &Q8Vec, idx: &[__m512i; 4]) -> f32 {
        let m4 = _mm512_set1_epi8(0x0f);
        let m30 = _mm512_set1_epi8(0x30);
        // Per 256-bit half: the high bits of the low nibbles come from the
        // 2-bit pairs shifted up by 4 and 2, those of the high nibbles from
        // the pairs shifted down by 0 and 2.
        let up = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);
        let down = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
        let mut acc = _mm512_setzero_ps();
        let blocks = row.as_chunks::<Q6K_BYTES>().0;
        let ys = x.qs.as_chunks::<QK>().0;
        let sums = x.sums16.as_chunks::<16>().0;
        for (((blk, y), sums), &xd) in blocks.iter().zip(ys).zip(sums).zip(&x.d) {
            let scales = _mm256_cvtepi8_epi16(load128(sub(blk, 192)));
            let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes([
                blk[208], blk[209],
            ]) as i32)));
            // The stored quants are value + 32: take 32 × Σ scale × sum off.
            let off = _mm256_madd_epi16(scales, load256_i16(sums));
            let mut sum = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_zextsi256_si512(_mm256_slli_epi32::<5>(off)),
            );
            let scales = _mm512_zextsi256_si512(scales);
            for n in 0..2 {
                let l = load512(sub(blk, 64 * n));
                let h = _mm512_broadcast_i64x4(load256(sub(blk, 128 + 32 * n)));
                let q01 = _mm512_or_si512(
                    _mm512_and_si512(l, m4),
                    _mm512_and_si512(_mm512_sllv_epi64(h, up), m30),
                );
                let q23 = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(l), m4),
                    _mm512_and_si512(_mm512_srlv_epi64(h, down), m30),
                );
                let p01 = _mm512_maddubs_epi16(q01, load512_i8(sub(y, 128 * n)));
                let p23 = _mm512_maddubs_epi16(q23, load512_i8(sub(y, 128 * n + 64)));
                sum = _mm512_dpwssd_epi32(sum, p01, _mm512_permutexvar_epi16(idx[2 * n], scales));
                sum =
                    _mm512_dpwssd_epi32(sum, p23, _mm512_permutexvar_epi16(idx[2 * n + 1], scales));
            }
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(d * xd), acc);
        }
        _mm512_reduce_add_ps(acc)
    }
}

/// Widens a row of half floats into `dst` (as many as both hold), with
/// the CPU's conversion instructions where it has them.
pub(crate) fn f16_row(src: &[half::f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if f16c::row(src, dst) {
        return;
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f16_bits_to_f32(s.to_bits());
    }
}

/// Half-float conversion with the F16C instructions (8 values a step).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod f16c {
    use std::sync::OnceLock;

    use core::arch::x86_64::{_mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};

    use super::f16_bits_to_f32;

    /// Whether this CPU has F16C (and AVX); checked once.
    pub(super) fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx")
                && std::arch::is_x86_feature_detected!("f16c")
        })
    }

    /// [`super::f16_row`] where [`available`]; returns whether it ran.
    pub(super) fn row(src: &[half::f16], dst: &mut [f32]) -> bool {
        let run = available();
        if run {
            // SAFETY: the CPU has the extensions `convert` is compiled
            // for, checked just above.
            unsafe { convert(src, dst) }
        }
        run
    }

    #[target_feature(enable = "avx,f16c")]
    fn convert(src: &[half::f16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let (src, src_tail) = src[..n].as_chunks::<8>();
        let (dst, dst_tail) = dst[..n].as_chunks_mut::<8>();
        for (s, d) in src.iter().zip(dst) {
            // SAFETY: `s` holds 16 readable bytes and `d` 32 writable ones.
            unsafe {
                let halves = _mm_loadu_si128(s.as_ptr().cast());
                _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(halves));
            }
        }
        for (d, s) in dst_tail.iter_mut().zip(src_tail) {
            *d = f16_bits_to_f32(s.to_bits());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    #[test]
    fn half_floats_decode() {
        for v in [
            0.0f32,
            1.0,
            -2.5,
            65504.0,
            6.1035156e-5,
            5.9604645e-8,
            -0.33325195,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ] {
            let bits = candle_core::Tensor::new(&[v], &Device::Cpu)
                .unwrap()
                .to_dtype(candle_core::DType::F16)
                .unwrap()
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0];
            let h = QTensor::quantize(
                &Tensor::new(&[v; 32], &Device::Cpu).unwrap(),
                GgmlDType::F16,
            )
            .unwrap();
            let raw = h.data().unwrap();
            assert_eq!(f16_to_f32(raw[0], raw[1]).to_bits(), bits.to_bits(), "{v}");
        }
        assert!(f16_to_f32(0x01, 0x7e).is_nan());
    }

    #[test]
    fn kernels_match_candle_and_the_dequantized_matrix() {
        let (rows, cols) = (48, 768);
        let x = values(cols, 7);
        let xt = Tensor::from_vec(x.clone(), (1, cols), &Device::Cpu).unwrap();
        let xq = Q8Vec::new(&x);
        for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
            let w = Tensor::from_vec(values(rows * cols, 11), (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let mut got = vec![0f32; rows];
            let data = q.data().unwrap().into_owned();
            matvec(dtype, &data, &xq, &mut got).unwrap();
            // Every kernel set this CPU runs agrees with the portable rows.
            let row_bytes = data.len() / rows;
            for kernel in Kernel::ALL.into_iter().filter(|k| k.available()) {
                let mut out = vec![0f32; rows];
                kernel.run(dtype == GgmlDType::Q6K, &data, row_bytes, &xq, &mut out);
                for (r, row) in data.chunks_exact(row_bytes).enumerate() {
                    let portable = match dtype {
                        GgmlDType::Q4K => dot_q4k(row, &xq),
                        _ => dot_q6k(row, &xq),
                    };
                    assert!(
                        (portable - out[r]).abs() <= 1e-3 * portable.abs().max(1.0),
                        "{kernel:?} {dtype:?} row {r}: {} vs {portable}",
                        out[r]
                    );
                }
            }
            let exact: Vec<f32> = xt
                .matmul(&q.dequantize(&Device::Cpu).unwrap().t().unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let candle: Vec<f32> = QMatMul::from_qtensor(q)
                .unwrap()
                .forward(&xt)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let scale = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
            for r in 0..rows {
                // 8-bit activations: error a small fraction of the output scale,
                // no worse than candle's own 8-bit path.
                let ours = (got[r] - exact[r]).abs();
                let theirs = (candle[r] - exact[r]).abs();
                assert!(
                    ours <= 0.01 * scale,
                    "{dtype:?} row {r}: {} vs {}",
                    got[r],
                    exact[r]
                );
                assert!(
                    ours <= 2.0 * theirs + 1e-3 * scale,
                    "{dtype:?} row {r}: {ours} vs {theirs}"
                );
            }
        }
    }

    #[test]
    fn half_rows_widen_exactly() {
        let src: Vec<half::f16> = values(133, 5)
            .iter()
            .map(|&v| half::f16::from_f32(v * 1000.0))
            .chain([
                half::f16::INFINITY,
                half::f16::NEG_INFINITY,
                half::f16::MIN_POSITIVE_SUBNORMAL,
            ])
            .collect();
        let mut got = vec![0f32; src.len()];
        f16_row(&src, &mut got);
        for (g, s) in got.iter().zip(&src) {
            assert_eq!(g.to_bits(), s.to_f32().to_bits());
        }
    }

    #[test]
    fn zero_activations_and_bad_sizes() {
        let q = QTensor::quantize(
            &Tensor::from_vec(values(16 * 256, 3), (16, 256), &Device::Cpu).unwrap(),
            GgmlDType::Q4K,
        )
        .unwrap();
        let zero = Q8Vec::new(&[0f32; 256]);
        let mut out = vec![1f32; 16];
        matvec(GgmlDType::Q4K, &q.data().unwrap(), &zero, &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 0.0));
        let mut short = vec![0f32; 15];
        assert!(matvec(GgmlDType::Q4K, &q.data().unwrap(), &zero, &mut short).is_err());
        assert!(matvec(GgmlDType::Q8_0, &q.data().unwrap(), &zero, &mut out).is_err());
        assert!(!supports(GgmlDType::Q8_0));
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Single-thread kernel throughput, in cache and from memory.
    #[test]
    #[ignore]
    fn kernel_throughput() {
        let cols = 1024;
        for (dtype, bpb) in [(GgmlDType::Q4K, Q4K_BYTES), (GgmlDType::Q6K, Q6K_BYTES)] {
            for rows in [1024usize, 131_072] {
                let w: Vec<u8> = (0..rows * cols / QK * bpb)
                    .map(|i| (i * 31 % 251) as u8)
                    .collect();
                // Keep the f16 scales finite: zero them.
                let mut w = w;
                for blk in w.chunks_exact_mut(bpb) {
                    if bpb == Q4K_BYTES {
                        blk[1] = 0x3c;
                        blk[3] = 0x3c;
                    } else {
                        blk[209] = 0x3c;
                    }
                }
                let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
                let xq = Q8Vec::new(&x);
                let mut out = vec![0f32; rows];
                let reps = (400_000_000 / w.len()).max(3);
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    matvec(dtype, &w, &xq, &mut out).unwrap();
                }
                let s = t.elapsed().as_secs_f64();
                eprintln!(
                    "{dtype:?} rows {rows}: {:.2} GB/s ({reps} reps, {:.3} ms each)",
                    (w.len() * reps) as f64 / s / 1e9,
                    s * 1e3 / reps as f64
                );
                // Both cores, each on its half of the rows.
                let half = rows / 2;
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    let (w0, w1) = w.split_at(w.len() / 2);
                    let (o0, o1) = out.split_at_mut(half);
                    std::thread::scope(|s| {
                        s.spawn(|| matvec(dtype, w0, &xq, o0).unwrap());
                        matvec(dtype, w1, &xq, o1).unwrap();
                    });
                }
                let s = t.elapsed().as_secs_f64();
                eprintln!(
                    "{dtype:?} rows {rows}, 2 threads: {:.2} GB/s",
                    (w.len() * reps) as f64 / s / 1e9,
                );
            }
        }
    }
}
