"""llama.cpp's own `llama-server`, the anchor the local tier's batching engine is measured against.

It is built from the llama.cpp source that the llama-cpp-python sdist pinned in uv.lock vendors
(vendor/llama.cpp), so both servers run the same llama.cpp version:

- the sdist's URL and sha256 come from uv.lock; the download is checked against the hash;
- only the `llama-server` target is built, with the portable flags of pyproject.toml's
  `[tool.uv] config-settings-package` for llama-cpp-python (GGML_NATIVE=OFF, AVX2/FMA/F16C on,
  AVX-512 off), plus LLAMA_CURL=OFF, a static Release build, `-j2`, under `nice`;
- the binary is cached in `~/.cache/margin/llama-server/<version>/` (or under `$XDG_CACHE_HOME`), next
  to a build.json naming the sdist hash and flags it was built from, so it builds once per machine
  (about 5-10 minutes on 2 cores). Nothing from the sdist is kept besides the binary.

    python bench/llama_server.py build                      # builds once, prints the binary's path
    python bench/llama_server.py serve -np 8 -t 2 --port 8090  # runs it on the SmolLM2 model
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

PACKAGE = "llama-cpp-python"
TARGET = "llama-server"
ROOT = Path(__file__).resolve().parents[1]
# always set, whatever pyproject says: one static optimised executable, no network code or fetches at build
# time (LLAMA_USE_PREBUILT_UI would download the web UI), no tests or examples
FIXED_DEFINES = {
    "CMAKE_BUILD_TYPE": "Release",
    "BUILD_SHARED_LIBS": "OFF",
    "LLAMA_CURL": "OFF",
    "LLAMA_OPENSSL": "OFF",
    "LLAMA_USE_PREBUILT_UI": "OFF",
    "LLAMA_BUILD_TESTS": "OFF",
    "LLAMA_BUILD_EXAMPLES": "OFF",
}


@dataclass(frozen=True)
class LockedSdist:
    version: str
    url: str
    sha256: str


def locked_sdist(lock: Path = ROOT / "uv.lock") -> LockedSdist:
    """The llama-cpp-python sdist that uv.lock pins: version, URL and sha256."""
    data = tomllib.loads(lock.read_text(encoding="utf-8"))
    for package in data.get("package", []):
        if package.get("name") != PACKAGE:
            continue
        sdist = package.get("sdist")
        if not sdist or "url" not in sdist or "hash" not in sdist:
            raise ValueError(f"{lock.name}: {PACKAGE} has no sdist URL and hash")
        algorithm, _, digest = str(sdist["hash"]).partition(":")
        if algorithm != "sha256" or len(digest) != 64:
            raise ValueError(f"{lock.name}: unexpected hash {sdist['hash']!r} for {PACKAGE}")
        return LockedSdist(str(package["version"]), str(sdist["url"]), digest.lower())
    raise ValueError(f"{lock.name} does not pin {PACKAGE}")


def cmake_defines(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """The `cmake.define.*` settings uv passes to llama-cpp-python's build, plus FIXED_DEFINES."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    per_package = project.get("tool", {}).get("uv", {}).get("config-settings-package", {})
    defines = {}
    for key, value in per_package.get(PACKAGE, {}).items():
        if str(key).startswith("cmake.define."):
            defines[str(key).removeprefix("cmake.define.")] = str(value)
    return {**defines, **FIXED_DEFINES}


def configure_command(source: Path, build_dir: Path, defines: dict[str, str]) -> list[str]:
    flags = [f"-D{key}={value}" for key, value in sorted(defines.items())]
    return ["cmake", "-S", str(source), "-B", str(build_dir), *flags]


def build_command(build_dir: Path, jobs: int = 2) -> list[str]:
    return ["nice", "-n", "19", "cmake", "--build", str(build_dir), "--target", TARGET, f"-j{jobs}"]


def server_command(
    binary: Path, model: Path, *, parallel: int, ctx: int, threads: int, port: int, batch: int = 256
) -> list[str]:
    """`llama-server` on loopback: `parallel` slots sharing one `ctx`-token context (llama.cpp splits it)."""
    return [
        str(binary),
        *("-m", str(model), "-np", str(parallel), "-c", str(ctx), "-t", str(threads), "-tb", str(threads)),
        *("-b", str(batch), "--host", "127.0.0.1", "--port", str(port), "--no-webui"),
    ]


