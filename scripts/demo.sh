#!/usr/bin/env bash
# The main job: `nnip demo` (creates .venv first when missing). Extra arguments go to it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
exec "${NNIP_VENV:-$root/.venv}/bin/nnip" demo "$@"
