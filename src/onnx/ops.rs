//! One function per family of ONNX ops that run on the GPU, each turning a node into atrous nodes with ONNX's
//! attribute defaults and semantics. Parameters that atrous's kernels cannot express are refused by name.

use super::attrs::Attrs;
use super::fold::{self, axis};
use super::proto::NodeProto;
use super::translate::{err, natural_nchw, DataValue, Indices, Translator, Value};
use crate::error::Result;
use crate::graph::{BatchNormNames, ConvWeightNames, DType, Op};
use crate::ops::{
    Activation, AdaptiveAvgPool2d, AvgPool2d, Binary, BinaryOp, Conv2d, ConvTranspose2d,
    CoordinateTransform, MaxPool2d, MaxUnpool2d, NearestRounding, PadMode, Padding2d, Pointwise,
    Resize, ResizeMode, ResizeTarget, SlicePad, Unary,
};
use crate::tensor::Shape;

type Outputs = Vec<Value>;

/// Translates one GPU node; returns its outputs' values.
pub fn translate(
    t: &mut Translator,
    name: &str,
    op: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    node: &NodeProto,
) -> Result<Outputs> {
    let out = node.output.first().cloned().unwrap_or_default();
    let data = |d: DataValue| Ok(vec![Value::Data(d)]);
    if let Some(v) = unpool_pattern(t, name, op, ins, &out)? {
        return Ok(vec![v]);
    }
    match op {
        "Conv" => data(conv(t, name, a, ins, &out)?),
        "ConvTranspose" => data(conv_transpose(t, name, a, ins, &out)?),
        "BatchNormalization" => data(batch_norm(t, name, a, ins, node)?),
        "Relu" | "Sigmoid" | "HardSwish" | "HardSigmoid" | "Clip" | "LeakyRelu" | "Elu"
        | "Tanh" | "Softplus" | "Gelu" | "Exp" | "Log" | "Sqrt" | "Abs" | "Neg" | "Reciprocal"
        | "Floor" | "Ceil" => data(activation(t, name, op, a, ins, &out)?),
        "Add" | "Sub" | "Mul" | "Div" | "PRelu" => data(binary(t, name, op, ins, &out)?),
        "MaxPool" => max_pool(t, name, a, ins, node),
        "AveragePool" => data(avg_pool(t, name, a, ins, &out)?),
        "GlobalAveragePool" => data(global_pool(t, name, false, ins, &out, true)?),
        "GlobalMaxPool" => data(global_pool(t, name, true, ins, &out, true)?),
        "ReduceMean" => data(reduce_mean(t, name, a, ins, &out)?),
        "MaxUnpool" => data(max_unpool(t, name, a, ins, &out)?),
        "Resize" | "Upsample" => data(resize(t, name, op, a, ins, &out)?),
        "Concat" => data(concat(t, name, a, ins, &out)?),
        "Slice" => data(slice(t, name, a, ins, &out)?),
        "Pad" => data(pad(t, name, a, ins, &out)?),
        "Softmax" => data(softmax(t, name, a, ins, &out)?),
        "ArgMax" => data(argmax(t, name, a, ins, &out)?),
        "Identity" | "Dropout" => {
            if node.output.len() > 1 && !node.output[1].is_empty() && t.uses(&node.output[1]) > 0 {
                return Err(err(
                    "the Dropout mask output is read; atrous runs inference only",
                ));
            }
            match &ins[0] {
                Some(Value::Data(d)) => data(d.clone()),
                _ => Err(err("input 0 is missing")),
            }
        }
        "Cast" => {
            let to = a.int("to", 1)? as i32;
            match &ins[0] {
                Some(Value::Data(d))
                    if super::tensor::dtype::is_float(to) && d.dtype == DType::F32 =>
                {
                    data(d.clone())
                }
                _ => Err(err(format!(
                    "Cast of a computed tensor to {} is not supported (only to float types)",
                    super::tensor::dtype::name(to)
                ))),
            }
        }
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Transpose" | "Expand" => {
            data(relabel(t, op, a, ins)?)
        }
        "ScatterND" => Ok(vec![scatter(t, a, ins)?]),
        other => Err(err(format!("op {other:?} is not supported"))),
    }
}

/// The largest size, stride, pad or dilation an ONNX attribute or shape input may give: far beyond any real
/// network, small enough that no shape arithmetic downstream can overflow.
pub const MAX_ATTRIBUTE: i64 = 1 << 20;

fn usize_list(v: &[i64], what: &str) -> Result<Vec<usize>> {
    v.iter()
        .map(|&x| match x {
            0..=MAX_ATTRIBUTE => Ok(x as usize),
            x if x < 0 => Err(err(format!("{what} {v:?} has a negative value"))),
            _ => Err(err(format!(
                "{what} {v:?}: {x} is over the limit of {MAX_ATTRIBUTE}"
            ))),
        })
        .collect()
}

fn pair(a: &Attrs, name: &str, default: usize) -> Result<[usize; 2]> {
    match a.ints_opt(name)? {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 => {
            let v = usize_list(&v, name)?;
            Ok([v[0], v[1]])
        }
        Some(v) => Err(err(format!(
            "{name} {v:?}: atrous runs 2-D ops only (2 values expected)"
        ))),
    }
}

/// A 4-D float input (the only rank atrous's convolutions and pools take).
fn image(t: &Translator, ins: &[Option<Value>], what: &str) -> Result<DataValue> {
    let x = t.data(ins, 0)?;
    if x.dims.len() != 4 || x.dims != x.nchw.dims() {
        return Err(err(format!(
            "{what} of a rank-{} tensor {:?}: atrous runs 2-D (NCHW) ops only",
            x.dims.len(),
            x.dims
        )));
    }
    Ok(x)
}

