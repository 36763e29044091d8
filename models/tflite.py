"""TFLite flatbuffer graphs run as PyTorch modules: MediaPipe's BlazePose networks without a TFLite runtime.

Why: MediaPipe ships its BlazePose person detector and landmark network only as ``.tflite`` files. Running them in
PyTorch lets the pipeline batch crops (any batch size, where the file says 1), use a GPU, bf16/fp16, and one
framework on every node. LiteRT (``ai_edge_litert``) is used only by the tests, as the reference.

What: :meth:`TFLiteModule.from_file` reads the flatbuffer with the ``tflite`` package (classes generated from
TensorFlow's ``tensorflow/lite/schema/schema.fbs``), folds the constant-weight ops (``DEQUANTIZE`` of fp16/int8
buffers, ``DENSIFY`` of sparse buffers, schema ``SparsityParameters``) into fp32 tensors, and builds one small
``nn.Module`` per remaining operator. Every op kind the graph uses must be in :data:`SUPPORTED_OPS`, else loading
fails with :class:`TFLiteError` naming the op kinds and the file. :meth:`TFLiteModule.save` writes the folded graph
(plain data and tensors only) with ``torch.save``; :meth:`TFLiteModule.load` reads it with
``torch.load(weights_only=True)`` and needs no ``tflite`` package.

Layout convention. The module's interface is LiteRT's: inputs and outputs shaped as the graph says (NHWC images,
flat vectors), except that the batch axis (axis 0) may have any size N. Inside, rank-4 activations are NCHW tensors
(PyTorch's convention for ``F.conv2d``) stored in channels-last memory, so that the NHWC input, the NHWC view a
``RESHAPE`` needs and the NHWC outputs are all permutations without copies, and oneDNN/cuDNN run NHWC kernels. The
graph's NHWC axis arguments (``PAD`` paddings, ``CONCATENATION`` axis) are remapped to NCHW. Which layout each
tensor has is decided once, at construction.

Semantics follow TFLite's reference kernels:

* ``SAME`` padding: ``out = ceil(in / stride)``, total padding ``max((out − 1)·stride + (k − 1)·dilation + 1 − in,
  0)``, of which ``total // 2`` goes before (top/left) and the rest after (bottom/right); ``VALID``: none.
  ``MAX_POOL_2D`` ignores padded cells (they are −inf here).
* ``RESIZE_BILINEAR``: ``align_corners`` scales by ``(in − 1)/(out − 1)``; ``half_pixel_centers`` samples at
  ``(dst + 0.5)·in/out − 0.5`` clamped at 0; with neither flag (TF1's legacy mode) at ``dst·in/out``; the upper
  neighbour is clamped at ``in − 1``.
* ``DEPTH_TO_SPACE`` (NHWC): ``out[n, h·b + i, w·b + j, c] = in[n, h, w, (i·b + j)·C_out + c]``.
* Fused activations ``NONE``, ``RELU``, ``RELU_N1_TO_1``, ``RELU6`` are applied after the op. A fused ``TANH`` or
  ``SIGN_BIT`` is refused at load: LiteRT's kernels for these ops silently ignore it (its activation range covers
  the four above only), so no answer would be both LiteRT's and the file's; TFLite's converter never emits one.
* ``RESHAPE`` keeps the graph's output shape with axis 0 replaced by N (refused for N ≠ 1 when the graph's reshape
  does not keep axis 0).

Dtypes: the module's weights are fp32 after loading; ``.to(torch.float16)`` / ``.to(torch.bfloat16)`` work, and
inputs are cast to the module's dtype and device. Outputs have the module's dtype (bf16 landmarks in [128, 256) px
are rounded to whole pixels). fp16 on CPU works but is slow (PyTorch has no fast CPU fp16 convolution).

Speed on CPU (one core of this project's 2-core AMD EPYC VM, ``pose_landmark_full``, fp32): a 1×1 stride-1
convolution runs as one ``F.linear`` over the NHWC view; a ``PAD`` that only feeds convolutions is folded into their
padding; batches above ``cpu_micro_batch`` (4) run in slices. About 23 ms a crop at batch 1 or 16 (LiteRT with
XNNPACK: 14 ms), 16 and 14 ms with two threads (LiteRT: 7.5 ms).

The models this was written for are MediaPipe's BlazePose (V. Bazarevsky, I. Grishchenko, K. Raveendran, T. Zhu,
F. Zhang, M. Grundmann, "BlazePose: On-device Real-time Body Pose tracking", CVPR 2020 Workshop on Computer Vision for
Augmented and Virtual Reality, arXiv:2006.10204; MediaPipe's model card for BlazePose, "BlazePose GHUM 3D";
Apache-2.0):
``pose_detection.tflite`` (input 1×224×224×3 RGB in [−1, 1]; outputs 1×2254×12 box/keypoint regressors and
1×2254×1 score logits) and ``pose_landmark_full.tflite`` (input 1×256×256×3 RGB in [0, 1]; outputs ``Identity``
1×195 = 39 × (x, y, z, visibility logit, presence logit) in input pixels, ``Identity_1`` 1×1 pose flag,
``Identity_2`` 1×256×256×1 segmentation, ``Identity_3`` 1×64×64×39 heatmaps, ``Identity_4`` 1×117 world points).

Example::

    >>> net = TFLiteModule.from_file("weights/mediapipe/pose_landmark_full.tflite")  # doctest: +SKIP
    >>> landmarks, flag, mask, heatmap, world = net(torch.rand(8, 256, 256, 3))      # doctest: +SKIP
    >>> landmarks.shape, heatmap.shape                                               # doctest: +SKIP
    (torch.Size([8, 195]), torch.Size([8, 64, 64, 39]))
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TFLiteError",
    "SUPPORTED_OPS",
    "FORMAT",
    "TFLiteModule",
    "read_tflite_graph",
    # one module per operator kind
    "Add",
    "Concatenation",
    "Conv2d",
    "DepthToSpace",
    "Logistic",
    "MaxPool2d",
    "Pad",
    "Reshape",
    "ResizeBilinear",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Name and version of the converted-graph file written by :meth:`TFLiteModule.save`.
FORMAT = "raypose.tflite-graph/1"

#: Operators that may remain in the graph after constant folding.
SUPPORTED_OPS = frozenset(
    {
        "ADD",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEPTH_TO_SPACE",
        "LOGISTIC",
        "MAX_POOL_2D",
        "PAD",
        "RESHAPE",
        "RESIZE_BILINEAR",
    }
)
#: Operators folded at load time; supported only when their input is a constant buffer.
_FOLDED_OPS = frozenset({"DEQUANTIZE", "DENSIFY"})

_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")  # schema ActivationFunctionType 0..5
# LiteRT's kernels for the supported ops clamp to CalculateActivationRange(), which knows only these; a fused TANH or
# SIGN_BIT is silently ignored there (checked with ai-edge-litert 2.3.0, reference and XNNPACK paths). The converter
# never emits them, so a file that has one is refused instead of being run one way or the other.
_FUSED_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")
_PADDINGS = ("SAME", "VALID")  # schema Padding 0..1

# schema TensorType → numpy dtype (little-endian, as flatbuffers store them).
_NUMPY_TYPES = {
    0: np.dtype("<f4"),  # FLOAT32
    1: np.dtype("<f2"),  # FLOAT16
    2: np.dtype("<i4"),  # INT32
    3: np.dtype("u1"),  # UINT8
    4: np.dtype("<i8"),  # INT64
    6: np.dtype("?"),  # BOOL
    7: np.dtype("<i2"),  # INT16
    9: np.dtype("i1"),  # INT8
    10: np.dtype("<f8"),  # FLOAT64
}
_FLOAT_TYPES = (0, 1, 10)


class TFLiteError(ValueError):
    """A ``.tflite`` file (or converted graph) this module cannot run; the message names the file and the cause."""


# ----------------------------------------------------------------------------------------------------------------
# Reading the flatbuffer (needs the ``tflite`` package; nothing else in this module does)
# ----------------------------------------------------------------------------------------------------------------


def _read_bytes(path: PathLike) -> bytes:
    """Bytes of a local path, or of an fsspec URI (``s3://…``) when ``fsspec`` is installed."""
    path = os.fspath(path)
    if "://" in path:
        import fsspec

        with fsspec.open(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def _densify(values: np.ndarray, sparsity: Any, shape: list[int]) -> np.ndarray:
    """Dense array from a sparse constant (schema ``SparsityParameters``), following TFLite's format converter.

    ``dim_metadata[level]`` describes the ``level``-th dimension in ``traversal_order``; levels past the tensor's
    rank are block dimensions (``block_map`` names the original dimension each one blocks). DENSE levels enumerate
    ``dense_size`` indices; SPARSE_CSR levels enumerate ``array_indices[array_segments[p]:array_segments[p + 1]]``
    for the parent position ``p``. ``values`` hold the non-zeros in that depth-first order.
    """
    rank = len(shape)
    order = [int(v) for v in sparsity.TraversalOrderAsNumpy()] if sparsity.TraversalOrderLength() else list(range(rank))
    block_map = [int(v) for v in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    levels = sparsity.DimMetadataLength()
    if levels != len(order) or levels != rank + len(block_map):
        raise TFLiteError(f"inconsistent sparsity parameters: {levels} levels, traversal order {order}")

    def index_vector(kind: int, table: Any) -> np.ndarray:
        import tflite

        classes = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}
        if kind not in classes or table is None:
            raise TFLiteError(f"unsupported sparse index vector type {kind}")
        vec = classes[kind]()
        vec.Init(table.Bytes, table.Pos)
        return np.asarray(vec.ValuesAsNumpy(), dtype=np.int64) if vec.ValuesLength() else np.zeros(0, np.int64)

    positions = np.zeros(1, dtype=np.int64)  # parent position of every partial path, in traversal order
    coords: list[np.ndarray] = []
    for level in range(levels):
        meta = sparsity.DimMetadata(level)
        if meta.Format() == 0:  # DENSE
            n = int(meta.DenseSize())
            coords = [np.repeat(c, n) for c in coords]
            coords.append(np.tile(np.arange(n, dtype=np.int64), len(positions)))
            positions = (positions[:, None] * n + np.arange(n, dtype=np.int64)[None, :]).reshape(-1)
        else:  # SPARSE_CSR
            segments = index_vector(meta.ArraySegmentsType(), meta.ArraySegments())
            indices = index_vector(meta.ArrayIndicesType(), meta.ArrayIndices())
            starts, stops = segments[positions], segments[positions + 1]
            counts = stops - starts
            new_positions = (
                np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in zip(starts, stops)])
                if len(positions)
                else np.zeros(0, np.int64)
            )
            coords = [np.repeat(c, counts) for c in coords]
            coords.append(indices[new_positions])
            positions = new_positions
    if len(positions) != values.size:
        raise TFLiteError(f"sparse constant holds {values.size} values but its index describes {len(positions)}")

    block_size = []
    for b in range(len(block_map)):
        level = order.index(rank + b)
        block_size.append(int(sparsity.DimMetadata(level).DenseSize()))
    original = [None] * rank
    for level in range(rank):
        original[order[level]] = coords[level]
    for level in range(rank, levels):
        b = order[level] - rank
        dim = block_map[b]
        original[dim] = original[dim] * block_size[b] + coords[level]
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(original)] = values.reshape(-1)
    return dense


