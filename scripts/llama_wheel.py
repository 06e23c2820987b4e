"""Build llama-cpp-python's wheel once per machine and print its path.

llama-cpp-python ships only a source distribution, and compiling llama.cpp costs about 10-14 minutes on
2 cores. uv caches built wheels, but it files them under the revision of the sdist download, and a new
revision is made each time the download is revalidated (`uv lock`, a stale HTTP cache entry): the same
build then runs again. This script keeps the built wheel in a wheelhouse keyed by what decides its
content, so it is built exactly once per machine:

- the sdist that uv.lock pins (URL and sha256, verified after download);
- the build settings in pyproject.toml's `[tool.uv] config-settings-package` (one place for them).

    python scripts/llama_wheel.py --uv .tools/bin/uv      # prints the wheel's path

The wheelhouse is `$MARGIN_WHEELHOUSE`, else `$XDG_CACHE_HOME/margin/wheels`, else `~/.cache/margin/wheels`.
Standard library only: it runs before any project environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from pathlib import Path

PACKAGE = "llama-cpp-python"
ROOT = Path(__file__).resolve().parents[1]


def locked_sdist() -> tuple[str, str, str]:
    """(version, url, sha256) of the sdist uv.lock pins."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    for package in lock["package"]:
        if package["name"] == PACKAGE:
            sdist = package["sdist"]
            algorithm, digest = sdist["hash"].split(":", 1)
            if algorithm != "sha256":
                raise SystemExit(f"uv.lock: unexpected hash algorithm {algorithm!r} for {PACKAGE}")
            return str(package["version"]), str(sdist["url"]), digest
    raise SystemExit(f"uv.lock does not pin {PACKAGE}")


def build_settings() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    per_package = project.get("tool", {}).get("uv", {}).get("config-settings-package", {})
    return {str(k): str(v) for k, v in per_package.get(PACKAGE, {}).items()}


def wheelhouse() -> Path:
    if os.environ.get("MARGIN_WHEELHOUSE"):
        return Path(os.environ["MARGIN_WHEELHOUSE"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "margin" / "wheels"


def download(url: str, sha256: str, into: Path) -> Path:
    target = into / url.rsplit("/", 1)[-1]
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=120) as response, target.open("wb") as out:
        while block := response.read(1 << 20):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != sha256:
        raise SystemExit(f"{target.name}: sha256 {digest.hexdigest()} does not match uv.lock's {sha256}")
    return target


def build(uv: str, sdist: Path, settings: dict[str, str], out_dir: Path) -> Path:
    flags = [f"--config-setting={key}={value}" for key, value in sorted(settings.items())]
    env = dict(os.environ)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
    command = [uv, "build", "--wheel", "--quiet", "--out-dir", str(out_dir), *flags, str(sdist)]
    subprocess.run(command, check=True, env=env)
    wheels = sorted(out_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel from the build, found {[w.name for w in wheels]}")
    return wheels[0]


def main() -> int:
    parser = argparse.ArgumentParser(description="Build llama-cpp-python's wheel once per machine; print its path.")
    parser.add_argument("--uv", default="uv", help="the uv executable to build with")
    args = parser.parse_args()
    version, url, sha256 = locked_sdist()
    settings = build_settings()
    key = hashlib.sha256(json.dumps([sha256, settings], sort_keys=True).encode()).hexdigest()[:16]
    slot = wheelhouse() / f"{PACKAGE}-{version}-{key}"
    found = sorted(slot.glob("*.whl")) if slot.is_dir() else []
    if found:
        print(found[0])
        return 0
    print(f"building {PACKAGE} {version} once for this machine (about 10-14 minutes on 2 cores)", file=sys.stderr)
    slot.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llama-wheel-", dir=slot.parent) as tmp:
        work = Path(tmp)
        wheel = build(args.uv, download(url, sha256, work), settings, work / "dist")
        staged = work / "slot"
        staged.mkdir()
        shutil.move(str(wheel), staged / wheel.name)
        try:
            staged.rename(slot)  # atomic: a concurrent or interrupted run never sees half a slot
        except OSError:
            if not slot.is_dir():
                raise
    print(sorted(slot.glob("*.whl"))[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
