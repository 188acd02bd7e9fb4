"""Converts MediaPipe's selfie segmenter (.tflite) into atrous's portable model format (docs/model-format.md).

    python3 tools/convert_mediapipe.py IN.tflite OUT.safetensors [--check]

Reads the flatbuffer with the `tflite` package and maps each op one to one (fusion is the planner's job):
CONV_2D, DEPTHWISE_CONV_2D -> conv2d; RELU, HARD_SWISH, LOGISTIC -> unary; ADD, MUL -> binary; global
AVERAGE_POOL_2D and MEAN over H, W (the landscape model's) -> adaptive_avg_pool2d; RESIZE_BILINEAR (half-pixel centres) -> resize; the custom
Convolution2DTransposeBias -> conv_transpose2d; DEQUANTIZE of fp16 constants -> F16 weights. Anything else, or a
fused activation, is refused by name. Activations are NCHW; TFLite's NHWC weights are transposed to PyTorch's layout.
--check runs the result with tools/atrous_numpy.py and compares it with the TFLite interpreter (ai-edge-litert).
"""
import argparse
import json
import struct
import sys

import numpy as np
import tflite
from safetensors.numpy import save_file

SAME, VALID = tflite.Padding.SAME, tflite.Padding.VALID
OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
UNARY = {"RELU": "relu", "HARD_SWISH": "hardswish", "LOGISTIC": "sigmoid"}
BINARY = {"ADD": ("add", tflite.AddOptions), "MUL": ("mul", tflite.MulOptions)}
DTYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
          tflite.TensorType.INT32: np.int32}
# The preprocessing, labels and colours the MediaPipe graph uses: RGB in [0, 1], one "person" probability.
PREPROCESS = {"mean": [0, 0, 0], "std": [1, 1, 1], "value_range": [0, 1], "channel_order": "rgb"}


def fail(msg):
    sys.exit(f"convert_mediapipe: {msg}")


class Reader:
    """The first subgraph of a .tflite file: tensor shapes, constant values and operators."""

    def __init__(self, path):
        buf = open(path, "rb").read()
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() != 1:
            fail("expected one subgraph")
        self.g = self.model.Subgraphs(0)
        self.consts = {}  # tensor index -> NumPy array (fp16 weights stay fp16)

    def tensor(self, i):
        return self.g.Tensors(i)

    def name(self, i):
        return self.tensor(i).Name().decode()

    def shape(self, i):
        return [int(d) for d in self.tensor(i).ShapeAsNumpy()]

    def const(self, i):
        if i in self.consts:
            return self.consts[i]
        t = self.tensor(i)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or t.Type() not in DTYPES:
            return None  # an activation, not a constant
        arr = np.frombuffer(data.tobytes(), DTYPES[t.Type()]).reshape(self.shape(i))
        self.consts[i] = arr
        return arr

    def ops(self):
        for k in range(self.g.OperatorsLength()):
            op = self.g.Operators(k)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            # Newer files put codes >= 127 in BuiltinCode; older ones only fill DeprecatedBuiltinCode.
            name = OP_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            if name == "CUSTOM":
                name = code.CustomCode().decode()
            yield k, name, op


def options(op, cls):
    table = op.BuiltinOptions()
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def no_fused_activation(name, opts):
    if opts.FusedActivationFunction() != tflite.ActivationFunctionType.NONE:
        fail(f"{name}: fused activation {opts.FusedActivationFunction()} is not supported")


def same_padding(n_in, n_out, k, s, d):
    """TF's SAME: the total padding, with the extra row/column at the bottom/right."""
    total = max((n_out - 1) * s + d * (k - 1) + 1 - n_in, 0)
    return total // 2, total - total // 2


