"""Settings in the spelling of the tools our users come from (CP-WhisperX-App, WhisperX),
translated into ours, each translation told as a note ("what the setting became").

A key of theirs with a counterpart here is renamed; one with none is dropped with what replaces
it; a value of theirs (``WHISPER_DEVICE=MPS``, ``ALIGNMENT_BACKEND=whisperx``) becomes ours.
"""

import difflib
import re
from collections.abc import Mapping

# Their key → ours: the same meaning, values in the same units.
RENAMED = {
    "WHISPER_LANGUAGE": "SOURCE_LANGUAGE", "TARGET_LANGUAGE": "TARGET_LANGUAGES",
    "WHISPER_BEAM_SIZE": "BEAM_SIZE", "WHISPER_BATCH_SIZE": "BATCH_SIZE",
    "DEVICE": "WHISPER_DEVICE", "WHISPERX_DEVICE": "WHISPER_DEVICE",
    "WHISPER_INITIAL_PROMPT": "INITIAL_PROMPT", "WHISPER_HOTWORDS": "HOTWORDS",
    "SILERO_THRESHOLD": "VAD_THRESHOLD", "SILERO_MIN_SILENCE_DURATION_MS": "VAD_MIN_SILENCE_MS",
    "WHISPERX_ALIGN_MODEL": "ALIGNMENT_MODEL", "SUBTITLE_MAX_LINE_LENGTH": "SUBTITLE_MAX_CHARS",
    "CPS_HARD_CAP": "SUBTITLE_MAX_CPS",
}

# Their keys with no counterpart: what does their job here (first match wins).
REPLACED: tuple[tuple[str, str], ...] = (
    (r"INDICTRANS2_.*|SECOND_PASS_.*|USE_HYBRID_TRANSLATION|LLM_PROVIDER|USE_LLM_FOR_SONGS|"
     r"TRANSLATION_.*",  # ours (TRANSLATION_BACKEND, ...) are known: they never get here
     "TRANSLATION_BACKEND chooses the engine (auto: IndicTrans2 for English/Indic pairs where "
     "installed, else NLLB or the bundled LLM) and runs it on the detected device"),
    (r"WHISPER_TASK",
     "translation into English is the translate workflow: -t en (TRANSLATION_BACKEND=whisper "
     "for Whisper's own)"),
    (r"WHISPER_(TEMPERATURE|BEST_OF|PATIENCE|LENGTH_PENALTY|NO_SPEECH_THRESHOLD|"
     r"LOGPROB_THRESHOLD|COMPRESSION_RATIO_THRESHOLD|CONDITION_ON_PREVIOUS_TEXT|MIN_DURATION)",
     "decoding uses faster-whisper's sequential decoder's own checks and temperatures, which "
     "keep every word; BEAM_SIZE sets the beam"),
    (r"WHISPERX_.*|ALIGN_.*",
     "ALIGNMENT_BACKEND and ALIGNMENT_MODEL set word alignment"),
    (r"(STEP_)?DIARIZATION.*|SPEAKER_.*|SUBTITLE_(INCLUDE_SPEAKER_LABELS|SPEAKER_FORMAT)",
     "DIARIZATION=auto (--diarize) tells speakers apart; NUM_SPEAKERS, MIN_SPEAKERS, "
     "MAX_SPEAKERS and SPEAKER_NAMES say how many and who"),
    (r"(STEP_VAD_)?PYANNOTE.*|SILERO_.*|STEP_VAD_SILERO",
     "speech is found by Silero VAD (VAD_THRESHOLD, VAD_MIN_SILENCE_MS, VAD_SPEECH_PAD_MS)"),
    (r"SOURCE_SEPARATION_.*",
     "SOURCE_SEPARATION=demucs (torch extra) or deepfilternet separates the voices"),
    (r"(STEP|STAGE)_.*|WORKFLOW_MODE|ENABLE_CHUNKING|CHUNK_.*",
     "the workflow (transcribe, translate, subtitle) decides the stages, and every stage "
     "works on long media"),
    (r"AUDIO_.*", "demux always writes the 16 kHz mono PCM that the models read"),
    (r"MUX_.*", "mux keeps every stream and adds a subtitle track per language"),
    (r"SUBTITLE_.*|CPS_.*|SEGMENT_MERG.*",
     "subtitles follow SUBTITLE_MAX_CHARS, SUBTITLE_MAX_CPS, SUBTITLE_MAX_LINES and "
     "SUBTITLE_AUDIENCE over each language's preset"),
    (r"GLOSSARY_.*|FILM_PROMPT_PATH|FREQUENCY_DATA_PATH|TMDB_.*|BIAS_.*|(PRE|POST)_NER_.*|"
     r"SONG_BIAS_.*",
     "names and terms come from TRANSLATION_GLOSSARY (used for speech recognition too), "
     "INITIAL_PROMPT and HOTWORDS"),
    (r"JOB_ID|USER_ID|IN_ROOT|OUTPUT_ROOT|LOG_.*|TITLE|YEAR|SECRETS_PATH|CANON_MAP",
     "jobs are named and placed by prepare (--out); logs go to the job's logs/ folder"),
    (r"DOCKER_.*|PYTORCH_.*|MPS_.*", "no containers or torch memory settings are needed"),
)

