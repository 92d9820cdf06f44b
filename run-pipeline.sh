#!/usr/bin/env bash
# Seed-compatible wrapper: ./run-pipeline.sh -j JOB_ID [...any `cpwhisperx run` option].
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cli="$here/.venv/bin/cpwhisperx"
[ -x "$cli" ] || cli="$(command -v cpwhisperx)" || { echo "error: cpwhisperx not installed: run make install" >&2; exit 1; }
exec "$cli" run "$@"
