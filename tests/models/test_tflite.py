"""``models.tflite``: TFLite graphs as PyTorch modules, checked against LiteRT (``ai_edge_litert``).

Real checks run MediaPipe's BlazePose networks on person crops from ``../shared/data/coco`` (square crop of side
1.25·max(w, h) around the box centre, resized with OpenCV). Model files come from ``$RAYPOSE_WEIGHTS_DIR`` or
``<repo>/weights`` (``pose_landmark_full.tflite``, ``pose_detection.tflite``, as ``make weights`` writes them).

Parity is checked against LiteRT's portable reference kernels (``OpResolverType.BUILTIN_REF``: the same numbers on
any CPU) at the tolerances below, and against LiteRT's default CPU path (XNNPACK, microkernels chosen per CPU) at
twice them. Both are fp32 with different summation orders: on the 14 people of ``test_coco.json`` the landmark x/y of
XNNPACK and of the reference kernels differ from each other by up to 6e-4 px, from an fp64 run of this module by up to
7e-4 and 6e-4 px, and this module's fp32 run differs from fp64 by up to 5e-4 px. Largest differences measured when
the tolerances were set (this module vs reference kernels / vs XNNPACK, 14 crops):

* landmarks ``Identity`` x/y: 1e-3 px (4.0e-4 / 9.0e-4); z, visibility and presence: 1e-2 (2.4e-3 / 8.2e-3);
* other outputs: ``ATOL_REL`` × max |LiteRT output|: pose flag 6e-6 / 2e-5 absolute; segmentation logits (up to
  ~1900) 2.9e-4 / 5.6e-4 relative (LiteRT's kernels are 3.4e-4 / 4.0e-4 of the range from fp64, this module 1.5e-4);
  heatmaps 4.9e-6 / 9.5e-6; world points 2.8e-6 / 9e-6; detector regressors 9.9e-6 / 6e-6 and logits 7.7e-6 / 2.7e-6.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.tflite import SUPPORTED_OPS, Pad, TFLiteError, TFLiteModule

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parents[2].parent / "shared" / "data"
WEIGHTS = Path(os.environ.get("RAYPOSE_WEIGHTS_DIR", REPO / "weights"))
LANDMARK = "pose_landmark_full.tflite"
DETECTOR = "pose_detection.tflite"
LANDMARK_SHA256 = "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"

# Per-output tolerance against LiteRT's reference kernels, as a fraction of the largest |value| LiteRT returns
# for that output over the crops (fp32); against XNNPACK twice as much. Landmarks have absolute bounds besides.
ATOL_REL = {
    (LANDMARK, "Identity"): 4e-5,
    (LANDMARK, "Identity_1"): 2e-5,
    (LANDMARK, "Identity_2"): 1e-3,
    (LANDMARK, "Identity_3"): 3e-5,
    (LANDMARK, "Identity_4"): 5e-5,
    (DETECTOR, "Identity"): 2e-5,
    (DETECTOR, "Identity_1"): 2e-5,
}
LANDMARK_XY_ATOL_PX = 1e-3
LANDMARK_ZVP_ATOL = 1e-2


def _model_path(name: str) -> Path:
    path = WEIGHTS / name
    if not path.is_file():
        pytest.skip(f"{path} not found: run `make weights` (or set RAYPOSE_WEIGHTS_DIR)")
    return path


@pytest.fixture(scope="module")
def person_boxes() -> list[tuple[Path, list[float]]]:
    """(image path, COCO box) of the three largest non-crowd people in ``test_coco.json``."""
    if not DATA.is_dir():
        pytest.skip(f"real test data not found at {DATA} (clone the project beside shared/)")
    coco = DATA / "coco"
    with open(coco / "test_coco.json") as f:
        gt = json.load(f)
    files = {im["id"]: coco / im["file_name"] for im in gt["images"]}
    anns = [a for a in gt["annotations"] if not a.get("iscrowd") and a.get("category_id", 1) == 1]
    anns.sort(key=lambda a: (-a["bbox"][2] * a["bbox"][3], a["id"]))
    return [(files[a["image_id"]], a["bbox"]) for a in anns[:3]]


def _crops(boxes: list[tuple[Path, list[float]]], size: int) -> np.ndarray:
    """``float32[K, size, size, 3]`` RGB in [0, 1]: square crops (side 1.25·max(w, h)) about each box centre."""
    import cv2

    out = []
    for path, (x, y, w, h) in boxes:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
        side = 1.25 * max(w, h)
        s = size / side
        cx, cy = x + w / 2, y + h / 2
        affine = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], dtype=np.float64)
        crop = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        out.append(crop.astype(np.float32) / 255.0)
    return np.stack(out)


def _litert(path: Path, x: np.ndarray, *, kernels: str = "reference") -> list[dict[str, np.ndarray]]:
    """LiteRT's outputs (name → array) for each item of ``x``, one batch-1 call each.

    ``kernels="reference"``: LiteRT's portable reference kernels (``OpResolverType.BUILTIN_REF``), the same numbers
    on every CPU; ``"default"``: what an application gets (XNNPACK, whose microkernels depend on the CPU).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = {"reference": OpResolverType.BUILTIN_REF, "default": OpResolverType.AUTO}[kernels]
    interpreter = Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    results = []
    for item in x:
        interpreter.set_tensor(inp["index"], item[None].astype(np.float32))
        interpreter.invoke()
        results.append({d["name"]: interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()})
    return results


