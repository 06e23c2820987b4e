# Sourced by scripts/test.sh and scripts/serve.sh: a pinned uv, and `margin_sync DIR [uv sync flags]`, which
# makes a virtual environment from uv.lock with llama-cpp-python taken from the machine's wheelhouse
# (built once by scripts/llama_wheel.py) instead of being compiled again.
UV_VERSION="0.13.10"
step() { printf '\n== %s\n' "$*"; }

step "uv $UV_VERSION"
if [ "$(.tools/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  rm -rf .tools
  python3 -m venv .tools
  .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
UV="$PWD/.tools/bin/uv"

LLAMA_WHEEL=""
margin_sync() {
  local dir=$1; shift
  if [ -z "$LLAMA_WHEEL" ]; then LLAMA_WHEEL=$(.tools/bin/python scripts/llama_wheel.py --uv "$UV"); fi
  # --locked: refuse a uv.lock that no longer matches pyproject.toml (regenerate it with `uv lock`).
  UV_PROJECT_ENVIRONMENT="$dir" "$UV" sync --locked --quiet --python python3 --no-install-package llama-cpp-python "$@"
  "$UV" pip install --quiet --python "$dir/bin/python" --no-deps "$LLAMA_WHEEL"
}