def cache_root() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "margin" / "llama-server"


def verify_sha256(path: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != sha256.lower():
        raise ValueError(f"{path.name}: sha256 {digest.hexdigest()} does not match uv.lock's {sha256}")


def download(sdist: LockedSdist, into: Path) -> Path:
    target = into / sdist.url.rsplit("/", 1)[-1]
    with urllib.request.urlopen(sdist.url, timeout=300) as response, target.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    verify_sha256(target, sdist.sha256)
    return target


def extract_llama_cpp(archive: Path, into: Path) -> Path:
    """Unpack only vendor/llama.cpp of the sdist; returns its directory."""
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        top = names[0].split("/", 1)[0] if names else ""
        prefix = f"{top}/vendor/llama.cpp/"  # not .git/modules/vendor/llama.cpp, the submodule's git data
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise ValueError(f"{archive.name} has no {prefix}")
        tar.extractall(into, members=members, filter="data")
    return into / prefix


def build_record(sdist: LockedSdist, defines: dict[str, str]) -> dict[str, object]:
    return {"version": sdist.version, "sha256": sdist.sha256, "defines": dict(sorted(defines.items()))}


def ensure_binary(jobs: int = 2, sdist_file: Path | None = None) -> Path:
    """The cached `llama-server` for the locked sdist and flags, built first if missing or stale.

    `sdist_file`: an already downloaded sdist to use instead of downloading (its hash is still checked).
    Concurrent callers wait for one build (a lock file beside the cache)."""
    sdist, defines = locked_sdist(), cmake_defines()
    slot = cache_root() / sdist.version
    binary, record = slot / TARGET, slot / "build.json"
    wanted = build_record(sdist, defines)
    slot.parent.mkdir(parents=True, exist_ok=True)
    with (slot.parent / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file() and record.is_file() and json.loads(record.read_text()) == wanted:
            return binary
        print(f"building {TARGET} from {PACKAGE} {sdist.version}'s llama.cpp (5-10 min on 2 cores)", file=sys.stderr)
        _build(sdist, defines, slot, jobs, sdist_file)
    return binary


def _build(sdist: LockedSdist, defines: dict[str, str], slot: Path, jobs: int, sdist_file: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="llama-server-", dir=slot.parent) as tmp:
        work = Path(tmp)
        if sdist_file is not None:
            verify_sha256(sdist_file, sdist.sha256)
        archive = sdist_file or download(sdist, work)
        source = extract_llama_cpp(archive, work / "src")
        subprocess.run(configure_command(source, work / "build", defines), check=True, stdout=subprocess.DEVNULL)
        subprocess.run(build_command(work / "build", jobs), check=True, stdout=subprocess.DEVNULL)
        staged = work / "slot"
        staged.mkdir()
        shutil.copy2(work / "build" / "bin" / TARGET, staged / TARGET)
        (staged / "build.json").write_text(json.dumps(build_record(sdist, defines), indent=1))
        shutil.rmtree(slot, ignore_errors=True)
        staged.rename(slot)  # an interrupted build never leaves half a slot


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """/health answers 200 once the model is loaded (503 while loading)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{TARGET} exited with {proc.returncode} before it was healthy")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{TARGET} not healthy after {timeout:.0f} s")


@contextmanager
def running(command: list[str], port: int) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start `command` (from server_command), yield (process, base URL) once healthy, then stop it."""
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url, proc)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build", "serve"])
    parser.add_argument("-np", "--parallel", type=int, default=8)
    parser.add_argument("-c", "--ctx", type=int, default=8192)
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--sdist", type=Path, help="a downloaded sdist to build from (hash-checked)")
    args = parser.parse_args()
    binary = ensure_binary(sdist_file=args.sdist)
    if args.action == "build":
        print(binary)
        return 0
    from margin.config.local_weights import default_model_path

    command = server_command(
        binary, default_model_path(), parallel=args.parallel, ctx=args.ctx, threads=args.threads, port=args.port
    )
    with running(command, args.port) as (proc, url):
        print(f"{TARGET} healthy at {url}; Ctrl-C stops it", file=sys.stderr)
        with suppress(KeyboardInterrupt):
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