@pytest.fixture(scope="module")
def landmark() -> TFLiteModule:
    return TFLiteModule.from_file(_model_path(LANDMARK))


@pytest.fixture(scope="module")
def landmark_crops(person_boxes) -> np.ndarray:
    return _crops(person_boxes, 256)


@pytest.fixture(scope="module")
def landmark_outputs(landmark, landmark_crops) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        return landmark(torch.from_numpy(landmark_crops))


def test_landmark_interface(landmark: TFLiteModule) -> None:
    assert landmark.input_names == ("input_1",)
    assert landmark.input_shape == (1, 256, 256, 3)
    assert landmark.output_names == ("Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4")
    assert landmark.output_shapes == ((1, 195), (1, 1), (1, 256, 256, 1), (1, 64, 64, 39), (1, 117))
    assert landmark.source_sha256 == hashlib.sha256(_model_path(LANDMARK).read_bytes()).hexdigest()
    assert landmark.source_sha256 == LANDMARK_SHA256


def _assert_parity(model: str, names, ours, reference, *, factor: float) -> None:
    for name, out in zip(names, ours):
        ref = np.stack([r[name][0] for r in reference])
        assert tuple(out.shape) == ref.shape
        diff = np.abs(out.numpy() - ref)
        if model == LANDMARK and name == "Identity":
            points = diff.reshape(len(ref), 39, 5)
            xy, zvp = points[..., :2].max(), points[..., 2:].max()
            assert xy <= factor * LANDMARK_XY_ATOL_PX, f"landmark x/y differ by {xy:.2e} px"
            assert zvp <= factor * LANDMARK_ZVP_ATOL, f"landmark z/visibility/presence differ by {zvp:.2e}"
        tol = factor * ATOL_REL[(model, name)] * np.abs(ref).max()
        assert diff.max() <= tol, f"{name}: max |diff| {diff.max():.3e} > {tol:.3e}"


@pytest.mark.parametrize(("kernels", "factor"), [("reference", 1.0), ("default", 2.0)])
def test_landmark_matches_litert_on_real_crops(landmark, landmark_crops, landmark_outputs, kernels, factor) -> None:
    pytest.importorskip("ai_edge_litert")
    reference = _litert(_model_path(LANDMARK), landmark_crops, kernels=kernels)
    _assert_parity(LANDMARK, landmark.output_names, landmark_outputs, reference, factor=factor)
    # The crops are of people: the pose flag is high, and body landmarks lie on the crop.
    assert (landmark_outputs[1] > 0.5).all()
    xy = landmark_outputs[0].reshape(-1, 39, 5)[:, :33, :2]
    assert ((xy > -64) & (xy < 320)).float().mean() > 0.9