/// Pads `[top, left, bottom, right]` from `pads` / `auto_pad` for a window of `span` (dilated kernel) and `stride`.
fn window_pads(a: &Attrs, x: Shape, span: [usize; 2], stride: [usize; 2]) -> Result<[usize; 4]> {
    let auto = a.string("auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" => match a.ints_opt("pads")? {
            None => Ok([0; 4]),
            Some(p) if p.len() == 4 => {
                let p = usize_list(&p, "pads")?;
                Ok([p[0], p[1], p[2], p[3]])
            }
            Some(p) => Err(err(format!("pads {p:?}: 4 values expected"))),
        },
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = [0; 4];
            for (i, len) in [x.h, x.w].into_iter().enumerate() {
                let out = len.div_ceil(stride[i].max(1));
                let total = ((out.saturating_sub(1)) * stride[i] + span[i]).saturating_sub(len);
                let small = total / 2;
                let (begin, end) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[i] = begin;
                pads[i + 2] = end;
            }
            Ok(pads)
        }
        other => Err(err(format!(
            "auto_pad {other:?} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID"
        ))),
    }
}

fn span(kernel: [usize; 2], dilation: [usize; 2]) -> [usize; 2] {
    [
        dilation[0]
            .saturating_mul(kernel[0].saturating_sub(1))
            .saturating_add(1),
        dilation[1]
            .saturating_mul(kernel[1].saturating_sub(1))
            .saturating_add(1),
    ]
}

fn check_kernel_shape(a: &Attrs, kernel: [usize; 2]) -> Result<()> {
    if let Some(k) = a.ints_opt("kernel_shape")? {
        if usize_list(&k, "kernel_shape")? != kernel {
            return Err(err(format!(
                "kernel_shape {k:?} differs from the weight's {kernel:?}"
            )));
        }
    }
    Ok(())
}

/// What Conv and ConvTranspose read alike: the 4-D input, the weight (a constant) with its 4-D shape checked against
/// `kernel_shape`, and the group count.
fn conv_common(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    op: &str,
) -> Result<(DataValue, String, [usize; 4], usize)> {
    let x = image(t, ins, op)?;
    let w = ins
        .get(1)
        .cloned()
        .flatten()
        .ok_or_else(|| err("the weight (input 1) is missing"))?;
    let (weight, wd) = t.weight(&w, &format!("{name}.weight"))?;
    let [d0, d1, kh, kw] = wd[..] else {
        return Err(err(format!(
            "weight {weight:?} has shape {wd:?}; atrous runs 2-D {op} (4-D weights)"
        )));
    };
    check_kernel_shape(a, [kh, kw])?;
    let groups = usize_list(&[a.int("group", 1)?], "group")?[0];
    Ok((x, weight, [d0, d1, kh, kw], groups))
}

fn conv(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let (x, weight, [m, cg, kh, kw], groups) = conv_common(t, name, a, ins, "Conv")?;
    let stride = pair(a, "strides", 1)?;
    let dilation = pair(a, "dilations", 1)?;
    let p = window_pads(a, x.nchw, span([kh, kw], dilation), stride)?;
    let bias = match ins.get(2).cloned().flatten() {
        Some(b) => Some(t.weight(&b, &format!("{name}.bias"))?),
        None => None,
    };
    if let Some((b, bd)) = &bias {
        if bd[..] != [m] {
            return Err(err(format!("bias {b:?} has shape {bd:?}, expected [{m}]")));
        }
    }
    let in_channels = cg
        .checked_mul(groups)
        .ok_or_else(|| err("group is too large"))?;
    if in_channels != x.nchw.c {
        return Err(err(format!(
            "weight {weight:?} {:?} with group {groups} takes {in_channels} channels, the input has {} ({:?})",
            [m, cg, kh, kw], x.nchw.c, x.dims
        )));
    }
    let params = Conv2d {
        stride,
        padding: Padding2d {
            top: p[0],
            left: p[1],
            bottom: p[2],
            right: p[3],
        },
        dilation,
        groups,
        ..Conv2d::new(in_channels, m, [kh, kw])
    };
    let weights = ConvWeightNames {
        weight,
        bias: bias.map(|b| b.0),
        batch_norm: None,
    };
    t.emit_image(name, Op::Conv2d { params, weights }, vec![x.tensor], out)
}

