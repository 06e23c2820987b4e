#!/usr/bin/env bash
# The README's first command: install margin from uv.lock with the local tier and the embedder into .venv,
# then run `margin serve` (on the embedded default unless arguments say otherwise: they go to `margin serve`).
# The first run on a machine compiles llama-cpp-python once (about 10-14 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
step "install from uv.lock into .venv (local tier + embedder)"
margin_sync .venv --extra local --extra embed
step "margin serve"
exec .venv/bin/margin serve "$@"