def test_detector_matches_litert_on_real_crops(person_boxes) -> None:
    pytest.importorskip("ai_edge_litert")
    path = _model_path(DETECTOR)
    net = TFLiteModule.from_file(path)
    assert net.input_shape == (1, 224, 224, 3)
    assert net.output_shapes == ((1, 2254, 12), (1, 2254, 1))
    x = _crops(person_boxes, net.input_shape[1]) * 2.0 - 1.0  # MediaPipe feeds this detector RGB in [-1, 1]
    with torch.inference_mode():
        ours = net(torch.from_numpy(x))
    for kernels, factor in (("reference", 1.0), ("default", 2.0)):
        _assert_parity(DETECTOR, net.output_names, ours, _litert(path, x, kernels=kernels), factor=factor)
    assert (ours[1].amax(dim=(1, 2)) > 0).all()  # every crop holds a person: some anchor scores a positive logit


def test_batch_equals_single_calls(landmark, landmark_crops, landmark_outputs) -> None:
    assert len(landmark_crops) == 3 and landmark.cpu_micro_batch >= 3  # one batch of 3
    sliced = TFLiteModule.from_file(_model_path(LANDMARK), cpu_micro_batch=2)  # slices of 2 and 1
    with torch.inference_mode():
        singles = [landmark(torch.from_numpy(landmark_crops[i : i + 1])) for i in range(len(landmark_crops))]
        in_slices = sliced(torch.from_numpy(landmark_crops))
    for k, batched in enumerate(landmark_outputs):
        stacked = torch.cat([s[k] for s in singles])
        assert in_slices[k].shape == batched.shape
        torch.testing.assert_close(in_slices[k][2:], stacked[2:], rtol=0, atol=0)
        scale = float(stacked.abs().max())
        # Exact for the maps; the 1×1-conv GEMMs may sum in another order for another batch size: measured up to
        # 3.3e-6 of the output's range (world points), 3.1e-7 (landmarks).
        torch.testing.assert_close(batched, stacked, rtol=0, atol=1e-5 * scale)


def test_save_load_roundtrip(landmark, landmark_crops, landmark_outputs, tmp_path, monkeypatch) -> None:
    path = tmp_path / "pose_landmark_full.pt"
    landmark.save(path)
    raw = torch.load(path, weights_only=True)
    assert raw["source_sha256"] == LANDMARK_SHA256
    assert all(isinstance(v, torch.Tensor) for v in raw["constants"].values())
    monkeypatch.setitem(sys.modules, "tflite", None)  # loading a converted graph must not need the tflite package
    loaded = TFLiteModule.load(path)
    assert loaded.source_sha256 == LANDMARK_SHA256
    assert loaded.output_names == landmark.output_names and loaded.output_shapes == landmark.output_shapes
    with torch.inference_mode():
        again = loaded(torch.from_numpy(landmark_crops))
    for a, b in zip(landmark_outputs, again):
        assert torch.equal(a, b)


# fp16 convolutions have no fast CPU kernel in PyTorch (grouped ones run group by group, ~4 s a crop): one crop.
@pytest.mark.parametrize(
    ("dtype", "crops", "xy_max", "xy_median", "flag_atol"),
    [(torch.float16, 1, 1.0, 0.25, 0.02), (torch.bfloat16, 2, 8.0, 2.0, 0.35)],
)
def test_reduced_precision_is_finite_and_close(
    landmark_crops, landmark_outputs, dtype, crops, xy_max, xy_median, flag_atol
) -> None:
    """fp16 / bf16 weights and activations against fp32; body landmark x/y tolerance in px on the 256-px crop.

    Measured on six crops of ``test_coco.json``: fp16 max 0.39 px (median 0.07), pose flag 0.006; bf16 max 4.9 px
    (median 0.9), pose flag 0.28. bf16's 8-bit significand alone rounds coordinates in [128, 256) to whole pixels.
    """
    net = TFLiteModule.from_file(_model_path(LANDMARK)).to(dtype)
    x = torch.from_numpy(landmark_crops[:crops])  # fp32 input: cast by the module
    with torch.inference_mode():
        outs = net(x)
    for out in outs:
        assert out.dtype == dtype
        assert torch.isfinite(out).all()
    diff = (outs[0].float() - landmark_outputs[0][:crops]).reshape(crops, 39, 5)[:, :33, :2].abs()
    assert diff.max() <= xy_max and diff.median() <= xy_median, (float(diff.max()), float(diff.median()))
    assert (outs[1].float() - landmark_outputs[1][:crops]).abs().max() <= flag_atol


