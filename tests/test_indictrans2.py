"""The IndicTrans2 engine's real converter, tokenization and batching on a tiny checkpoint in the
Hugging Face layout built here (random weights: it says nothing sensible, it exercises the
code), checked against an independent numpy forward pass of the same weights, and in the
translate workflow from a local folder and from a Hugging Face Hub on loopback."""

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hub_server import serve

from conftest import error_line, translate_jfk, translated_jfk
from cpwhisperx import config, translation
from cpwhisperx.engines.translate import indictrans2, llama_server
from cpwhisperx.errors import ConfigError, ModelNotFound

ctranslate2 = pytest.importorskip("ctranslate2")
spm = pytest.importorskip("sentencepiece")
safetensors_numpy = pytest.importorskip("safetensors.numpy")
if not indictrans2.installed():
    pytest.skip("the [indic] extra is not installed", allow_module_level=True)

TAGS = ["eng_Latn", "hin_Deva", "ben_Beng", "tam_Taml"]
D, FFN, HEADS, LAYERS = 16, 32, 2, 2
ENGLISH = ["Where were you last night?", "I waited at the station.", "The cat sat on the mat.",
           "Good morning, friends."]
HINDI = ["तुम कल रात कहाँ थे?", "मैं स्टेशन पर रुका रहा।", "बिल्ली चटाई पर बैठी।", "सुप्रभात दोस्तों।"]


def _pieces(folder: Path, name: str) -> list[str]:
    """A SentencePiece model trained on a few sentences, saved as ``name``; its pieces."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter((ENGLISH + HINDI) * 20), model_writer=model, vocab_size=80,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, bos_id=-1,
        eos_id=-1, unk_id=0, pad_id=-1, minloglevel=2)
    (folder / name).write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    return [sp.id_to_piece(i) for i in range(1, sp.get_piece_size())]  # 0 is <unk>


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder as on the Hub: config.json with IndicTrans' fields, safetensors with
    the HF model's key names, fairseq dictionaries (tags on the source side) and SentencePiece
    models."""
    folder = tmp_path_factory.mktemp("it2") / "indictrans2-en-indic-tiny"
    folder.mkdir()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]  # fairseq's order: 0..3
    vocab = {"SRC": specials + TAGS + _pieces(folder, "model.SRC"),
             "TGT": specials + _pieces(folder, "model.TGT")}
    for side, tokens in vocab.items():
        (folder / f"dict.{side}.json").write_text(
            json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["IndicTransForConditionalGeneration"], "model_type": "IndicTrans",
        "encoder_vocab_size": len(vocab["SRC"]), "decoder_vocab_size": len(vocab["TGT"]),
        "encoder_embed_dim": D, "decoder_embed_dim": D, "encoder_ffn_dim": FFN,
        "decoder_ffn_dim": FFN, "encoder_attention_heads": HEADS,
        "decoder_attention_heads": HEADS, "encoder_layers": LAYERS, "decoder_layers": LAYERS,
        "encoder_normalize_before": True, "decoder_normalize_before": True,
        "layernorm_embedding": True, "activation_function": "gelu", "scale_embedding": True,
        "share_decoder_input_output_embed": False, "max_source_positions": 256,
        "max_target_positions": 256, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
        "decoder_start_token_id": 2}))
    rng = np.random.default_rng(0)
    weights: dict[str, np.ndarray] = {}

    def linear(name: str, out: int, inp: int) -> None:
        weights[f"{name}.weight"] = rng.normal(0, 0.3, (out, inp)).astype(np.float32)
        weights[f"{name}.bias"] = rng.normal(0, 0.1, out).astype(np.float32)

    def norm(name: str) -> None:
        weights[f"{name}.weight"] = (1 + rng.normal(0, 0.1, D)).astype(np.float32)
        weights[f"{name}.bias"] = rng.normal(0, 0.1, D).astype(np.float32)

    for side, size in (("encoder", len(vocab["SRC"])), ("decoder", len(vocab["TGT"]))):
        prefix = f"model.{side}"
        weights[f"{prefix}.embed_tokens.weight"] = rng.normal(0, 0.3, (size, D)).astype(
            np.float32)
        norm(f"{prefix}.layer_norm")
        norm(f"{prefix}.layernorm_embedding")
        for n in range(LAYERS):
            layer = f"{prefix}.layers.{n}"
            for attention in ["self_attn"] + (["encoder_attn"] if side == "decoder" else []):
                for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    linear(f"{layer}.{attention}.{proj}", D, D)
                norm(f"{layer}.{attention}_layer_norm")
            linear(f"{layer}.fc1", FFN, D)
            linear(f"{layer}.fc2", D, FFN)
            norm(f"{layer}.final_layer_norm")
    weights["lm_head.weight"] = rng.normal(0, 0.3, (len(vocab["TGT"]), D)).astype(np.float32)
    safetensors_numpy.save_file(weights, str(folder / "model.safetensors"))
    return folder


