#!/usr/bin/env bash
# Seed-compatible wrapper: ./prepare-job.sh --media F --workflow transcribe --source-language en
# [--backend B] [...any `cpwhisperx prepare` option]. Prints the job id.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cli="$here/.venv/bin/cpwhisperx"
[ -x "$cli" ] || cli="$(command -v cpwhisperx)" || { echo "error: cpwhisperx not installed: run make install" >&2; exit 1; }
exec "$cli" prepare "$@"
