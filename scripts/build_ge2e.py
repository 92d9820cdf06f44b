"""Build ``src/cpwhisperx/data/ge2e/ge2e.onnx``, the speaker encoder DIARIZATION=ge2e runs,
from Resemblyzer 0.1.4's ``pretrained.pt`` (Apache-2.0): run once by a maintainer, with torch
and onnx installed, and the result committed; users need neither.

    pip download --no-deps resemblyzer==0.1.4 -d /tmp/rz
    python scripts/build_ge2e.py /tmp/rz/Resemblyzer-0.1.4-py3-none-any.whl

The network is GE2E (Wan et al., 2017): a 3-layer LSTM over 40 mel bands, its last hidden
state through a linear layer, ReLU and L2 norm. The weights are stored as float16 (2.9 MB
instead of 5.7 MB; cosine to the float32 embeddings ≥ 0.99999) and cast back to float32 when
onnxruntime loads the graph.
"""

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parents[1] / "src/cpwhisperx/data/ge2e/ge2e.onnx"
HIDDEN = 256


def _gates(weight: np.ndarray) -> np.ndarray:
    """torch's LSTM gate order (i, f, g, o) to ONNX's (i, o, f, c)."""
    i, f, g, o = np.split(weight, 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def build(state: dict[str, np.ndarray]) -> onnx.ModelProto:
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def weight(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value.astype(np.float16), name + "_f16"))
        nodes.append(helper.make_node("Cast", [name + "_f16"], [name], to=TensorProto.FLOAT))
        return name

    inits += [numpy_helper.from_array(np.array([0], np.int64), "axis0"),
              numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes.append(helper.make_node("Transpose", ["mels"], ["x0"], perm=[1, 0, 2]))  # time first
    x = "x0"
    for layer in range(3):
        w = weight(f"W{layer}", _gates(state[f"lstm.weight_ih_l{layer}"])[None])
        r = weight(f"R{layer}", _gates(state[f"lstm.weight_hh_l{layer}"])[None])
        b = weight(f"B{layer}", np.concatenate([_gates(state[f"lstm.bias_ih_l{layer}"]),
                                                _gates(state[f"lstm.bias_hh_l{layer}"])])[None])
        nodes.append(helper.make_node("LSTM", [x, w, r, b], [f"y{layer}", f"h{layer}"],
                                      hidden_size=HIDDEN))
        nodes.append(helper.make_node("Squeeze", [f"y{layer}", "axis1"], [f"x{layer + 1}"]))
        x = f"x{layer + 1}"
    nodes.append(helper.make_node("Squeeze", ["h2", "axis0"], ["last"]))
    nodes.append(helper.make_node("Gemm", ["last", weight("LW", state["linear.weight"]),
                                           weight("LB", state["linear.bias"])], ["lin"],
                                  transB=1))
    nodes.append(helper.make_node("Relu", ["lin"], ["relu"]))
    nodes.append(helper.make_node("LpNormalization", ["relu"], ["embeds"], axis=1, p=2))
    graph = helper.make_graph(
        nodes, "ge2e", [helper.make_tensor_value_info("mels", TensorProto.FLOAT, ["B", "T", 40])],
        [helper.make_tensor_value_info("embeds", TensorProto.FLOAT, ["B", 256])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="cpwhisperx scripts/build_ge2e.py")
    model.ir_version = 8
    model.doc_string = ("GE2E speaker encoder from Resemblyzer 0.1.4 (Copyright 2019 Resemble.AI, "
                        "Apache-2.0), converted to ONNX with float16 weights")
    onnx.checker.check_model(model)
    return model


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as whl:
        raw = whl.read("resemblyzer/pretrained.pt")
    state = torch.load(io.BytesIO(raw), map_location="cpu")["model_state"]
    arrays = {k: v.numpy() for k, v in state.items() if k.startswith(("lstm.", "linear."))}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build(arrays), OUT)
    print(f"{OUT}: {OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1])
