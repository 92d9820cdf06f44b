"""One typed settings object, layered: defaults → config file → job file → environment → CLI.

Files use ``KEY=value`` lines. They are parsed here, never ``source``d by a shell, so a value
may hold any character except a newline.
"""

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cpwhisperx import legacy, writers
from cpwhisperx.errors import ConfigError
from cpwhisperx.hallucinations import RULES as CLEAN_RULES
from cpwhisperx.languages import LANGUAGES, WHISPER_LANGUAGES
from cpwhisperx.runtime import fsutil

COMPUTE_TYPES = ("auto", "default", "int8", "int8_float16", "int8_float32", "int8_bfloat16",
                 "int16", "float16", "bfloat16", "float32")


MAX_TARGETS = 8  # subtitle languages per job
# json txt tsv srt vtt, and rttm (written once diarized)
OUTPUT_FORMATS = (*writers.WRITERS, *writers.CUE_WRITERS, "rttm")


class Settings(BaseModel):
    """Every key of ``.env.pipeline``; the field name upper-cased is the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_language: str = "auto"
    hindi_script: Literal["devanagari", "as-spoken"] = "devanagari"
    audio_stream: str = ""
    source_separation: Literal["none", "deepfilternet", "demucs"] = "none"
    separation_model: str = "htdemucs"
    whisper_backend: Literal["auto", "faster-whisper", "mlx"] = "auto"
    whisper_model: str = "auto"
    whisper_device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    whisper_compute_type: Literal[COMPUTE_TYPES] = "auto"  # type: ignore[valid-type]
    beam_size: int = Field(0, ge=0, le=20)  # 0: asr_engines.beam_size
    initial_prompt: str = ""  # text the speech follows: names, spelling, punctuation
    hotwords: str = ""  # words to favour, with the glossary's terms
    batch_size: int = Field(0, ge=0, le=256)  # 0 = auto
    cpu_threads: int = Field(0, ge=0, le=1024)
    asr_decoders: int = Field(0, ge=0, le=64)  # 0 = auto (hardware.resolve)
    asr_timeout_s: float = Field(0.0, ge=0.0)
    alignment_backend: Literal["auto", "whisper", "pocketsphinx", "wav2vec2", "whisperx",
                               "same", "none"] = "auto"
    alignment_model: str = ""
    align_timeout_s: float = Field(0.0, ge=0.0)
    vad_backend: Literal["silero", "none"] = "silero"
    vad_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    vad_min_silence_ms: int = Field(2000, ge=0)
    vad_speech_pad_ms: int = Field(400, ge=0)
    clean_rules: str = ",".join(CLEAN_RULES)
    clean_repeat_limit: int = Field(3, ge=1, le=100)
    clean_max_cps: float = Field(40.0, gt=0.0)
    clean_min_cps: float = Field(1.0, ge=0.0)
    # Who speaks when: none, auto (the speaker encoder that ships: ge2e), ge2e, pyannote
    diarization: Literal["none", "auto", "ge2e", "pyannote"] = "none"
    diarization_model: str = ""  # pyannote: a Hugging Face id, a folder or its config.yaml
    num_speakers: int = Field(0, ge=0, le=64)  # 0: found from the audio
    min_speakers: int = Field(0, ge=0, le=64)
    max_speakers: int = Field(0, ge=0, le=64)
    speaker_names: str = ""  # "Asha,Ravi" in order of first appearance, or "SPEAKER_01=Ravi"
    output_format: str = "all"  # the transcript's files: all, or a comma list of formats
    target_languages: str = ""
    translation_backend: Literal["auto", "whisper", "llm", "nllb", "indictrans2"] = "auto"
    # NLLB: a CTranslate2 folder; IndicTrans2: a checkpoint folder; or a Hugging Face repo id
    translation_model: str = ""
    translation_glossary: str = ""  # a file of "term = translation" lines ("hi: ..." for one)
    llm_base_url: str = ""  # an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1
    llm_model: str = ""  # the endpoint's model name, or a local .gguf file to serve ourselves
    llm_context_chars: int = Field(4000, ge=0, le=200_000)
    llm_timeout_s: float = Field(120.0, gt=0.0)
    subtitle_audience: Literal["adult", "children"] = "adult"
    # "0" (the language's preset), a limit for every language, or per language: "40,hi:38"
    subtitle_max_chars: str = "0"
    subtitle_max_cps: str = "0"
    subtitle_max_lines: int = Field(2, ge=1, le=2)
    burn_in: str = ""  # one subtitle language drawn into the picture, as well as the soft tracks

    @field_validator("source_language")
    @classmethod
    def _language(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "auto" and value not in WHISPER_LANGUAGES:
            raise ValueError("expected auto or a Whisper language code (en, hi, ta, ...)")
        return value

    @field_validator("output_format")
    @classmethod
    def _formats(cls, value: str) -> str:
        chosen = [f.strip().lower() for f in value.split(",") if f.strip()]
        if chosen == ["all"]:
            return "all"
        if not chosen or not set(chosen) <= set(OUTPUT_FORMATS):
            raise ValueError(f"expected all or a comma list of {', '.join(OUTPUT_FORMATS)}")
        return ",".join(f for f in OUTPUT_FORMATS if f in chosen)

    @property
    def formats(self) -> list[str]:
        """The transcript's file formats, in ``OUTPUT_FORMATS``' order."""
        return list(OUTPUT_FORMATS) if self.output_format == "all" else (
            self.output_format.split(","))

    @field_validator("target_languages")
    @classmethod
    def _targets(cls, value: str) -> str:
        codes = list(dict.fromkeys(c.strip().lower() for c in value.split(",") if c.strip()))
        if unknown := [c for c in codes if c not in LANGUAGES]:
            raise ValueError(f"unknown language code {unknown[0]!r}: expected a comma list of "
                             "language codes (en, hi, ta, or, ...)")
        if len(codes) > MAX_TARGETS:
            raise ValueError(f"at most {MAX_TARGETS} target languages, got {len(codes)}")
        return ",".join(codes)

    @field_validator("subtitle_max_chars")
    @classmethod
    def _line_chars(cls, value: str) -> str:
        return _limits(value, low=10, high=100, unit="characters", whole=True)

    @field_validator("subtitle_max_cps")
    @classmethod
    def _reading_speed(cls, value: str) -> str:
        return _limits(value, low=1, high=100, unit="characters per second", whole=False)

    def subtitle_limits(self, language: str) -> tuple[int, float]:
        """Characters per line and reading speed set for a language; 0 for its preset."""
        chars = _limit_for(self.subtitle_max_chars, language)
        return int(chars), _limit_for(self.subtitle_max_cps, language)

    @model_validator(mode="after")
    def _burn_in(self) -> "Settings":
        if self.burn_in and self.burn_in not in (self.targets or [self.source_language]):
            raise ValueError(f"BURN_IN={self.burn_in} is not a subtitle language: add it to "
                             "TARGET_LANGUAGES (-t)")
        return self

    @field_validator("speaker_names")
    @classmethod
    def _speaker_names(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        pairs = [n.partition("=") for n in names if "=" in n]
        if pairs and len(pairs) != len(names):
            raise ValueError("expected names in order (Asha,Ravi) or SPEAKER_NN=Name pairs, "
                             "not both")
        if bad := [k + s + v for k, s, v in pairs
                   if not re.fullmatch(r"SPEAKER_\d\d", k.strip()) or not v.strip()]:
            raise ValueError(f"expected SPEAKER_NN=Name, got {bad[0]!r}")
        return ",".join(f"{k.strip()}={v.strip()}" for k, _, v in pairs) if pairs else (
            ",".join(names))

    @model_validator(mode="after")
    def _speakers(self) -> "Settings":
        if self.max_speakers and self.min_speakers > self.max_speakers:
            raise ValueError(f"MIN_SPEAKERS={self.min_speakers} is more than "
                             f"MAX_SPEAKERS={self.max_speakers}")
        if self.num_speakers and (self.min_speakers or self.max_speakers):
            raise ValueError("set NUM_SPEAKERS, or MIN_SPEAKERS/MAX_SPEAKERS, not both")
        return self

    @property
    def targets(self) -> list[str]:
        return self.target_languages.split(",") if self.target_languages else []

    @field_validator("clean_rules")
    @classmethod
    def _clean_rules(cls, value: str) -> str:
        rules = [r.strip().lower() for r in value.split(",") if r.strip()]
        if rules == ["none"]:
            return "none"
        if not rules or not set(rules) <= set(CLEAN_RULES):
            raise ValueError(f"expected none or a comma list of {', '.join(CLEAN_RULES)}")
        return ",".join(r for r in CLEAN_RULES if r in rules)

    @field_validator("audio_stream")
    @classmethod
    def _audio_stream(cls, value: str) -> str:
        value = value.strip()
        if value and not (value.isdigit() or (value.isalpha() and len(value) == 3)):
            raise ValueError("expected empty (first stream), an index (0, 1, ...) "
                             "or a 3-letter language tag (eng, hin, ...)")
        return value.lower()

    def to_env(self) -> dict[str, str]:
        return {name.upper(): _to_text(value) for name, value in self.model_dump().items()}


KEYS = tuple(name.upper() for name in Settings.model_fields)


def _limits(value: str, *, low: float, high: float, unit: str, whole: bool) -> str:
    """A per-language limit, ``40,hi:38``: a number for every language, ``code:number`` for
    one; 0 or nothing leaves the language's preset. Returned in a canonical form."""
    allowed = (f"expected 0 (the language's preset), {low:g} to {high:g} {unit}, or limits per "
               "language such as 40,hi:38")
    limits: dict[str, float] = {}
    for item in (i.strip() for i in value.split(",") if i.strip()):
        language, _, number = item.rpartition(":")
        language = language.strip().lower() or "*"
        if language != "*" and language not in LANGUAGES:
            raise ValueError(f"unknown language code {language!r} in {item!r}: {allowed}")
        try:
            limit = float(number)
        except ValueError:
            raise ValueError(allowed) from None
        if (limit and not low <= limit <= high) or (whole and not limit.is_integer()):
            raise ValueError(allowed)
        limits[language] = limit
    every = limits.pop("*", 0.0)
    return ",".join([f"{every:g}", *(f"{code}:{limit:g}" for code, limit in limits.items())])


