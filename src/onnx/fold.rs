//! Evaluates ONNX nodes whose inputs are all known on the host: the shape arithmetic exporters emit around Resize,
//! Pad, Slice and Reshape (Shape, Gather, Concat, Cast, ...), and constant expressions. Integer arithmetic follows
//! ONNX (Div truncates toward zero as integer division in C does; onnxruntime's behaviour).

use super::attrs::Attrs;
use super::tensor::{dtype, element_count, Data, HostTensor};
use crate::error::{Error, Result};

/// The op types [`fold`] evaluates.
pub const FOLDABLE: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "Cast",
    "CastLike",
    "Ceil",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Div",
    "Equal",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "Greater",
    "GreaterOrEqual",
    "Identity",
    "Less",
    "LessOrEqual",
    "Max",
    "Min",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Range",
    "Reciprocal",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "Reshape",
    "Round",
    "Shape",
    "Size",
    "Slice",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
    "Where",
    "Dropout",
    "Sign",
    "Pow",
];

fn err(message: impl Into<String>) -> Error {
    Error::Model(message.into())
}

/// Normalises a possibly negative axis for a tensor of `rank` dims.
pub fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if a < -r || a >= r {
        return Err(err(format!("axis {a} is out of range for rank {rank}")));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// NumPy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| {
        if i + s.len() >= rank {
            s[i + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(err(format!("cannot broadcast shapes {a:?} and {b:?}"))),
        })
        .collect()
}

/// Row-major strides of `dims`, with 0 for broadcast (size-1 or missing) dims relative to `out`.
fn broadcast_strides(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for i in (0..dims.len()).rev() {
        let o = i + out.len() - dims.len();
        strides[o] = if dims[i] == 1 { 0 } else { s };
        s *= dims[i];
    }
    strides
}

/// Index into a broadcast operand for each flat output index.
fn broadcast_indices(dims: &[usize], out: &[usize]) -> Result<Vec<usize>> {
    let n = element_count(out, "broadcast")?;
    let strides = broadcast_strides(dims, out);
    let mut idx = vec![0usize; n];
    let mut coord = vec![0usize; out.len()];
    for slot in idx.iter_mut() {
        *slot = coord.iter().zip(&strides).map(|(c, s)| c * s).sum();
        for d in (0..out.len()).rev() {
            coord[d] += 1;
            if coord[d] < out[d] {
                break;
            }
            coord[d] = 0;
        }
    }
    Ok(idx)
}

fn binary(
    a: &HostTensor,
    b: &HostTensor,
    float: impl Fn(f64, f64) -> f64,
    int: impl Fn(i64, i64) -> Result<i64>,
) -> Result<HostTensor> {
    let out = broadcast(&a.dims, &b.dims)?;
    let ia = broadcast_indices(&a.dims, &out)?;
    let ib = broadcast_indices(&b.dims, &out)?;
    Ok(match (&a.data, &b.data) {
        (Data::I64(x), Data::I64(y)) => HostTensor::i64(
            out,
            ia.iter()
                .zip(&ib)
                .map(|(&i, &j)| int(x[i], y[j]))
                .collect::<Result<_>>()?,
        )
        .with_dtype(a.dtype),
        _ => {
            let (x, y) = (a.as_f64(), b.as_f64());
            HostTensor::f32(
                out,
                ia.iter()
                    .zip(&ib)
                    .map(|(&i, &j)| float(x[i], y[j]) as f32)
                    .collect(),
            )
        }
    })
}

fn compare(a: &HostTensor, b: &HostTensor, f: impl Fn(f64, f64) -> bool) -> Result<HostTensor> {
    let mut t = binary(
        a,
        b,
        |x, y| f(x, y) as i64 as f64,
        |x, y| Ok(f(x as f64, y as f64) as i64),
    )?;
    t.data = Data::I64(t.as_i64());
    Ok(t.with_dtype(dtype::BOOL))
}

fn unary(a: &HostTensor, float: impl Fn(f64) -> f64, int: impl Fn(i64) -> i64) -> HostTensor {
    match &a.data {
        Data::I64(v) => {
            HostTensor::i64(a.dims.clone(), v.iter().map(|&x| int(x)).collect()).with_dtype(a.dtype)
        }
        Data::F32(v) => HostTensor::f32(
            a.dims.clone(),
            v.iter().map(|&x| float(x as f64) as f32).collect(),
        )
        .with_dtype(a.dtype),
    }
}

