//! Naive CPU versions of every op, in f64 arithmetic, with exactly PyTorch's semantics. They define what the GPU
//! kernels must compute; tests compare the two on random data.

mod conv;
mod elementwise;
mod encode;
mod graph;
mod norm;
mod pad;
mod pool;
mod preprocess;
mod resize;
mod softmax;

pub use conv::{conv2d, conv_transpose2d};
pub use elementwise::{binary, concat, pointwise, unary};
pub use encode::encode;
pub use graph::{run_graph, run_graph_values};
pub use norm::group_norm;
pub use pad::{pad_like, slice_pad};
pub use pool::{adaptive_avg_pool2d, avg_pool2d, max_pool2d, max_unpool2d};
pub use preprocess::{normalize, preprocess};
pub use resize::resize;
pub use softmax::{argmax, softmax, threshold};

use crate::tensor::Tensor;

/// Writes `src` into channels `offset..offset + src.c` of `dest` (what a concat-offset write does).
pub fn place_channels(dest: &mut Tensor, src: &Tensor, offset: usize) {
    let (d, s) = (dest.shape, src.shape);
    for n in 0..s.n {
        for c in 0..s.c {
            let from = s.index(n, c, 0, 0);
            let to = d.index(n, offset + c, 0, 0);
            dest.data[to..to + s.plane()].copy_from_slice(&src.data[from..from + s.plane()]);
        }
    }
}
