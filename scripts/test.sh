#!/usr/bin/env bash
# Run the test suite (creates .venv first when missing). Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` or `bash scripts/test.sh tests/data`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec "${NNIP_VENV:-$root/.venv}/bin/python" -m pytest "$@"