def test_input_shape_is_checked(landmark) -> None:
    with pytest.raises(ValueError, match=r"\(N, 256, 256, 3\)"):
        landmark(torch.zeros(1, 3, 256, 256))


# ----------------------------------------------------------------------------------------------------------------
# Small graphs written with the flatbuffers builder: the load-time op check, and op variants the BlazePose files
# do not use (legacy/align-corners resize, SAME max-pool, dilation, int8 weights, depth-to-space, ...).
# ----------------------------------------------------------------------------------------------------------------


def _schema(name: str):
    """A module of the generated schema package (``tflite.X`` itself is the class after the package's imports)."""
    return importlib.import_module(f"tflite.{name}")


def _vector(builder, start, values, dtype) -> int:
    start(builder, len(values))
    for v in reversed(list(values)):
        if dtype == "offset":
            builder.PrependUOffsetTRelative(v)
        else:
            builder.Prepend(dtype, v)
    return builder.EndVector()


def _build_tflite(tensors: list[dict], ops: list[dict], inputs: list[int], outputs: list[int]) -> bytes:
    """A one-subgraph ``.tflite`` flatbuffer.

    ``tensors``: ``{"shape", "type" (schema TensorType), "data" (np.ndarray for constants), "quant" ((scale,
    zero_point, axis) or None)}``; ``ops``: ``{"op" (builtin name, or "CUSTOM:<code>"), "inputs", "outputs",
    "options" ((table name, {field: value}) or None)}``.
    """
    import flatbuffers
    from flatbuffers import number_types as nt
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.BuiltinOptions import BuiltinOptions

    b = flatbuffers.Builder(1024)
    Buffer, Tensor, Quant = _schema("Buffer"), _schema("Tensor"), _schema("QuantizationParameters")
    Operator, OperatorCode, SubGraph, Model = (
        _schema("Operator"),
        _schema("OperatorCode"),
        _schema("SubGraph"),
        _schema("Model"),
    )

    buffers = []
    Buffer.BufferStart(b)
    buffers.append(Buffer.BufferEnd(b))  # buffer 0: empty, by convention
    tensor_offsets = []
    for i, t in enumerate(tensors):
        buffer_index = 0
        if t.get("data") is not None:
            b.StartVector(1, len(t["data"].tobytes()), 16)
            for byte in reversed(t["data"].tobytes()):
                b.PrependUint8(byte)
            data = b.EndVector()
            Buffer.BufferStart(b)
            Buffer.BufferAddData(b, data)
            buffers.append(Buffer.BufferEnd(b))
            buffer_index = len(buffers) - 1
        quant = None
        if t.get("quant") is not None:
            scale, zero, axis = t["quant"]
            sv = _vector(b, Quant.QuantizationParametersStartScaleVector, scale, nt.Float32Flags)
            zv = _vector(b, Quant.QuantizationParametersStartZeroPointVector, zero, nt.Int64Flags)
            Quant.QuantizationParametersStart(b)
            Quant.QuantizationParametersAddScale(b, sv)
            Quant.QuantizationParametersAddZeroPoint(b, zv)
            Quant.QuantizationParametersAddQuantizedDimension(b, axis)
            quant = Quant.QuantizationParametersEnd(b)
        name = b.CreateString(f"t{i}")
        shape = _vector(b, Tensor.TensorStartShapeVector, t["shape"], nt.Int32Flags)
        Tensor.TensorStart(b)
        Tensor.TensorAddShape(b, shape)
        Tensor.TensorAddType(b, t.get("type", 0))
        Tensor.TensorAddBuffer(b, buffer_index)
        Tensor.TensorAddName(b, name)
        if quant is not None:
            Tensor.TensorAddQuantization(b, quant)
        tensor_offsets.append(Tensor.TensorEnd(b))

    codes: list[str] = []
    op_offsets = []
    for op in ops:
        if op["op"] not in codes:
            codes.append(op["op"])
        options = None
        if op.get("options"):
            table, fields = op["options"]
            module = _schema(table)
            getattr(module, f"{table}Start")(b)
            for field, value in fields.items():
                getattr(module, f"{table}Add{field}")(b, value)
            options = getattr(module, f"{table}End")(b)
        ins = _vector(b, Operator.OperatorStartInputsVector, op["inputs"], nt.Int32Flags)
        outs = _vector(b, Operator.OperatorStartOutputsVector, op["outputs"], nt.Int32Flags)
        Operator.OperatorStart(b)
        Operator.OperatorAddOpcodeIndex(b, codes.index(op["op"]))
        Operator.OperatorAddInputs(b, ins)
        Operator.OperatorAddOutputs(b, outs)
        if options is not None:
            Operator.OperatorAddBuiltinOptionsType(b, getattr(BuiltinOptions, op["options"][0]))
            Operator.OperatorAddBuiltinOptions(b, options)
        op_offsets.append(Operator.OperatorEnd(b))

    code_offsets = []
    for code in codes:
        custom = b.CreateString(code.split(":", 1)[1]) if code.startswith("CUSTOM:") else None
        builtin = BuiltinOperator.CUSTOM if custom is not None else getattr(BuiltinOperator, code)
        OperatorCode.OperatorCodeStart(b)
        OperatorCode.OperatorCodeAddBuiltinCode(b, builtin)
        OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
        OperatorCode.OperatorCodeAddVersion(b, 1)
        if custom is not None:
            OperatorCode.OperatorCodeAddCustomCode(b, custom)
        code_offsets.append(OperatorCode.OperatorCodeEnd(b))

    tv = _vector(b, SubGraph.SubGraphStartTensorsVector, tensor_offsets, "offset")
    iv = _vector(b, SubGraph.SubGraphStartInputsVector, inputs, nt.Int32Flags)
    ov = _vector(b, SubGraph.SubGraphStartOutputsVector, outputs, nt.Int32Flags)
    opv = _vector(b, SubGraph.SubGraphStartOperatorsVector, op_offsets, "offset")
    SubGraph.SubGraphStart(b)
    SubGraph.SubGraphAddTensors(b, tv)
    SubGraph.SubGraphAddInputs(b, iv)
    SubGraph.SubGraphAddOutputs(b, ov)
    SubGraph.SubGraphAddOperators(b, opv)
    subgraph = SubGraph.SubGraphEnd(b)
    codes_v = _vector(b, Model.ModelStartOperatorCodesVector, code_offsets, "offset")
    subgraphs_v = _vector(b, Model.ModelStartSubgraphsVector, [subgraph], "offset")
    buffers_v = _vector(b, Model.ModelStartBuffersVector, buffers, "offset")
    description = b.CreateString("raypose test graph")
    Model.ModelStart(b)
    Model.ModelAddVersion(b, 3)
    Model.ModelAddOperatorCodes(b, codes_v)
    Model.ModelAddSubgraphs(b, subgraphs_v)
    Model.ModelAddBuffers(b, buffers_v)
    Model.ModelAddDescription(b, description)
    b.Finish(Model.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unsupported_ops_fail_at_load_naming_them(tmp_path) -> None:
    pytest.importorskip("flatbuffers")
    assert "GELU" not in SUPPORTED_OPS
    tensors = [{"shape": [1, 4, 4, 3]}, {"shape": [1, 4, 4, 3]}, {"shape": [1, 4, 4, 3]}, {"shape": [1, 4, 4, 3]}]
    ops = [
        {"op": "LOGISTIC", "inputs": [0], "outputs": [1]},
        {"op": "GELU", "inputs": [1], "outputs": [2]},
        {"op": "CUSTOM:MyFancyOp", "inputs": [2], "outputs": [3]},
    ]
    path = tmp_path / "tiny_unsupported.tflite"
    path.write_bytes(_build_tflite(tensors, ops, inputs=[0], outputs=[3]))
    with pytest.raises(TFLiteError) as info:
        TFLiteModule.from_file(path)
    message = str(info.value)
    assert "tiny_unsupported.tflite" in message
    assert "GELU" in message and "CUSTOM(MyFancyOp)" in message
    assert "unsupported TFLite op(s) CUSTOM(MyFancyOp), GELU " in message  # LOGISTIC is supported: not listed
    assert isinstance(info.value, ValueError)

    ops[1:] = [{"op": "LOGISTIC", "inputs": [1], "outputs": [3]}]  # the same graph with supported ops loads
    path.write_bytes(_build_tflite(tensors, ops, inputs=[0], outputs=[3]))
    assert TFLiteModule.from_file(path).output_shapes == ((1, 4, 4, 3),)


def test_fused_tanh_is_refused(tmp_path) -> None:
    """LiteRT's ADD/CONV kernels ignore a fused TANH (their activation range knows RELU* only): refused at load."""
    tensors = [{"shape": [1, 2, 2, 3]}, {"shape": [3], "data": np.ones(3, np.float32)}, {"shape": [1, 2, 2, 3]}]
    ops = [{"op": "ADD", "inputs": [0, 1], "outputs": [2], "options": ("AddOptions", {"FusedActivationFunction": 4})}]
    path = tmp_path / "fused_tanh.tflite"
    path.write_bytes(_build_tflite(tensors, ops, inputs=[0], outputs=[2]))
    with pytest.raises(TFLiteError, match=r"fused_tanh.tflite: op 0 \(ADD\): fused activation TANH is not supported"):
        TFLiteModule.from_file(path)


def test_not_a_tflite_file(tmp_path) -> None:
    path = tmp_path / "nonsense.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(TFLiteError, match="nonsense.tflite: not a TFLite flatbuffer"):
        TFLiteModule.from_file(path)


def _op_zoo() -> tuple[list[dict], list[dict], list[int], list[int]]:
    """One graph exercising padding, resize, pool, dilation, int8 weights, depth-to-space, reshape and concat."""
    rng = np.random.default_rng(7)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    tensors: list[dict] = []

    def tensor(shape, data=None, type_=0, quant=None) -> int:
        tensors.append({"shape": list(shape), "data": data, "type": type_, "quant": quant})
        return len(tensors) - 1

    ops: list[dict] = []

    def op(name, inputs, output_shape, options=None) -> int:
        out = tensor(output_shape)
        ops.append({"op": name, "inputs": inputs, "outputs": [out], "options": options})
        return out

    def conv_opts(padding, stride, act, dilation=1, depthwise=False):
        fields = {"Padding": padding, "StrideW": stride, "StrideH": stride, "FusedActivationFunction": act}
        fields.update({"DilationWFactor": dilation, "DilationHFactor": dilation})
        if depthwise:
            fields["DepthMultiplier"] = 2
        return ("DepthwiseConv2DOptions" if depthwise else "Conv2DOptions", fields)

    x = tensor([1, 10, 11, 4])
    # CONV_2D SAME, stride 2 on 10×11: rows padded (0, 1), columns (1, 1); RELU6. Weights int8, per-channel scales.
    q = rng.integers(-127, 128, size=(6, 3, 3, 4)).astype(np.int8)
    scales = (rng.random(6) * 0.02 + 0.005).astype(np.float32)
    w_q = tensor([6, 3, 3, 4], q, type_=9, quant=(scales.tolist(), [0] * 6, 0))
    w = op("DEQUANTIZE", [w_q], [6, 3, 3, 4])
    c1 = op("CONV_2D", [x, w, tensor([6], f32(6))], [1, 5, 6, 6], conv_opts(0, 2, 3))
    # DEPTHWISE_CONV_2D SAME, 3×3 dilated by 2, multiplier 2, RELU_N1_TO_1.
    d1 = op(
        "DEPTHWISE_CONV_2D",
        [c1, tensor([1, 3, 3, 12], f32(1, 3, 3, 12)), tensor([12], f32(12))],
        [1, 5, 6, 12],
        conv_opts(0, 1, 2, dilation=2, depthwise=True),
    )
    # MAX_POOL_2D SAME 3×3 stride 2 on the raw input (negative values: padding must never win).
    pool = ("Pool2DOptions", {"Padding": 0, "StrideW": 2, "StrideH": 2, "FilterWidth": 3, "FilterHeight": 3})
    p1 = op("MAX_POOL_2D", [x], [1, 5, 6, 4], pool)
    # PAD on channels and space, then ADDs (RELU_N1_TO_1, then a broadcast constant and RELU).
    pads = tensor([4, 2], np.array([[0, 0], [1, 0], [0, 2], [0, 8]], np.int32), type_=2)
    p2 = op("PAD", [p1, pads], [1, 6, 8, 12])
    d1_pads = tensor([4, 2], np.array([[0, 0], [1, 0], [0, 2], [0, 0]], np.int32), type_=2)
    p3 = op("PAD", [d1, d1_pads], [1, 6, 8, 12])
    a1 = op("ADD", [p3, p2], [1, 6, 8, 12], ("AddOptions", {"FusedActivationFunction": 2}))
    a2 = op("ADD", [a1, tensor([12], f32(12))], [1, 6, 8, 12], ("AddOptions", {"FusedActivationFunction": 1}))
    # RESIZE_BILINEAR in all three sampling modes, concatenated on channels.
    size = tensor([2], np.array([9, 13], np.int32), type_=2)
    resized = [
        op(
            "RESIZE_BILINEAR",
            [a2, size],
            [1, 9, 13, 12],
            ("ResizeBilinearOptions", {"AlignCorners": ac, "HalfPixelCenters": hp}),
        )
        for ac, hp in ((False, False), (True, False), (False, True))
    ]
    cat = op("CONCATENATION", resized, [1, 9, 13, 36], ("ConcatenationOptions", {"Axis": -1}))
    d2s = op("DEPTH_TO_SPACE", [cat], [1, 18, 26, 9], ("DepthToSpaceOptions", {"BlockSize": 2}))
    # VALID conv, reshape to flat (NHWC order), logistic.
    c2 = op(
        "CONV_2D", [d2s, tensor([5, 2, 3, 9], f32(5, 2, 3, 9)), tensor([5], f32(5))], [1, 17, 24, 5], conv_opts(1, 1, 0)
    )
    flat = op("RESHAPE", [c2, tensor([2], np.array([1, -1], np.int32), type_=2)], [1, 17 * 24 * 5])
    sig = op("LOGISTIC", [flat], [1, 17 * 24 * 5])
    # A second output that stays rank 4 (NHWC back at the boundary), concatenated along W.
    side = op("CONCATENATION", [c1, c1], [1, 5, 12, 6], ("ConcatenationOptions", {"Axis": 2}))
    # An asymmetric PAD read only by convolutions (folded into them): VALID depthwise, and SAME on top of it.
    pc = op("PAD", [c1, tensor([4, 2], np.array([[0, 0], [0, 1], [2, 1], [0, 0]], np.int32), type_=2)], [1, 6, 9, 6])
    dv = op(
        "DEPTHWISE_CONV_2D",
        [pc, tensor([1, 3, 3, 12], f32(1, 3, 3, 12)), tensor([12], f32(12))],
        [1, 2, 4, 12],
        conv_opts(1, 2, 0, depthwise=True),
    )
    sc = op(
        "CONV_2D", [pc, tensor([4, 3, 3, 6], f32(4, 3, 3, 6)), tensor([4], f32(4))], [1, 3, 5, 4], conv_opts(0, 2, 0)
    )
    return tensors, ops, [x], [sig, side, d2s, dv, sc]


def test_op_variants_match_litert(tmp_path) -> None:
    pytest.importorskip("flatbuffers")
    pytest.importorskip("ai_edge_litert")
    path = tmp_path / "zoo.tflite"
    path.write_bytes(_build_tflite(*_op_zoo()))
    net = TFLiteModule.from_file(path)
    assert sum(isinstance(m, Pad) for m in net.ops) == 2  # the third PAD is done by the convolutions reading it
    x = np.random.default_rng(3).uniform(-1, 1, size=(2, 10, 11, 4)).astype(np.float32)
    reference = _litert(path, x)
    with torch.inference_mode():
        ours = net(torch.from_numpy(x))
    for name, out in zip(net.output_names, ours):
        ref = np.stack([r[name][0] for r in reference])
        assert out.shape == ref.shape
        np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=2e-5 * max(1.0, float(np.abs(ref).max())))