class Reference:
    """IndicTrans' forward pass in numpy, written from the HF modelling code (pre-norm layers,
    scaled embeddings plus fairseq sinusoids from position pad+1, then a layer norm)."""

    def __init__(self, folder: Path) -> None:
        self.c = json.loads((folder / "config.json").read_text())
        self.w = safetensors_numpy.load_file(str(folder / "model.safetensors"))
        self.src = json.loads((folder / "dict.SRC.json").read_text())
        self.tgt = {"<blank>" if t == "<pad>" else t: i  # CTranslate2's name for it
                    for t, i in json.loads((folder / "dict.TGT.json").read_text()).items()}
        half = D // 2
        angles = np.arange(300)[:, None] * np.exp(
            -math.log(10000) / (half - 1) * np.arange(half))[None]
        self.positions = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    def norm(self, x: np.ndarray, name: str) -> np.ndarray:
        x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        return x * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T + self.w.get(f"{name}.bias", 0.0)

    def attend(self, x: np.ndarray, kv: np.ndarray, name: str, causal: bool) -> np.ndarray:
        size = D // HEADS

        def heads(t: np.ndarray) -> np.ndarray:
            return t.reshape(len(t), HEADS, size).transpose(1, 0, 2)

        q = heads(self.linear(x, f"{name}.q_proj") * size ** -0.5)
        k, v = heads(self.linear(kv, f"{name}.k_proj")), heads(self.linear(kv, f"{name}.v_proj"))
        scores = q @ k.transpose(0, 2, 1)
        if causal:
            scores = scores + np.triu(np.full((len(x), len(kv)), -np.inf), 1)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        out = (p / p.sum(-1, keepdims=True)) @ v
        return self.linear(out.transpose(1, 0, 2).reshape(len(x), D), f"{name}.out_proj")

    def ffn(self, x: np.ndarray, name: str) -> np.ndarray:
        h = self.linear(self.norm(x, f"{name}.final_layer_norm"), f"{name}.fc1")
        gelu = 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))
        return x + self.linear(gelu, f"{name}.fc2")

    def embed(self, ids: list[int], side: str) -> np.ndarray:
        pad = self.c["pad_token_id"]
        x = (self.w[f"model.{side}.embed_tokens.weight"][ids] * math.sqrt(D)
             + self.positions[pad + 1:pad + 1 + len(ids)])
        return self.norm(x, f"model.{side}.layernorm_embedding")

    def log_probs(self, source: list[str], target: list[str]) -> np.ndarray:
        """log P(next token) after </s> + ``target``, at every position."""
        x = self.embed([self.src.get(t, 3) for t in source] + [2], "encoder")
        for n in range(LAYERS):
            name = f"model.encoder.layers.{n}"
            h = self.norm(x, f"{name}.self_attn_layer_norm")
            x = self.ffn(x + self.attend(h, h, f"{name}.self_attn", False), name)
        memory = self.norm(x, "model.encoder.layer_norm")
        y = self.embed([2] + [self.tgt[t] for t in target], "decoder")
        for n in range(LAYERS):
            name = f"model.decoder.layers.{n}"
            h = self.norm(y, f"{name}.self_attn_layer_norm")
            y = y + self.attend(h, h, f"{name}.self_attn", True)
            h = self.norm(y, f"{name}.encoder_attn_layer_norm")
            y = self.ffn(y + self.attend(h, memory, f"{name}.encoder_attn", False), name)
        logits = self.linear(self.norm(y, "model.decoder.layer_norm"), "lm_head")
        return logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(
            -1, keepdims=True)) - logits.max(-1, keepdims=True)

    def greedy(self, source: list[str], steps: int) -> list[str]:
        """Never <blank>: the checkpoint's code would give it no position (the engine
        suppresses it, as fairseq did)."""
        names = {i: t for t, i in self.tgt.items()}
        out: list[str] = []
        for _ in range(steps):
            scores = self.log_probs(source, out)[-1]
            scores[self.tgt["<blank>"]] = -np.inf
            best = int(scores.argmax())
            if best == 2:
                break
            out.append(names[best])
        return out


