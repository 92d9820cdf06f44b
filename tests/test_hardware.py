"""``auto`` resolution and the crash fallback chain, on described machines."""

from dataclasses import replace

import pytest

from cpwhisperx import hardware
from cpwhisperx.config import Settings
from cpwhisperx.errors import ConfigError

pytestmark = pytest.mark.fast

LINUX = hardware.Hardware(system="Linux", machine="x86_64", cpu_cores=2, memory_gb=24.0,
                          cuda_devices=0, apple_silicon=False, ctranslate2="4.6.0",
                          mlx_whisper=None, signature="test")
LINUX_GPU = replace(LINUX, cuda_devices=1)
MAC = replace(LINUX, system="Darwin", machine="arm64", apple_silicon=True)
MAC_MLX = replace(MAC, mlx_whisper="0.4.3")


@pytest.mark.parametrize(("hw", "expected"), [
    (LINUX, ("faster-whisper", "cpu", "int8")),
    (LINUX_GPU, ("faster-whisper", "cuda", "float16")),
    (replace(LINUX, mlx_whisper="0.4.3"), ("faster-whisper", "cpu", "int8")),
    (MAC, ("faster-whisper", "cpu", "int8")),
    (MAC_MLX, ("mlx", "gpu", "float16")),
])
def test_auto_picks_from_the_hardware(hw: hardware.Hardware, expected: tuple) -> None:
    resolved = hardware.resolve(Settings(), hw)
    assert (resolved.backend, resolved.device, resolved.compute_type) == expected
    assert resolved.cpu_threads == 2 and resolved.why.startswith(f"backend {expected[0]}: ")


@pytest.mark.parametrize(("hw", "batch"), [
    (LINUX, 8), (replace(LINUX, memory_gb=6.0), 4), (replace(LINUX, memory_gb=3.0), 1),
    (LINUX_GPU, 16), (MAC_MLX, 1),
])
def test_batch_size_follows_device_and_memory(hw: hardware.Hardware, batch: int) -> None:
    assert hardware.resolve(Settings(), hw).batch_size == batch
    assert hardware.resolve(Settings(batch_size=3), hw).batch_size == 3


@pytest.mark.parametrize(("hw", "settings", "decoders"), [
    (LINUX, Settings(), 2), (replace(LINUX, cpu_cores=1), Settings(), 2),
    (LINUX, Settings(batch_size=1), 1), (LINUX, Settings(batch_size=3), 1),
    (LINUX, Settings(cpu_threads=1), 2),
    (LINUX_GPU, Settings(), 1), (MAC_MLX, Settings(), 1), (LINUX, Settings(asr_decoders=3), 3),
    (LINUX, Settings(asr_decoders=3, batch_size=2), 2),
])
def test_two_decoders_side_by_side_on_cpu(hw: hardware.Hardware, settings: Settings,
                                          decoders: int) -> None:
    """On CPU the lanes are shared by two decoders (on one thread, one after the other: the
    lanes do not depend on the threads); a GPU, MLX or an odd number of lanes at a time keeps
    one."""
    resolved = hardware.resolve(settings, hw)
    assert resolved.decoders == decoders
    # A retry takes up the crashed run's journal: its lanes must be the same.
    assert hardware.fallback(resolved).decoders == decoders  # type: ignore[union-attr]


def test_explicit_mlx() -> None:
    on_linux = hardware.resolve(Settings(whisper_backend="mlx"), replace(LINUX, mlx_whisper="1"))
    assert (on_linux.device, on_linux.compute_type) == ("cpu", "float32")
    on_mac = hardware.resolve(Settings(whisper_backend="mlx", whisper_device="cpu",
                                       whisper_compute_type="float16", batch_size=1), MAC_MLX)
    assert (on_mac.device, on_mac.compute_type, on_mac.why) == ("cpu", "float16",
                                                                 "all set explicitly")


@pytest.mark.parametrize(("settings", "hw", "expected", "note"), [
    # The old tool's Apple Silicon setting: MLX on the Apple GPU, where it can be had.
    (Settings(whisper_device="mps"), MAC_MLX, ("mlx", "gpu", "float16"), None),
    (Settings(whisper_backend="mlx", whisper_device="mps"), MAC_MLX, ("mlx", "gpu", "float16"),
     None),
    (Settings(whisper_device="mps"), LINUX, ("faster-whisper", "cpu", "int8"),
     "WHISPER_DEVICE=mps: this machine has no Apple GPU; device auto instead"),
    (Settings(whisper_device="mps"), LINUX_GPU, ("faster-whisper", "cuda", "float16"),
     "no Apple GPU"),
    (Settings(whisper_device="mps"), MAC, ("faster-whisper", "cpu", "int8"),
     "mlx-whisper is not installed (pip install 'cpwhisperx[mlx]')"),
    (Settings(whisper_backend="faster-whisper", whisper_device="mps"), MAC_MLX,
     ("faster-whisper", "cpu", "int8"), "WHISPER_BACKEND=faster-whisper has no Apple GPU path"),
    # Their promise: MLX asked for where it is not installed is a warning, not a stop.
    (Settings(whisper_backend="mlx"), MAC, ("faster-whisper", "cpu", "int8"),
     "WHISPER_BACKEND=mlx: mlx-whisper is not installed"),
])
def test_settings_this_machine_cannot_honour_become_the_nearest_with_a_note(
        settings: Settings, hw: hardware.Hardware, expected: tuple, note: str | None) -> None:
    resolved = hardware.resolve(settings, hw)
    assert (resolved.backend, resolved.device, resolved.compute_type) == expected
    if note is None:
        assert resolved.notes == ()
    else:
        assert len(resolved.notes) == 1 and note in resolved.notes[0]


@pytest.mark.parametrize(("settings", "hw", "message"), [
    (Settings(whisper_backend="mlx", whisper_device="cuda"), MAC_MLX, "WHISPER_DEVICE=cuda"),
    (Settings(whisper_backend="mlx", whisper_compute_type="int8"), MAC_MLX,
     "WHISPER_COMPUTE_TYPE=int8 does not go with WHISPER_BACKEND=mlx"),
])
def test_impossible_mlx_settings_say_what_to_do(settings: Settings, hw: hardware.Hardware,
                                                message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        hardware.resolve(settings, hw)


def test_fallback_chain_ends() -> None:
    mlx = hardware.resolve(Settings(), MAC_MLX)
    chain = [mlx]
    while (nxt := hardware.fallback(chain[-1])) is not None:
        chain.append(nxt)
    assert [(r.backend, r.device, r.compute_type) for r in chain] == [
        ("mlx", "gpu", "float16"), ("faster-whisper", "cpu", "int8"),
        ("faster-whisper", "cpu", "float32")]
    cuda = hardware.fallback(hardware.resolve(Settings(), LINUX_GPU))
    assert cuda is not None and (cuda.device, cuda.compute_type) == ("cpu", "int8")