# Their value of one of our keys → ours (None: stays, with a note), and what it means here.
VALUES: dict[tuple[str, str], tuple[str | None, str]] = {
    ("WHISPER_BACKEND", "whisperx"): ("faster-whisper",
                                      "faster-whisper, the CTranslate2 engine WhisperX runs on"),
    ("WHISPER_BACKEND", "cuda"): ("faster-whisper", "faster-whisper on CUDA"),
    ("WHISPER_DEVICE", "mps"): (None, "the Apple GPU, through MLX (WHISPER_BACKEND=mlx); on "
                                      "a machine without one, auto"),
    ("ALIGNMENT_BACKEND", "whisperx"): (None, "wav2vec2 (WhisperX's aligner) where the torch "
                                              "extra and a model for the language are at hand, "
                                              "else the best other one"),
    ("ALIGNMENT_BACKEND", "mlx"): ("same", "same: Whisper's own word times"),
    ("VAD_BACKEND", "pyannote"): ("silero", "silero: Silero VAD, which faster-whisper "
                                            "ships (pyannote's needs gated Hub weights)"),
}
CASE_FREE = ("WHISPER_BACKEND", "WHISPER_DEVICE", "ALIGNMENT_BACKEND", "VAD_BACKEND")


def translate(values: Mapping[str, str], *, known: tuple[str, ...], source: str,
              keep_unknown: bool, explain: bool = True) -> tuple[dict[str, str], list[str]]:
    """``values`` with our keys and values, and a note for each one translated. A key that is
    neither ours nor theirs is kept (for the caller to reject) with ``keep_unknown``, else
    dropped with a note naming the closest key of ours. A value of theirs that is ours too
    (``mps``, ``whisperx``) is explained only with ``explain``."""
    ours: dict[str, str] = {}
    renamed: dict[str, str] = {}
    notes: list[str] = []
    for key, value in values.items():
        if key in known:
            ours[key] = value
        elif key in RENAMED:
            renamed[RENAMED[key]] = value
            notes.append(f"{key} in {source} is {RENAMED[key]}")
        elif replacement := next((why for pattern, why in REPLACED if re.fullmatch(pattern, key)),
                                 None):
            notes.append(f"{key} in {source} is ignored: {replacement}")
        elif keep_unknown:
            ours[key] = value
        else:
            close = difflib.get_close_matches(key, known, n=1)
            notes.append(f"{key} in {source} is not a setting and is ignored"
                         + (f" (did you mean {close[0]}?)" if close else ""))
    ours = {**renamed, **ours}  # our own spelling wins over theirs in the same place
    for key in CASE_FREE:
        if key in ours:
            ours[key] = ours[key].strip().lower()
    for key, value in list(ours.items()):
        if (key, value) not in VALUES:
            continue
        new, meaning = VALUES[key, value]
        if new is not None or explain:
            notes.append(f"{key}={value} in {source} is {meaning}")
        if new is not None:
            ours[key] = new
        if (key, value) == ("WHISPER_BACKEND", "cuda") and ours.get("WHISPER_DEVICE",
                                                                   "auto") == "auto":
            ours["WHISPER_DEVICE"] = "cuda"
    return ours, notes
