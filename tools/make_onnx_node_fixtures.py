#!/usr/bin/env python3
"""Writes tests/fixtures/onnx/node: the ONNX backend node tests whose ops atrous's importer supports.

Each case is laid out exactly as in the onnx repository's onnx/backend/test/data/node/:

    tests/fixtures/onnx/node/<test_name>/model.onnx
    tests/fixtures/onnx/node/<test_name>/test_data_set_<k>/input_<i>.pb, output_<j>.pb   (onnx.TensorProto)

The cases come from the installed onnx package's onnx/backend/test/data/node/ when it is there. The wheels on the
package index do not ship that folder (only the generators), so otherwise the cases are generated in memory from
onnx.backend.test.case.node (the same generators the onnx repository uses to write its data folder) with numpy's
global random state seeded, and written out the way `backend-test-tools generate-data` writes them.

Kept: a case whose every node (subgraphs included) is in SUPPORTED (default / ai.onnx domain), whose inputs and
outputs are all plain tensors, that is not a function expansion (`_expanded`, `_expanded_ver<N>`) and whose files
total less than --max-bytes (default 200 KB). Also writes cases.tsv, one line per kept case (lines starting with `#`
are comments):

    name <TAB> op types (comma-separated, first-use order) <TAB> inputs <TAB> outputs <TAB> opset

where inputs / outputs are `;`-separated `name:dtype[d0,d1,...]` taken from test_data_set_0 (dtype is the ONNX
element type in lower case with FLOAT -> float32, DOUBLE -> float64; a scalar is `[]`), and opset is the model's
default-domain opset version.

Run from the repository root: python tools/make_onnx_node_fixtures.py [--max-bytes N] [--out DIR]
The output folder is deleted and re-created on every run.
"""

import argparse
import collections
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

OUT = "tests/fixtures/onnx/node"

SUPPORTED = {
    # compute
    "Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid",
    "HardSwish", "Tanh", "Elu", "Softplus", "Gelu", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool",
    "GlobalAveragePool", "ReduceMean", "MaxUnpool", "Resize", "Upsample", "Concat", "Slice", "Pad", "Softmax",
    "ArgMax", "Identity", "Dropout",
    # shape arithmetic
    "Shape", "Gather", "Unsqueeze", "Squeeze", "Cast", "Constant", "ConstantOfShape", "Range", "Reshape",
    "Transpose", "Flatten", "Expand",
}


def is_expanded(name: str) -> bool:
    return name.endswith("_expanded") or "_expanded_ver" in name


def graph_ops(graph: onnx.GraphProto) -> list:
    """(domain, op_type) of every node, subgraphs included, in first-use order."""
    seen = []
    for node in graph.node:
        key = (node.domain, node.op_type)
        if key not in seen:
            seen.append(key)
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for g in subs:
                for k in graph_ops(g):
                    if k not in seen:
                        seen.append(k)
    return seen


def supported(model: onnx.ModelProto) -> bool:
    return all(domain in ("", "ai.onnx") and op in SUPPORTED for domain, op in graph_ops(model.graph))


def all_tensor_io(model: onnx.ModelProto) -> bool:
    return all(v.type.HasField("tensor_type") for v in list(model.graph.input) + list(model.graph.output))


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 0


def dtype_name(elem_type: int) -> str:
    name = TensorProto.DataType.Name(elem_type).lower()
    return {"float": "float32", "double": "float64"}.get(name, name)


def describe(path: str) -> str:
    t = TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return f"{t.name}:{dtype_name(t.data_type)}[{','.join(str(d) for d in t.dims)}]"


def case_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def installed_cases():
    """(name, source folder) of the installed onnx package's node test data, or None if it is not installed."""
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    if not os.path.isdir(root):
        return None
    names = sorted(n for n in os.listdir(root) if n.startswith("test_"))
    return [(n, os.path.join(root, n)) for n in names] or None


def tensor_bytes(value, vi: onnx.ValueInfoProto) -> bytes:
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(np.asarray(value), vi.name).SerializeToString()