fn conv_transpose(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let (x, weight, [c, mg, kh, kw], groups) = conv_common(t, name, a, ins, "ConvTranspose")?;
    let wd = [c, mg, kh, kw];
    if groups == 0 || mg.checked_mul(groups).is_none() {
        return Err(err(format!("group {groups} is not a positive count")));
    }
    if c != x.nchw.c {
        return Err(err(format!(
            "weight {weight:?} {wd:?} takes {c} channels, the input has {}",
            x.nchw.c
        )));
    }
    let stride = pair(a, "strides", 1)?;
    let dilation = pair(a, "dilations", 1)?;
    let output_padding = pair(a, "output_padding", 0)?;
    let sp = span([kh, kw], dilation);
    let auto = a.string("auto_pad", "NOTSET")?;
    let inputs = [x.nchw.h, x.nchw.w];
    // The full output before padding is cropped: (in - 1) * stride + span (+ output_padding at the end).
    let full: Vec<usize> = (0..2)
        .map(|i| {
            (inputs[i] - 1)
                .saturating_mul(stride[i])
                .saturating_add(sp[i])
        })
        .collect();
    let output_shape = a
        .ints_opt("output_shape")?
        .map(|s| usize_list(&s, "output_shape"))
        .transpose()?;
    let (mut begin, mut end) = ([0usize; 2], [0usize; 2]);
    let target: Option<Vec<usize>> = match (&output_shape, auto.as_str()) {
        (Some(s), _) => Some(s[s.len().saturating_sub(2)..].to_vec()),
        (None, "SAME_UPPER" | "SAME_LOWER") => {
            Some(vec![inputs[0] * stride[0], inputs[1] * stride[1]])
        }
        (None, "NOTSET" | "VALID") => None,
        (None, other) => return Err(err(format!("auto_pad {other:?} is not supported"))),
    };
    match &target {
        Some(size) if size.len() == 2 => {
            for i in 0..2 {
                let total = (full[i] + output_padding[i]).checked_sub(size[i]).ok_or_else(|| {
                    err(format!("output_shape {size:?} is larger than the transposed convolution's full output"))
                })?;
                let (b, e) = if auto == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                begin[i] = b;
                end[i] = e;
            }
        }
        Some(size) => {
            return Err(err(format!(
                "output_shape {size:?}: 2 spatial sizes expected"
            )))
        }
        None if auto == "NOTSET" => {
            let p = window_pads(a, x.nchw, sp, stride)?;
            begin = [p[0], p[1]];
            end = [p[2], p[3]];
        }
        None => {}
    }
    let mut crop = None;
    let mut padding = [0; 2];
    let mut opad = [0; 2];
    let mut want = [0usize; 2];
    for i in 0..2 {
        want[i] = (full[i] + output_padding[i])
            .checked_sub(begin[i] + end[i])
            .filter(|&w| w > 0)
            .ok_or_else(|| err(format!("pads {begin:?}/{end:?} leave no output")))?;
        // atrous pads symmetrically: pad by the smaller side, then crop what the other side leaves over.
        padding[i] = begin[i].min(end[i]);
        let produced = full[i].checked_sub(2 * padding[i]).ok_or_else(|| {
            err(format!(
                "pads {begin:?}/{end:?} exceed the full output {full:?}"
            ))
        })?;
        opad[i] = (begin[i] - padding[i] + want[i]).saturating_sub(produced);
        if begin[i] != end[i] || opad[i] != output_padding[i] {
            crop = Some(());
        }
    }
    let params = ConvTranspose2d {
        padding,
        output_padding: opad,
        dilation,
        groups,
        ..ConvTranspose2d::new(c, mg * groups, [kh, kw], stride)
    };
    let bias = match ins.get(2).cloned().flatten() {
        Some(b) => Some(t.weight(&b, &format!("{name}.bias"))?.0),
        None => None,
    };
    let weights = ConvWeightNames {
        weight,
        bias,
        batch_norm: None,
    };
    let raw = if crop.is_some() {
        format!("{out}#uncropped")
    } else {
        out.to_string()
    };
    let y = t.emit_image(
        name,
        Op::ConvTranspose2d { params, weights },
        vec![x.tensor],
        &raw,
    )?;
    if crop.is_none() {
        return Ok(y);
    }
    let params = SlicePad {
        start: [
            0,
            0,
            (begin[0] - padding[0]) as i64,
            (begin[1] - padding[1]) as i64,
        ],
        step: [1; 4],
        output: [y.nchw.n, y.nchw.c, want[0], want[1]],
        mode: PadMode::Constant { value: 0.0 },
    };
    let node = t.unique_name(&format!("{name}#crop"));
    t.emit_image(&node, Op::SlicePad { params }, vec![y.tensor], out)
}

fn batch_norm(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    node: &NodeProto,
) -> Result<DataValue> {
    if a.int("training_mode", 0)? != 0 {
        return Err(err("training_mode=1: atrous runs inference only"));
    }
    if node
        .output
        .iter()
        .skip(1)
        .any(|o| !o.is_empty() && t.uses(o) > 0)
    {
        return Err(err(
            "the running mean / variance outputs are read; atrous runs inference only",
        ));
    }
    let x = t.data(ins, 0)?;
    let c = x.nchw.c;
    let eps = a.float("epsilon", 1e-5)? as f64;
    let mut names = Vec::new();
    for (i, what) in ["scale", "bias", "mean", "var"].iter().enumerate() {
        let v = ins
            .get(i + 1)
            .cloned()
            .flatten()
            .ok_or_else(|| err(format!("{what} (input {}) is missing", i + 1)))?;
        let (n, d) = t.weight(&v, &format!("{name}.{what}"))?;
        if d[..] != [c] {
            return Err(err(format!("{what} {n:?} has shape {d:?}, expected [{c}]")));
        }
        names.push(n);
    }
    let bn = BatchNormNames {
        weight: names[0].clone(),
        bias: names[1].clone(),
        running_mean: names[2].clone(),
        running_var: names[3].clone(),
        eps,
    };
    let out = node.output[0].clone();
    // Folded into the convolution that computes x when nothing else reads x.
    let onnx_x = node.input[0].as_str();
    if t.uses(onnx_x) == 1 {
        if let Some(producer) = t.producer_mut(&x.tensor) {
            if let Op::Conv2d { params, weights } = &mut producer.op {
                if weights.batch_norm.is_none()
                    && params.activation == Activation::None
                    && !params.residual
                {
                    weights.batch_norm = Some(bn);
                    t.rename_output(&x.tensor, &out);
                    return Ok(DataValue { tensor: out, ..x });
                }
            }
        }
    }
    // Otherwise a depthwise 1 x 1 convolution of unit weight with the batch norm folded in.
    let ones = format!("{name}.unit_weight");
    t.add_constant(&ones, vec![c, 1, 1, 1], vec![1.0; c])?;
    let params = Conv2d {
        groups: c,
        ..Conv2d::new(c, c, [1, 1])
    };
    let weights = ConvWeightNames {
        weight: ones,
        bias: None,
        batch_norm: Some(bn),
    };
    let d = t.emit_data(
        name,
        Op::Conv2d { params, weights },
        vec![x.tensor],
        &out,
        x.dims.clone(),
    )?;
    Ok(d)
}

/// Scalar from an optional input (opset >= 11 Clip) or an attribute.
fn scalar_input(t: &Translator, ins: &[Option<Value>], i: usize) -> Result<Option<f32>> {
    Ok(match t.host_input(ins, i)? {
        Some(v) => Some(v.scalar_f64(&format!("input {i}"))? as f32),
        None => None,
    })
}

