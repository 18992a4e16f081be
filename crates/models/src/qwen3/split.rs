//! Quantized matrix products shared out over a few persistent CPU threads.
//!
//! A product becomes a handful of tasks: for one token (decoding), blocks of
//! output rows computed straight from the quantized bytes with the
//! activations quantized once ([`super::qdot`]); for several tokens
//! (prefill), blocks of tokens, each a candle product against the whole
//! matrix. The calling thread and the helper threads claim tasks from a
//! shared counter. The caller never waits for a helper that has not
//! started: it runs every task nobody has claimed and then waits only for
//! tasks already in a helper's hands. On a busy machine, where a helper may
//! not get a core for milliseconds, a product therefore costs at most what
//! one thread alone would; on a quiet one the work is shared. Every small
//! per-layer op (norms, rotary embedding, softmax) runs on the calling
//! thread without any rendezvous.
//!
//! This only pays when candle's own CPU kernels run on the calling thread
//! (its worker pool disabled with `CANDLE_NUM_THREADS=1`, see
//! [`prefer_own_cpu_threads`]); otherwise every task would take candle's
//! pool rendezvous, and the split is not used.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Result, Tensor};

use super::qdot::{self, Q8Vec};
use super::weights::Linear;

/// The environment variable that sizes candle's CPU worker pool.
const CANDLE_THREADS_VAR: &str = "CANDLE_NUM_THREADS";

/// Bytes of weights one one-token task covers at most, roughly, beyond the
/// minimum of two tasks per thread: fewer, larger tasks cost less fixed
/// overhead as long as the threads stay evenly loaded.
const TASK_BYTES: usize = 1024 * 1024;
/// Most tasks one matrix is cut into (each costs a little fixed overhead).
const MAX_PARTS: usize = 64;
/// Row counts of one-token tasks are multiples of this.
const ROW_ALIGN: usize = 16;
/// Polls of the job queue before a helper blocks on it.
const HELPER_SPINS: u32 = 20_000;
/// Polls of the finish counter before the caller starts yielding its core.
const CALLER_SPINS: u32 = 2_000;

/// Asks candle to run its CPU kernels on the calling thread (no worker pool),
/// so that [`RowSplit`] products can share the work on their own threads.
///
/// Takes effect only before candle first runs a CPU kernel in this process
/// and only when `CANDLE_NUM_THREADS` is not already set; call it at
/// start-up, before other threads read the environment. Returns whether the
/// split products will be used.
pub fn prefer_own_cpu_threads() -> bool {
    if std::env::var_os(CANDLE_THREADS_VAR).is_none() {
        std::env::set_var(CANDLE_THREADS_VAR, "1");
    }
    enabled()
}

/// Whether candle's CPU pool is disabled, which the split products need.
pub(crate) fn enabled() -> bool {
    std::env::var(CANDLE_THREADS_VAR).is_ok_and(|v| v.trim() == "1")
}

/// Threads that share a product: the caller and its helpers.
///
/// Read once: candle's answer reads `/proc/cpuinfo` on every call.
pub(crate) fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

/// One piece of a shared job.
pub(crate) type Task = Box<dyn Fn() -> Result<Tensor> + Send + Sync>;

struct Job {
    tasks: Vec<Task>,
    next: AtomicUsize,
    finished: AtomicUsize,
    results: Vec<OnceLock<Result<Tensor>>>,
}

impl Job {
    /// Claims and runs tasks until none is left unclaimed.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(task) = self.tasks.get(i) else {
                return;
            };
            let result = catch_unwind(AssertUnwindSafe(task))
                .unwrap_or_else(|_| Err(candle_core::Error::msg("a matrix-product task panicked")));
            let _ = self.results[i].set(result);
            self.finished.fetch_add(1, Ordering::Release);
        }
    }
}

/// The helper threads, started on first use.
struct Team {
    helpers: Mutex<Vec<Sender<Arc<Job>>>>,
}