class Converter:
    def __init__(self, reader):
        self.r = reader
        self.nodes, self.weights = [], {}
        inp, out = reader.g.InputsAsNumpy(), reader.g.OutputsAsNumpy()
        if len(inp) != 1 or len(out) != 1:
            fail("expected one input and one output")
        # TFLite tensor names become atrous names, except the graph's input and output.
        self.renamed = {int(inp[0]): "input", int(out[0]): "out"}

    def act(self, i):
        return self.renamed.get(i, self.r.name(i))

    def weight(self, node, key, i, layout):
        """Stores constant tensor `i` (transposed by `layout`) as `node.key`; returns its name."""
        arr = self.r.const(i)
        if arr is None:
            fail(f"{node}: {key} tensor {self.r.name(i)} is not a constant")
        name = f"{node}.{key}"
        self.weights[name] = np.ascontiguousarray(arr.transpose(layout) if layout else arr)
        return name

    def add(self, op, name, inputs, outputs, params, weights=None):
        node = {"name": name, "op": op, "inputs": [self.act(i) for i in inputs],
                "outputs": [self.act(i) for i in outputs], "params": params}
        if weights:
            node["weights"] = weights
        self.nodes.append(node)

    def conv2d(self, name, op, depthwise):
        x, w, b = (int(i) for i in op.InputsAsNumpy())
        y = int(op.OutputsAsNumpy()[0])
        opts = options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
        no_fused_activation(name, opts)
        _, h, wd, cin = self.r.shape(x)
        _, ho, wo, cout = self.r.shape(y)
        _, kh, kw, _ = self.r.shape(w)
        s = [opts.StrideH(), opts.StrideW()]
        d = [opts.DilationHFactor(), opts.DilationWFactor()]
        if depthwise and opts.DepthMultiplier() != 1:
            fail(f"{name}: depth multiplier {opts.DepthMultiplier()}")
        if opts.Padding() == SAME:
            top, bottom = same_padding(h, ho, kh, s[0], d[0])
            left, right = same_padding(wd, wo, kw, s[1], d[1])
        elif opts.Padding() == VALID:
            top = bottom = left = right = 0
        else:
            fail(f"{name}: padding {opts.Padding()}")
        params = {"in_channels": cin, "out_channels": cout, "kernel": [kh, kw], "stride": s, "dilation": d,
                  "padding": {"top": top, "left": left, "bottom": bottom, "right": right},
                  "groups": cin if depthwise else 1}
        # CONV_2D weights are [out, kh, kw, in]; DEPTHWISE_CONV_2D's are [1, kh, kw, C]: both go to [out, in/g, kh, kw].
        weights = {"weight": self.weight(name, "weight", w, (3, 0, 1, 2) if depthwise else (0, 3, 1, 2)),
                   "bias": self.weight(name, "bias", b, None)}
        self.add("conv2d", name, [x], [y], params, weights)

    def transpose_conv(self, name, op):
        """MediaPipe's Convolution2DTransposeBias: a transposed convolution plus bias."""
        x, w, b = (int(i) for i in op.InputsAsNumpy())
        y = int(op.OutputsAsNumpy()[0])
        raw = op.CustomOptionsAsNumpy().tobytes()
        padding, stride_w, stride_h = struct.unpack("<3i", raw[:12])  # TfLitePadding: 1 SAME, 2 VALID
        _, h, wd, cin = self.r.shape(x)
        _, ho, wo, cout = self.r.shape(y)
        _, kh, kw, _ = self.r.shape(w)
        # PyTorch's output is (in - 1) * s + k - 2 * pad; SAME asks for in * s, VALID for (in - 1) * s + k.
        pads = []
        for n_in, n_out, k, s in ((h, ho, kh, stride_h), (wd, wo, kw, stride_w)):
            full = (n_in - 1) * s + k
            want = n_in * s if padding == 1 else full if padding == 2 else fail(f"{name}: padding {padding}")
            if want != n_out or (full - n_out) % 2:
                fail(f"{name}: output {n_out} from input {n_in} (kernel {k}, stride {s}) needs asymmetric cropping")
            pads.append((full - n_out) // 2)
        params = {"in_channels": cin, "out_channels": cout, "kernel": [kh, kw], "stride": [stride_h, stride_w],
                  "padding": pads}
        # TFLite's kernel is [out, kh, kw, in]; PyTorch's ConvTranspose2d wants [in, out, kh, kw].
        weights = {"weight": self.weight(name, "weight", w, (3, 0, 1, 2)), "bias": self.weight(name, "bias", b, None)}
        self.add("conv_transpose2d", name, [x], [y], params, weights)

    def avg_pool(self, name, op):
        x, y = int(op.InputsAsNumpy()[0]), int(op.OutputsAsNumpy()[0])
        opts = options(op, tflite.Pool2DOptions)
        no_fused_activation(name, opts)
        _, h, wd, _ = self.r.shape(x)
        k, s = [opts.FilterHeight(), opts.FilterWidth()], [opts.StrideH(), opts.StrideW()]
        if opts.Padding() != VALID:
            fail(f"{name}: AVERAGE_POOL_2D with SAME padding (TF excludes the padding from the count)")
        if k == [h, wd]:  # the window is the whole map: a global pool whatever the stride
            self.add("adaptive_avg_pool2d", name, [x], [y], {"output": [1, 1]})
        else:
            self.add("avg_pool2d", name, [x], [y], {"kernel": k, "stride": s, "padding": [0, 0],
                                                      "ceil_mode": False, "count_include_pad": True})

    def mean(self, name, op):
        """The landscape model's global pool: MEAN over H and W keeping the dimensions."""
        x, axes = (int(i) for i in op.InputsAsNumpy())
        y = int(op.OutputsAsNumpy()[0])
        ax = self.r.const(axes)
        if ax is None or sorted(int(a) for a in ax) != [1, 2] or not options(op, tflite.ReducerOptions).KeepDims():
            fail(f"{name}: MEAN over axes {ax} is not a global pool over H and W keeping dims")
        self.add("adaptive_avg_pool2d", name, [x], [y], {"output": [1, 1]})

    def resize(self, name, op):
        x, size = (int(i) for i in op.InputsAsNumpy())
        y = int(op.OutputsAsNumpy()[0])
        opts = options(op, tflite.ResizeBilinearOptions)
        # half_pixel_centers is PyTorch's align_corners=False; TF's legacy mode (both false) has no atrous equivalent.
        if opts.AlignCorners() or not opts.HalfPixelCenters():
            fail(f"{name}: RESIZE_BILINEAR with align_corners={opts.AlignCorners()} "
                 f"half_pixel_centers={opts.HalfPixelCenters()}; only half-pixel centres are supported")
        target = [int(v) for v in self.r.const(size)]
        self.add("resize", name, [x], [y], {"mode": {"bilinear": {"align_corners": False}}, "target": {"size": target}})

    def convert(self):
        for k, kind, op in self.r.ops():
            outs = [int(i) for i in op.OutputsAsNumpy()]
            ins = [int(i) for i in op.InputsAsNumpy()]
            name = self.r.name(outs[0])
            if kind == "DEQUANTIZE":
                src = self.r.const(ins[0])
                if src is None or src.dtype != np.float16:
                    fail(f"op {k}: DEQUANTIZE of {self.r.name(ins[0])} is not an fp16 constant")
                self.r.consts[outs[0]] = src  # kept in fp16: the weight tensors are stored as F16
            elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                # Name weight-carrying nodes after their kernel ("conv2d_3/Kernel_dequantize" -> "conv2d_3").
                self.conv2d(self.r.name(ins[1]).split("/")[0], op, kind == "DEPTHWISE_CONV_2D")
            elif kind == "Convolution2DTransposeBias":
                self.transpose_conv(self.r.name(ins[1]).split("/")[0], op)
            elif kind in UNARY:
                self.add("unary", name, ins, outs, {"activation": UNARY[kind]})
            elif kind in BINARY:
                binop, cls = BINARY[kind]
                no_fused_activation(name, options(op, cls))
                self.add("binary", name, ins, outs, {"op": binop})
            elif kind == "AVERAGE_POOL_2D":
                self.avg_pool(name, op)
            elif kind == "MEAN":
                self.mean(name, op)
            elif kind == "RESIZE_BILINEAR":
                self.resize(name, op)
            else:
                fail(f"op {k} ({name}): {kind} is not supported")
        return self.nodes, self.weights


def convert(tflite_path):
    """Returns (document, weights) for the model at `tflite_path`."""
    r = Reader(tflite_path)
    nodes, weights = Converter(r).convert()
    _, h, w, c = r.shape(int(r.g.InputsAsNumpy()[0]))
    if c != 3 or r.shape(int(r.g.OutputsAsNumpy()[0]))[3] != 1:
        fail("expected an RGB input and a one-channel output")
    if nodes[-1]["outputs"] != ["out"] or nodes[-1]["params"].get("activation") != "sigmoid":
        fail("expected the graph to end with the sigmoid producing the output")
    landscape = (h, w) != (256, 256)
    doc = {
        "format_version": 1,
        "inputs": [{"name": "input", "channels": 3}],
        "nodes": nodes,
        "outputs": ["out"],
        "architecture": "mediapipe_selfie_segmenter" + ("_landscape" if landscape else ""),
        "preprocess": {**PREPROCESS, "input_size": {"policy": "fixed", "height": h, "width": w}},
        # One channel: the probability of "person"; background is 1 - p.
        "labels": ["background", "person"],
        "palette": [[0, 0, 0], [255, 64, 160]],
    }
    return doc, weights


def tflite_run(tflite_path, x_nhwc):
    """The reference: ai-edge-litert's interpreter on one NHWC input; returns the NHWC output."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=tflite_path)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x_nhwc.astype(np.float32))
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def check(tflite_path, out_path):
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import atrous_numpy
    from make_mediapipe_fixtures import model_input

    doc, tensors = atrous_numpy.load(out_path)
    h, w = doc["preprocess"]["input_size"]["height"], doc["preprocess"]["input_size"]["width"]
    # A photo with a person, not noise: random inputs saturate the sigmoid and would hide errors.
    x = model_input(h, w)
    ours = atrous_numpy.run(doc, tensors, {"input": x})["out"]
    ref = tflite_run(tflite_path, x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    err = np.abs(ours - ref).max()
    agree = ((ours > 0.5) == (ref > 0.5)).mean()
    print(f"check on the astronaut photo: max |numpy - tflite| = {err:.3g}, mask agreement {agree:.6f}")
    return err


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--check", action="store_true", help="compare with the TFLite interpreter")
    args = ap.parse_args()
    doc, weights = convert(args.input)
    save_file(weights, args.output, metadata={"atrous": json.dumps(doc, separators=(",", ":"))})
    print(f"{args.output}: {len(doc['nodes'])} nodes, {len(weights)} tensors")
    if args.check and check(args.input, args.output) > 1e-4:
        sys.exit("convert_mediapipe: the converted model does not match TFLite")


if __name__ == "__main__":
    main()
