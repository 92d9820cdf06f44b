"""DIARIZATION=pyannote: pyannote.audio's own pipeline, loaded from a folder as a user's copy of
community-1 would be. Its real weights are gated on the Hub, which these machines cannot reach,
so the test builds one of the same layout and classes (PyanNet segmentation, WeSpeaker ResNet34
embeddings, PLDA), small and randomly initialised: what it says of the speakers means nothing,
but every step of ours and of pyannote's runs for real."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hub_server import serve

from conftest import assert_times_valid, cli, job_of, job_root, no_hub
from cpwhisperx import evaluation
from cpwhisperx.errors import ModelNotFound

torch = pytest.importorskip("torch", reason="the [torch] extra")
if importlib.util.find_spec("pyannote.audio") is None:
    pytest.skip("pyannote.audio: the [torch] extra", allow_module_level=True)


def _save(model, path: Path) -> None:
    """A checkpoint as pyannote's ``Model.from_pretrained`` reads it (Lightning's format)."""
    import lightning

    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "pytorch-lightning_version": lightning.__version__}
    model.on_save_checkpoint(checkpoint)  # pyannote's section: versions, class, specifications
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)


def _build(root: Path, *, silent: bool = False) -> Path:
    """community-1's layout: config.yaml, segmentation/, embedding/, plda/. ``silent``: a
    segmentation that hears nobody."""
    import yaml

    from cpwhisperx.engines.diarize import pyannote as engine

    version = engine.load().__version__
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    segmentation = PyanNet(sincnet={"stride": 10}, lstm={"hidden_size": 32, "num_layers": 1},
                           linear={"hidden_size": 32, "num_layers": 1}, sample_rate=16000)
    # segmentation-3.0's task: up to 3 speakers in 10 s, 2 at once (7 powerset classes).
    segmentation.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME, duration=10.0,
        classes=["speaker#1", "speaker#2", "speaker#3"], powerset_max_classes=2,
        permutation_invariant=True)
    segmentation.build()
    with torch.no_grad():  # class 0 is "nobody": random weights speak, unless silent
        segmentation.classifier.bias[0] += 50.0 if silent else -2.0
    _save(segmentation, root / "segmentation" / "pytorch_model.bin")
    embedding = WeSpeakerResNet34(sample_rate=16000, num_mel_bins=8)  # 80 bins: 15x slower
    embedding.specifications = Specifications(problem=Problem.REPRESENTATION,
                                              resolution=Resolution.CHUNK, duration=10.0)
    _save(embedding, root / "embedding" / "pytorch_model.bin")
    rng = np.random.default_rng(0)
    (root / "plda").mkdir()
    np.savez(root / "plda" / "xvec_transform.npz", mean1=np.zeros(256), mean2=np.zeros(128),
             lda=np.linalg.qr(rng.standard_normal((256, 256)))[0][:, :128])
    np.savez(root / "plda" / "plda.npz", mu=np.zeros(128),
             tr=np.linalg.qr(rng.standard_normal((128, 128)))[0],
             psi=np.sort(rng.uniform(0.5, 5.0, 128))[::-1].copy())
    config = {"dependencies": {"pyannote.audio": version},
              "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization", "params": {
                  "clustering": "VBxClustering", "segmentation": "$model/segmentation",
                  "embedding": "$model/embedding", "plda": "$model/plda",
                  "segmentation_step": 0.5, "embedding_batch_size": 32,
                  "segmentation_batch_size": 32}},
              "params": {"clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
                         "segmentation": {"min_duration_off": 0.0}}}
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("pyannote"))


def test_a_pyannote_pipeline_from_the_hub_gives_the_words_their_speakers(
        tmp_path: Path, pipeline: Path) -> None:
    """Downloaded once from a Hub (on loopback), as community-1 is with a token, then used
    from the cache with HF_HUB_OFFLINE=1."""
    media, reference = evaluation.conversation(tmp_path, voices=("joe", "jfk"), turns=6)
    args = ("transcribe", str(media), "-s", "en", "--speakers", "2", "--set",
            "DIARIZATION=pyannote", "--set", "DIARIZATION_MODEL=test/pyannote-tiny")
    cache = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    with serve({"test/pyannote-tiny": pipeline}) as (url, requested):
        proc = cli(tmp_path / "online", *args,
                   env={**cache, "HF_HUB_OFFLINE": "", "HF_ENDPOINT": url})
    assert proc.returncode == 0, proc.stderr
    assert any(path.endswith("/segmentation/pytorch_model.bin") for path in requested)
    job = job_root(tmp_path / "online", job_of(proc))
    manifest = json.loads((job / "manifest.json").read_text())
    assert manifest["stages"]["diarize"]["backend"] == "pyannote"
    end = reference[-1].end + 0.5
    turns = json.loads(next(job.glob("*_diarize/turns.json")).read_text())
    assert turns["engine"] == "pyannote" and turns["turns"]
    assert all(0 <= t["start"] < t["end"] <= end + 1e-6 and t["speaker"] in (0, 1)
               for t in turns["turns"])
    transcript = json.loads((job / "outputs" / f"{media.stem}.json").read_text())
    assert_times_valid(transcript, end)
    words = [w for s in transcript["segments"] for w in s["words"]]
    assert words and {w["speaker"] for w in words} <= {"SPEAKER_00", "SPEAKER_01"}
    assert all({w["speaker"] for w in s["words"]} == {s["speaker"]}
               for s in transcript["segments"])
    assert evaluation.read_rttm(job / "outputs" / f"{media.stem}.rttm")

    # From the cache: offline by setting, and online with the Hub out of reach (loaded from
    # the cache at once rather than after the Hub client's retries for each file).
    for name, env in (("offline", {"HF_HUB_OFFLINE": "1"}), ("unreachable", no_hub())):
        proc = cli(tmp_path / name, *args, env={**cache, **env})
        assert proc.returncode == 0, proc.stderr
        again = job_root(tmp_path / name, job_of(proc)) / "outputs" / f"{media.stem}.json"
        assert json.loads(again.read_text())["segments"] == transcript["segments"]


def test_a_folder_or_its_config_file_loads_and_a_wrong_one_is_one_clear_error(
        tmp_path: Path, pipeline: Path) -> None:
    from cpwhisperx.engines.diarize import Speakers
    from cpwhisperx.engines.diarize.pyannote import Pyannote, check_obtainable
    from cpwhisperx.media import WavReader

    media, _ = evaluation.conversation(tmp_path, voices=("joe", "jfk"), turns=4)
    threads = torch.get_num_threads()  # the engine sets torch's, for this whole process
    try:
        for model in (pipeline, pipeline / "config.yaml"):
            assert check_obtainable(str(model)) is False  # a path: the engine checks it
            with WavReader(media) as audio:
                turns = Pyannote(model=str(model)).diarize(audio, regions=[],
                                                           speakers=Speakers(number=2))
                assert turns and all(0 <= t.start < t.end <= audio.duration for t in turns)
            assert [t.start for t in turns] == sorted(t.start for t in turns)
            speakers = list(dict.fromkeys(t.speaker for t in turns))  # by first appearance
            assert speakers == list(range(len(speakers))) and len(speakers) <= 2
        wrong = tmp_path / "wrong"
        wrong.mkdir()
        (wrong / "config.yaml").write_text("pipeline: {name: nowhere.Pipeline}\n")
        with pytest.raises(ModelNotFound, match="cannot be loaded") as caught:
            Pyannote(model=str(wrong))
        assert "\n" not in caught.value.message
    finally:
        torch.set_num_threads(threads)


def test_a_pipeline_that_hears_nobody_keeps_the_transcript(tmp_path: Path) -> None:
    """Music or noise where Whisper wrote words: no turns, the transcript without speakers."""
    silent = _build(tmp_path / "silent", silent=True)
    media, _ = evaluation.conversation(tmp_path, voices=("joe", "jfk"), turns=2)
    proc = cli(tmp_path / "out", "transcribe", str(media), "-s", "en", "--set",
               "DIARIZATION=pyannote", "--set", f"DIARIZATION_MODEL={silent}",
               env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    job = job_root(tmp_path / "out", job_of(proc))
    stage = json.loads((job / "manifest.json").read_text())["stages"]["diarize"]
    assert any("found nobody speaking" in w for w in stage["warnings"]), stage
    transcript = json.loads((job / "outputs" / f"{media.stem}.json").read_text())
    assert transcript["segments"] and all(
        s["speaker"] is None and all("speaker" not in w for w in s["words"])
        for s in transcript["segments"])
    assert not (job / "outputs" / f"{media.stem}.txt").read_text().startswith("[")