fn activation(
    t: &mut Translator,
    name: &str,
    op: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let x = t.data(ins, 0)?;
    let fused = |act| Op::Unary {
        params: Unary { activation: act },
    };
    let pw = |p| Op::Pointwise { params: p };
    let node = match op {
        "Relu" => fused(Activation::Relu),
        "Sigmoid" => fused(Activation::Sigmoid),
        "HardSwish" => fused(Activation::Hardswish),
        "HardSigmoid" => {
            let (alpha, beta) = (a.float("alpha", 0.2)?, a.float("beta", 0.5)?);
            if (alpha - 1.0 / 6.0).abs() < 1e-7 && beta == 0.5 {
                fused(Activation::Hardsigmoid)
            } else {
                pw(Pointwise::HardSigmoid { alpha, beta })
            }
        }
        "Clip" => {
            let (min, max) = if t.opset >= 11 {
                (scalar_input(t, ins, 1)?, scalar_input(t, ins, 2)?)
            } else {
                (a.float_opt("min")?, a.float_opt("max")?)
            };
            match (min, max) {
                (Some(lo), Some(hi)) if lo == 0.0 && hi == 6.0 => fused(Activation::Relu6),
                (Some(0.0), None) => fused(Activation::Relu),
                (lo, hi) => pw(Pointwise::Clip {
                    min: lo.unwrap_or(f32::MIN),
                    max: hi.unwrap_or(f32::MAX),
                }),
            }
        }
        "LeakyRelu" => pw(Pointwise::LeakyRelu {
            alpha: a.float("alpha", 0.01)?,
        }),
        "Elu" => pw(Pointwise::Elu {
            alpha: a.float("alpha", 1.0)?,
        }),
        "Tanh" => pw(Pointwise::Tanh),
        "Softplus" => pw(Pointwise::Softplus),
        "Gelu" => pw(Pointwise::Gelu {
            tanh: match a.string("approximate", "none")?.as_str() {
                "none" => false,
                "tanh" => true,
                other => return Err(err(format!("approximate {other:?} is not none or tanh"))),
            },
        }),
        "Exp" => pw(Pointwise::Exp),
        "Log" => pw(Pointwise::Log),
        "Sqrt" => pw(Pointwise::Sqrt),
        "Abs" => pw(Pointwise::Abs),
        "Neg" => pw(Pointwise::Neg),
        "Reciprocal" => pw(Pointwise::Reciprocal),
        "Floor" => pw(Pointwise::Floor),
        "Ceil" => pw(Pointwise::Ceil),
        other => return Err(err(format!("op {other:?} is not an activation"))),
    };
    t.emit_data(name, node, vec![x.tensor], out, x.dims)
}

/// Both operands as NCHW tensors whose dims broadcast as ONNX says (ranks <= 4, leading 1s).
fn same_layout(d: &DataValue) -> bool {
    natural_nchw(&d.dims) == Some(d.nchw)
}

fn binary(
    t: &mut Translator,
    name: &str,
    op: &str,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let a = t.operand(ins, 0, name)?;
    let b = t.operand(ins, 1, name)?;
    for (i, d) in [&a, &b].into_iter().enumerate() {
        if !same_layout(d) || d.dtype != DType::F32 {
            return Err(err(format!(
                "input {i} of dims {:?} is not a float tensor of rank <= 4",
                d.dims
            )));
        }
    }
    let dims = fold::broadcast(&a.dims, &b.dims)?;
    let code = match op {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        _ => BinaryOp::Prelu,
    };
    t.emit_data(
        name,
        Op::Binary {
            params: Binary::new(code),
        },
        vec![a.tensor, b.tensor],
        out,
        dims,
    )
}

fn max_pool(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    node: &NodeProto,
) -> Result<Outputs> {
    let x = image(t, ins, "MaxPool")?;
    if a.int("storage_order", 0)? != 0 {
        return Err(err(
            "storage_order=1 (column-major indices) is not supported",
        ));
    }
    let kernel = pair(a, "kernel_shape", 0)?;
    let stride = pair(a, "strides", 1)?;
    let dilation = pair(a, "dilations", 1)?;
    let p = window_pads(a, x.nchw, span(kernel, dilation), stride)?;
    let indices = node.output.get(1).filter(|o| !o.is_empty()).cloned();
    let ceil_mode = a.int("ceil_mode", 0)? != 0;
    // atrous pools pad symmetrically by at most half the window (PyTorch's rule); other pads are applied first with
    // the lowest float, which no window's maximum can be, unless the indices or ceil mode depend on them.
    // Pads atrous's pool cannot take are applied first with the lowest float, which no window's maximum can be,
    // unless the indices or ceil mode depend on them.
    let exact = indices.is_none() && !ceil_mode;
    let (x, p) = pool_pads(
        t,
        name,
        x,
        p,
        kernel,
        exact.then_some(f32::MIN),
        "MaxPool without indices or ceil_mode",
    )?;
    let params = MaxPool2d {
        kernel,
        stride,
        padding: p,
        dilation,
        ceil_mode,
        return_indices: indices.is_some(),
    };
    // PyTorch's exporter pools with a 1 x 1 window only to read every element's flat position from the indices.
    if indices.is_some() && kernel == [1, 1] && stride == [1, 1] && p == [0, 0] && !params.ceil_mode
    {
        return Ok(vec![
            Value::Data(x.clone()),
            Value::Positions { shape: x.nchw },
        ]);
    }
    let plane = x.nchw.plane();
    let mut outs = vec![node.output[0].clone()];
    outs.extend(indices.clone());
    let infos = t.emit(name, Op::MaxPool2d { params }, vec![x.tensor], outs.clone())?;
    Ok(outs
        .into_iter()
        .zip(infos)
        .map(|(tensor, info)| {
            let indices = (info.dtype == DType::U32).then_some(Indices::Flat { plane });
            Value::Data(DataValue {
                tensor,
                dims: info.shape.dims().to_vec(),
                nchw: info.shape,
                dtype: info.dtype,
                indices,
            })
        })
        .collect())
}

fn avg_pool(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let x = image(t, ins, "AveragePool")?;
    let kernel = pair(a, "kernel_shape", 0)?;
    let stride = pair(a, "strides", 1)?;
    if pair(a, "dilations", 1)? != [1, 1] {
        return Err(err("dilations are not supported for AveragePool"));
    }
    let p = window_pads(a, x.nchw, kernel, stride)?;
    let ceil_mode = a.int("ceil_mode", 0)? != 0;
    let count_include_pad = a.int("count_include_pad", 0)? != 0;
    // Pads atrous's pool cannot take are zeros counted in every average: exact when count_include_pad is set and
    // ceil mode is off.
    let exact = count_include_pad && !ceil_mode;
    let (x, p) = pool_pads(
        t,
        name,
        x,
        p,
        kernel,
        exact.then_some(0.0),
        "AveragePool with count_include_pad=1",
    )?;
    let params = AvgPool2d {
        kernel,
        stride,
        padding: p,
        ceil_mode,
        count_include_pad,
    };
    t.emit_image(name, Op::AvgPool2d { params }, vec![x.tensor], out)
}

