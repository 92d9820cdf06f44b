# Quick start: `make demo` then `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps browser-deps speech-deps demo test test-fast lint bench clean

install: system-deps $(VENV)/.installed

# ffmpeg/ffprobe decode the media; installed from the system's package manager when missing.
system-deps:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || { \
	  if command -v apt-get >/dev/null; then \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq ffmpeg >/dev/null; \
	  elif command -v brew >/dev/null; then brew install ffmpeg; \
	  else echo "install ffmpeg with your package manager, then run make again" >&2; exit 1; fi; }

# The page's tests drive Debian's Chromium with Playwright (its own browser download is not used).
browser-deps:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if command -v apt-get >/dev/null; then \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Chromium to run the page's tests (they are skipped without it)" >&2; fi; }

# espeak-ng voices speak in the diarization tests' and bench's conversations (skipped without it).
speech-deps:
	@command -v espeak-ng >/dev/null || { \
	  if command -v apt-get >/dev/null; then \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq espeak-ng >/dev/null; \
	  else echo "install espeak-ng to run the diarization tests (they are skipped without it)" >&2; fi; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: install
	$(BIN)/cpwhisperx --out out transcribe examples/sample.flac --source-language en

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# The torch, mlx, llm and indic extras' engines are tested too. TORCH names the build to install
# first; on our machines torch==2.13.0 resolves to a local CPU wheel (elsewhere, point pip at a
# CPU index). llama-server is built without llama.cpp's own tests and examples, and portable:
# GGML_NATIVE=OFF keeps ggml's fixed x86-64-v3 set (AVX2, FMA, F16C, BMI2), because a native build
# takes every instruction the CPU advertises, AMX included, which a VM may not enable (SIGILL).
# For the fastest build on a machine you trust, add -DGGML_NATIVE=ON (see the README).
TORCH ?= torch==2.13.0
LLAMA_CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF \
	-DGGML_NATIVE=OFF
$(VENV)/.extras: $(VENV)/.installed
	$(BIN)/pip install -q '$(TORCH)'
	CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' LLAMA_CPP_BUILD_JOBS=$$(nproc) \
	  $(BIN)/pip install -q -e '.[dev,torch,mlx,llm,indic,web,ray]'
	touch $@

test: lint $(VENV)/.extras browser-deps speech-deps
	$(BIN)/pytest -q --durations=15

# Under a minute, no Whisper model: the runner with fake stages, settings, text and timing rules.
test-fast: install
	$(BIN)/pytest -q -m fast

bench: install
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/alignment.py

clean:
	rm -rf $(VENV) build src/*.egg-info  # never ./out: it holds the user's jobs