def _limit_for(value: str, language: str) -> float:
    every, *own = value.split(",")
    for item in own:
        code, number = item.split(":")
        if code == language:
            return float(number)
    return float(every)


def _to_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_env_file(path: Path) -> dict[str, str]:
    """Read ``KEY=value`` lines; ``#`` starts a comment; one pair of outer quotes is removed."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text") from exc
    values: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not key:
            raise ConfigError(f"{path}:{number}: expected KEY=value, got {raw.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def format_env_file(values: Mapping[str, str], *, header: str = "") -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in values.items():
        if value != value.strip() or (value[:1] in "\"'" and value[:1] == value[-1:]):
            value = f'"{value}"'
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def default_config_file() -> Path | None:
    """``CPWHISPERX_CONFIG`` if set, else ``config/.env.pipeline`` under the working directory."""
    if explicit := os.environ.get("CPWHISPERX_CONFIG"):
        return Path(explicit)
    candidate = Path("config/.env.pipeline")
    return candidate if candidate.is_file() else None


def load_settings(*, job_file: Path | None = None, cli: Mapping[str, str] | None = None,
                  config_file: Path | None = None, environ: Mapping[str, str] | None = None,
                  notes: list[str] | None = None) -> Settings:
    """Merge the layers (later wins) and validate once, naming where a bad value came from.
    Settings in another tool's spelling (``legacy``) are translated, and ``notes`` gets what
    each became; a key in a file that is no setting is dropped with a note."""
    environ = os.environ if environ is None else environ
    layers: list[tuple[str, Mapping[str, str]]] = []
    if config_file is None and job_file is None:  # a job file already holds every key
        config_file = default_config_file()
    if config_file is not None:
        layers.append((str(config_file), parse_env_file(config_file)))
    if job_file is not None:
        layers.append((str(job_file), parse_env_file(job_file)))
    layers.append(("the environment", {k: environ[k] for k in KEYS if k in environ}))
    layers.append(("the command line", dict(cli or {})))

    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        # A job's own file holds our values: told once, when the job was prepared.
        values, told = legacy.translate(values, known=KEYS, source=source,
                                        keep_unknown=source == "the command line",
                                        explain=source != str(job_file))
        if notes is not None:
            notes.extend(told)
        for key, value in values.items():
            if key not in KEYS:
                raise ConfigError(f"unknown key {key} in {source}; known keys: {', '.join(KEYS)}")
            if "\n" in value or "\r" in value:
                raise ConfigError(f"{key} in {source} holds a line break; values are one line")
            merged[key], origin[key] = value, source
    try:
        return Settings(**{key.lower(): value for key, value in merged.items()})
    except ValidationError as exc:
        error = exc.errors()[0]
        if not error["loc"]:  # a rule across keys: its message names them
            raise ConfigError(_explain(error)) from None
        key = str(error["loc"][0]).upper()
        raise ConfigError(f"{key}={merged.get(key, '')!r} from {origin.get(key, 'defaults')} "
                          f"is not allowed: {_explain(error)}") from None


def _explain(error: Mapping[str, object]) -> str:
    ctx = error.get("ctx") or {}
    if error["type"] == "literal_error" and isinstance(ctx, Mapping):
        return f"allowed values: {ctx.get('expected')}"
    return str(error["msg"]).removeprefix("Value error, ")


def write_job_env(path: Path, settings: Settings) -> None:
    fsutil.write_text(path, format_env_file(
        settings.to_env(),
        header="The job's full effective configuration, written by `cpwhisperx prepare`.\n"
               "Edit a value and `cpwhisperx run` redoes the stages it affects."))