/// Gathers flat element indices into a new tensor of the same data type.
fn take(t: &HostTensor, dims: Vec<usize>, indices: &[usize]) -> HostTensor {
    let data = match &t.data {
        Data::F32(v) => Data::F32(indices.iter().map(|&i| v[i]).collect()),
        Data::I64(v) => Data::I64(indices.iter().map(|&i| v[i]).collect()),
    };
    HostTensor {
        dtype: t.dtype,
        dims,
        data,
    }
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Resolves a Reshape target against the input's element count (0 copies the input dim unless `allowzero`, -1 is
/// inferred).
pub fn reshape_dims(input: &[usize], shape: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let total = element_count(input, "reshape")?;
    let mut dims = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &d) in shape.iter().enumerate() {
        dims.push(match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            0 if !allowzero => *input
                .get(i)
                .ok_or_else(|| err(format!("reshape to {shape:?}: no input dim {i} to copy")))?,
            d if d >= 0 => d as usize,
            _ => return Err(err(format!("reshape to {shape:?}: invalid dimension {d}"))),
        });
    }
    let known = element_count(&dims, "reshape")?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(err(format!("cannot reshape {input:?} to {shape:?}")));
        }
        dims[i] = total / known;
    }
    if element_count(&dims, "reshape")? != total {
        return Err(err(format!(
            "cannot reshape {input:?} ({total} elements) to {shape:?}"
        )));
    }
    Ok(dims)
}

/// ONNX Slice's clamped (start, step, count) along an axis of length `len`.
pub fn slice_range(len: usize, start: i64, end: i64, step: i64) -> Result<(i64, i64, usize)> {
    if step == 0 {
        return Err(err("slice step must not be 0"));
    }
    let len = len as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(len) } else { v };
    let (start, end) = (norm(start), norm(end));
    let (start, end) = if step > 0 {
        (start.clamp(0, len), end.clamp(0, len))
    } else {
        (start.clamp(-1, len - 1), end.clamp(-1, len - 1))
    };
    let count = if step > 0 {
        ((end - start).max(0) + step - 1) / step
    } else {
        ((start - end).max(0) - step - 1) / -step
    };
    Ok((start, step, count as usize))
}

/// The per-axis parameters of a Slice node given its (already host-known) starts, ends, axes and steps.
pub fn slice_params(
    dims: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<(i64, i64, usize)>> {
    let rank = dims.len();
    let default_axes: Vec<i64> = (0..starts.len() as i64).collect();
    let axes = axes.unwrap_or(&default_axes);
    if ends.len() != starts.len()
        || axes.len() != starts.len()
        || steps.is_some_and(|s| s.len() != starts.len())
    {
        return Err(err("slice: starts, ends, axes and steps differ in length"));
    }
    let mut ranges: Vec<(i64, i64, usize)> = dims.iter().map(|&d| (0, 1, d)).collect();
    let mut seen = vec![false; rank];
    for i in 0..starts.len() {
        let a = axis(axes[i], rank)?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(err(format!("slice: axis {a} given twice")));
        }
        ranges[a] = slice_range(dims[a], starts[i], ends[i], steps.map_or(1, |s| s[i]))?;
    }
    Ok(ranges)
}

fn input<'a>(inputs: &'a [Option<&'a HostTensor>], i: usize, op: &str) -> Result<&'a HostTensor> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| err(format!("{op} needs input {i}")))
}

fn cast(t: &HostTensor, to: i32) -> Result<HostTensor> {
    if dtype::is_float(to) {
        Ok(HostTensor::f32(t.dims.clone(), t.as_f32()).with_dtype(to))
    } else if dtype::is_integer(to) {
        let v = t.as_i64();
        let v = if to == dtype::BOOL {
            v.iter().map(|&x| (x != 0) as i64).collect()
        } else {
            v
        };
        let v = if to == dtype::BOOL && t.is_float() {
            t.as_f64().iter().map(|&x| (x != 0.0) as i64).collect()
        } else {
            v
        };
        Ok(HostTensor::i64(t.dims.clone(), v).with_dtype(to))
    } else {
        Err(err(format!("cast to {} is not supported", dtype::name(to))))
    }
}