def write_generated(case, dest: str) -> None:
    """Writes one onnx.backend.test.case TestCase the way backend-test-tools generate-data does."""
    os.makedirs(dest)
    with open(os.path.join(dest, "model.onnx"), "wb") as f:
        f.write(case.model.SerializeToString())
    graph = case.model.graph
    for k, (inputs, outputs) in enumerate(case.data_sets):
        ds = os.path.join(dest, f"test_data_set_{k}")
        os.makedirs(ds)
        for i, value in enumerate(inputs):
            with open(os.path.join(ds, f"input_{i}.pb"), "wb") as f:
                f.write(tensor_bytes(value, graph.input[i]))
        for j, value in enumerate(outputs):
            with open(os.path.join(ds, f"output_{j}.pb"), "wb") as f:
                f.write(tensor_bytes(value, graph.output[j]))


def generated_cases():
    """TestCase objects from onnx.backend.test.case.node, generated with a seeded numpy global state."""
    import warnings

    import onnx.backend.test.case.node as node_cases

    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases()
    return sorted(cases, key=lambda c: c.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--max-bytes", type=int, default=200_000, help="largest case kept (all its files together)")
    args = ap.parse_args()

    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    tmp = os.path.join(args.out, ".staging")

    installed = installed_cases()
    if installed is not None:
        source = f"installed onnx {onnx.__version__} data folder"
        items = [(name, lambda dest, src=src: shutil.copytree(src, dest), src) for name, src in installed]
    else:
        source = f"generated from onnx {onnx.__version__} onnx.backend.test.case.node (numpy seed 0)"
        items = [(c.name, lambda dest, c=c: write_generated(c, dest), c.model) for c in generated_cases()]

    counts = collections.Counter()
    too_big = []
    kept = []
    op_counts = collections.Counter()
    for name, write, model_src in items:
        counts["total"] += 1
        if is_expanded(name):
            counts["expanded"] += 1
            continue
        model = model_src if isinstance(model_src, onnx.ModelProto) else onnx.load(
            os.path.join(model_src, "model.onnx"), load_external_data=False)
        if not supported(model):
            counts["unsupported op"] += 1
            continue
        if not all_tensor_io(model):
            counts["non-tensor io"] += 1
            continue
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        write(tmp)
        size = case_bytes(tmp)
        if size >= args.max_bytes:
            too_big.append((name, size))
            shutil.rmtree(tmp)
            continue
        dest = os.path.join(args.out, name)
        os.rename(tmp, dest)
        ops = [op for _, op in graph_ops(model.graph)]
        op_counts.update(set(ops))
        ds0 = os.path.join(dest, "test_data_set_0")
        ins = sorted((f for f in os.listdir(ds0) if f.startswith("input_")), key=lambda f: int(f[6:-3]))
        outs = sorted((f for f in os.listdir(ds0) if f.startswith("output_")), key=lambda f: int(f[7:-3]))
        kept.append((name, ",".join(ops), ";".join(describe(os.path.join(ds0, f)) for f in ins),
                     ";".join(describe(os.path.join(ds0, f)) for f in outs), str(default_opset(model)), size))
    if os.path.exists(tmp):
        shutil.rmtree(tmp)

    with open(os.path.join(args.out, "cases.tsv"), "w") as f:
        f.write(f"# ONNX backend node tests with supported ops only ({source}); written by "
                "tools/make_onnx_node_fixtures.py\n")
        f.write("# name\top types\tinputs (name:dtype[shape];...)\toutputs\topset\n")
        for row in kept:
            f.write("\t".join(row[:5]) + "\n")

    total = sum(r[5] for r in kept)
    print(f"source: {source}")
    print(f"{counts['total']} node tests: {counts['expanded']} function expansions skipped, "
          f"{counts['unsupported op']} with unsupported ops, {counts['non-tensor io']} with non-tensor io, "
          f"{len(too_big)} over {args.max_bytes} bytes, {len(kept)} kept ({total / 1e6:.2f} MB) in {args.out}")
    for name, size in too_big:
        print(f"  left out by size: {name} ({size / 1e3:.0f} KB)")
    print("kept cases per op type:")
    for op in sorted(SUPPORTED):
        print(f"  {op:20s} {op_counts.get(op, 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
