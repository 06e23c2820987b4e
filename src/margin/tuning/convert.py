"""PEFT adapter -> GGUF LoRA adapter with llama.cpp's own `convert_lora_to_gguf.py`.

The script is the one vendored in the llama-cpp-python source distribution of the version margin
runs (uv.lock pins it; a test keeps SDIST below equal to the lock). It is never copied into the
repository: the sdist is downloaded once into the user cache, its sha256 verified, and only the
script, the `conversion/` package and `gguf-py/` it imports are extracted. The script runs in a
child process with HF_HUB_OFFLINE=1 and reads the base model's config from the job's directory.

The result is written beside and renamed into place after pip's `gguf` reader has checked it is a
LoRA adapter with tensors: a failed conversion never leaves an `adapter.gguf`."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import platformdirs

from margin.config.environment import HF_HUB_OFFLINE
from margin.tuning.errors import TrainingError

PACKAGE = "llama-cpp-python"
# (version, url, sha256) of the sdist uv.lock pins; tests/unit/tuning/test_convert.py compares them.
SDIST = (
    "0.3.36",
    "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/"
    "llama_cpp_python-0.3.36.tar.gz",
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
)
SCRIPT = "convert_lora_to_gguf.py"
_WANTED = (SCRIPT, "conversion/", "gguf-py/")
_TIMEOUT_S = 600


def cache_root() -> Path:
    return platformdirs.user_cache_path("margin") / "llama-sources"


def installed_matches() -> None:
    version, _, _ = SDIST
    try:
        installed = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise TrainingError(f"adapter conversion needs {PACKAGE} (extra `local`)") from None
    if installed != version:
        raise TrainingError(
            f"{PACKAGE} {installed} is installed but the conversion script is pinned to {version}: "
            "an adapter converted by another version may not load; reinstall from uv.lock"
        )


def conversion_script(cache: Path | None = None) -> Path:
    """`convert_lora_to_gguf.py` of the pinned sdist, fetched and extracted once into the cache."""
    version, url, sha256 = SDIST
    root = cache or cache_root()
    target = root / f"{PACKAGE}-{version}"
    script = target / SCRIPT
    if script.is_file():
        return script
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp:
        archive = _download(url, sha256, Path(tmp))
        staging = Path(tmp) / "extract"
        _extract(archive, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return script


def _download(url: str, sha256: str, into: Path) -> Path:
    path = into / url.rsplit("/", 1)[-1]
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=120) as response, path.open("wb") as out:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
    except (urllib.error.URLError, OSError) as exc:
        raise TrainingError(
            f"adapter conversion needs llama.cpp's {SCRIPT} from {url} and could not download it ({exc}); "
            f"on a machine without network, extract it (with conversion/ and gguf-py/) into {cache_root()}"
        ) from exc
    if digest.hexdigest() != sha256:
        raise TrainingError(f"{path.name}: sha256 {digest.hexdigest()} does not match uv.lock's {sha256}")
    return path


def _extract(archive: Path, into: Path) -> None:
    """Only vendor/llama.cpp/{convert_lora_to_gguf.py, conversion/, gguf-py/}, flattened into `into`."""
    into.mkdir()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/", 3)
            if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"]:
                continue
            inner = parts[3]
            if not (member.isfile() or member.isdir()) or not any(inner == w or inner.startswith(w) for w in _WANTED):
                continue
            member.name = inner
            tar.extract(member, into, filter="data")
    if not (into / SCRIPT).is_file():
        raise TrainingError(f"{archive.name} has no vendor/llama.cpp/{SCRIPT}")


def convert(adapter: Path, base_config: Path, out: Path, *, cache: Path | None = None) -> Path:
    """Convert the PEFT adapter to `out` (GGUF); TrainingError with the script's last words on failure."""
    installed_matches()
    script = conversion_script(cache)
    partial = out.with_name(f".{out.name}.partial")
    partial.unlink(missing_ok=True)
    HF_HUB_OFFLINE.export("1")
    command = [sys.executable, str(script), "--base", str(base_config), "--outfile", str(partial),
               "--outtype", "f32", str(adapter)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise TrainingError(f"adapter conversion took more than {_TIMEOUT_S} s") from None
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise TrainingError(f"adapter conversion failed (exit {done.returncode}): {tail}")
    check_adapter(partial)
    partial.rename(out)
    return out


def check_adapter(path: Path) -> int:
    """The number of LoRA tensors in a GGUF adapter; TrainingError when it is not one."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{path.name}: not a readable GGUF ({exc})") from None
    field = reader.get_field("general.type")
    kind = field.contents() if field is not None else None
    if kind != "adapter" or not reader.tensors:
        raise TrainingError(f"{path.name}: not a LoRA adapter (general.type={kind!r}, {len(reader.tensors)} tensors)")
    return len(reader.tensors)