fn reduce(
    t: &HostTensor,
    axes: Option<Vec<i64>>,
    keepdims: bool,
    f: fn(f64, f64) -> f64,
    init: f64,
) -> Result<HostTensor> {
    let rank = t.dims.len();
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a.iter().map(|&x| axis(x, rank)).collect::<Result<_>>()?,
        _ => (0..rank).collect(),
    };
    let out_dims: Vec<usize> = t
        .dims
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let n = element_count(&out_dims, "reduce")?;
    let mut acc = vec![init; n];
    let st = strides(&out_dims);
    let v = t.as_f64();
    let mut coord = vec![0usize; rank];
    for &x in &v {
        let o: usize = coord
            .iter()
            .enumerate()
            .map(|(i, &c)| if axes.contains(&i) { 0 } else { c * st[i] })
            .sum();
        acc[o] = f(acc[o], x);
        for d in (0..rank).rev() {
            coord[d] += 1;
            if coord[d] < t.dims[d] {
                break;
            }
            coord[d] = 0;
        }
    }
    let dims = if keepdims {
        out_dims
    } else {
        t.dims
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    };
    Ok(if t.is_float() {
        HostTensor::f32(dims, acc.iter().map(|&x| x as f32).collect())
    } else {
        HostTensor::i64(dims, acc.iter().map(|&x| x as i64).collect()).with_dtype(t.dtype)
    })
}

