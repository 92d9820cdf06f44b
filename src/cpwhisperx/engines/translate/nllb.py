"""NLLB-200 through CTranslate2, for pairs Whisper cannot translate and where no LLM is set up.

The model is a CTranslate2 conversion of an NLLB checkpoint with its ``tokenizer.json``
(``ct2-transformers-converter --model facebook/nllb-200-distilled-600M --copy_files
tokenizer.json``): a local folder, or a Hugging Face repo id downloaded once into the usual cache.
Tokenization uses the ``tokenizers`` library (already there for faster-whisper): the source is
``<src_lang> pieces </s>``, the decoder is prefixed with the target's language code.
"""

from collections.abc import Sequence
from pathlib import Path

from cpwhisperx import errors
from cpwhisperx.engines.translate import ctranslate2_translator
from cpwhisperx.errors import ConfigError, ModelNotFound

# Whisper's language codes → NLLB's FLORES-200 codes.
FLORES: dict[str, str] = {
    "en": "eng_Latn", "hi": "hin_Deva", "bn": "ben_Beng", "ta": "tam_Taml", "te": "tel_Telu",
    "mr": "mar_Deva", "gu": "guj_Gujr", "kn": "kan_Knda", "ml": "mal_Mlym", "pa": "pan_Guru",
    "ur": "urd_Arab", "ne": "npi_Deva", "as": "asm_Beng", "sa": "san_Deva", "sd": "snd_Arab",
    "si": "sin_Sinh", "fr": "fra_Latn", "de": "deu_Latn", "es": "spa_Latn", "it": "ita_Latn",
    "pt": "por_Latn", "nl": "nld_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl", "pl": "pol_Latn",
    "cs": "ces_Latn", "sk": "slk_Latn", "sl": "slv_Latn", "hr": "hrv_Latn", "sr": "srp_Cyrl",
    "bg": "bul_Cyrl", "ro": "ron_Latn", "hu": "hun_Latn", "el": "ell_Grek", "tr": "tur_Latn",
    "sv": "swe_Latn", "da": "dan_Latn", "no": "nob_Latn", "fi": "fin_Latn", "et": "est_Latn",
    "lt": "lit_Latn", "lv": "lvs_Latn", "ar": "arb_Arab", "fa": "pes_Arab", "he": "heb_Hebr",
    "zh": "zho_Hans", "ja": "jpn_Jpan", "ko": "kor_Hang", "vi": "vie_Latn", "th": "tha_Thai",
    "id": "ind_Latn", "ms": "zsm_Latn", "tl": "tgl_Latn", "my": "mya_Mymr", "km": "khm_Khmr",
    "lo": "lao_Laoo", "sw": "swh_Latn", "am": "amh_Ethi", "yo": "yor_Latn", "so": "som_Latn",
}


def code(language: str) -> str:
    if language not in FLORES:
        raise ConfigError(f"NLLB has no language code here for {language!r}: use another "
                          "TRANSLATION_BACKEND for it")
    return FLORES[language]


def resolve(name: str, *, offline: bool) -> Path:
    """A local model folder, or a Hugging Face repo id (from the cache, else downloaded)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not ((path / "model.bin").is_file() and (path / "tokenizer.json").is_file()):
            raise ModelNotFound(f"{path} holds no CTranslate2 NLLB model with its "
                                "tokenizer.json: convert one with ct2-transformers-converter "
                                "--copy_files tokenizer.json")
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=offline))
    except Exception as exc:
        reason = errors.reason(exc)[:160]
        raise ModelNotFound(f"NLLB model {name!r} not found ({reason}): set TRANSLATION_MODEL "
                            "to a local CTranslate2 folder, or get it online once") from None


class NllbTranslator:
    name = "nllb"
    batch_size = 16

    def __init__(self, *, model: Path, device: str, compute_type: str, cpu_threads: int,
                 beam_size: int = 4) -> None:
        from tokenizers import Tokenizer

        self.model = str(model)
        self.beam_size = beam_size
        self.translator = ctranslate2_translator(model, what="NLLB", device=device,
                                                 compute_type=compute_type,
                                                 cpu_threads=cpu_threads)
        self.tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))

    def translate(self, texts: Sequence[str], *, source: str, target: str,
                  context: str) -> list[str]:
        """One batch; ``context`` is not used (NLLB translates sentence by sentence)."""
        src, tgt = code(source), code(target)
        pieces = [self.tokenizer.encode(text, add_special_tokens=False).tokens for text in texts]
        results = self.translator.translate_batch(
            [[src, *p, "</s>"] for p in pieces], target_prefix=[[tgt]] * len(texts),
            beam_size=self.beam_size, max_decoding_length=2 * max(map(len, pieces)) + 16)
        out = []
        for result in results:
            ids = [self.tokenizer.token_to_id(t) for t in result.hypotheses[0][1:]]
            out.append(self.tokenizer.decode([i for i in ids if i is not None],
                                             skip_special_tokens=True).strip())
        return out
