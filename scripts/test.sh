#!/usr/bin/env bash
# The README's test command, and CI's: install everything the suite needs from nothing, then run it all.
#
#   1. Debian packages the tests start for real (scripts/system-packages.txt), via apt-get.
#   2. uv, pinned, from PyPI into its own small environment (.tools/): nothing is assumed present.
#   3. A FRESH virtual environment (.venv) from the lock file (uv.lock), every extra: anything not
#      declared in pyproject.toml is absent, so an undeclared import fails here, not on a user's machine.
#      `--locked` refuses a lock that no longer matches pyproject.toml (regenerate: `uv lock`).
#   4. Static checks: ruff (lint and format), mypy, import-linter (the layers), deptry (declared vs imported packages).
#   5. The whole pytest suite against the locked versions.
#   6. The SDK-compatibility e2e tests again, against the NEWEST released openai and anthropic SDKs.
#   7. The README's first command: `margin serve` on the embedded default, from an environment with only
#      the extras that command installs, answering the openai and anthropic SDKs.
#
# Cost: llama-cpp-python builds from source once per machine (about 10-14 minutes on 2 cores) into a
# wheelhouse (~/.cache/margin/wheels, see scripts/env.sh); later runs install the built wheel in seconds.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k ledger`).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "system packages"
if [ -f scripts/system-packages.txt ] && command -v apt-get >/dev/null 2>&1; then
  missing=$(while read -r pkg; do
    [ -z "$pkg" ] || [[ "$pkg" == \#* ]] || dpkg -s "$pkg" >/dev/null 2>&1 || echo "$pkg"
  done < scripts/system-packages.txt)
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
  fi
fi

source scripts/env.sh

step "fresh .venv from uv.lock (all extras)"
rm -rf .venv
margin_sync .venv --all-extras
PY="$PWD/.venv/bin/python"

step "static checks"
"$PY" -m ruff check src tests bench scripts
"$PY" -m ruff format --check src tests bench scripts
"$PY" -m mypy
.venv/bin/lint-imports
.venv/bin/deptry src tests bench scripts

step "tests (locked versions)"
status=0
"$PY" -m pytest -q -p no:cacheprovider "$@" || status=$?
[ "$status" -eq 0 ] || exit "$status"
if [ "$#" -gt 0 ]; then exit 0; fi  # a filtered run stops here

step "SDK compatibility against the newest openai and anthropic releases"
rm -rf .venv-sdk-latest
"$UV" venv --quiet --python python3 .venv-sdk-latest
"$UV" export --locked --extra test --no-hashes --no-emit-project --no-header --quiet \
  | grep -v -E '^(openai|anthropic)==' > .venv-sdk-latest/requirements.txt
"$UV" pip install --quiet --python .venv-sdk-latest/bin/python -r .venv-sdk-latest/requirements.txt -e .
"$UV" pip install --quiet --python .venv-sdk-latest/bin/python --refresh-package openai --refresh-package anthropic \
  --upgrade openai anthropic
.venv-sdk-latest/bin/python -c 'import openai, anthropic; print("openai", openai.__version__, "anthropic", anthropic.__version__)'
.venv-sdk-latest/bin/python -m pytest -q -p no:cacheprovider tests/e2e/test_openai_sdk.py tests/e2e/test_anthropic_sdk.py

step "the README's first command: margin serve on the embedded default"
rm -rf .venv-serve
margin_sync .venv-serve --extra local --extra embed
"$PY" scripts/smoke_serve.py --margin .venv-serve/bin/margin