/// Evaluates one node on host tensors. `inputs[i]` is `None` for an omitted optional input. `opset` is the default
/// domain's version (attributes moved to inputs across versions).
pub fn fold(
    op: &str,
    attrs: &Attrs,
    inputs: &[Option<&HostTensor>],
    opset: i64,
) -> Result<Vec<HostTensor>> {
    let x = || input(inputs, 0, op);
    let y = || input(inputs, 1, op);
    let int_div = |a: i64, b: i64| {
        if b == 0 {
            Err(err("integer division by zero"))
        } else {
            Ok(a.wrapping_div(b))
        }
    };
    let t = match op {
        "Identity" | "Dropout" => x()?.clone(),
        "Add" => binary(x()?, y()?, |a, b| a + b, |a, b| Ok(a.wrapping_add(b)))?,
        "Sub" => binary(x()?, y()?, |a, b| a - b, |a, b| Ok(a.wrapping_sub(b)))?,
        "Mul" => binary(x()?, y()?, |a, b| a * b, |a, b| Ok(a.wrapping_mul(b)))?,
        "Div" => binary(x()?, y()?, |a, b| a / b, int_div)?,
        "Mod" => {
            let fmod = attrs.int("fmod", 0)? != 0;
            binary(
                x()?,
                y()?,
                move |a, b| if fmod { a % b } else { a - b * (a / b).floor() },
                move |a, b| {
                    if b == 0 {
                        Err(err("integer modulo by zero"))
                    } else if fmod {
                        Ok(a % b)
                    } else {
                        Ok(a.rem_euclid(b) + if b < 0 && a.rem_euclid(b) != 0 { b } else { 0 })
                    }
                },
            )?
        }
        "Pow" => binary(x()?, y()?, f64::powf, |a, b| {
            Ok((a as f64).powf(b as f64) as i64)
        })?,
        "Max" | "Min" => {
            let mut acc = x()?.clone();
            for i in 1..inputs.len() {
                let other = input(inputs, i, op)?;
                acc = if op == "Max" {
                    binary(&acc, other, f64::max, |a, b| Ok(a.max(b)))?
                } else {
                    binary(&acc, other, f64::min, |a, b| Ok(a.min(b)))?
                };
            }
            acc
        }
        "Equal" => compare(x()?, y()?, |a, b| a == b)?,
        "Less" => compare(x()?, y()?, |a, b| a < b)?,
        "LessOrEqual" => compare(x()?, y()?, |a, b| a <= b)?,
        "Greater" => compare(x()?, y()?, |a, b| a > b)?,
        "GreaterOrEqual" => compare(x()?, y()?, |a, b| a >= b)?,
        "And" => compare(x()?, y()?, |a, b| a != 0.0 && b != 0.0)?,
        "Or" => compare(x()?, y()?, |a, b| a != 0.0 || b != 0.0)?,
        "Not" => unary(x()?, |a| (a == 0.0) as i64 as f64, |a| (a == 0) as i64),
        "Neg" => unary(x()?, |a| -a, i64::wrapping_neg),
        "Abs" => unary(x()?, f64::abs, i64::wrapping_abs),
        "Sign" => unary(
            x()?,
            |a| if a == 0.0 { 0.0 } else { a.signum() },
            i64::signum,
        ),
        "Floor" => unary(x()?, f64::floor, |a| a),
        "Ceil" => unary(x()?, f64::ceil, |a| a),
        "Round" => unary(x()?, f64::round_ties_even, |a| a),
        "Sqrt" => unary(x()?, f64::sqrt, |a| (a as f64).sqrt() as i64),
        "Reciprocal" => unary(x()?, |a| 1.0 / a, |a| if a == 0 { 0 } else { 1 / a }),
        "Where" => {
            let (c, a, b) = (x()?, y()?, input(inputs, 2, op)?);
            let dims = broadcast(&broadcast(&c.dims, &a.dims)?, &b.dims)?;
            let (ic, ia, ib) = (
                broadcast_indices(&c.dims, &dims)?,
                broadcast_indices(&a.dims, &dims)?,
                broadcast_indices(&b.dims, &dims)?,
            );
            let cond = c.as_i64();
            fn pick<T: Copy>(cond: &[i64], idx: [&[usize]; 3], a: &[T], b: &[T]) -> Vec<T> {
                let [ic, ia, ib] = idx;
                (0..ic.len())
                    .map(|k| if cond[ic[k]] != 0 { a[ia[k]] } else { b[ib[k]] })
                    .collect()
            }
            let idx = [&ic[..], &ia[..], &ib[..]];
            match (&a.data, &b.data) {
                (Data::I64(va), Data::I64(vb)) => {
                    HostTensor::i64(dims, pick(&cond, idx, va, vb)).with_dtype(a.dtype)
                }
                _ => HostTensor::f32(dims, pick(&cond, idx, &a.as_f32(), &b.as_f32())),
            }
        }
        "Cast" => cast(x()?, attrs.int("to", dtype::FLOAT as i64)? as i32)?,
        "CastLike" => cast(x()?, y()?.dtype)?,
        "Shape" => {
            let dims = &x()?.dims;
            let rank = dims.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let start = clampi(attrs.int("start", 0)?);
            let end = clampi(attrs.int("end", rank)?);
            let v: Vec<i64> = dims[start..end.max(start)]
                .iter()
                .map(|&d| d as i64)
                .collect();
            HostTensor::i64(vec![v.len()], v)
        }
        "Size" => HostTensor::i64(vec![], vec![element_count(&x()?.dims, "size")? as i64]),
        "Constant" => constant(attrs)?,
        "ConstantOfShape" => {
            let dims: Vec<usize> = x()?
                .as_i64()
                .iter()
                .map(|&d| {
                    usize::try_from(d)
                        .map_err(|_| err(format!("ConstantOfShape: negative dim {d}")))
                })
                .collect::<Result<_>>()?;
            let n = element_count(&dims, "ConstantOfShape")?;
            match attrs.tensor("value")? {
                Some(v) if v.is_empty() => return Err(err("ConstantOfShape: empty value")),
                Some(v) => take(&v, dims, &vec![0; n]),
                None => HostTensor::f32(dims, vec![0.0; n]),
            }
        }
        "Range" => {
            let (start, limit, delta) = (x()?, y()?, input(inputs, 2, op)?);
            let (s, l, d) = (
                start.scalar_f64("start")?,
                limit.scalar_f64("limit")?,
                delta.scalar_f64("delta")?,
            );
            if d == 0.0 {
                return Err(err("Range: delta is 0"));
            }
            let n = ((l - s) / d).ceil().max(0.0);
            let n = element_count(&[n as usize], "Range")?;
            let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
            if start.is_float() {
                HostTensor::f32(vec![n], v.iter().map(|&x| x as f32).collect())
            } else {
                HostTensor::i64(vec![n], v.iter().map(|&x| x as i64).collect())
                    .with_dtype(start.dtype)
            }
        }
        "Reshape" => {
            let dims = reshape_dims(&x()?.dims, &y()?.as_i64(), attrs.int("allowzero", 0)? != 0)?;
            HostTensor {
                dims,
                ..x()?.clone()
            }
        }
        "Flatten" => {
            let t = x()?;
            let a = axis(attrs.int("axis", 1)?, t.dims.len() + 1)?;
            let outer: usize = t.dims[..a].iter().product();
            HostTensor {
                dims: vec![outer, t.len() / outer.max(1)],
                ..t.clone()
            }
        }
        "Squeeze" | "Unsqueeze" => {
            let t = x()?;
            let axes = if opset >= 13 {
                inputs.get(1).copied().flatten().map(|a| a.as_i64())
            } else {
                attrs.ints_opt("axes")?
            };
            HostTensor {
                dims: squeeze_dims(op, &t.dims, axes.as_deref())?,
                ..t.clone()
            }
        }
        "Expand" => {
            let t = x()?;
            let shape: Vec<usize> = y()?.as_i64().iter().map(|&d| d.max(0) as usize).collect();
            let dims = broadcast(&t.dims, &shape)?;
            let idx = broadcast_indices(&t.dims, &dims)?;
            take(t, dims, &idx)
        }
        "Concat" => {
            let parts: Vec<&HostTensor> = (0..inputs.len())
                .map(|i| input(inputs, i, op))
                .collect::<Result<_>>()?;
            let first = parts.first().ok_or_else(|| err("Concat of nothing"))?;
            let a = axis(attrs.int("axis", 0)?, first.dims.len())?;
            let mut dims = first.dims.clone();
            dims[a] = 0;
            for p in &parts {
                if p.dims.len() != dims.len()
                    || p.dims
                        .iter()
                        .enumerate()
                        .any(|(i, &d)| i != a && d != dims[i])
                {
                    return Err(err(format!(
                        "Concat: shapes {:?} and {:?} differ off axis {a}",
                        first.dims, p.dims
                    )));
                }
                dims[a] += p.dims[a];
            }
            let outer: usize = dims[..a].iter().product();
            let float = parts.iter().any(|p| p.is_float());
            let (mut f, mut i) = (Vec::new(), Vec::new());
            for o in 0..outer {
                for p in &parts {
                    let inner: usize = p.dims[a..].iter().product();
                    let range = o * inner..(o + 1) * inner;
                    if float {
                        f.extend_from_slice(&p.as_f32()[range]);
                    } else {
                        i.extend_from_slice(&p.as_i64()[range]);
                    }
                }
            }
            if float {
                HostTensor::f32(dims, f)
            } else {
                HostTensor::i64(dims, i).with_dtype(first.dtype)
            }
        }
        "Gather" => {
            let (t, idx) = (x()?, y()?);
            let a = axis(attrs.int("axis", 0)?, t.dims.len())?;
            let len = t.dims[a] as i64;
            let outer: usize = t.dims[..a].iter().product();
            let inner: usize = t.dims[a + 1..].iter().product();
            let mut flat = Vec::new();
            let indices = idx.as_i64();
            for o in 0..outer {
                for &k in &indices {
                    let k = if k < 0 { k + len } else { k };
                    if k < 0 || k >= len {
                        return Err(err(format!(
                            "Gather: index {k} out of range for axis of {len}"
                        )));
                    }
                    let base = (o * t.dims[a] + k as usize) * inner;
                    flat.extend(base..base + inner);
                }
            }
            let mut dims = t.dims[..a].to_vec();
            dims.extend(&idx.dims);
            dims.extend(&t.dims[a + 1..]);
            take(t, dims, &flat)
        }
        "Slice" => {
            let t = x()?;
            let (starts, ends, axes, steps) = if opset >= 10 {
                let opt = |i: usize| inputs.get(i).copied().flatten().map(|v| v.as_i64());
                (
                    y()?.as_i64(),
                    input(inputs, 2, op)?.as_i64(),
                    opt(3),
                    opt(4),
                )
            } else {
                (
                    attrs.ints("starts")?,
                    attrs.ints("ends")?,
                    attrs.ints_opt("axes")?,
                    None,
                )
            };
            let ranges = slice_params(&t.dims, &starts, &ends, axes.as_deref(), steps.as_deref())?;
            let dims: Vec<usize> = ranges.iter().map(|r| r.2).collect();
            let n = element_count(&dims, "Slice")?;
            let st = strides(&t.dims);
            let mut flat = Vec::with_capacity(n);
            let mut coord = vec![0usize; dims.len()];
            for _ in 0..n {
                flat.push(
                    coord
                        .iter()
                        .enumerate()
                        .map(|(i, &c)| (ranges[i].0 + c as i64 * ranges[i].1) as usize * st[i])
                        .sum(),
                );
                for d in (0..dims.len()).rev() {
                    coord[d] += 1;
                    if coord[d] < dims[d] {
                        break;
                    }
                    coord[d] = 0;
                }
            }
            take(t, dims, &flat)
        }
        "Transpose" => {
            let t = x()?;
            let rank = t.dims.len();
            let perm: Vec<usize> = match attrs.ints_opt("perm")? {
                Some(p) => p.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?,
                None => (0..rank).rev().collect(),
            };
            let mut sorted = perm.clone();
            sorted.sort();
            if sorted != (0..rank).collect::<Vec<_>>() {
                return Err(err(format!(
                    "Transpose: perm {perm:?} is not a permutation"
                )));
            }
            let dims: Vec<usize> = perm.iter().map(|&p| t.dims[p]).collect();
            let st = strides(&t.dims);
            let n = t.len();
            let mut flat = Vec::with_capacity(n);
            let mut coord = vec![0usize; rank];
            for _ in 0..n {
                flat.push(
                    coord
                        .iter()
                        .enumerate()
                        .map(|(i, &c)| c * st[perm[i]])
                        .sum(),
                );
                for d in (0..rank).rev() {
                    coord[d] += 1;
                    if coord[d] < dims[d] {
                        break;
                    }
                    coord[d] = 0;
                }
            }
            take(t, dims, &flat)
        }
        "ReduceProd" | "ReduceSum" | "ReduceMax" | "ReduceMin" => {
            let axes = if opset >= 18 || (op == "ReduceSum" && opset >= 13) {
                inputs.get(1).copied().flatten().map(|a| a.as_i64())
            } else {
                attrs.ints_opt("axes")?
            };
            let keep = attrs.int("keepdims", 1)? != 0;
            let (f, init): (fn(f64, f64) -> f64, f64) = match op {
                "ReduceProd" => (|a, b| a * b, 1.0),
                "ReduceSum" => (|a, b| a + b, 0.0),
                "ReduceMax" => (f64::max, f64::NEG_INFINITY),
                _ => (f64::min, f64::INFINITY),
            };
            reduce(x()?, axes, keep, f, init)?
        }
        other => return Err(err(format!("{other} cannot be evaluated on the host"))),
    };
    Ok(vec![t])
}

