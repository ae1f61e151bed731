#!/usr/bin/env bash
# Run the test suite (creates .venv first when missing). Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` or `bash scripts/test.sh tests/data`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
# Headless Chromium (Debian) renders the validation report in a test; skipped without it.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
        && [ "$(id -u)" = 0 ]; then
    echo "[test] installing chromium (Debian) for the report rendering test" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >/dev/null 2>&1 || echo "[test] chromium not installed; that test will be skipped" >&2
fi
cd "$root"
exec "${NNIP_VENV:-$root/.venv}/bin/python" -m pytest "$@"
