"""AI4Bharat's IndicTrans2 through CTranslate2: English ↔ the 22 scheduled Indic languages and
Indic ↔ Indic, without torch and without the checkpoints' own modelling code.

The checkpoints on the Hugging Face Hub (``ai4bharat/indictrans2-*``) ship modelling code that
does not run on transformers 5, so the weights (``model.safetensors``) are converted here, once,
into a CTranslate2 model in the cache (a pre-norm Transformer with an embedding layer norm,
sinusoidal positions and separate source and target vocabularies). Text goes through
IndicTransToolkit's ``IndicProcessor`` (the normalization and Devanagari script unification the
models were trained with, and the ``src_tag tgt_tag`` prefix), then the checkpoint's
SentencePiece models ``model.SRC`` and ``model.TGT``.
"""

import hashlib
import importlib.util
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cpwhisperx import errors
from cpwhisperx.engines.translate import ctranslate2_translator
from cpwhisperx.errors import ConfigError, EngineUnavailable, ModelNotFound

# Codes of the scheduled languages → IndicTrans2's tags. Sindhi is written in
# the Arabic script in Pakistan and by Whisper, so snd_Arab rather than snd_Deva.
INDIC: dict[str, str] = {
    "as": "asm_Beng", "bn": "ben_Beng", "gu": "guj_Gujr", "hi": "hin_Deva", "kn": "kan_Knda",
    "ml": "mal_Mlym", "mr": "mar_Deva", "ne": "npi_Deva", "pa": "pan_Guru", "sa": "san_Deva",
    "sd": "snd_Arab", "ta": "tam_Taml", "te": "tel_Telu", "ur": "urd_Arab",
    # Subtitle targets only (languages.TEXT_LANGUAGES): Whisper cannot hear them.
    "or": "ory_Orya", "mai": "mai_Deva", "kok": "gom_Deva", "doi": "doi_Deva",
    "brx": "brx_Deva", "sat": "sat_Olck", "mni": "mni_Mtei", "ks": "kas_Arab",
}
TAGS: dict[str, str] = {"en": "eng_Latn", **INDIC}
# The distilled models, one per direction; the 1B ones are named like them (…-1B).
REPOS: dict[str, str] = {
    "en-indic": "ai4bharat/indictrans2-en-indic-dist-200M",
    "indic-en": "ai4bharat/indictrans2-indic-en-dist-200M",
    "indic-indic": "ai4bharat/indictrans2-indic-indic-dist-320M",
}
FILES = ("config.json", "dict.SRC.json", "dict.TGT.json", "model.SRC", "model.TGT")
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
SPECIAL = frozenset({"<s>", "</s>", "<unk>", "<blank>"})  # never part of a translation
# The checkpoints' code gives padding no position, so a <blank> fed back to the decoder would
# shift every later position there and not in CTranslate2; fairseq never generates it either.
SUPPRESS = [["<blank>"]]
CONVERTER = 1  # bump when the conversion changes: converted models are rebuilt


def direction(source: str, target: str) -> str:
    """en-indic, indic-en or indic-indic; ConfigError for a pair IndicTrans2 does not do."""
    if source != target and {source, target} <= TAGS.keys():
        return "-".join("en" if code == "en" else "indic" for code in (source, target))
    raise ConfigError(f"IndicTrans2 translates between English and the 22 scheduled Indic "
                      f"languages ({', '.join(sorted(INDIC))} here): use "
                      f"TRANSLATION_BACKEND=nllb or llm for {source} → {target}")


def model_for(name: str, source: str, target: str) -> str:
    """The model for a pair: ``name`` (TRANSLATION_MODEL) or, when empty, the distilled model
    of the pair's direction. A name that says it is for another direction is refused."""
    wanted = direction(source, target)
    if not name:
        return REPOS[wanted]
    base = Path(name).name.lower()
    if (other := next((d for d in REPOS if d != wanted and f"-{d}" in base), None)):
        raise ConfigError(f"TRANSLATION_MODEL={name} is an IndicTrans2 {other} model, and "
                          f"{source} → {target} needs an {wanted} one (empty: "
                          f"{REPOS[wanted]})")
    return name


def is_indictrans2(name: str) -> bool:
    """Whether TRANSLATION_MODEL names an IndicTrans2 model: a folder with its dictionaries,
    or a repo id with indictrans2 in it."""
    path = Path(name).expanduser()
    if path.is_dir():
        return (path / "dict.SRC.json").is_file() and (path / "model.SRC").is_file()
    return "indictrans2" in name.lower()