/// The symmetric (h, w) padding for a pool: `p` itself when atrous's pools take it (symmetric, at most half the
/// window, PyTorch's rule), else `x` padded explicitly with `fill` and no padding, where `fill` is given (the pool
/// is exact that way); otherwise an error saying where such pads are supported.
fn pool_pads(
    t: &mut Translator,
    name: &str,
    x: DataValue,
    p: [usize; 4],
    kernel: [usize; 2],
    fill: Option<f32>,
    supported: &str,
) -> Result<(DataValue, [usize; 2])> {
    let symmetric = p[0] == p[2] && p[1] == p[3];
    if symmetric && 2 * p[0].max(p[1]) <= kernel[0].min(kernel[1]) {
        return Ok((x, [p[0], p[1]]));
    }
    match fill {
        Some(value) => Ok((explicit_pad(t, name, x, p, value)?, [0, 0])),
        None if symmetric => Ok((x, [p[0], p[1]])),
        None => Err(err(format!(
            "asymmetric pads {p:?} are supported for {supported} only"
        ))),
    }
}

/// `x` padded by `[top, left, bottom, right]` with `value`.
fn explicit_pad(
    t: &mut Translator,
    name: &str,
    x: DataValue,
    p: [usize; 4],
    value: f32,
) -> Result<DataValue> {
    let s = x.nchw;
    let params = SlicePad {
        start: [0, 0, -(p[0] as i64), -(p[1] as i64)],
        step: [1; 4],
        output: [s.n, s.c, s.h + p[0] + p[2], s.w + p[1] + p[3]],
        mode: PadMode::Constant { value },
    };
    let node = t.unique_name(&format!("{name}#pad"));
    let padded = format!("{node}#out");
    t.emit_image(&node, Op::SlicePad { params }, vec![x.tensor], &padded)
}

fn global_pool(
    t: &mut Translator,
    name: &str,
    max: bool,
    ins: &[Option<Value>],
    out: &str,
    keep: bool,
) -> Result<DataValue> {
    let x = image(t, ins, "a global pool")?;
    let op = if max {
        Op::MaxPool2d {
            params: MaxPool2d {
                stride: [1, 1],
                ..MaxPool2d::new([x.nchw.h, x.nchw.w])
            },
        }
    } else {
        Op::AdaptiveAvgPool2d {
            params: AdaptiveAvgPool2d { output: [1, 1] },
        }
    };
    let dims = if keep {
        vec![x.nchw.n, x.nchw.c, 1, 1]
    } else {
        vec![x.nchw.n, x.nchw.c]
    };
    t.emit_data(name, op, vec![x.tensor], out, dims)
}

fn reduce_mean(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    image(t, ins, "ReduceMean")?;
    let axes = if t.opset >= 18 {
        t.host_input(ins, 1)?.map(|v| v.as_i64())
    } else {
        a.ints_opt("axes")?
    };
    let mut axes: Vec<usize> = axes
        .ok_or_else(|| err("ReduceMean over every axis is not supported (only height and width)"))?
        .iter()
        .map(|&v| axis(v, 4))
        .collect::<Result<_>>()?;
    axes.sort();
    if axes != [2, 3] {
        return Err(err(format!(
            "ReduceMean over axes {axes:?}: only height and width (2, 3) are supported"
        )));
    }
    global_pool(t, name, false, ins, out, a.int("keepdims", 1)? != 0)
}

fn max_unpool(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let x = image(t, ins, "MaxUnpool")?;
    let indices =
        match ins.get(1).cloned().flatten() {
            Some(Value::Data(d)) if d.indices.is_some() && d.nchw == x.nchw => d,
            _ => return Err(err(
                "the indices (input 1) must be the Indices output of a MaxPool of the same shape",
            )),
        };
    let kernel = pair(a, "kernel_shape", 0)?;
    let stride = pair(a, "strides", 1)?;
    let p = match a.ints_opt("pads")? {
        Some(p) if p.len() == 4 => usize_list(&p, "pads")?,
        None => vec![0; 4],
        Some(p) => return Err(err(format!("pads {p:?}: 4 values expected"))),
    };
    let size = match t.host_input(ins, 2)? {
        Some(s) => {
            let s = usize_list(&s.as_i64(), "output_shape")?;
            if s.len() != 4 || s[0] != x.nchw.n || s[1] != x.nchw.c {
                return Err(err(format!(
                    "output_shape {s:?} must be [N, C, H, W] of the input's N and C"
                )));
            }
            [s[2], s[3]]
        }
        None => [
            ((x.nchw.h - 1) * stride[0] + kernel[0])
                .checked_sub(p[0] + p[2])
                .ok_or_else(|| err("pads too large"))?,
            ((x.nchw.w - 1) * stride[1] + kernel[1])
                .checked_sub(p[1] + p[3])
                .ok_or_else(|| err("pads too large"))?,
        ],
    };
    let params = MaxUnpool2d {
        kernel,
        stride,
        padding: [0, 0],
        output_size: Some(size),
    };
    t.emit_image(
        name,
        Op::MaxUnpool2d { params },
        vec![x.tensor, indices.tensor],
        out,
    )
}

