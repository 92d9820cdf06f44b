"""The faster-whisper internals the batched decoder calls, by name: a release that renames or
reorders them fails here, not in a user's run (pyproject pins the minor version)."""

import inspect

import pytest
from faster_whisper import WhisperModel
from faster_whisper.transcribe import TranscriptionOptions

from cpwhisperx import transcript
from cpwhisperx.engines.asr import batched

pytestmark = pytest.mark.fast

USED = {
    "_split_segments_by_timestamps": ("tokenizer", "tokens", "time_offset", "segment_size",
                                      "segment_duration", "seek"),
    "add_word_timestamps": ("segments", "tokenizer", "encoder_output", "num_frames",
                            "prepend_punctuations", "append_punctuations",
                            "last_speech_timestamp"),
    "generate_with_fallback": ("encoder_output", "prompt", "tokenizer", "options"),
    "get_prompt": ("tokenizer", "previous_tokens", "hotwords"),
    "encode": ("features",),
}


@pytest.mark.parametrize(("method", "names"), USED.items())
def test_private_methods_take_the_arguments_we_pass(method: str, names: tuple[str, ...]) -> None:
    parameters = inspect.signature(getattr(WhisperModel, method)).parameters
    assert set(names) <= set(parameters), (method, list(parameters))


def test_our_copy_of_the_silence_verdict_is_faster_whispers() -> None:
    parameters = inspect.signature(WhisperModel.transcribe).parameters
    assert parameters["no_speech_threshold"].default == transcript.NO_SPEECH_THRESHOLD
    assert parameters["log_prob_threshold"].default == transcript.LOG_PROB_THRESHOLD


def test_transcription_options_are_built_from_transcribes_defaults() -> None:
    class Engine:
        beam_size = 1

    class Tokenizer:  # get_suppressed_tokens reads these
        encode = staticmethod(lambda text: [1])
        non_speech_tokens = (2,)
        transcribe, translate, sot, sot_prev, sot_lm, no_timestamps, no_speech = range(3, 10)

    options = batched._options(Engine(), Tokenizer())
    assert isinstance(options, TranscriptionOptions) and options.beam_size == 1
    assert options.compression_ratio_threshold == 2.4 and options.log_prob_threshold == -1.0
    assert set(batched._PUNCTUATION) == {"prepend_punctuations", "append_punctuations"}