def installed() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("IndicTransToolkit", "sentencepiece", "safetensors", "ctranslate2"))


def _check(folder: Path) -> Path:
    missing = [f for f in FILES if not (folder / f).is_file()]
    if not any((folder / w).is_file() for w in WEIGHTS):
        missing.append(" or ".join(WEIGHTS))
    if missing:
        raise ModelNotFound(f"{folder} is not an IndicTrans2 model (no {', '.join(missing)}): "
                            "set TRANSLATION_MODEL to an ai4bharat/indictrans2-* repo or a "
                            "copy of one")
    return folder


def _download(repo: str, *, offline: bool) -> Path:
    from huggingface_hub import snapshot_download

    # Only what the conversion reads; pytorch_model.bin only where there is no safetensors.
    folder = Path(snapshot_download(repo, allow_patterns=[*FILES, WEIGHTS[0]],
                                    local_files_only=offline))
    if not (folder / WEIGHTS[0]).is_file():
        folder = Path(snapshot_download(repo, allow_patterns=[*FILES, WEIGHTS[1]],
                                        local_files_only=offline))
    return _check(folder)


def resolve(name: str, *, offline: bool) -> Path:
    """A local IndicTrans2 checkpoint folder, or a Hugging Face repo id (from the cache, else
    downloaded): the folder holding config.json, the weights, dict.*.json, model.SRC/TGT."""
    path = Path(name).expanduser()
    if path.is_dir():
        return _check(path)
    try:
        return _download(name, offline=offline)
    except ModelNotFound:
        raise
    except Exception as exc:
        reason = errors.reason(exc)[:160]
        todo = ("get it online once (unset HF_HUB_OFFLINE)" if offline
                else "check its name and that huggingface.co can be reached")
        raise ModelNotFound(f"IndicTrans2 model {name!r} not found ({reason}): {todo}, or set "
                            "TRANSLATION_MODEL to a local copy, or LLM_MODEL/LLM_BASE_URL"
                            ) from None