def _options(op: Any, cls: Any) -> Any:
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _activation(code: int) -> str:
    name = _ACTIVATIONS[code] if 0 <= code < len(_ACTIVATIONS) else str(code)
    if name not in _FUSED_ACTIVATIONS:
        raise TFLiteError(
            f"fused activation {name} is not supported (LiteRT's kernels ignore it; supported: "
            f"{', '.join(_FUSED_ACTIVATIONS)})"
        )
    return name


def _op_options(name: str, op: Any) -> dict:
    """Plain-data options of one operator (schema ``BuiltinOptions`` tables, enums as their names)."""
    import tflite

    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = _options(op, tflite.Conv2DOptions if name == "CONV_2D" else tflite.DepthwiseConv2DOptions)
        if o is None:
            raise TFLiteError(f"{name} without options")
        return {
            "padding": _PADDINGS[o.Padding()],
            "stride": [int(o.StrideH()), int(o.StrideW())],
            "dilation": [int(o.DilationHFactor()), int(o.DilationWFactor())],
            "activation": _activation(o.FusedActivationFunction()),
        }
    if name == "MAX_POOL_2D":
        o = _options(op, tflite.Pool2DOptions)
        if o is None:
            raise TFLiteError(f"{name} without options")
        return {
            "padding": _PADDINGS[o.Padding()],
            "stride": [int(o.StrideH()), int(o.StrideW())],
            "kernel": [int(o.FilterHeight()), int(o.FilterWidth())],
            "activation": _activation(o.FusedActivationFunction()),
        }
    if name == "ADD":
        o = _options(op, tflite.AddOptions)
        return {"activation": "NONE" if o is None else _activation(o.FusedActivationFunction())}
    if name == "CONCATENATION":
        o = _options(op, tflite.ConcatenationOptions)
        if o is None:
            raise TFLiteError(f"{name} without options")
        return {"axis": int(o.Axis()), "activation": _activation(o.FusedActivationFunction())}
    if name == "RESIZE_BILINEAR":
        o = _options(op, tflite.ResizeBilinearOptions)
        align, half = (False, False) if o is None else (bool(o.AlignCorners()), bool(o.HalfPixelCenters()))
        return {"align_corners": align, "half_pixel_centers": half}
    if name == "DEPTH_TO_SPACE":
        o = _options(op, tflite.DepthToSpaceOptions)
        if o is None:
            raise TFLiteError(f"{name} without options")
        return {"block_size": int(o.BlockSize())}
    return {}


