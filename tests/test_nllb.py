"""The NLLB engine's real loader, tokenizer and batching on a tiny NLLB-architecture model
built here (random weights: it says nothing sensible, it exercises the code), in the translate
workflow from a local folder and from a Hugging Face Hub on loopback."""

import shutil
from pathlib import Path

import pytest
from hub_server import serve

from conftest import error_line, translate_jfk, translated_jfk
from cpwhisperx.engines.translate.nllb import NllbTranslator

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ctranslate2 = pytest.importorskip("ctranslate2")

LANGUAGES = ["eng_Latn", "hin_Deva"]


@pytest.fixture(scope="module")
def tiny_nllb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An M2M100 (NLLB) model with a Unigram tokenizer trained on a few sentences, converted
    to CTranslate2 with its tokenizer.json, as ct2-transformers-converter --copy_files does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    root = tmp_path_factory.mktemp("nllb")
    hf, ct2 = root / "hf", root / "ct2"
    hf.mkdir()
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    corpus = ["Where were you last night?", "I waited at the station.",
              "तुम कल रात कहाँ थे?", "मैं स्टेशन पर रुका रहा।"] * 20
    tokenizer.train_from_iterator(corpus, trainers.UnigramTrainer(
        vocab_size=120, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    tokenizer.add_special_tokens(LANGUAGES)
    tokenizer.save(str(hf / "tokenizer.json"))
    fast = transformers.NllbTokenizerFast(tokenizer_file=str(hf / "tokenizer.json"),
                                          src_lang=LANGUAGES[0], tgt_lang=LANGUAGES[1],
                                          additional_special_tokens=LANGUAGES)
    fast.save_pretrained(hf)
    config = transformers.M2M100Config(
        vocab_size=len(fast), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=512, pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        decoder_start_token_id=fast.eos_token_id)
    torch.manual_seed(0)
    transformers.M2M100ForConditionalGeneration(config).save_pretrained(hf)
    ctranslate2.converters.TransformersConverter(str(hf)).convert(str(ct2))
    shutil.copy(hf / "tokenizer.json", ct2)
    return ct2


def test_nllb_translates_in_batches_as_it_does_one_by_one(tiny_nllb: Path) -> None:
    translator = NllbTranslator(model=tiny_nllb, device="cpu", compute_type="default",
                                cpu_threads=1)
    texts = ["Where were you last night?", "I waited.", "तुम कहाँ थे?", "At the station."]
    batch = translator.translate(texts, source="en", target="hi", context="")
    assert len(batch) == len(texts) and all(batch)
    assert not any(code in text for text in batch for code in LANGUAGES)  # prefix removed
    assert batch == [translator.translate([t], source="en", target="hi", context="")[0]
                     for t in texts]


def test_nllb_in_the_translate_workflow_from_a_folder_and_from_the_hub(
        tmp_path: Path, tiny_nllb: Path) -> None:
    meta = translated_jfk(tmp_path / "a", translate_jfk(
        tmp_path / "a", "--translator", "nllb", "--set", f"TRANSLATION_MODEL={tiny_nllb}"))
    assert meta["hi"]["engine"] == "nllb" and meta["hi"]["segments"] == meta["sentences"] > 0

    hub = tmp_path / "hub"
    with serve({"test/nllb-tiny": tiny_nllb}) as (url, requested):
        # A fresh translation cache too: an earlier run's translations would leave nothing to
        # download the model for.
        env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "", "HF_ENDPOINT": url,
               "CPWHISPERX_CACHE": str(tmp_path / "cache")}
        online = translate_jfk(tmp_path / "b", "--set", "TRANSLATION_MODEL=test/nllb-tiny", env=env)
    assert online.returncode == 0, online.stderr
    assert any(path.endswith("/model.bin") for path in requested)
    assert list(hub.rglob("tokenizer.json"))

    missing = translate_jfk(tmp_path / "c", "--set", "TRANSLATION_MODEL=test/absent",
                            env={"HF_HUB_OFFLINE": "1"})
    assert missing.returncode == 1
    assert "NLLB model 'test/absent' not found" in error_line(missing)