fn resize(
    t: &mut Translator,
    name: &str,
    op: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let x = image(t, ins, op)?;
    let mode = a.string("mode", "nearest")?;
    // Upsample and Resize-10 take scales as input 1, asymmetric coordinates and floor rounding.
    let legacy = op == "Upsample" || t.opset < 11;
    let (scales, sizes) = if legacy {
        let s = match t.host_input(ins, 1)? {
            Some(s) => s.as_f64(),
            None => a
                .floats_opt("scales")?
                .ok_or_else(|| err("scales are missing"))?
                .iter()
                .map(|&v| v as f64)
                .collect(),
        };
        (Some(s), None)
    } else {
        let scales = t
            .host_input(ins, 2)?
            .filter(|s| !s.is_empty())
            .map(|s| s.as_f64());
        let sizes = t
            .host_input(ins, 3)?
            .filter(|s| !s.is_empty())
            .map(|s| s.as_i64());
        (scales, sizes)
    };
    for (attr, ok) in [("antialias", 0), ("exclude_outside", 0)] {
        if a.int(attr, ok)? != ok {
            return Err(err(format!("{attr}={} is not supported", a.int(attr, ok)?)));
        }
    }
    if a.string("keep_aspect_ratio_policy", "stretch")? != "stretch" {
        return Err(err(
            "keep_aspect_ratio_policy other than stretch is not supported",
        ));
    }
    // opset 18's `axes` names which dims the scales or sizes are for.
    let axes: Vec<usize> = match a.ints_opt("axes")? {
        Some(v) => v.iter().map(|&i| axis(i, 4)).collect::<Result<_>>()?,
        None => vec![0, 1, 2, 3],
    };
    let full = |vals: Vec<f64>, fill: [f64; 4]| -> Result<[f64; 4]> {
        if vals.len() != axes.len() {
            return Err(err(format!(
                "{} scales or sizes for {} axes",
                vals.len(),
                axes.len()
            )));
        }
        let mut f = fill;
        for (&ax, v) in axes.iter().zip(vals) {
            f[ax] = v;
        }
        Ok(f)
    };
    let dims = x.nchw.dims().map(|d| d as f64);
    let target = match (scales, sizes) {
        (_, Some(s)) => {
            let s = full(s.iter().map(|&v| v as f64).collect(), dims)?;
            if s[0] != dims[0]
                || s[1] != dims[1]
                || s[2] < 1.0
                || s[3] < 1.0
                || s[2].max(s[3]) > MAX_ATTRIBUTE as f64
            {
                return Err(err(format!(
                    "sizes {s:?}: only height and width may change (input {:?})",
                    x.dims
                )));
            }
            ResizeTarget::Size([s[2] as usize, s[3] as usize])
        }
        (Some(s), None) => {
            let s = full(s, [1.0; 4])?;
            if s[0] != 1.0
                || s[1] != 1.0
                || !(s[2] > 0.0 && s[3] > 0.0 && s[2].is_finite() && s[3].is_finite())
            {
                return Err(err(format!(
                    "scales {s:?}: only height and width may be scaled, by positive factors"
                )));
            }
            ResizeTarget::Scale([s[2] as f32 as f64, s[3] as f32 as f64])
        }
        (None, None) => return Err(err("neither scales nor sizes are given")),
    };
    let transform = if legacy {
        CoordinateTransform::Asymmetric
    } else {
        match a
            .string("coordinate_transformation_mode", "half_pixel")?
            .as_str()
        {
            "half_pixel" => CoordinateTransform::HalfPixel,
            "pytorch_half_pixel" => CoordinateTransform::PytorchHalfPixel,
            "align_corners" => CoordinateTransform::AlignCorners,
            "asymmetric" => CoordinateTransform::Asymmetric,
            "tf_half_pixel_for_nearest" => CoordinateTransform::TfHalfPixelForNearest,
            other => {
                return Err(err(format!(
                    "coordinate_transformation_mode {other:?} is not supported"
                )))
            }
        }
    };
    let mode = match mode.as_str() {
        "nearest" => ResizeMode::NearestOnnx {
            transform,
            rounding: if legacy {
                NearestRounding::Floor
            } else {
                match a.string("nearest_mode", "round_prefer_floor")?.as_str() {
                    "round_prefer_floor" => NearestRounding::RoundPreferFloor,
                    "round_prefer_ceil" => NearestRounding::RoundPreferCeil,
                    "floor" => NearestRounding::Floor,
                    "ceil" => NearestRounding::Ceil,
                    other => return Err(err(format!("nearest_mode {other:?} is not supported"))),
                }
            },
        },
        "linear" | "bilinear" => ResizeMode::Linear { transform },
        other => {
            return Err(err(format!(
                "mode {other:?} is not supported (nearest and linear are)"
            )))
        }
    };
    t.emit_image(
        name,
        Op::Resize {
            params: Resize { mode, target },
        },
        vec![x.tensor],
        out,
    )
}

fn concat(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let parts: Vec<DataValue> = (0..ins.len())
        .map(|i| t.operand(ins, i, name))
        .collect::<Result<_>>()?;
    let rank = parts.first().map_or(0, |p| p.dims.len());
    if parts
        .iter()
        .any(|p| p.dims.len() != rank || !same_layout(p))
    {
        return Err(err("inputs of different ranks"));
    }
    let ax = axis(a.int("axis", 0)?, rank)?;
    if rank < 3 || ax != rank - 3 {
        return Err(err(format!(
            "concatenation along axis {ax} of rank {rank}: only the channel axis is supported"
        )));
    }
    let mut dims = parts[0].dims.clone();
    dims[ax] = parts.iter().map(|p| p.dims[ax]).sum();
    let tensors = parts.into_iter().map(|p| p.tensor).collect();
    t.emit_data(name, Op::Concat, tensors, out, dims)
}

/// A gather over NCHW from per-ONNX-axis (start, step, count) of a tensor of rank <= 4.
fn slice_pad(
    t: &mut Translator,
    name: &str,
    x: DataValue,
    ranges: &[(i64, i64, usize)],
    mode: PadMode,
    out: &str,
) -> Result<DataValue> {
    if !same_layout(&x) {
        return Err(err(format!(
            "input of dims {:?} is not in atrous's NCHW layout",
            x.dims
        )));
    }
    let lead = 4 - ranges.len();
    let mut params = SlicePad {
        start: [0; 4],
        step: [1; 4],
        output: x.nchw.dims(),
        mode,
    };
    for (i, &(start, step, count)) in ranges.iter().enumerate() {
        params.start[lead + i] = start;
        params.step[lead + i] = step;
        params.output[lead + i] = count;
    }
    let dims = ranges.iter().map(|r| r.2).collect();
    t.emit_data(name, Op::SlicePad { params }, vec![x.tensor], out, dims)
}

