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
# The `tune` extra's torch: PyPI's Linux build is the CUDA one (several GB with its nvidia-* and triton
# packages). Where the machine carries the CPU build of the locked release as a file (this workplace's
# machines keep it in /opt/wheels), install that file instead and skip the GPU packages.
TORCH_WHEELS="${MARGIN_TORCH_WHEELS:-/opt/wheels}"
torch_cpu_wheel() {
  local version pytag
  version=$(grep -A1 '^name = "torch"$' uv.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
  pytag=$(python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  compgen -G "$TORCH_WHEELS/torch-${version}+cpu-${pytag}-${pytag}-*.whl" | head -n1 || true
}
margin_sync() {
  local dir=$1; shift
  local skip=(--no-install-package llama-cpp-python) torch_wheel pkg
  if [ -z "$LLAMA_WHEEL" ]; then LLAMA_WHEEL=$(.tools/bin/python scripts/llama_wheel.py --uv "$UV"); fi
  torch_wheel=$(torch_cpu_wheel)
  if [ -n "$torch_wheel" ]; then
    for pkg in $(grep -oE '^name = "(torch|triton|nvidia-[^"]+|cuda-[^"]+)"$' uv.lock | cut -d'"' -f2); do
      skip+=(--no-install-package "$pkg")
    done
  fi
  # --locked: refuse a uv.lock that no longer matches pyproject.toml (regenerate it with `uv lock`).
  UV_PROJECT_ENVIRONMENT="$dir" "$UV" sync --locked --quiet --python python3 "${skip[@]}" "$@"
  "$UV" pip install --quiet --python "$dir/bin/python" --no-deps "$LLAMA_WHEEL"
  # only where this sync installed the tune extra (peft is there): other environments need no torch
  if [ -n "$torch_wheel" ] && compgen -G "$dir/lib/python3*/site-packages/peft" >/dev/null; then
    "$UV" pip install --quiet --python "$dir/bin/python" --no-deps "$torch_wheel"
  fi
}
