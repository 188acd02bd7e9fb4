"""A slow, plain NumPy executor for atrous's portable model format (docs/model-format.md).

It exists to check converters without involving Rust or a GPU: a converted file is run here and compared with the
framework it came from. It covers the ops the converters in tools/ emit (conv2d, conv_transpose2d, binary, unary,
adaptive_avg_pool2d, resize bilinear) and fails loudly on anything else. Computes in float64, batch 1 or more.
"""
import json

import numpy as np
from safetensors.numpy import load_file
from safetensors import safe_open


def load(path):
    """Returns (document, tensors as float64)."""
    with safe_open(path, "np") as f:
        doc = json.loads(f.metadata()["atrous"])
    tensors = {k: v.astype(np.float64) for k, v in load_file(path).items()}
    return doc, tensors


def _pair(params, key, default):
    return params.get(key, default)


def conv2d(x, w, b, p):
    n, c, h, wd = x.shape
    kh, kw = p["kernel"]
    sh, sw = _pair(p, "stride", [1, 1])
    dh, dw = _pair(p, "dilation", [1, 1])
    pad = p.get("padding", {"top": 0, "left": 0, "bottom": 0, "right": 0})
    g = p.get("groups", 1)
    x = np.pad(x, ((0, 0), (0, 0), (pad["top"], pad["bottom"]), (pad["left"], pad["right"])))
    ho = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    cout = w.shape[0]
    # Group-major views: x [n, g, cin/g, H, W], w [g, cout/g, cin/g, kh, kw].
    xg = x.reshape(n, g, c // g, x.shape[2], x.shape[3])
    wg = w.reshape(g, cout // g, c // g, kh, kw)
    out = np.zeros((n, g, cout // g, ho, wo))
    # One strided slice per kernel tap: fast enough at 256x256 without im2col.
    for ky in range(kh):
        for kx in range(kw):
            ys, xs = ky * dh, kx * dw
            tap = xg[:, :, :, ys : ys + (ho - 1) * sh + 1 : sh, xs : xs + (wo - 1) * sw + 1 : sw]
            out += np.einsum("goi,ngihw->ngohw", wg[:, :, :, ky, kx], tap)
    out = out.reshape(n, cout, ho, wo)
    return out if b is None else out + b[None, :, None, None]


def conv_transpose2d(x, w, b, p):
    """PyTorch's ConvTranspose2d: y[o, iy*s - pad + ky*d] += x[i, iy] * w[i, o, ky]."""
    if p.get("groups", 1) != 1:
        raise NotImplementedError("conv_transpose2d with groups")
    n, c, h, wd = x.shape
    kh, kw = p["kernel"]
    sh, sw = _pair(p, "stride", [1, 1])
    dh, dw = _pair(p, "dilation", [1, 1])
    ph, pw = _pair(p, "padding", [0, 0])
    oph, opw = _pair(p, "output_padding", [0, 0])
    fh = (h - 1) * sh + dh * (kh - 1) + 1 + oph
    fw = (wd - 1) * sw + dw * (kw - 1) + 1 + opw
    full = np.zeros((n, w.shape[1], fh, fw))
    for ky in range(kh):
        for kx in range(kw):
            ys, xs = ky * dh, kx * dw
            full[:, :, ys : ys + (h - 1) * sh + 1 : sh, xs : xs + (wd - 1) * sw + 1 : sw] += np.einsum(
                "io,nihw->nohw", w[:, :, ky, kx], x
            )
    out = full[:, :, ph : fh - ph, pw : fw - pw]
    return out if b is None else out + b[None, :, None, None]


def activation(x, name):
    if name == "none":
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "relu6":
        return np.clip(x, 0, 6)
    if name == "hardswish":
        return x * np.clip(x + 3, 0, 6) / 6
    if name == "hardsigmoid":
        return np.clip(x + 3, 0, 6) / 6
    if name == "sigmoid":
        return 0.5 * (1 + np.tanh(0.5 * x))  # the logistic function, without exp overflowing for large |x|
    raise NotImplementedError(f"activation {name}")


def resize_bilinear(x, size, align_corners):
    """PyTorch's F.interpolate(mode="bilinear") to size (h, w)."""

    def axis(n_in, n_out):
        d = np.arange(n_out, dtype=np.float64)
        if align_corners:
            src = d * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        else:
            src = np.maximum((d + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, ly = axis(x.shape[2], size[0])
    x0, x1, lx = axis(x.shape[3], size[1])
    rows = x[:, :, y0, :] * (1 - ly)[:, None] + x[:, :, y1, :] * ly[:, None]
    return rows[:, :, :, x0] * (1 - lx) + rows[:, :, :, x1] * lx


def run_node(node, env, tensors):
    op, p = node["op"], node.get("params", {})
    xs = [env[name] for name in node["inputs"]]
    wts = node.get("weights", {})
    weight = tensors[wts["weight"]] if "weight" in wts else None
    bias = tensors[wts["bias"]] if "bias" in wts else None
    if "batch_norm" in wts:
        raise NotImplementedError(f"{node['name']}: batch_norm weights")
    if op == "conv2d":
        y = conv2d(xs[0], weight, bias, p)
        if p.get("residual"):
            y = y + xs[1]
        return [activation(y, p.get("activation", "none"))]
    if op == "conv_transpose2d":
        return [activation(conv_transpose2d(xs[0], weight, bias, p), p.get("activation", "none"))]
    if op == "unary":
        return [activation(xs[0], p["activation"])]
    if op == "binary":
        y = xs[0] + xs[1] if p["op"] == "add" else xs[0] * xs[1]
        return [activation(y, p.get("activation", "none"))]
    if op == "adaptive_avg_pool2d":
        if p["output"] != [1, 1]:
            raise NotImplementedError("adaptive_avg_pool2d to other than [1, 1]")
        return [xs[0].mean(axis=(2, 3), keepdims=True)]
    if op == "resize":
        mode, target = p["mode"], p["target"]
        if not isinstance(mode, dict) or "bilinear" not in mode or "size" not in target:
            raise NotImplementedError(f"{node['name']}: resize {mode} {target}")
        return [resize_bilinear(xs[0], target["size"], mode["bilinear"]["align_corners"])]
    raise NotImplementedError(f"{node['name']}: op {op}")


def run(doc, tensors, inputs, keep_all=False):
    """Runs the graph on `inputs` ({name: NCHW array}); returns the graph outputs, or every tensor with keep_all."""
    env = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    pending = list(doc["nodes"])
    while pending:  # nodes may come in any order: run whichever has its inputs ready
        ready = [n for n in pending if all(i in env for i in n["inputs"])]
        if not ready:
            raise ValueError(f"graph is stuck: {[n['name'] for n in pending][:5]} wait for missing inputs")
        for node in ready:
            env.update(zip(node["outputs"], run_node(node, env, tensors)))
            pending.remove(node)
    return env if keep_all else {name: env[name] for name in doc["outputs"]}