/// The output dims of Squeeze / Unsqueeze with `axes` (None: every size-1 dim for Squeeze).
pub fn squeeze_dims(op: &str, dims: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>> {
    if op == "Squeeze" {
        let axes: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&x| axis(x, dims.len()))
                .collect::<Result<_>>()?,
            None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
        };
        if let Some(&a) = axes.iter().find(|&&a| dims[a] != 1) {
            return Err(err(format!("Squeeze: axis {a} of {dims:?} is not 1")));
        }
        Ok(dims
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect())
    } else {
        let axes = axes.ok_or_else(|| err("Unsqueeze needs axes"))?;
        let rank = dims.len() + axes.len();
        let mut axes: Vec<usize> = axes.iter().map(|&x| axis(x, rank)).collect::<Result<_>>()?;
        axes.sort();
        axes.dedup();
        if axes.len() + dims.len() != rank {
            return Err(err("Unsqueeze: repeated axis"));
        }
        let mut rest = dims.iter();
        Ok((0..rank)
            .map(|i| {
                if axes.contains(&i) {
                    1
                } else {
                    *rest.next().unwrap_or(&1)
                }
            })
            .collect())
    }
}

/// A `Constant` node's value: `value` (a tensor) or `value_float(s)` / `value_int(s)`.
fn constant(attrs: &Attrs) -> Result<HostTensor> {
    if let Some(t) = attrs.tensor("value")? {
        return Ok(t);
    }
    if let Some(v) = attrs.float_opt("value_float")? {
        return Ok(HostTensor::f32(vec![], vec![v]));
    }
    if let Some(v) = attrs.floats_opt("value_floats")? {
        return Ok(HostTensor::f32(vec![v.len()], v));
    }
    if let Some(v) = attrs.int_opt("value_int")? {
        return Ok(HostTensor::i64(vec![], vec![v]));
    }
    if let Some(v) = attrs.ints_opt("value_ints")? {
        return Ok(HostTensor::i64(vec![v.len()], v));
    }
    Err(err(
        "Constant has no value attribute atrous reads (value, value_float(s), value_int(s))",
    ))
}