fn slice(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let x = t.data(ins, 0)?;
    let (starts, ends, axes, steps) = if t.opset >= 10 {
        let get = |i: usize| -> Result<Option<Vec<i64>>> {
            Ok(t.host_input(ins, i)?.map(|v| v.as_i64()))
        };
        (
            get(1)?.ok_or_else(|| err("starts missing"))?,
            get(2)?.ok_or_else(|| err("ends missing"))?,
            get(3)?,
            get(4)?,
        )
    } else {
        (
            a.ints("starts")?,
            a.ints("ends")?,
            a.ints_opt("axes")?,
            None,
        )
    };
    let ranges = fold::slice_params(&x.dims, &starts, &ends, axes.as_deref(), steps.as_deref())?;
    if ranges.iter().any(|r| r.2 == 0) {
        return Err(err(format!("the slice of {:?} is empty", x.dims)));
    }
    slice_pad(t, name, x, &ranges, PadMode::Constant { value: 0.0 }, out)
}

fn pad(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let x = t.data(ins, 0)?;
    let rank = x.dims.len();
    let (pads, value) = if t.opset >= 11 {
        let pads = t
            .host_input(ins, 1)?
            .ok_or_else(|| err("pads missing"))?
            .as_i64();
        (pads, scalar_input(t, ins, 2)?.unwrap_or(0.0))
    } else {
        (a.ints("pads")?, a.float("value", 0.0)?)
    };
    let axes: Vec<usize> = match t.host_input(ins, 3)? {
        Some(v) => v
            .as_i64()
            .iter()
            .map(|&i| axis(i, rank))
            .collect::<Result<_>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(err(format!(
            "pads {pads:?}: {} values expected",
            2 * axes.len()
        )));
    }
    let mode = match a.string("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant { value },
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        other => {
            return Err(err(format!(
                "mode {other:?} is not supported (constant, reflect, edge are)"
            )))
        }
    };
    let mut ranges: Vec<(i64, i64, usize)> = x.dims.iter().map(|&d| (0, 1, d)).collect();
    if let Some(p) = pads.iter().find(|p| p.abs() > MAX_ATTRIBUTE) {
        return Err(err(format!("pad {p} is over the limit of {MAX_ATTRIBUTE}")));
    }
    for (k, &ax) in axes.iter().enumerate() {
        let (begin, end) = (pads[k], pads[k + axes.len()]);
        let count = (x.dims[ax] as i64)
            .checked_add(begin)
            .and_then(|v| v.checked_add(end))
            .filter(|&c| c > 0);
        let count =
            count.ok_or_else(|| err(format!("pads {pads:?} leave nothing of {:?}", x.dims)))?;
        ranges[ax] = (
            -begin,
            1,
            usize::try_from(count).map_err(|_| err("pads too large"))?,
        );
    }
    slice_pad(t, name, x, &ranges, mode, out)
}

fn softmax(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let x = image(t, ins, "Softmax")?;
    let ax = axis(a.int("axis", if t.opset >= 13 { -1 } else { 1 })?, 4)?;
    // Before opset 13, Softmax normalises over every axis from `axis` on: the channels alone only for 1 x 1 maps.
    if ax != 1 || (t.opset < 13 && x.nchw.h * x.nchw.w != 1) {
        return Err(err(format!(
            "softmax over axis {ax} (opset {}): only the channel axis is supported",
            t.opset
        )));
    }
    t.emit_data(name, Op::Softmax, vec![x.tensor], out, x.dims)
}

fn argmax(
    t: &mut Translator,
    name: &str,
    a: &Attrs,
    ins: &[Option<Value>],
    out: &str,
) -> Result<DataValue> {
    let x = image(t, ins, "ArgMax")?;
    if axis(a.int("axis", 0)?, 4)? != 1 || a.int("select_last_index", 0)? != 0 {
        return Err(err(
            "only the argmax over channels (axis 1), first index on ties, is supported",
        ));
    }
    let s = x.nchw;
    let dims = if a.int("keepdims", 1)? != 0 {
        vec![s.n, 1, s.h, s.w]
    } else {
        vec![s.n, s.h, s.w]
    };
    t.emit_data(name, Op::Argmax, vec![x.tensor], out, dims)
}

/// Reshape, Flatten, Squeeze, Unsqueeze, Transpose and Expand of a computed tensor, where they leave atrous's NCHW
/// layout as it is (adding or removing size-1 dims): the same tensor under new dims.
fn relabel(t: &mut Translator, op: &str, a: &Attrs, ins: &[Option<Value>]) -> Result<DataValue> {
    let x = match ins.first().cloned().flatten() {
        Some(Value::Data(d)) => d,
        _ => return Err(err("input 0 is missing")),
    };
    let shape_input = |i: usize| -> Result<Vec<i64>> {
        Ok(t.host_input(ins, i)?
            .ok_or_else(|| err(format!("input {i} is missing")))?
            .as_i64())
    };
    let dims = match op {
        "Reshape" => fold::reshape_dims(&x.dims, &shape_input(1)?, a.int("allowzero", 0)? != 0)?,
        "Flatten" => {
            let ax = axis(a.int("axis", 1)?, x.dims.len() + 1)?;
            let outer: usize = x.dims[..ax].iter().product();
            vec![outer, x.dims[ax..].iter().product()]
        }
        "Squeeze" | "Unsqueeze" => {
            let axes = if t.opset >= 13 {
                t.host_input(ins, 1)?.map(|v| v.as_i64())
            } else {
                a.ints_opt("axes")?
            };
            fold::squeeze_dims(op, &x.dims, axes.as_deref())?
        }
        "Transpose" => {
            let perm = a
                .ints_opt("perm")?
                .unwrap_or_else(|| (0..x.dims.len() as i64).rev().collect());
            let perm: Vec<usize> = perm
                .iter()
                .map(|&p| axis(p, x.dims.len()))
                .collect::<Result<_>>()?;
            let moved: Vec<usize> = perm.iter().copied().filter(|&p| x.dims[p] != 1).collect();
            if moved.windows(2).any(|w| w[0] > w[1]) {
                return Err(err(format!(
                    "Transpose {perm:?} of {:?} reorders data; atrous keeps NCHW",
                    x.dims
                )));
            }
            perm.iter().map(|&p| x.dims[p]).collect()
        }
        _ => {
            let shape = usize_list(&shape_input(1)?, "shape")?;
            let dims = fold::broadcast(&x.dims, &shape)?;
            if dims.iter().product::<usize>() != x.dims.iter().product::<usize>() {
                return Err(err(format!(
                    "Expand of {:?} to {shape:?} copies data; only a no-op Expand is supported",
                    x.dims
                )));
            }
            dims
        }
    };
    // The data stays in place; ops that need NCHW check that the new dims still describe it.
    let count: usize = dims.iter().product();
    if count != x.nchw.numel() {
        return Err(err(format!(
            "{op} of {:?} to {dims:?} changes the element count",
            x.dims
        )));
    }
    Ok(DataValue { dims, ..x })
}