def read_tflite_graph(data: bytes, *, source: str = "<bytes>") -> dict:
    """Parse a ``.tflite`` flatbuffer into the plain graph description :class:`TFLiteModule` is built from.

    Args:
        data: the file's bytes.
        source: the file's name, for error messages.

    Returns:
        ``dict`` with ``format`` (:data:`FORMAT`), ``source_name``, ``source_sha256`` (hex of ``data``),
        ``inputs``/``outputs`` (lists of ``{"name": str, "tensor": int, "shape": list[int]}`` in graph order),
        ``ops`` (list of ``{"op": str, "inputs": list[int], "outputs": list[int], "options": dict}`` in execution
        order, tensor id −1 for an omitted optional input), ``shapes`` (``{tensor id: list[int]}`` of every
        activation) and ``constants`` (``{tensor id: torch.Tensor}``: fp32 for float buffers, after folding
        ``DEQUANTIZE``/``DENSIFY``; int64 for integer buffers).

    Raises:
        TFLiteError: not a TFLite flatbuffer; an operator outside :data:`SUPPORTED_OPS` (all such op kinds are
            named); a quantized or non-float activation; a folded op applied to a non-constant tensor.
    """
    try:
        import tflite
        from tflite.BuiltinOperator import BuiltinOperator
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise ImportError("reading .tflite files needs the `tflite` package (pip install tflite==2.18.0)") from exc

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TFLiteError(f"{source}: not a TFLite flatbuffer (file identifier {data[4:8]!r}, expected b'TFL3')")
    op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    model = tflite.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise TFLiteError(f"{source}: no subgraph")
    graph = model.Subgraphs(0)

    def op_name(op: Any) -> str:
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))  # schema: the larger one holds
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM({(code.CustomCode() or b'').decode(errors='replace')})"
        return name

    def shape_of(t: int) -> list[int]:
        tensor = graph.Tensors(t)
        return [int(v) for v in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []

    def raw_buffer(t: int) -> np.ndarray | None:
        tensor = graph.Tensors(t)
        buffer = model.Buffers(tensor.Buffer())
        if buffer is None:
            return None
        if buffer.Offset() > 1:  # large models keep buffers after the flatbuffer (schema Buffer.offset/size)
            raw = data[buffer.Offset() : buffer.Offset() + buffer.Size()]
        elif buffer.DataLength():
            raw = buffer.DataAsNumpy().tobytes()
        else:
            return None
        kind = tensor.Type()
        if kind not in _NUMPY_TYPES:
            raise TFLiteError(f"{source}: constant tensor {tensor.Name().decode()!r} has unsupported type {kind}")
        values = np.frombuffer(raw, dtype=_NUMPY_TYPES[kind])
        if tensor.Sparsity() is None:
            return values.reshape(shape_of(t))
        return values  # still sparse: only DENSIFY may read it

    # Unsupported ops first, all of them at once.
    names = [op_name(graph.Operators(i)) for i in range(graph.OperatorsLength())]
    unknown = sorted(set(names) - SUPPORTED_OPS - _FOLDED_OPS)
    if unknown:
        raise TFLiteError(
            f"{source}: unsupported TFLite op(s) {', '.join(unknown)} "
            f"(supported: {', '.join(sorted(SUPPORTED_OPS | _FOLDED_OPS))})"
        )

    constants: dict[int, np.ndarray] = {}
    for t in range(graph.TensorsLength()):
        if graph.Tensors(t).Sparsity() is None:
            values = raw_buffer(t)
            if values is not None:
                constants[t] = values

    ops: list[dict] = []
    shapes: dict[int, list[int]] = {}
    for i, name in enumerate(names):
        op = graph.Operators(i)
        inputs = [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else []
        outputs = [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else []
        if name in _FOLDED_OPS:
            src, dst = inputs[0], outputs[0]
            tensor = graph.Tensors(src)
            if name == "DENSIFY":
                values = raw_buffer(src)
                if values is None or tensor.Sparsity() is None:
                    raise TFLiteError(f"{source}: DENSIFY of a non-constant or non-sparse tensor (op {i})")
                constants[dst] = _densify(values, tensor.Sparsity(), shape_of(src))
            else:  # DEQUANTIZE
                if src not in constants:
                    raise TFLiteError(f"{source}: DEQUANTIZE of an activation (op {i}): quantized graphs unsupported")
                constants[dst] = _dequantize(constants[src], tensor, source=source)
            continue
        for t in outputs:
            if graph.Tensors(t).Type() not in _FLOAT_TYPES:
                raise TFLiteError(f"{source}: op {i} ({name}) outputs a non-float tensor: quantized graphs unsupported")
        for t in inputs + outputs:
            if t >= 0 and t not in constants:
                shapes[t] = shape_of(t)
        try:
            options = _op_options(name, op)
        except TFLiteError as exc:
            raise TFLiteError(f"{source}: op {i} ({name}): {exc}") from None
        ops.append({"op": name, "inputs": inputs, "outputs": outputs, "options": options})

    def endpoints(ids: Any) -> list[dict]:
        out = []
        for t in ids:
            t = int(t)
            shapes.setdefault(t, shape_of(t))
            out.append({"name": graph.Tensors(t).Name().decode(), "tensor": t, "shape": shape_of(t)})
        return out

    inputs = endpoints(graph.InputsAsNumpy() if graph.InputsLength() else [])
    outputs = endpoints(graph.OutputsAsNumpy() if graph.OutputsLength() else [])
    for e in inputs:
        if graph.Tensors(e["tensor"]).Type() not in _FLOAT_TYPES:
            raise TFLiteError(f"{source}: input {e['name']!r} is not a float tensor: quantized graphs unsupported")
        if not e["shape"]:
            raise TFLiteError(f"{source}: input {e['name']!r} is a scalar (axis 0 must be the batch axis)")
    used = {t for op in ops for t in op["inputs"]} | {o["tensor"] for o in outputs}
    tensors = {}
    for t, values in constants.items():
        if t not in used:
            continue
        if values.dtype.kind == "f":
            tensors[t] = torch.from_numpy(np.array(values, dtype=np.float32, copy=True))
        else:
            tensors[t] = torch.from_numpy(np.array(values, dtype=np.int64, copy=True))
    return {
        "format": FORMAT,
        "source_name": os.path.basename(source),
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "inputs": inputs,
        "outputs": outputs,
        "ops": ops,
        "shapes": shapes,
        "constants": tensors,
    }


def _dequantize(values: np.ndarray, tensor: Any, *, source: str) -> np.ndarray:
    """fp32 values of a constant: fp16 widened; int8/uint8/int16 as ``(q − zero_point)·scale`` (per axis or not)."""
    if values.dtype.kind == "f":
        return values.astype(np.float32)
    quant = tensor.Quantization()
    if quant is None or quant.ScaleLength() == 0:
        raise TFLiteError(f"{source}: DEQUANTIZE of {tensor.Name().decode()!r} without quantization parameters")
    scale = quant.ScaleAsNumpy().astype(np.float32)
    zero = quant.ZeroPointAsNumpy().astype(np.float32) if quant.ZeroPointLength() else np.zeros_like(scale)
    if scale.size > 1:
        shape = [1] * values.ndim
        shape[int(quant.QuantizedDimension())] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Operators as modules (NCHW where they work on images)
# ----------------------------------------------------------------------------------------------------------------


def _activate_(x: torch.Tensor, activation: str) -> torch.Tensor:
    """A fused activation applied in place (``x`` is always an op's fresh output)."""
    if activation == "NONE":
        return x
    if activation == "RELU":
        return x.clamp_(min=0.0)
    if activation == "RELU6":
        return x.clamp_(0.0, 6.0)
    if activation == "RELU_N1_TO_1":
        return x.clamp_(-1.0, 1.0)
    raise TFLiteError(f"unsupported fused activation {activation!r}")


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite ``SAME`` padding of one spatial axis: ``(before, after)``, the odd pixel after."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2d(nn.Module):
    """``CONV_2D`` / ``DEPTHWISE_CONV_2D`` on NCHW input with TFLite padding and a fused activation.

    The weight is kept channels-last, like the activations. A 1×1, stride-1, ungrouped convolution of a
    channels-last input runs as one matrix product over the NHWC view (``F.linear``), which on CPU is 1.5–2× faster
    than PyTorch's convolution for these shapes.

    Args:
        weight: ``Tensor[C_out, C_in / groups, KH, KW]`` (PyTorch layout; converted from TFLite's OHWI or
            ``[1, KH, KW, C_out]`` by the caller).
        bias: ``Tensor[C_out]`` or ``None``.
        stride, dilation: ``(h, w)``.
        padding: ``"SAME"`` or ``"VALID"``.
        groups: ``C_in`` for depthwise, else ``C_in / weight.shape[1]``.
        activation: fused activation name.
        pre_pad: zeros ``(top, bottom, left, right)`` of a preceding ``PAD`` folded into this op (applied before
            ``SAME`` padding is computed, as in the graph); ``(0, 0, 0, 0)`` for none.
    """

    def __init__(
        self,
        *,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, int],
        dilation: tuple[int, int],
        padding: str,
        groups: int,
        activation: str,
        pre_pad: tuple[int, int, int, int] = (0, 0, 0, 0),
    ) -> None:
        super().__init__()
        # Copies: the graph description keeps its own constants for save().
        self.register_buffer("weight", weight.clone().contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", None if bias is None else bias.clone())
        self.stride = tuple(stride)
        self.dilation = tuple(dilation)
        self.padding = padding
        self.groups = groups
        self.activation = activation
        self.pre_pad = tuple(int(p) for p in pre_pad)
        self.pointwise = (
            groups == 1 and tuple(weight.shape[2:]) == (1, 1) and tuple(stride) == (1, 1) and not any(self.pre_pad)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, C_in, H, W]`` → ``Tensor[N, C_out, H', W']``, same dtype."""
        if self.pointwise and x.is_contiguous(memory_format=torch.channels_last):
            y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)  # NHWC view, no copy
            return _activate_(y.permute(0, 3, 1, 2), self.activation)
        top, bottom, left, right = self.pre_pad
        if self.padding == "SAME":
            kh, kw = self.weight.shape[2], self.weight.shape[3]
            extra_top, extra_bottom = _same_padding(x.shape[2] + top + bottom, kh, self.stride[0], self.dilation[0])
            extra_left, extra_right = _same_padding(x.shape[3] + left + right, kw, self.stride[1], self.dilation[1])
            top, bottom = top + extra_top, bottom + extra_bottom
            left, right = left + extra_left, right + extra_right
        pad: tuple[int, int] = (top, left)
        if top != bottom or left != right:  # F.conv2d pads symmetrically only
            x = F.pad(x, (left, right, top, bottom))
            pad = (0, 0)
        if x.dtype == torch.float16 and x.device.type == "cpu":
            # PyTorch's CPU fp16 convolution is ~6x slower on channels-last tensors (measured with torch 2.14.1).
            y = F.conv2d(
                x.contiguous(), self.weight.contiguous(), self.bias, self.stride, pad, self.dilation, self.groups
            )
            return _activate_(y.contiguous(memory_format=torch.channels_last), self.activation)
        y = F.conv2d(x, self.weight, self.bias, self.stride, pad, self.dilation, self.groups)
        return _activate_(y, self.activation)


class MaxPool2d(nn.Module):
    """``MAX_POOL_2D`` on NCHW input; ``SAME`` padding cells never win (padded with −inf)."""

    def __init__(self, *, kernel: tuple[int, int], stride: tuple[int, int], padding: str, activation: str) -> None:
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.padding = padding
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, C, H, W]`` → ``Tensor[N, C, H', W']``."""
        if self.padding == "SAME":
            top, bottom = _same_padding(x.shape[2], self.kernel[0], self.stride[0], 1)
            left, right = _same_padding(x.shape[3], self.kernel[1], self.stride[1], 1)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return _activate_(F.max_pool2d(x, self.kernel, self.stride), self.activation)


class ResizeBilinear(nn.Module):
    """``RESIZE_BILINEAR`` on NCHW input, TFLite's sampling grid for each ``align_corners``/``half_pixel_centers``.

    ``align_corners`` and ``half_pixel_centers`` map to ``F.interpolate`` (same grid, same clamping); the legacy
    grid (neither flag: source ``dst·in/out``, upper neighbour ``min(ceil(src), in − 1)``) is computed by gathers.
    """

    def __init__(self, *, size: tuple[int, int], align_corners: bool, half_pixel_centers: bool) -> None:
        super().__init__()
        if align_corners and half_pixel_centers:
            raise TFLiteError("RESIZE_BILINEAR with both align_corners and half_pixel_centers")
        self.size = tuple(int(s) for s in size)
        self.align_corners = align_corners
        self.half_pixel_centers = half_pixel_centers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, C, H, W]`` → ``Tensor[N, C, size[0], size[1]]``."""
        if self.align_corners or self.half_pixel_centers:
            return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align_corners)
        for axis, (n_in, n_out) in ((2, (x.shape[2], self.size[0])), (3, (x.shape[3], self.size[1]))):
            src = torch.arange(n_out, device=x.device, dtype=torch.float32) * (float(n_in) / float(n_out))
            lo = src.floor()
            hi = src.ceil().clamp(max=n_in - 1)
            frac = (src - lo).to(x.dtype)
            shape = [1, 1, 1, 1]
            shape[axis] = n_out
            a = x.index_select(axis, lo.long())
            b = x.index_select(axis, hi.long())
            x = a + (b - a) * frac.view(shape)
        return x


class DepthToSpace(nn.Module):
    """``DEPTH_TO_SPACE`` with TFLite's (NHWC) channel order, on NCHW tensors."""

    def __init__(self, *, block_size: int) -> None:
        super().__init__()
        self.block_size = int(block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, b·b·C, H, W]`` → ``Tensor[N, C, H·b, W·b]``; input channel ``(i·b + j)·C + c``."""
        n, c, h, w = x.shape
        b = self.block_size
        x = x.permute(0, 2, 3, 1).reshape(n, h, w, b, b, c // (b * b)).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(n, h * b, w * b, c // (b * b)).permute(0, 3, 1, 2)  # channels-last memory


class Pad(nn.Module):
    """``PAD`` with zeros; ``pads`` is ``F.pad``'s argument (last axis first) for the tensor's actual layout."""

    def __init__(self, *, pads: tuple[int, ...]) -> None:
        super().__init__()
        self.pads = tuple(int(p) for p in pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)


class Reshape(nn.Module):
    """``RESHAPE`` of an NHWC-ordered tensor to the graph's static shape, axis 0 becoming the batch size N."""

    def __init__(self, *, shape: tuple[int, ...], keeps_batch: bool) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.keeps_batch = keeps_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keeps_batch:
            return x.reshape((x.shape[0],) + self.shape[1:])
        if x.shape[0] != 1:
            raise ValueError(f"this graph's RESHAPE to {list(self.shape)} mixes the batch axis: batch size 1 only")
        return x.reshape(self.shape)


class Concatenation(nn.Module):
    """``CONCATENATION`` along ``dim`` (already mapped to the tensors' layout) with a fused activation."""

    def __init__(self, *, dim: int, activation: str) -> None:
        super().__init__()
        self.dim = int(dim)
        self.activation = activation

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return _activate_(torch.cat(xs, dim=self.dim), self.activation)


class Add(nn.Module):
    """``ADD`` with broadcasting and a fused activation; constant operands are buffers already in the layout."""

    def __init__(self, *, constants: list[torch.Tensor | None], activation: str) -> None:
        super().__init__()
        self.slots = [c is not None for c in constants]
        for i, c in enumerate(constants):
            self.register_buffer(f"const{i}", None if c is None else c.clone())
        self.activation = activation

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        it = iter(xs)
        a, b = (getattr(self, f"const{i}") if is_const else next(it) for i, is_const in enumerate(self.slots))
        return _activate_(torch.add(a, b), self.activation)


class Logistic(nn.Module):
    """``LOGISTIC``: element-wise sigmoid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


# ----------------------------------------------------------------------------------------------------------------
# The graph
# ----------------------------------------------------------------------------------------------------------------

_NHWC_TO_NCHW_AXIS = (0, 2, 3, 1)  # an NHWC axis index → the same axis in NCHW


@dataclass(frozen=True)
class _Step:
    """One operator's wiring: which activation tensors it reads, in which layout, and what it writes."""

    inputs: tuple[tuple[int, str], ...]  # (tensor id, layout the op reads it in)
    output: int
    output_layout: str  # "nchw" (rank-4 only) or "nhwc" (the graph's own element order)


def _to_layout(x: torch.Tensor, have: str, want: str) -> torch.Tensor:
    """NHWC ↔ NCHW. NCHW tensors live in channels-last memory, so both directions are free views in the usual case."""
    if have == want:
        return x
    if want == "nchw":
        return x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    return x.permute(0, 2, 3, 1).contiguous()


def _const_like_layout(c: torch.Tensor, layout: str) -> torch.Tensor:
    """A broadcast operand for an NCHW activation: right-aligned to rank 4, then NHWC → NCHW."""
    if layout != "nchw":
        return c
    c = c.reshape((1,) * (4 - c.dim()) + tuple(c.shape))
    return c.permute(0, 3, 1, 2).contiguous()


class TFLiteModule(nn.Module):
    """A TFLite graph (first subgraph) as a PyTorch module with LiteRT's calling convention and any batch size.

    Build with :meth:`from_file` (``.tflite``) or :meth:`load` (a file written by :meth:`save`); the constructor
    takes the graph description of :func:`read_tflite_graph`.

    Args:
        graph: the description :func:`read_tflite_graph` returns (or ``torch.load`` of a :meth:`save` file).
        cpu_micro_batch: on CPU, a batch larger than this runs in slices of this size (``None`` or 0: whole). The
            full-resolution layers of a large batch overflow the CPU caches: for ``pose_landmark_full``, 16 crops
            took 39 ms a crop at once and 22 ms in slices of 4, one thread (2 and 8 were slower than 4).

    Attributes:
        input_names, output_names: the graph's tensor names, in its order.
        input_shape: shape of the (first) input as the graph states it (batch 1), e.g. ``(1, 256, 256, 3)``.
        input_shapes, output_shapes: all of them, as tuples.
        source_name, source_sha256: the ``.tflite`` file's base name and SHA-256 (hex).
    """

    def __init__(self, *, graph: dict, cpu_micro_batch: int | None = 4) -> None:
        super().__init__()
        self.cpu_micro_batch = cpu_micro_batch
        if graph.get("format") != FORMAT:
            raise TFLiteError(f"not a converted TFLite graph of format {FORMAT!r} (got {graph.get('format')!r})")
        source = graph["source_name"]
        unknown = sorted({op["op"] for op in graph["ops"]} - SUPPORTED_OPS)
        if unknown:
            raise TFLiteError(f"{source}: unsupported TFLite op(s) {', '.join(unknown)}")
        self._graph = graph  # kept (CPU, fp32) for save()
        self.source_name: str = source
        self.source_sha256: str = graph["source_sha256"]
        self.input_names = tuple(e["name"] for e in graph["inputs"])
        self.output_names = tuple(e["name"] for e in graph["outputs"])
        self.input_shapes = tuple(tuple(e["shape"]) for e in graph["inputs"])
        self.input_shape = self.input_shapes[0] if self.input_shapes else ()
        self.output_shapes = tuple(tuple(e["shape"]) for e in graph["outputs"])
        self._input_ids = tuple(e["tensor"] for e in graph["inputs"])
        self._output_ids = tuple(e["tensor"] for e in graph["outputs"])

        constants: dict[int, torch.Tensor] = graph["constants"]
        shapes: dict[int, list[int]] = graph["shapes"]
        layout: dict[int, str] = {}
        for t in self._input_ids:
            layout[t] = "nchw" if len(shapes[t]) == 4 else "nhwc"  # rank-4 inputs are permuted once, on entry
        folded = self._foldable_pads(graph)
        ops = []
        steps = []
        for index, spec in enumerate(graph["ops"]):
            if spec["op"] == "PAD" and spec["outputs"][0] in folded:
                continue
            try:
                module, reads, out_layout = self._build_op(spec, constants, shapes, layout, folded)
            except TFLiteError as exc:
                raise TFLiteError(f"{source}: op {index} ({spec['op']}): {exc}") from None
            out = spec["outputs"][0]
            layout[out] = out_layout
            ops.append(module)
            steps.append(_Step(inputs=tuple(reads), output=out, output_layout=out_layout))
        self.ops = nn.ModuleList(ops)
        self._steps = tuple(steps)
        self._layout = layout
        for t in self._output_ids:
            if t not in layout:
                raise TFLiteError(f"{source}: graph output {t} is a constant or is never computed")
        # Last step reading each tensor, so that activations are dropped as soon as possible.
        last_use: dict[int, int] = {}
        for i, step in enumerate(steps):
            for t, _ in step.inputs:
                last_use[t] = i
        keep = set(self._output_ids)
        self._free_after = tuple(
            tuple(t for t, _ in step.inputs if last_use.get(t) == i and t not in keep) for i, step in enumerate(steps)
        )

    @staticmethod
    def _foldable_pads(graph: dict) -> dict[int, tuple[int, tuple[int, int, int, int]]]:
        """``PAD``s that only feed convolutions' data inputs: ``{pad output: (pad input, (top, bottom, left, right))}``.

        Such a pad is done by the convolutions themselves (``Conv2d.pre_pad``), which saves a copy of the tensor.
        """
        readers: dict[int, list[tuple[str, int]]] = {}
        for spec in graph["ops"]:
            for position, t in enumerate(spec["inputs"]):
                readers.setdefault(t, []).append((spec["op"], position))
        outputs = {e["tensor"] for e in graph["outputs"]}
        folded = {}
        for spec in graph["ops"]:
            if spec["op"] != "PAD" or len(spec["inputs"]) != 2 or spec["inputs"][1] not in graph["constants"]:
                continue
            out = spec["outputs"][0]
            pads = graph["constants"][spec["inputs"][1]].reshape(-1, 2).tolist()
            if len(pads) != 4 or pads[0] != [0, 0] or pads[3] != [0, 0] or min(min(p) for p in pads) < 0:
                continue
            users = readers.get(out, [])
            if out in outputs or not users:
                continue
            if all(op in ("CONV_2D", "DEPTHWISE_CONV_2D") and position == 0 for op, position in users):
                folded[out] = (spec["inputs"][0], (pads[1][0], pads[1][1], pads[2][0], pads[2][1]))
        return folded

    @staticmethod
    def _build_op(
        spec: dict,
        constants: dict[int, torch.Tensor],
        shapes: dict[int, list[int]],
        layout: dict[int, str],
        folded: dict[int, tuple[int, tuple[int, int, int, int]]],
    ) -> tuple[nn.Module, list[tuple[int, str]], str]:
        """The module for one op, the (tensor, layout) pairs it reads, and its output's layout."""
        kind, opts, ins, outs = spec["op"], spec["options"], spec["inputs"], spec["outputs"]
        if len(outs) != 1:
            raise TFLiteError(f"{len(outs)} outputs (1 supported)")
        out_rank = len(shapes[outs[0]])

        def activation_input(t: int) -> int:
            if t < 0 or t in constants:
                raise TFLiteError(f"input tensor {t} must be an activation")
            if t not in layout:
                raise TFLiteError(f"input tensor {t} is read before it is written")
            return t

        def constant(t: int, what: str) -> torch.Tensor:
            if t not in constants:
                raise TFLiteError(f"{what} (tensor {t}) must be a constant")
            return constants[t]

        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x, pre_pad = folded.get(ins[0], (ins[0], (0, 0, 0, 0)))
            x = activation_input(x)
            if len(shapes[x]) != 4:
                raise TFLiteError(f"input of rank {len(shapes[x])} (4 expected)")
            c_in = shapes[x][3]
            w = constant(ins[1], "filter").float()
            bias = constant(ins[2], "bias").float() if len(ins) > 2 and ins[2] >= 0 else None
            if kind == "CONV_2D":  # OHWI → OIHW
                weight = w.permute(0, 3, 1, 2)
                if c_in % weight.shape[1]:
                    raise TFLiteError(f"filter depth {weight.shape[1]} does not divide input depth {c_in}")
                groups = c_in // weight.shape[1]
            else:  # [1, KH, KW, C_out] → [C_out, 1, KH, KW]; output channel c·m + k reads input channel c
                weight = w[0].permute(2, 0, 1).unsqueeze(1)
                if weight.shape[0] % c_in:
                    raise TFLiteError(f"depthwise output depth {weight.shape[0]} is not a multiple of {c_in}")
                groups = c_in
            module = Conv2d(
                weight=weight,
                bias=bias,
                stride=opts["stride"],
                dilation=opts["dilation"],
                padding=opts["padding"],
                groups=groups,
                activation=opts["activation"],
                pre_pad=pre_pad,
            )
            return module, [(x, "nchw")], "nchw"

        if kind == "MAX_POOL_2D":
            x = activation_input(ins[0])
            module = MaxPool2d(
                kernel=opts["kernel"], stride=opts["stride"], padding=opts["padding"], activation=opts["activation"]
            )
            return module, [(x, "nchw")], "nchw"

        if kind == "RESIZE_BILINEAR":
            x = activation_input(ins[0])
            size = [int(v) for v in constant(ins[1], "size").tolist()]
            module = ResizeBilinear(
                size=size, align_corners=opts["align_corners"], half_pixel_centers=opts["half_pixel_centers"]
            )
            return module, [(x, "nchw")], "nchw"

        if kind == "DEPTH_TO_SPACE":
            x = activation_input(ins[0])
            return DepthToSpace(block_size=opts["block_size"]), [(x, "nchw")], "nchw"

        if kind == "PAD":
            x = activation_input(ins[0])
            pads = constant(ins[1], "paddings").reshape(-1, 2).tolist()
            if len(pads) != len(shapes[x]):
                raise TFLiteError(f"paddings for rank {len(pads)}, input rank {len(shapes[x])}")
            if pads[0] != [0, 0]:
                raise TFLiteError("padding the batch axis")
            have = layout[x]
            if have == "nchw":
                pads = [pads[i] for i in (0, 3, 1, 2)]
            flat = tuple(v for pair in reversed(pads) for v in pair)
            return Pad(pads=flat), [(x, have)], have

        if kind == "RESHAPE":
            x = activation_input(ins[0])
            target = shapes[outs[0]]
            keeps_batch = bool(target) and bool(shapes[x]) and target[0] == shapes[x][0]
            return Reshape(shape=target, keeps_batch=keeps_batch), [(x, "nhwc")], "nhwc"

        if kind == "CONCATENATION":
            xs = [activation_input(t) for t in ins]
            axis = opts["axis"] % out_rank
            if axis == 0:
                raise TFLiteError("concatenation along the batch axis")
            nchw = out_rank == 4 and any(layout[t] == "nchw" for t in xs)
            have = "nchw" if nchw else "nhwc"
            dim = _NHWC_TO_NCHW_AXIS[axis] if nchw else axis
            return Concatenation(dim=dim, activation=opts["activation"]), [(t, have) for t in xs], have

        if kind == "ADD":
            if len(ins) != 2:
                raise TFLiteError(f"{len(ins)} inputs (2 expected)")
            acts = [t for t in ins if t not in constants]
            if not acts:
                raise TFLiteError("both operands are constants")
            for t in acts:
                activation_input(t)
            nchw = out_rank == 4 and all(len(shapes[t]) == 4 for t in acts) and any(layout[t] == "nchw" for t in acts)
            have = "nchw" if nchw else "nhwc"
            consts = [_const_like_layout(constants[t].float(), have) if t in constants else None for t in ins]
            return Add(constants=consts, activation=opts["activation"]), [(t, have) for t in acts], have

        if kind == "LOGISTIC":
            x = activation_input(ins[0])
            return Logistic(), [(x, layout[x])], layout[x]

        raise TFLiteError(f"unsupported op {kind}")

    # ------------------------------------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: PathLike, *, cpu_micro_batch: int | None = 4) -> TFLiteModule:
        """Read a ``.tflite`` file (local path or fsspec URI) and build the module (fp32, CPU, eval mode).

        Raises:
            TFLiteError: the file is not a TFLite model this module can run; the message names the file and the
                unsupported op kinds.
        """
        data = _read_bytes(path)
        graph = read_tflite_graph(data, source=os.fspath(path))
        return cls(graph=graph, cpu_micro_batch=cpu_micro_batch).eval()

    def save(self, path: PathLike) -> None:
        """Write the converted graph (fp32 constants, whatever this module's dtype or device) with ``torch.save``.

        The file holds a ``dict`` of plain data and tensors only (see :func:`read_tflite_graph`), readable with
        ``torch.load(path, weights_only=True)`` and by :meth:`load` without the ``tflite`` package.
        """
        torch.save(self._graph, os.fspath(path))

    @classmethod
    def load(cls, path: PathLike, *, cpu_micro_batch: int | None = 4) -> TFLiteModule:
        """Build the module (fp32, CPU, eval mode) from a file written by :meth:`save` (local path or fsspec URI)."""
        path = os.fspath(path)
        if "://" in path:
            graph = torch.load(io.BytesIO(_read_bytes(path)), map_location="cpu", weights_only=True)
        else:
            graph = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(graph, dict) or graph.get("format") != FORMAT:
            raise TFLiteError(f"{path}: not a converted TFLite graph of format {FORMAT!r}")
        return cls(graph=graph, cpu_micro_batch=cpu_micro_batch).eval()

    # ------------------------------------------------------------------------------------------------------------

    def _reference(self) -> torch.Tensor | None:
        for t in self.buffers():
            if t.is_floating_point():
                return t
        return None

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the graph.

        Args:
            inputs: one tensor per graph input, shaped like it (NHWC for images) except axis 0 (any N ≥ 1); cast to
                this module's dtype and moved to its device.

        Returns:
            The graph's outputs in its order, each shaped like the graph's output with axis 0 = N, in this
            module's dtype (NHWC / flat, as LiteRT returns them).
        """
        if len(inputs) != len(self._input_ids):
            raise ValueError(f"{self.source_name}: {len(self._input_ids)} input(s) expected, got {len(inputs)}")
        ref = self._reference()
        xs = []
        for t, x, shape in zip(self._input_ids, inputs, self.input_shapes):
            x = torch.as_tensor(x)
            if x.dim() != len(shape) or tuple(x.shape[1:]) != tuple(shape[1:]):
                raise ValueError(
                    f"{self.source_name}: input {t} must be shaped (N, {', '.join(map(str, shape[1:]))}), "
                    f"got {tuple(x.shape)}"
                )
            if ref is not None:
                x = x.to(device=ref.device, dtype=ref.dtype)
            xs.append(x)
        n = xs[0].shape[0] if xs else 0
        if any(x.shape[0] != n for x in xs):
            raise ValueError(f"{self.source_name}: inputs with different batch sizes {[x.shape[0] for x in xs]}")
        chunk = self.cpu_micro_batch
        if chunk and n > chunk and xs[0].device.type == "cpu":
            parts = [self._run([x[i : i + chunk] for x in xs]) for i in range(0, n, chunk)]
            return tuple(torch.cat(outs) for outs in zip(*parts))
        return self._run(xs)

    def _run(self, xs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        env: dict[tuple[int, str], torch.Tensor] = {}
        for t, x in zip(self._input_ids, xs):
            env[(t, self._layout[t])] = _to_layout(x, "nhwc", self._layout[t])
        for step, op, free in zip(self._steps, self.ops, self._free_after):
            args = [self._fetch(env, t, want) for t, want in step.inputs]
            env[(step.output, step.output_layout)] = op(*args)
            for t in free:
                env.pop((t, "nchw"), None)
                env.pop((t, "nhwc"), None)
        return tuple(self._fetch(env, t, "nhwc") for t in self._output_ids)

    def _fetch(self, env: dict, t: int, want: str) -> torch.Tensor:
        x = env.get((t, want))
        if x is None:
            have = self._layout[t]
            x = _to_layout(env[(t, have)], have, want)
            env[(t, want)] = x
        return x

    def extra_repr(self) -> str:
        return (
            f"source={self.source_name!r}, sha256={self.source_sha256[:12]}…, inputs={list(self.input_shapes)}, "
            f"outputs={list(self.output_shapes)}"
        )