def convert(folder: Path) -> Path:
    """The checkpoint in ``folder`` as a CTranslate2 model in the cache, converted on first use
    (into a temporary folder renamed into place, so a half-written one is never used)."""
    from cpwhisperx.models import cache_root

    weights = next(folder / w for w in WEIGHTS if (folder / w).is_file())
    stat = weights.stat()
    key = hashlib.sha256(json.dumps([str(folder.resolve()), stat.st_size, stat.st_mtime_ns,
                                     CONVERTER]).encode()).hexdigest()[:16]
    # A hub snapshot is named by its revision: name the conversion by its repo instead.
    name = next((p.name.split("--")[-1] for p in folder.resolve().parents
                 if p.name.startswith("models--")), folder.resolve().name)
    out = cache_root() / "indictrans2" / f"{name}-{key}"
    if (out / "model.bin").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        spec = _spec(config, _weights(weights), folder)
        spec.validate()
        spec.optimize(quantization=None)  # the checkpoint's float32; quantized when loaded
        tmp.mkdir()
        spec.save(str(tmp))
        for name in ("model.SRC", "model.TGT"):
            shutil.copyfile(folder / name, tmp / name)
        (tmp / "indictrans2.json").write_text(json.dumps({
            "max_source_positions": config["max_source_positions"],
            "max_target_positions": config["max_target_positions"]}))
        try:
            tmp.rename(out)
        except OSError:  # another process converted it meanwhile
            if not (out / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class _Tensors(dict[str, Any]):
    """A checkpoint's tensors by name; a missing one is a one-line error naming it."""

    def __init__(self, path: Path, tensors: dict[str, Any]) -> None:
        super().__init__(tensors)
        self.path = path

    def __missing__(self, name: str) -> Any:
        raise ModelNotFound(f"{self.path} has no weight {name!r}: it is incomplete or not an "
                            "IndicTrans2 checkpoint; download it again, or set "
                            "TRANSLATION_MODEL to a complete one")


def _weights(path: Path) -> _Tensors:
    import numpy as np

    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return _Tensors(path, {k: v.astype(np.float32) for k, v in load_file(str(path)).items()})
    try:
        import torch
    except ImportError:
        raise EngineUnavailable(f"{path} can only be read with torch: install torch, or use a "
                                "copy of the model with model.safetensors") from None
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return _Tensors(path, {k: v.float().numpy() for k, v in state.items()})


def _spec(c: dict[str, Any], sd: dict[str, Any], folder: Path) -> Any:
    """The CTranslate2 TransformerSpec of an IndicTrans config and its HF state dict."""
    from ctranslate2.converters import utils
    from ctranslate2.specs import common_spec, transformer_spec

    if (c["encoder_normalize_before"] != c["decoder_normalize_before"]
            or c["encoder_attention_heads"] != c["decoder_attention_heads"]):
        raise EngineUnavailable("this IndicTrans2 variant mixes encoder and decoder layouts, "
                                "which the converter does not handle")
    spec = transformer_spec.TransformerSpec.from_config(
        (c["encoder_layers"], c["decoder_layers"]), c["encoder_attention_heads"],
        pre_norm=c["encoder_normalize_before"],
        activation={"gelu": common_spec.Activation.GELU,
                    "relu": common_spec.Activation.RELU}[c.get("activation_function", "relu")],
        layernorm_embedding=c.get("layernorm_embedding", False))

    def linear(layer: Any, name: str) -> None:
        layer.weight = sd[f"{name}.weight"]
        if f"{name}.bias" in sd:
            layer.bias = sd[f"{name}.bias"]

    def norm(layer: Any, name: str) -> None:
        layer.gamma, layer.beta = sd[f"{name}.weight"], sd[f"{name}.bias"]

    def attention(layer: Any, name: str, *, cross: bool) -> None:
        q, k, v = (common_spec.LinearSpec() for _ in range(3))
        for part, proj in ((q, "q_proj"), (k, "k_proj"), (v, "v_proj")):
            linear(part, f"{name}.{proj}")
        if cross:  # CTranslate2 keeps the query apart from the fused key/value
            utils.fuse_linear(layer.linear[0], [q])
            utils.fuse_linear(layer.linear[1], [k, v])
        else:
            utils.fuse_linear(layer.linear[0], [q, k, v])
        linear(layer.linear[-1], f"{name}.out_proj")

    if c.get("share_decoder_input_output_embed"):
        # One tensor under two names (the distilled 200M models): a checkpoint saved as
        # safetensors may keep either; where both are kept, loading it leaves lm_head's.
        kept = "lm_head.weight" if "lm_head.weight" in sd else "model.decoder.embed_tokens.weight"
        sd["lm_head.weight"] = sd["model.decoder.embed_tokens.weight"] = sd[kept]
    for side, part in (("encoder", spec.encoder), ("decoder", spec.decoder)):
        prefix, dim = f"model.{side}", c[f"{side}_embed_dim"]
        embeddings = part.embeddings[0] if isinstance(part.embeddings, list) else part.embeddings
        embeddings.weight = sd[f"{prefix}.embed_tokens.weight"]
        part.scale_embeddings = math.sqrt(dim) if c.get("scale_embedding", True) else 1.0
        positions = c["max_source_positions" if side == "encoder" else "max_target_positions"]
        part.position_encodings.encodings = _sinusoids(positions, dim, c["pad_token_id"])
        if c["encoder_normalize_before"]:
            norm(part.layer_norm, f"{prefix}.layer_norm")
        if c.get("layernorm_embedding"):
            norm(part.layernorm_embedding, f"{prefix}.layernorm_embedding")
        for n, layer in enumerate(part.layer):
            name = f"{prefix}.layers.{n}"
            attention(layer.self_attention, f"{name}.self_attn", cross=False)
            norm(layer.self_attention.layer_norm, f"{name}.self_attn_layer_norm")
            if side == "decoder":
                attention(layer.attention, f"{name}.encoder_attn", cross=True)
                norm(layer.attention.layer_norm, f"{name}.encoder_attn_layer_norm")
            linear(layer.ffn.linear_0, f"{name}.fc1")
            linear(layer.ffn.linear_1, f"{name}.fc2")
            norm(layer.ffn.layer_norm, f"{name}.final_layer_norm")
    spec.decoder.projection.weight = sd["lm_head.weight"]
    for side, register in (("SRC", spec.register_source_vocabulary),
                           ("TGT", spec.register_target_vocabulary)):
        ids = json.loads((folder / f"dict.{side}.json").read_text(encoding="utf-8"))
        tokens = sorted(ids, key=ids.__getitem__)
        register(["<blank>" if t == "<pad>" else t for t in tokens])  # CTranslate2's padding
    spec.config.bos_token, spec.config.eos_token, spec.config.unk_token = "<s>", "</s>", "<unk>"
    spec.config.decoder_start_token = "</s>"  # fairseq starts decoding from </s>
    spec.config.add_source_eos = True
    return spec


def _sinusoids(positions: int, dim: int, pad: int) -> Any:
    """fairseq's sinusoidal table, from position ``pad + 1`` on (where the first token is)."""
    import numpy as np

    half = dim // 2
    rates = np.exp(np.arange(half, dtype=np.float32) * -(math.log(10000) / (half - 1)))
    angles = np.arange(pad + 1, pad + 1 + positions, dtype=np.float32)[:, None] * rates[None]
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    return np.pad(table, ((0, 0), (0, dim % 2))).astype(np.float32)


def processor() -> Any:
    """IndicTransToolkit's IndicProcessor, alone. The package's ``__init__`` also imports its
    training collator, which fails on transformers 5 (``transformers.tokenization_utils`` is
    gone); the package's module made from its spec but never run, put in sys.modules first,
    lets Python import just the ``processor`` submodule from the installed folder."""
    if "IndicTransToolkit" not in sys.modules:
        found = importlib.util.find_spec("IndicTransToolkit")
        if found is None or not found.submodule_search_locations:
            raise EngineUnavailable("TRANSLATION_BACKEND=indictrans2 needs the [indic] extra: "
                                    "pip install 'cpwhisperx[indic]'")
        sys.modules["IndicTransToolkit"] = importlib.util.module_from_spec(found)
    from IndicTransToolkit.processor import IndicProcessor

    return IndicProcessor(inference=True)


class IndicTrans2Translator:
    name = "indictrans2"
    batch_size = 16

    def __init__(self, *, model: Path, device: str, compute_type: str, cpu_threads: int,
                 beam_size: int = 5) -> None:
        """``model``: an IndicTrans2 checkpoint folder (``resolve``); converted on first use."""
        import sentencepiece

        self.model = str(model)
        self.beam_size = beam_size
        converted = convert(model)
        self.translator = ctranslate2_translator(converted, what="IndicTrans2", device=device,
                                                 compute_type=compute_type,
                                                 cpu_threads=cpu_threads)
        self.source_pieces = sentencepiece.SentencePieceProcessor(
            model_file=str(converted / "model.SRC"))
        self.target_pieces = sentencepiece.SentencePieceProcessor(
            model_file=str(converted / "model.TGT"))
        limits = json.loads((converted / "indictrans2.json").read_text())
        self.max_source = int(limits["max_source_positions"])
        self.max_target = int(limits["max_target_positions"])

    def translate(self, texts: Sequence[str], *, source: str, target: str,
                  context: str) -> list[str]:
        """One batch; ``context`` is not used (IndicTrans2 translates sentence by sentence).
        Blank lines stay blank."""
        direction(source, target)
        src, tgt = TAGS[source], TAGS[target]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        out = [""] * len(texts)
        if not todo:
            return out
        # A fresh processor each batch: it queues placeholders (URLs, numbers) between
        # preprocess and postprocess, and a failed batch must not leave any for the next.
        ip = processor()
        tokens = []
        for line in ip.preprocess_batch([texts[i] for i in todo], src_lang=src, tgt_lang=tgt):
            _, _, text = line.split(" ", 2)  # "src_tag tgt_tag text"
            pieces = self.source_pieces.encode(text, out_type=str)
            tokens.append([src, tgt, *pieces][:self.max_source - 1])  # room for </s>
        # The search runs to the model's own limit, as AI4Bharat's does, and the same for every
        # batch, so that a batch gives what one by one would (a sentence caught in a loop keeps
        # its batch decoding to that limit); a translation past twice its source is cut there.
        limits = [2 * len(t) + 16 for t in tokens]
        results = self.translator.translate_batch(
            tokens, beam_size=self.beam_size, max_input_length=self.max_source,
            max_decoding_length=self.max_target - 1, suppress_sequences=SUPPRESS)
        decoded = [self.target_pieces.decode_pieces(
            [p for p in r.hypotheses[0][:limit] if p not in SPECIAL])
            for r, limit in zip(results, limits, strict=True)]
        for i, text in zip(todo, ip.postprocess_batch(decoded, lang=tgt), strict=True):
            out[i] = text.strip()
        return out
