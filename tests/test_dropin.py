"""What users of the old CP-WhisperX-App, WhisperX and faster-whisper type, working here: their
settings and commands, the Python API, many files in one command, output options."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import srt

from conftest import REPO, assert_times_valid, cli, clip, job_of, job_root, wer_against
from cpwhisperx import evaluation


def test_the_old_tools_env_file_runs_to_the_end_saying_what_each_setting_became(
        tmp_path: Path) -> None:
    legacy = tmp_path / ".env.pipeline"
    legacy.write_text("# written for CP-WhisperX-App\nWHISPER_BACKEND=whisperx\n"
                      "WHISPER_DEVICE=mps\nALIGNMENT_BACKEND=whisperx\nWHISPER_COMPUTE_TYPE=int8\n"
                      "INDICTRANS2_BACKEND=pytorch\nWHISPER_LANGUAGE=en\nDOCKER_TAG=latest\n",
                      encoding="utf-8")
    proc = cli(tmp_path / "out", "transcribe", str(clip("en_jfk")),
               env={"CPWHISPERX_CONFIG": str(legacy)})
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    for told in ("WHISPER_BACKEND=whisperx", "WHISPER_DEVICE=mps", "ALIGNMENT_BACKEND=whisperx",
                 "INDICTRANS2_BACKEND", "WHISPER_LANGUAGE", "DOCKER_TAG",
                 "WHISPER_DEVICE=mps: this machine has no Apple GPU; device auto instead"):
        assert any(told in w for w in warnings), (told, warnings)
    root = job_root(tmp_path / "out", job_of(proc))
    saved = (root / ".env.pipeline").read_text()  # the job holds our spelling only
    assert "SOURCE_LANGUAGE=en" in saved and "INDICTRANS2" not in saved
    transcript = json.loads((root / "outputs" / "en_jfk.json").read_text())
    assert wer_against("en_jfk", transcript["text"]) <= 0.3
    # No Apple GPU here: CTranslate2 on the CPU, as the job's manifest says.
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["stages"]["asr"]["backend"].startswith("faster-whisper")


def test_prepare_job_sh_with_positional_media_and_workflow_flag(tmp_path: Path) -> None:
    env = {**os.environ, "CPWHISPERX_OUT": str(tmp_path)}
    prep = subprocess.run([str(REPO / "prepare-job.sh"), "examples/sample.flac", "--transcribe",
                           "-s", "en"], capture_output=True, text=True, env=env, cwd=REPO,
                          check=False)
    assert prep.returncode == 0, prep.stderr
    job_id = prep.stdout.strip()
    run = subprocess.run([str(REPO / "run-pipeline.sh"), "-j", job_id], capture_output=True,
                         text=True, env=env, cwd=REPO, check=False)
    assert run.returncode == 0, run.stderr
    assert (job_root(tmp_path, job_id) / "outputs" / "sample.srt").is_file()
    # The banner ends with what was made and how fast, as the old tool's did.
    assert re.search(r"^\d+ segments, \d+ words, 0:\d\d\.\d of audio in [\d.]+ s "
                     r"\([\d.]+x real time\)$", run.stdout, re.M), run.stdout
    both = cli(tmp_path, "prepare", "examples/sample.flac", "--media", "examples/sample.flac")
    assert both.returncode == 2 and "name one media file" in both.stderr
    two = cli(tmp_path, "prepare", "examples/sample.flac", "--transcribe", "--subtitle")
    assert two.returncode == 2 and "not allowed with argument" in two.stderr


def test_python_api_one_liner(tmp_path: Path) -> None:
    code = ("import cpwhisperx; print(cpwhisperx.transcribe('examples/sample.flac', "
            "language='en').text)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "TMPDIR": str(tmp_path)}, check=False,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) >= 5, proc.stdout
    assert not list(tmp_path.glob("cpwhisperx-*"))  # its job's temporary folder is gone


def test_python_api_pipeline_and_transcript(tmp_path: Path) -> None:
    import cpwhisperx

    item = next(i for i in evaluation.items() if i.id == "en_jfk")
    pipeline = cpwhisperx.Pipeline({"language": "en", "output_format": ["json", "srt"],
                                    "BATCH_SIZE": 2}, out=tmp_path)
    job = pipeline.prepare(item.path)
    result = pipeline.run(job)
    assert isinstance(result.transcript, cpwhisperx.Transcript)
    assert result.transcript.text == " ".join(s.text for s in result.transcript.segments)
    assert wer_against("en_jfk", result.transcript.text) <= 0.3
    assert_times_valid(result.transcript.to_dict(), result.duration)
    assert [p.name for p in result.outputs] == ["en_jfk.json", "en_jfk.srt"]
    assert result.speed and result.speed > 0 and "segments" in result.summary()
    again = pipeline.run(job.id)  # by id: resumed, every stage reused
    assert {row.status for row in again.stages} == {"reused"}
    try:
        pipeline.prepare(tmp_path / "missing.mp4")
    except cpwhisperx.CpwError as exc:
        assert exc.message.startswith("media file not found")
    else:
        raise AssertionError("no error for a missing file")


def test_many_files_in_one_command_one_bad_the_others_done(tmp_path: Path) -> None:
    """The English eval clips and a corrupt file, two at a time: every good file transcribed,
    the bad one named, exit 1; each process's worker loaded the model once."""
    folder = tmp_path / "films"
    folder.mkdir()
    shutil.copyfile(clip("bad_truncated_mp4"), folder / "broken.mp4")
    (folder / "notes.txt").write_text("not media")  # not a media file: not taken
    english = sorted(i.path for i in evaluation.items() if i.id.startswith("en_"))
    out = tmp_path / "out"
    proc = cli(out, "transcribe", str(folder), *map(str, english), "-s", "en", "--jobs", "2",
               "--output-dir", str(tmp_path / "copies"), "--output-format", "srt,txt",
               timeout=900)
    assert proc.returncode == 1, proc.stderr
    assert f"error: 1 of {len(english) + 1} files failed: {folder / 'broken.mp4'}" in proc.stderr
    assert "corrupt or truncated" in proc.stdout + proc.stderr
    for path in english:
        assert f"{path}: " in proc.stderr and "segments" in proc.stderr
        subtitles = (tmp_path / "copies" / f"{path.stem}.srt").read_text(encoding="utf-8")
        list(srt.parse(subtitles))
        assert not (tmp_path / "copies" / f"{path.stem}.json").exists()
    assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == sorted(
        f"{p.stem}.{ext}" for p in english for ext in ("srt", "txt"))
    logs = "".join(p.read_text() for p in out.glob("*/*/*/logs/asr.log"))
    loads = re.findall(r"worker\[(\d+)\] cpwhisperx.stages.asr: loading", logs)
    assert 1 <= len(loads) <= 2 and len(set(loads)) == len(loads), loads
    assert len(set(re.findall(r"worker\[(\d+)\]", logs))) <= 2


