import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpwhisperx import config
from cpwhisperx.config import KEYS, Settings, load_settings, parse_env_file
from cpwhisperx.errors import ConfigError

pytestmark = pytest.mark.fast

REPO = Path(__file__).resolve().parents[1]
DOCUMENTED = REPO / "config" / ".env.pipeline"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_documented_file_lists_every_key_with_its_default() -> None:
    assert list(parse_env_file(DOCUMENTED)) == list(KEYS)
    assert load_settings(config_file=DOCUMENTED, environ={}) == Settings()
    text = DOCUMENTED.read_text()
    for key in KEYS:  # each key has a comment right above it
        lines = text.splitlines()
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}="))
        assert lines[index - 1].startswith("#"), key


def test_layers_later_wins(tmp_path: Path) -> None:
    cfg = write(tmp_path / "cfg", "WHISPER_MODEL=base\nBEAM_SIZE=2\nBATCH_SIZE=3\nCPU_THREADS=1\n")
    job = write(tmp_path / "job", "BEAM_SIZE=4\nBATCH_SIZE=4\nCPU_THREADS=4\n")
    s = load_settings(config_file=cfg, job_file=job,
                      environ={"BATCH_SIZE": "8", "CPU_THREADS": "8"}, cli={"CPU_THREADS": "16"})
    assert (s.whisper_model, s.beam_size, s.batch_size, s.cpu_threads) == ("base", 4, 8, 16)


def test_whisperx_is_an_alias_of_faster_whisper() -> None:
    notes: list[str] = []
    s = load_settings(cli={"WHISPER_BACKEND": "whisperx"}, environ={}, notes=notes)
    assert s.whisper_backend == "faster-whisper"
    assert notes == ["WHISPER_BACKEND=whisperx in the command line is faster-whisper, the "
                     "CTranslate2 engine WhisperX runs on"]


def test_the_old_tools_settings_become_ours_each_with_a_note(tmp_path: Path) -> None:
    cfg = write(tmp_path / "cfg", "WHISPER_BACKEND=cuda\nWHISPER_DEVICE=MPS\n"
                "ALIGNMENT_BACKEND=whisperx\nWHISPER_COMPUTE_TYPE=int8\n"
                "INDICTRANS2_BACKEND=pytorch\nWHISPER_LANGUAGE=hi\nTARGET_LANGUAGE=en\n"
                "WHISPERX_DEVICE=cuda\nSTEP_DIARIZATION=true\nVAD_BACKEND=pyannote\n"
                "DOCKER_TAG=latest\nWHISPER_INITIAL_PROMPT=Shah Rukh Khan\n")
    notes: list[str] = []
    s = load_settings(config_file=cfg, environ={}, notes=notes)
    assert (s.whisper_backend, s.whisper_device, s.alignment_backend, s.whisper_compute_type,
            s.source_language, s.targets, s.vad_backend, s.initial_prompt) == (
        "faster-whisper", "mps", "whisperx", "int8", "hi", ["en"], "silero", "Shah Rukh Khan")
    told = "\n".join(notes)
    for key in ("WHISPER_BACKEND=cuda", "WHISPER_DEVICE=mps", "ALIGNMENT_BACKEND=whisperx",
                "INDICTRANS2_BACKEND", "WHISPER_LANGUAGE", "TARGET_LANGUAGE", "WHISPERX_DEVICE",
                "STEP_DIARIZATION", "VAD_BACKEND=pyannote", "DOCKER_TAG",
                "WHISPER_INITIAL_PROMPT"):
        assert f"{key} in {cfg}" in told, key
    assert "WHISPER_COMPUTE_TYPE" not in told  # ours already: nothing to say
    assert "INDICTRANS2_BACKEND in" in told and "TRANSLATION_BACKEND" in told
    assert "STEP_DIARIZATION in" in told and "DIARIZATION=auto" in told
    # WHISPER_BACKEND=cuda means the CUDA device, where no device is set.
    assert load_settings(cli={"WHISPER_BACKEND": "cuda"}, environ={}).whisper_device == "cuda"
    assert load_settings(cli={"WHISPER_BACKEND": "cuda", "WHISPER_DEVICE": "cpu"},
                         environ={}).whisper_device == "cpu"


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("WHISPER_DEVICE", "gpu", "allowed values: 'auto', 'cpu', 'cuda' or 'mps'"),
    ("BEAM_SIZE", "-1", "greater than or equal to 0"),
    ("SOURCE_LANGUAGE", "klingon", "Whisper language code"),
    ("AUDIO_STREAM", "x1", "3-letter language tag"),
])
def test_bad_value_names_key_source_and_allowed(key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(cli={key: value}, environ={})
    message = err.value.message
    assert message.startswith(f"{key}={value!r} from the command line is not allowed")
    assert expected in message and "\n" not in message


def test_unknown_key_in_a_file_is_a_note_naming_the_closest_and_on_the_command_line_an_error(
        tmp_path: Path) -> None:
    cfg = write(tmp_path / "cfg", "# comment\nWHISPER_MODLE=base\nFOO=1\n")
    notes: list[str] = []
    assert load_settings(config_file=cfg, environ={}, notes=notes) == Settings()
    assert notes == [f"WHISPER_MODLE in {cfg} is not a setting and is ignored (did you mean "
                     "WHISPER_MODEL?)", f"FOO in {cfg} is not a setting and is ignored"]
    with pytest.raises(ConfigError, match=r"unknown key WHISPER_MODLE in the command line; "):
        load_settings(cli={"WHISPER_MODLE": "base"}, environ={})


def test_shell_characters_stay_literal(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    value = f"$(touch {marker}); `touch {marker}` && echo 'x' \"y\" | cat > {marker}"
    job = tmp_path / "job.env"
    config.write_job_env(job, Settings(whisper_model=value))
    assert load_settings(job_file=job, environ={}).whisper_model == value
    assert not marker.exists()


@given(st.text(alphabet=string.printable.replace("\n", "").replace("\r", "")
               .replace("\x0b", "").replace("\x0c", ""), max_size=40))
def test_env_file_round_trips_any_one_line_value(value: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "job.env", config.format_env_file({"WHISPER_MODEL": value}))
        assert parse_env_file(path)["WHISPER_MODEL"] == value
