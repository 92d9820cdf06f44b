"""Demucs (HTDemucs) vocal stem, through torch (``[torch]`` extra plus ``demucs``).

The model comes from the Hugging Face hub the way Demucs itself fetches it (cached, and
``HF_HUB_OFFLINE`` respected), or from a local ``.safetensors`` file in Demucs's export format.
The film is separated a block at a time with a few seconds of real audio on each side, whose
output is thrown away, so blocks join without seams and memory does not grow with the length.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from cpwhisperx import errors, media
from cpwhisperx.engines import separate as separators
from cpwhisperx.errors import EngineUnavailable, ModelNotFound

BLOCK_S = 60.0
CONTEXT_S = 5.0  # on each side of a block: more than the receptive field at a block's edge


def _load(name: str) -> Any:
    try:
        from demucs.hf import get_hf_model, load_safetensors_model
    except ImportError as exc:
        raise EngineUnavailable(f"Demucs cannot be imported ({exc}): install a CPU torch, then "
                                "pip install 'cpwhisperx[torch]'") from None
    if name.endswith(".safetensors"):
        if not Path(name).is_file():
            raise ModelNotFound(f"SEPARATION_MODEL file not found: {name}")
        return load_safetensors_model(name)
    try:
        return get_hf_model(name)
    except Exception as exc:  # hub errors come in many types; each means "not here"
        reason = errors.reason(exc)
        raise ModelNotFound(f"Demucs model {name!r} is not in the Hugging Face cache and cannot "
                            f"be downloaded ({reason[:120]}): run once online, or set "
                            "SEPARATION_MODEL to a local .safetensors file") from None


class Demucs:
    def __init__(self, *, model: str, cpu_threads: int) -> None:
        self.model = _load(model)
        import torch

        torch.set_num_threads(cpu_threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device).eval()
        self.vocals = self.model.sources.index("vocals")
        self.name = f"demucs ({model.rsplit('/', 1)[-1]}, {self.device})"

    def process(self, src: Path, dst: Path, *,
                on_progress: Callable[[float], None]) -> dict[str, Any]:
        import torch
        from demucs.apply import apply_model

        rate, channels = self.model.samplerate, self.model.audio_channels
        total = round(media.wav_frames(src) * rate / media.SAMPLE_RATE)
        context = int(CONTEXT_S * rate)
        done = 0
        with separators.reader(src, rate=rate, channels=channels) as reader, \
             separators.writer(dst, rate=rate) as writer:
            assert reader.stdout is not None and writer.stdin is not None
            blocks = _blocks(reader.stdout, int(BLOCK_S * rate), channels)
            for before, block, after in _with_context(blocks, context):
                mix = torch.from_numpy(np.concatenate([before, block, after], axis=1))
                # Demucs's own normalisation, undone on the stem.
                mean, std = mix.mean(), mix.std().clamp_min(1e-8)
                with torch.inference_mode():
                    stems = apply_model(self.model, ((mix - mean) / std)[None], shifts=0,
                                        split=True, overlap=0.25, device=self.device)[0]
                vocals = (stems[self.vocals] * std + mean).mean(0).cpu().numpy()
                kept = vocals[before.shape[1]:before.shape[1] + block.shape[1]]
                writer.stdin.write(kept.astype(np.float32).tobytes())
                done += block.shape[1]
                on_progress(min(1.0, done / max(total, 1)))
            writer.stdin.close()
        return {"engine": self.name, "block_s": BLOCK_S, "context_s": CONTEXT_S}


def _blocks(stream: IO[bytes], frames: int, channels: int) -> Iterator[np.ndarray]:
    """(channels, frames) float32 blocks of the interleaved stream; the last one shorter."""
    while chunk := stream.read(frames * channels * 4):
        samples = np.frombuffer(chunk[:len(chunk) - len(chunk) % (4 * channels)], np.float32)
        yield samples.reshape(-1, channels).T.copy()


def _with_context(blocks: Iterator[np.ndarray], context: int
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each block with up to ``context`` frames of the blocks before and after it."""
    previous = current = None
    for block in blocks:
        if current is not None:
            yield _tail(previous, context, current), current, block[:, :context]
        previous, current = current, block
    if current is not None:
        yield _tail(previous, context, current), current, current[:, :0]


def _tail(block: np.ndarray | None, context: int, like: np.ndarray) -> np.ndarray:
    return like[:, :0] if block is None else block[:, max(0, block.shape[1] - context):]