def _assert_computes(folder: Path, reference: Reference) -> None:
    """The checkpoint in ``folder``, converted, decodes and scores as ``reference`` does."""
    converted = indictrans2.convert(folder)
    model = ctranslate2.Translator(str(converted), device="cpu", compute_type="float32")
    pieces = spm.SentencePieceProcessor(model_file=str(folder / "model.SRC"))
    for text in ("Where were you ?", "बिल्ली चटाई पर"):
        source = ["eng_Latn", "hin_Deva", *pieces.encode(text, out_type=str)]
        ours = model.translate_batch([source], beam_size=1, max_decoding_length=6,
                                     suppress_sequences=indictrans2.SUPPRESS)[0]
        assert ours.hypotheses[0] == reference.greedy(source, 6)
        # Every log-probability of the sequence, </s> included, and not only the argmax.
        scored = model.score_batch([source], [ours.hypotheses[0]])[0].log_probs
        expected = reference.log_probs(source, ours.hypotheses[0])
        ids = [reference.tgt[t] for t in ours.hypotheses[0]] + [2]
        assert np.allclose(scored, [expected[i, t] for i, t in enumerate(ids)], atol=1e-4)


def test_converted_model_computes_what_the_checkpoint_does(tiny: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("CPWHISPERX_CACHE", str(tmp_path))
    assert indictrans2.convert(tiny).is_relative_to(tmp_path)
    _assert_computes(tiny, Reference(tiny))


def test_a_tied_output_layer_is_read_under_either_name(tiny: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The distilled models share the decoder's embedding with its output layer, and a
    safetensors checkpoint keeps that tensor under one name or the other."""
    monkeypatch.setenv("CPWHISPERX_CACHE", str(tmp_path / "cache"))
    weights = safetensors_numpy.load_file(str(tiny / "model.safetensors"))
    names = ("model.decoder.embed_tokens.weight", "lm_head.weight")
    tied = weights.pop(names[1])
    del weights[names[0]]
    folders = {}
    for kept in (names, names[:1], names[1:], ()):
        folder = folders[kept] = tmp_path / str(len(folders)) / tiny.name
        shutil.copytree(tiny, folder)
        settings = json.loads((folder / "config.json").read_text())
        settings["share_decoder_input_output_embed"] = True
        (folder / "config.json").write_text(json.dumps(settings))
        safetensors_numpy.save_file({**weights, **dict.fromkeys(kept, tied)},
                                    str(folder / "model.safetensors"))
    reference = Reference(folders[names])
    for kept in (names[:1], names[1:]):
        _assert_computes(folders[kept], reference)
    with pytest.raises(ModelNotFound, match=r"has no weight 'model\.decoder\.embed_tokens\."
                       r"weight': it is incomplete or not an IndicTrans2 checkpoint"):
        indictrans2.convert(folders[()])


def test_padding_is_never_generated(tiny: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint whose every step likes <blank> (padding) best still translates: it is
    never generated, as the checkpoints' code would give it no position."""
    monkeypatch.setenv("CPWHISPERX_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / tiny.name
    shutil.copytree(tiny, folder)
    weights = safetensors_numpy.load_file(str(folder / "model.safetensors"))
    state = np.full(D, 0.5, np.float32)  # the decoder's every output, its last norm made so
    weights["model.decoder.layer_norm.weight"] = np.zeros(D, np.float32)
    weights["model.decoder.layer_norm.bias"] = state
    head = weights["lm_head.weight"].copy()
    head[1] = 5 * state  # <blank>, by far
    head[[0, 2, 3]] = -state  # never <s>, </s> or <unk>: the text comes from the pieces
    weights["lm_head.weight"] = head
    safetensors_numpy.save_file(weights, str(folder / "model.safetensors"))
    translator = indictrans2.IndicTrans2Translator(model=folder, device="cpu",
                                                   compute_type="default", cpu_threads=1)
    assert all(translator.translate(ENGLISH, source="en", target="hi", context=""))


def test_conversion_is_done_once_per_checkpoint(tiny: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPWHISPERX_CACHE", str(tmp_path))
    first = indictrans2.convert(tiny)
    assert first.name.startswith("indictrans2-en-indic-tiny-")
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]  # no temp left

    def again(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(indictrans2, "_spec", again)
    assert indictrans2.convert(tiny) == first


def test_translator_keeps_order_and_blank_lines(tiny: Path) -> None:
    translator = indictrans2.IndicTrans2Translator(model=tiny, device="cpu",
                                                   compute_type="default", cpu_threads=1)
    texts = [*ENGLISH, "", "Where?", "  ", *ENGLISH, "I waited.", *ENGLISH, "At the station."]
    assert len(texts) > translator.batch_size
    batch = translator.translate(texts, source="en", target="hi", context="")
    assert len(batch) == len(texts) and all(isinstance(t, str) for t in batch)
    assert [bool(t) for t in batch] == [bool(t.strip()) for t in texts]
    assert not any(tag in t for t in batch for tag in TAGS)
    alone = [translator.translate([t], source="en", target="hi", context="")[0]
             for t in texts[:6]]
    assert batch[:6] == alone
    assert translator.translate(["", " "], source="hi", target="en", context="") == ["", ""]
    with pytest.raises(ConfigError, match="use TRANSLATION_BACKEND=nllb or llm for fr → en"):
        translator.translate(["Bonjour"], source="fr", target="en", context="")


def test_models_by_pair_and_what_is_refused(tiny: Path) -> None:
    assert indictrans2.model_for("", "en", "ta") == "ai4bharat/indictrans2-en-indic-dist-200M"
    assert indictrans2.model_for("", "ur", "en") == "ai4bharat/indictrans2-indic-en-dist-200M"
    assert indictrans2.model_for("", "bn", "hi") == indictrans2.REPOS["indic-indic"]
    # Scheduled languages Whisper cannot hear are targets all the same.
    assert indictrans2.model_for("", "en", "or") == indictrans2.REPOS["en-indic"]
    assert indictrans2.model_for("", "hi", "sat") == indictrans2.REPOS["indic-indic"]
    assert indictrans2.model_for(str(tiny), "en", "hi") == str(tiny)
    with pytest.raises(ConfigError, match="is an IndicTrans2 en-indic model"):
        indictrans2.model_for(str(tiny), "hi", "en")
    with pytest.raises(ConfigError, match="IndicTrans2 translates between English and the 22"):
        indictrans2.model_for("", "en", "fr")
    message = ""
    try:
        indictrans2.resolve("test/absent-indictrans2", offline=True)
    except ModelNotFound as exc:
        message = str(exc)
    assert message.startswith("IndicTrans2 model 'test/absent-indictrans2' not found (")
    assert "\n" not in message and "TRANSLATION_MODEL" in message
    with pytest.raises(ModelNotFound, match=r"is not an IndicTrans2 model \(no config.json"):
        indictrans2.resolve(str(tiny.parent), offline=True)


def _settings(**values: str) -> config.Settings:
    return config.load_settings(config_file=Path("/dev/null"), environ={},
                                cli={k.upper(): v for k, v in values.items()})


def test_engine_choice(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def choose(source: str, target: str, **values: str) -> str:
        return translation.choose(_settings(**values), source=source, target=target)

    assert choose("en", "hi", translation_backend="indictrans2") == "indictrans2"
    with pytest.raises(ConfigError, match="for fr → en"):
        choose("fr", "en", translation_backend="indictrans2")
    # auto: a local IndicTrans2 checkpoint, for the pairs it does; NLLB keeps its models.
    assert choose("en", "hi", translation_model=str(tiny)) == "indictrans2"
    assert choose("hi", "en", translation_model=str(tiny)) == "whisper"  # en-indic only
    assert choose("fr", "en", translation_model=str(tiny)) == "whisper"
    assert choose("hi", "ta", translation_model="nllb-ct2") == "nllb"
    # No model named: the default repo, where it is in the cache or the Hub answers; else the
    # [llm] extra's small model, the last resort.
    monkeypatch.setattr(llama_server, "bundled_installed", lambda: False)
    with pytest.raises(ConfigError, match="no translation engine here for en → hi"):
        choose("en", "hi")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with serve({}) as (url, _):
        monkeypatch.setenv("HF_ENDPOINT", url)
        assert choose("en", "hi") == "indictrans2"
        assert choose("hi", "en", source_language="hi") == "indictrans2"
        assert choose("fr", "en") == "whisper"
        # An LLM the user set up comes before a default model to download.
        assert choose("en", "hi", llm_model="m.gguf") == "llm"
    monkeypatch.setenv("HF_ENDPOINT", f"{url}/")  # the same port, closed now: no Hub
    with pytest.raises(ConfigError, match="no translation engine here for en → hi"):
        choose("en", "hi")
    monkeypatch.setattr(llama_server, "bundled_installed", lambda: True)
    assert choose("en", "hi") == "llm"
    assert choose("fr", "en") == "whisper"  # Whisper before the small model


def test_indictrans2_in_the_translate_workflow_from_a_folder_and_from_the_hub(
        tmp_path: Path, tiny: Path) -> None:
    meta = translated_jfk(tmp_path / "a", translate_jfk(
        tmp_path / "a", "--translator", "indictrans2", "--set", f"TRANSLATION_MODEL={tiny}"))
    assert meta["hi"]["engine"] == "indictrans2"
    assert meta["hi"]["segments"] == meta["sentences"] > 0

    hub, cache = tmp_path / "hub", tmp_path / "cache"
    repo = indictrans2.REPOS["en-indic"]
    with serve({repo: tiny}) as (url, requested):
        # auto picks the pair's default model, as the Hub answers; a fresh cache converts it.
        env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "", "HF_ENDPOINT": url,
               "CPWHISPERX_CACHE": str(cache)}
        online = translated_jfk(tmp_path / "b", translate_jfk(tmp_path / "b", env=env))
    assert online["hi"]["engine"] == "indictrans2" and online["hi"]["model"] == repo
    assert any(path.endswith("/model.safetensors") for path in requested)
    assert list(cache.glob(f"indictrans2/{repo.split('/')[1]}-*/model.bin"))
    # Offline, the model in the Hugging Face cache is the default all the same.
    offline = translated_jfk(tmp_path / "c", translate_jfk(tmp_path / "c", env={
        "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "CPWHISPERX_CACHE": str(tmp_path)}))
    assert offline["hi"]["engine"] == "indictrans2" and offline["hi"]["translated"] > 0

    missing = translate_jfk(tmp_path / "d", "--translator", "indictrans2",
                            "--set", "TRANSLATION_MODEL=test/absent", env={"HF_HUB_OFFLINE": "1"})
    assert missing.returncode == 1
    assert "IndicTrans2 model 'test/absent' not found" in error_line(missing)