fn helper_loop(rx: Receiver<Arc<Job>>) {
    loop {
        let mut job = None;
        for _ in 0..HELPER_SPINS {
            match rx.try_recv() {
                Ok(j) => {
                    job = Some(j);
                    break;
                }
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let job = match job {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        job.work();
    }
}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let mut helpers = Vec::new();
        for i in 1..threads() {
            let (tx, rx) = channel();
            let spawned = std::thread::Builder::new()
                .name(format!("lectern-matmul-{i}"))
                .spawn(move || helper_loop(rx));
            match spawned {
                Ok(_) => helpers.push(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "could not start a matrix-product thread");
                    break;
                }
            }
        }
        Team {
            helpers: Mutex::new(helpers),
        }
    })
}

/// Runs `tasks` on the calling thread and the helpers; results in task order.
pub(crate) fn run(tasks: Vec<Task>) -> Result<Vec<Tensor>> {
    let n = tasks.len();
    let job = Arc::new(Job {
        results: (0..n).map(|_| OnceLock::new()).collect(),
        tasks,
        next: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
    });
    if n > 1 {
        let helpers = team().helpers.lock().unwrap_or_else(|p| p.into_inner());
        for h in helpers.iter() {
            // A helper that is gone only leaves more work to the caller.
            let _ = h.send(job.clone());
        }
    }
    job.work();
    let mut spins = 0u32;
    while job.finished.load(Ordering::Acquire) < n {
        if spins < CALLER_SPINS {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    job.results
        .iter()
        .map(|r| match r.get() {
            Some(Ok(t)) => Ok(t.clone()),
            Some(Err(e)) => Err(candle_core::Error::msg(e.to_string())),
            None => Err(candle_core::Error::msg("a matrix-product task was lost")),
        })
        .collect()
}

/// A quantized `(rows, cols)` CPU matrix whose products are shared out as
/// tasks: blocks of output rows for one token (read straight from the
/// quantized bytes), blocks of tokens for several.
#[derive(Debug)]
pub(crate) struct RowSplit {
    linear: Linear,
    dtype: GgmlDType,
    /// Whether the type has a direct one-token kernel.
    direct: bool,
    /// Rows per one-token task.
    part_rows: usize,
    row_bytes: usize,
    rows: usize,
    cols: usize,
}

impl RowSplit {
    /// Wraps a CPU quantized matrix; one-token products are cut into two row
    /// blocks per thread, or more of about [`TASK_BYTES`] each for a large
    /// matrix. `None` when `linear` is not quantized.
    pub(crate) fn new(linear: Linear) -> Result<Option<Self>> {
        let Some(q) = linear.quantized() else {
            return Ok(None);
        };
        let (rows, cols) = q.shape().dims2()?;
        let dtype = q.dtype();
        let (block, type_size) = (dtype.block_size(), dtype.type_size());
        if !cols.is_multiple_of(block) {
            candle_core::bail!("{cols} columns are not a whole number of {dtype:?} blocks");
        }
        let row_bytes = cols / block * type_size;
        let total = rows * row_bytes;
        let wanted = total
            .div_ceil(TASK_BYTES)
            .clamp(2 * threads(), MAX_PARTS.max(2 * threads()));
        let part_rows = rows
            .div_ceil(wanted)
            .div_ceil(ROW_ALIGN)
            .saturating_mul(ROW_ALIGN)
            .clamp(1, rows.max(1));
        Ok(Some(Self {
            direct: qdot::supports(dtype) && cols.is_multiple_of(256),
            linear,
            dtype,
            part_rows,
            row_bytes,
            rows,
            cols,
        }))
    }

    /// The whole matrix.
    pub(crate) fn linear(&self) -> &Linear {
        &self.linear
    }

    /// Tasks for `x W^T` over blocks of tokens (`x` `(.., n, cols)`, f32,
    /// contiguous, `n` along `dim`); returns how many.
    fn token_tasks(&self, x: &Tensor, dim: usize, out: &mut Vec<Task>) -> Result<usize> {
        let n = x.dim(dim)?;
        let chunks = (2 * threads()).min(n).max(1);
        let per = n.div_ceil(chunks);
        let mut count = 0;
        let mut start = 0;
        while start < n {
            let len = per.min(n - start);
            let (w, x) = (self.linear.clone(), x.narrow(dim, start, len)?);
            out.push(Box::new(move || w.forward(&x.contiguous()?)));
            count += 1;
            start += len;
        }
        Ok(count)
    }

    /// Tasks for `x W^T` over blocks of rows, with one token's activations
    /// already quantized; each result has shape `lead + (block rows,)`.
    /// Returns how many.
    fn row_tasks(&self, x: &Arc<Q8Vec>, lead: &[usize], out: &mut Vec<Task>) -> usize {
        let mut count = 0;
        let mut start = 0;
        while start < self.rows {
            let rows = self.part_rows.min(self.rows - start);
            let (w, x) = (self.linear.clone(), x.clone());
            let (dtype, row_bytes) = (self.dtype, self.row_bytes);
            let lead = lead.to_vec();
            out.push(Box::new(move || {
                let q = w
                    .quantized()
                    .ok_or_else(|| candle_core::Error::msg("matrix is not quantized"))?;
                let data = q.data()?;
                let bytes = data
                    .get(start * row_bytes..(start + rows) * row_bytes)
                    .ok_or_else(|| candle_core::Error::msg("quantized matrix is too short"))?;
                let mut y = vec![0f32; rows];
                qdot::matvec(dtype, bytes, &x, &mut y)?;
                let mut shape = lead.clone();
                shape.push(rows);
                Tensor::from_vec(y, shape, &Device::Cpu)
            }));
            count += 1;
            start += rows;
        }
        count
    }

    /// `x W^T` for each matrix, all run as one shared job. `x` is
    /// `(..., cols)`; results are in `x`'s dtype.
    pub(crate) fn forward_many(ws: &[&RowSplit], x: &Tensor) -> Result<Vec<Tensor>> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?.contiguous()?;
        let Some((&cols, lead)) = x32.dims().split_last() else {
            candle_core::bail!("a matrix product needs at least one dimension");
        };
        if let Some(w) = ws.iter().find(|w| w.cols != cols) {
            candle_core::bail!("input has {cols} features, the matrix takes {}", w.cols);
        }
        let tokens = lead.iter().product::<usize>();
        let by_rows = tokens == 1;
        let mut tasks = Vec::new();
        let mut counts = Vec::with_capacity(ws.len());
        let mut xq = None;
        for w in ws {
            let count = if by_rows && w.direct {
                let xq = match &xq {
                    Some(xq) => Arc::clone(xq),
                    None => {
                        let q = Arc::new(Q8Vec::new(&x32.flatten_all()?.to_vec1::<f32>()?));
                        xq = Some(q.clone());
                        q
                    }
                };
                w.row_tasks(&xq, lead, &mut tasks)
            } else if by_rows || lead.is_empty() {
                let (l, x) = (w.linear.clone(), x32.clone());
                tasks.push(Box::new(move || l.forward(&x)));
                1
            } else {
                w.token_tasks(&x32, lead.len() - 1, &mut tasks)?
            };
            counts.push((count, by_rows));
        }
        let mut results = run(tasks)?.into_iter();
        let mut out = Vec::with_capacity(ws.len());
        for (count, by_rows) in counts {
            let parts: Vec<Tensor> = results.by_ref().take(count).collect();
            let y = if parts.len() == 1 {
                parts.into_iter().next().unwrap_or_else(|| unreachable!())
            } else if by_rows {
                Tensor::cat(&parts, candle_core::D::Minus1)?
            } else {
                Tensor::cat(&parts, lead.len() - 1)?
            };
            out.push(y.to_dtype(dtype)?);
        }
        Ok(out)
    }

    /// `x W^T`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut out = Self::forward_many(&[self], x)?;
        out.pop()
            .ok_or_else(|| candle_core::Error::msg("no product"))
    }

    /// Rows `ids` (a 1-D u32 tensor) dequantized: `(ids, cols)` in `dtype`
    /// (the matrix used as a token table).
    pub(crate) fn lookup(&self, ids: &Tensor, dtype: DType) -> Result<Tensor> {
        let q = self
            .linear
            .quantized()
            .ok_or_else(|| candle_core::Error::msg("matrix is not quantized"))?;
        if let Some(&bad) = ids
            .to_vec1::<u32>()?
            .iter()
            .find(|&&id| id as usize >= self.rows)
        {
            candle_core::bail!("row {bad} is outside the {} rows", self.rows);
        }
        q.embedding(ids)?.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::super::weights::tests::max_diff;
    use super::super::weights::Embedding;
    use super::*;
    use candle_core::quantized::{QMatMul, QTensor};
    use candle_core::Module;

    fn matrix(rows: usize, cols: usize, dtype: GgmlDType) -> Arc<QTensor> {
        let data: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.2)
            .collect();
        let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
        Arc::new(QTensor::quantize(&t, dtype).unwrap())
    }

    fn split(q: &Arc<QTensor>) -> RowSplit {
        let linear = Embedding::Quantized(q.clone()).as_linear().unwrap();
        RowSplit::new(linear).unwrap().unwrap()
    }

    #[test]
    fn split_products_match_the_whole_matrix() {
        let cases = [
            (1000, GgmlDType::Q4K, true),
            (272, GgmlDType::Q6K, true),
            (96, GgmlDType::Q8_0, false),
        ];
        for (rows, dtype, direct) in cases {
            let q = matrix(rows, 512, dtype);
            let s = split(&q);
            assert_eq!(s.direct, direct, "{dtype:?}");
            assert!(s.rows.div_ceil(s.part_rows) > 1, "{dtype:?} is not cut");
            let whole = QMatMul::from_arc(q).unwrap();
            for n in [1, 2, 5] {
                let x = Tensor::randn(0f32, 1.0, (1, n, 512), &Device::Cpu).unwrap();
                let a = whole.forward(&x).unwrap();
                let b = s.forward(&x).unwrap();
                assert_eq!(a.dims(), b.dims());
                let d = max_diff(&a, &b);
                assert!(d <= 1e-3, "{dtype:?}, n = {n}: differs by {d}");
            }
        }
    }

    #[test]
    fn grouped_products_keep_their_order() {
        let (a, b) = (
            matrix(64, 256, GgmlDType::Q4K),
            matrix(32, 256, GgmlDType::Q6K),
        );
        let (sa, sb) = (split(&a), split(&b));
        let x = Tensor::randn(0f32, 1.0, (1, 1, 256), &Device::Cpu).unwrap();
        let ys = RowSplit::forward_many(&[&sa, &sb], &x).unwrap();
        assert_eq!(ys[0].dims(), &[1, 1, 64]);
        assert_eq!(ys[1].dims(), &[1, 1, 32]);
        assert_eq!(max_diff(&ys[0], &sa.forward(&x).unwrap()), 0.0);
        assert_eq!(max_diff(&ys[1], &sb.forward(&x).unwrap()), 0.0);
        assert!(RowSplit::forward_many(
            &[&sa],
            &Tensor::zeros((1, 1, 128), DType::F32, &Device::Cpu).unwrap()
        )
        .is_err());
    }

    #[test]
    fn split_lookup_matches_the_whole_table() {
        let q = matrix(300, 256, GgmlDType::Q6K);
        let s = split(&q);
        let ids = Tensor::new(&[0u32, 17, 299, 150, 17], &Device::Cpu).unwrap();
        let a = q.embedding(&ids).unwrap();
        let b = s.lookup(&ids, DType::F32).unwrap();
        assert_eq!(a.dims(), b.dims());
        assert_eq!(max_diff(&a, &b), 0.0);
        let bad = Tensor::new(&[300u32], &Device::Cpu).unwrap();
        assert!(s.lookup(&bad, DType::F32).is_err());
    }
}