/// PyTorch's max-pooling indices and unpooling as its torch.export-based exporter writes them: per-plane indices
/// are the pool's flat indices minus the plane offsets read from a 1 x 1 pool's indices; unpooling adds plane
/// offsets back, flattens, and scatters the values into zeros (ScatterND), then reshapes. atrous keeps per-plane
/// u32 indices on the GPU throughout, so these nodes only re-tag values; the final Reshape emits the unpooling.
fn unpool_pattern(
    t: &mut Translator,
    name: &str,
    op: &str,
    ins: &[Option<Value>],
    out: &str,
) -> Result<Option<Value>> {
    let input = |i: usize| ins.get(i).cloned().flatten();
    match (op, input(0), input(1)) {
        ("Slice", Some(Value::Positions { shape }), _) => {
            let ranges: Vec<Vec<i64>> = (1..=3)
                .map(|i| {
                    t.host_input(ins, i)
                        .map(|v| v.map(|v| v.as_i64()).unwrap_or_default())
                })
                .collect::<Result<_>>()?;
            let axes: Vec<usize> = ranges[2]
                .iter()
                .map(|&a| axis(a, 4))
                .collect::<Result<_>>()?;
            if ranges[0].iter().all(|&s| s == 0)
                && ranges[1].iter().all(|&e| e == 1)
                && axes == [2, 3]
            {
                return Ok(Some(Value::PlaneOffsets { shape }));
            }
            Err(err(
                "a slice of a 1 x 1 max pool's indices other than each plane's first element",
            ))
        }
        ("Sub", Some(Value::Data(d)), Some(Value::PlaneOffsets { shape })) => match d.indices {
            Some(Indices::Flat { plane })
                if plane == shape.plane() && d.nchw.n == shape.n && d.nchw.c == shape.c =>
            {
                Ok(Some(Value::Data(DataValue {
                    indices: Some(Indices::PerPlane),
                    ..d
                })))
            }
            _ => Err(err(
                "subtracting plane offsets from something other than a max pool's indices",
            )),
        },
        ("Add", Some(Value::Data(d)), Some(v)) if d.indices == Some(Indices::PerPlane) => {
            // The offsets must be (n * C + c) * plane for one plane size.
            let offsets = t.host(&v)?.as_i64();
            let plane = offsets.get(1).copied().unwrap_or(0).max(0) as usize;
            let want: Vec<i64> = (0..offsets.len()).map(|k| (k * plane) as i64).collect();
            if offsets.len() != d.nchw.n * d.nchw.c || (offsets.len() > 1 && offsets != want) {
                return Err(err(
                    "adding something other than plane offsets to max-pooling indices",
                ));
            }
            Ok(Some(Value::Data(DataValue {
                indices: Some(Indices::Flat { plane }),
                ..d
            })))
        }
        (
            "Reshape",
            Some(Value::Scatter {
                values,
                indices,
                plane,
            }),
            _,
        ) => {
            let dims = fold::reshape_dims(
                &[values.nchw.numel() / values.nchw.plane() * plane],
                &t.host_input(ins, 1)?
                    .ok_or_else(|| err("shape missing"))?
                    .as_i64(),
                false,
            )?;
            let [n, c, h, w] = dims[..] else {
                return Err(err(format!(
                    "unpooled values reshaped to {dims:?}, not NCHW"
                )));
            };
            if (n, c) != (values.nchw.n, values.nchw.c) || h * w != plane {
                return Err(err(format!(
                    "unpooled values reshaped to {dims:?}, planes of {plane} expected"
                )));
            }
            let stride = [
                (h as f64 / values.nchw.h as f64).round().max(1.0) as usize,
                (w as f64 / values.nchw.w as f64).round().max(1.0) as usize,
            ];
            let params = MaxUnpool2d {
                kernel: stride,
                stride,
                padding: [0, 0],
                output_size: Some([h, w]),
            };
            let d = t.emit_data(
                name,
                Op::MaxUnpool2d { params },
                vec![values.tensor, indices.tensor],
                out,
                dims,
            )?;
            Ok(Some(Value::Data(d)))
        }
        _ => Ok(None),
    }
}

/// ScatterND of pooled values into zeros at flat max-pooling indices (see [`unpool_pattern`]).
fn scatter(t: &mut Translator, a: &Attrs, ins: &[Option<Value>]) -> Result<Value> {
    let unsupported = || {
        err("ScatterND is supported only as max unpooling (values scattered into zeros at max-pooling indices)")
    };
    if a.string("reduction", "none")? != "none" {
        return Err(unsupported());
    }
    let zeros = t
        .host_input(ins, 0)
        .map_err(|_| unsupported())?
        .ok_or_else(unsupported)?;
    let (Some(Some(Value::Data(indices))), Some(Some(Value::Data(values)))) =
        (ins.get(1), ins.get(2))
    else {
        return Err(unsupported());
    };
    let flat = matches!(indices.indices, Some(Indices::Flat { .. }));
    let planes = values.nchw.n * values.nchw.c;
    if !flat
        || indices.nchw != values.nchw
        || zeros.as_f64().iter().any(|&z| z != 0.0)
        || planes == 0
        || zeros.len() % planes != 0
    {
        return Err(unsupported());
    }
    let plane = zeros.len() / planes;
    if let Some(Indices::Flat { plane: p }) = indices.indices {
        if p != 0 && p != plane {
            return Err(err(format!(
                "indices offset by planes of {p}, scattered into planes of {plane}"
            )));
        }
    }
    Ok(Value::Scatter {
        values: values.clone(),
        indices: indices.clone(),
        plane,
    })
}
