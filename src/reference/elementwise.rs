//! Reference elementwise ops: broadcasting binary ops, activations and concatenation along channels.

use crate::error::Result;
use crate::ops::{Binary, Concat, Pointwise, Unary};
use crate::tensor::{Shape, Tensor};

/// `act(a op b)` with NumPy broadcasting over NCHW.
pub fn binary(p: &Binary, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = p.output_shape(a.shape, b.shape)?;
    // A size-1 dim always reads index 0.
    let pick = |s: Shape, n: usize, c: usize, y: usize, x: usize| {
        s.index(
            n.min(s.n - 1),
            c.min(s.c - 1),
            y.min(s.h - 1),
            x.min(s.w - 1),
        )
    };
    let mut t = Tensor::zeros(out);
    for n in 0..out.n {
        for c in 0..out.c {
            for y in 0..out.h {
                for x in 0..out.w {
                    let av = a.data[pick(a.shape, n, c, y, x)] as f64;
                    let bv = b.data[pick(b.shape, n, c, y, x)] as f64;
                    t.data[out.index(n, c, y, x)] = p.activation.apply(p.op.apply(av, bv)) as f32;
                }
            }
        }
    }
    Ok(t)
}

/// A standalone activation.
pub fn unary(p: &Unary, x: &Tensor) -> Result<Tensor> {
    let shape = p.output_shape(x.shape)?;
    let data = x
        .data
        .iter()
        .map(|&v| p.activation.apply(v as f64) as f32)
        .collect();
    Tensor::new(shape, data)
}

/// An elementwise function with parameters ([`Pointwise::apply`]).
pub fn pointwise(p: &Pointwise, x: &Tensor) -> Result<Tensor> {
    let shape = p.output_shape(x.shape)?;
    let data = x.data.iter().map(|&v| p.apply(v as f64) as f32).collect();
    Tensor::new(shape, data)
}

/// `torch.cat(inputs, dim=1)`.
pub fn concat(inputs: &[&Tensor]) -> Result<Tensor> {
    let shapes: Vec<Shape> = inputs.iter().map(|t| t.shape).collect();
    let out = Concat.output_shape(&shapes)?;
    let mut t = Tensor::zeros(out);
    let mut offset = 0;
    for src in inputs {
        super::place_channels(&mut t, src, offset);
        offset += src.shape.c;
    }
    Ok(t)
}