def test_output_format_writes_only_those_and_line_options_wrap_the_srt(tmp_path: Path) -> None:
    proc = cli(tmp_path, "transcribe", str(clip("en_lecture_plants")), "-s", "en",
               "--output-format", "srt", "--max-line-width", "20", "--max-line-count", "1")
    assert proc.returncode == 0, proc.stderr
    outputs = job_root(tmp_path, job_of(proc)) / "outputs"
    assert [p.name for p in outputs.iterdir()] == ["en_lecture_plants.srt"]
    cues = list(srt.parse((outputs / "en_lecture_plants.srt").read_text(encoding="utf-8")))
    assert cues and all(len(c.content) <= 20 and "\n" not in c.content for c in cues)
    bad = cli(tmp_path, "transcribe", str(clip("en_jfk")), "--output-format", "docx")
    assert bad.returncode == 2 and "OUTPUT_FORMAT='docx'" in bad.stderr


def test_initial_prompt_hotwords_and_glossary_spell_a_name_right(tmp_path: Path) -> None:
    """tiny.en hears "Kenji Watanabe" in en_numbers_final as "Kenji White and Abe" and the
    like; told the name by any of the three ways, it spells it right (and only the stages
    after ASR's change are redone)."""
    proc = cli(tmp_path, "transcribe", str(clip("en_numbers_final")), "-s", "en",
               "--output-format", "txt")
    assert proc.returncode == 0, proc.stderr
    job = job_of(proc)
    text = job_root(tmp_path, job) / "outputs" / "en_numbers_final.txt"
    unprompted = text.read_text(encoding="utf-8")
    glossary = tmp_path / "names.txt"
    glossary.write_text("Kenji Watanabe = केंजी वातानाबे\nOliver Brandt = ओलिवर ब्रांट\n",
                        encoding="utf-8")
    for told in (["--set", "INITIAL_PROMPT=Kenji Watanabe."],
                 ["--set", "INITIAL_PROMPT=", "--set", "HOTWORDS=Kenji Watanabe"],
                 ["--set", "HOTWORDS=", "--set", f"TRANSLATION_GLOSSARY={glossary}"]):
        again = cli(tmp_path, "run", "-j", job, *told)
        assert again.returncode == 0, again.stderr
        runs = json.loads((job_root(tmp_path, job) / "manifest.json").read_text())["runs"]
        assert runs[-1]["stages"]["asr"] == "ran" and runs[-1]["stages"]["vad"] == "reused"
        said = text.read_text(encoding="utf-8")
        assert "Watanabe" in said, (told, said, unprompted)
        assert wer_against("en_numbers_final", said) <= 0.35
