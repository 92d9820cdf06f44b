"""Convert a CTranslate2 Whisper model into the MLX layout that mlx-whisper loads.

No MLX weights can be downloaded here, and users who already have a CTranslate2 model should not
need a second download: the tensors are the same, only named and laid out differently. numpy
only, so the conversion runs in the parent before the (timed) worker starts.
"""

import json
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cpwhisperx.errors import CpwError
from cpwhisperx.models import ModelRef, cache_root
from cpwhisperx.runtime import fsutil

# CTranslate2's type ids in model.bin (ctranslate2/specs/model_spec.py, _dtype_to_type_id).
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
WEIGHTS, CONFIG, HEADS = "weights.npz", "config.json", "alignment_heads.json"


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a CTranslate2 ``model.bin``, by name."""
    def unpack(fh: BinaryIO, fmt: str) -> int:
        return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]

    def string(fh: BinaryIO) -> str:
        return fh.read(unpack(fh, "<H"))[:-1].decode("utf-8")

    tensors: dict[str, np.ndarray] = {}
    with path.open("rb") as fh:
        version = unpack(fh, "<I")
        if version < 5:
            raise CpwError(f"{path} is CTranslate2 model format {version}: convert it again "
                           "with a current ct2-transformers-converter")
        string(fh), unpack(fh, "<I")  # spec name and revision
        for _ in range(unpack(fh, "<I")):
            name = string(fh)
            shape = [unpack(fh, "<I") for _ in range(unpack(fh, "<B"))]
            dtype = _CT2_DTYPES[unpack(fh, "<B")]
            data = fh.read(unpack(fh, "<I"))
            if dtype == "bfloat16":  # numpy has none: widen to float32
                array = (np.frombuffer(data, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(data, dtype=dtype)
            tensors[name] = array.reshape(shape)
            if dtype.startswith("int") and name.endswith("/weight"):
                raise CpwError(f"{path} stores {dtype} weights: MLX needs a float model "
                               "(ct2-transformers-converter --quantization float16)")
    return tensors


def to_mlx(ct2: dict[str, np.ndarray]) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """mlx-whisper's ModelDimensions and tensors; every CTranslate2 weight must be used."""
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return ct2[name]

    def norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = take(f"{src}/gamma"), take(f"{src}/beta")

    def linear(src: str, *dsts: str) -> None:
        # CTranslate2 fuses q/k/v (and cross-attention k/v) into one matrix, in that order.
        weights = np.split(take(f"{src}/weight"), len(dsts))
        biases = np.split(take(f"{src}/bias"), len(dsts))
        for dst, weight, bias in zip(dsts, weights, biases, strict=True):
            out[f"{dst}.weight"] = weight
            if not dst.endswith(".key"):  # Whisper's key projections have no bias (CT2 pads 0)
                out[f"{dst}.bias"] = bias

    layers = {}
    for side in ("encoder", "decoder"):
        n = 0
        while f"{side}/layer_{n}/ffn/linear_0/weight" in ct2:
            src, dst = f"{side}/layer_{n}", f"{side}.blocks.{n}"
            linear(f"{src}/self_attention/linear_0",
                   f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value")
            linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
            norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
            if side == "decoder":
                linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
                linear(f"{src}/attention/linear_1", f"{dst}.cross_attn.key",
                       f"{dst}.cross_attn.value")
                linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
                norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
            linear(f"{src}/ffn/linear_0", f"{dst}.mlp1")
            linear(f"{src}/ffn/linear_1", f"{dst}.mlp2")
            norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
            n += 1
        layers[side] = n
    for conv in ("conv1", "conv2"):  # PyTorch (out, in, kernel) → MLX (out, kernel, in)
        out[f"encoder.{conv}.weight"] = take(f"encoder/{conv}/weight").transpose(0, 2, 1)
        out[f"encoder.{conv}.bias"] = take(f"encoder/{conv}/bias")
    norm("encoder/layer_norm", "encoder.ln_post")
    norm("decoder/layer_norm", "decoder.ln")
    embedding = out["decoder.token_embedding.weight"] = take("decoder/embeddings/weight")
    text_pos = out["decoder.positional_embedding"] = take("decoder/position_encodings/encodings")
    audio_pos = take("encoder/position_encodings/encodings")  # MLX recomputes the sinusoids

    unused = sorted(k for k, v in ct2.items() if k not in used and v.ndim > 0)
    if unused or not layers["encoder"] or not layers["decoder"]:
        raise CpwError("not a Whisper model in the layout this converter knows "
                       f"(unexpected: {', '.join(unused[:3]) or 'no layers'})")
    dims = {"n_mels": int(ct2["encoder/conv1/weight"].shape[1]),
            "n_audio_ctx": audio_pos.shape[0], "n_audio_state": audio_pos.shape[1],
            "n_audio_head": int(ct2["encoder/num_heads"]), "n_audio_layer": layers["encoder"],
            "n_vocab": embedding.shape[0], "n_text_ctx": text_pos.shape[0],
            "n_text_state": text_pos.shape[1], "n_text_head": int(ct2["decoder/num_heads"]),
            "n_text_layer": layers["decoder"]}
    return dims, out


def convert(src: Path, dst: Path) -> None:
    """Write ``weights.npz``, ``config.json`` and ``alignment_heads.json`` into ``dst``."""
    dims, tensors = to_mlx(read_ct2(src / "model.bin"))
    with (dst / WEIGHTS).open("wb") as fh:
        np.savez(fh, **tensors)  # type: ignore[arg-type]  # no tensor is named allow_pickle
    (dst / CONFIG).write_text(json.dumps(dims), encoding="utf-8")
    heads = json.loads((src / "config.json").read_text(encoding="utf-8")).get("alignment_heads")
    # Without the model's own heads, Whisper's default: every head of the upper half.
    (dst / HEADS).write_text(json.dumps(heads or []), encoding="utf-8")


def ensure(model: ModelRef) -> Path:
    """The MLX copy of ``model``, converted once into the cache (keyed by its weights)."""
    digest = fsutil.sha256_sampled(model.path / "model.bin")[:16]
    target = cache_root() / "mlx" / f"{model.name.replace('/', '--')}-{digest}"
    try:
        return fsutil.publish_dir(target, lambda tmp: convert(model.path, tmp),
                                  ready=lambda p: all((p / f).is_file()
                                                      for f in (WEIGHTS, CONFIG, HEADS)))
    except OSError as exc:
        raise CpwError(f"cannot convert {model.path} for MLX into {target}: "
                       f"{exc.strerror or exc}; free some disk space or set CPWHISPERX_CACHE "
                       "to another folder") from exc
