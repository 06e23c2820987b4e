"""bench/llama_server.py without building llama.cpp: reading the sdist pin from uv.lock, the hash check,
unpacking only vendor/llama.cpp, the cmake and server command lines, the build cache, and the
health-checked start (against a real HTTP server process standing in for llama-server)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[3]


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_llama_server", ROOT / "bench" / "llama_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


ls = load_module()
DIGEST = "ab" * 32


def lock_with(entry: str) -> str:
    return f"""version = 1

[[package]]
name = "httpx"
version = "0.28.1"
sdist = {{ url = "https://example.invalid/httpx-0.28.1.tar.gz", hash = "sha256:{"cd" * 32}" }}

{entry}
"""


def test_the_sdist_pin_is_read_from_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "uv.lock"
    lock.write_text(
        lock_with(f"""[[package]]
name = "llama-cpp-python"
version = "9.9.9"
sdist = {{ url = "https://example.invalid/llama_cpp_python-9.9.9.tar.gz", hash = "sha256:{DIGEST.upper()}" }}
""")
    )
    pinned = ls.locked_sdist(lock)
    assert pinned == ls.LockedSdist("9.9.9", "https://example.invalid/llama_cpp_python-9.9.9.tar.gz", DIGEST)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "does not pin llama-cpp-python"),
        ('[[package]]\nname = "llama-cpp-python"\nversion = "1"\n', "no sdist URL and hash"),
        (
            '[[package]]\nname = "llama-cpp-python"\nversion = "1"\nsdist = { url = "u", hash = "md5:00" }\n',
            "unexpected hash 'md5:00'",
        ),
    ],
)
def test_a_lock_without_a_usable_pin_is_refused(tmp_path: Path, entry: str, message: str) -> None:
    lock = tmp_path / "uv.lock"
    lock.write_text(lock_with(entry))
    with pytest.raises(ValueError, match=message):
        ls.locked_sdist(lock)


def test_the_project_lock_pins_an_sdist_of_the_locked_version() -> None:
    pinned = ls.locked_sdist()
    assert pinned.url.startswith("https://files.pythonhosted.org/")
    assert pinned.url.endswith(f"/llama_cpp_python-{pinned.version}.tar.gz")
    assert len(pinned.sha256) == 64 and int(pinned.sha256, 16) >= 0


def test_the_hash_check_accepts_the_right_digest_and_refuses_any_other(tmp_path: Path) -> None:
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"llama" * 1000)
    ls.verify_sha256(archive, hashlib.sha256(b"llama" * 1000).hexdigest().upper())
    with pytest.raises(ValueError, match=r"does not match uv\.lock.s"):
        ls.verify_sha256(archive, hashlib.sha256(b"other").hexdigest())


def test_only_vendor_llama_cpp_is_unpacked(tmp_path: Path) -> None:
    archive = tmp_path / "sdist.tar.gz"
    files = {
        "pkg-1.0/pyproject.toml": b"[project]",
        "pkg-1.0/vendor/llama.cpp/CMakeLists.txt": b"project(llama.cpp)",
        "pkg-1.0/vendor/llama.cpp/tools/server/main.cpp": b"int main() {}",
        "pkg-1.0/.git/modules/vendor/llama.cpp/HEAD": b"ref: refs/heads/master",
    }
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source = ls.extract_llama_cpp(archive, tmp_path / "out")
    assert source == tmp_path / "out" / "pkg-1.0" / "vendor" / "llama.cpp"
    assert (source / "tools" / "server" / "main.cpp").read_bytes() == b"int main() {}"
    unpacked = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert unpacked == ["pkg-1.0/vendor/llama.cpp/CMakeLists.txt", "pkg-1.0/vendor/llama.cpp/tools/server/main.cpp"]


def test_an_sdist_without_llama_cpp_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "sdist.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/setup.py")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match=r"has no pkg-1\.0/vendor/llama\.cpp/"):
        ls.extract_llama_cpp(archive, tmp_path / "out")


def test_cmake_flags_follow_pyproject_and_the_fixed_ones_win(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[tool.uv]\nconfig-settings-package = { llama-cpp-python = { "cmake.define.GGML_AVX2" = "ON", '
        '"cmake.define.BUILD_SHARED_LIBS" = "ON", "cmake.args" = "-GNinja" } }\n'
    )
    defines = ls.cmake_defines(pyproject)
    assert defines["GGML_AVX2"] == "ON"
    assert defines["BUILD_SHARED_LIBS"] == "OFF"  # one static binary, whatever the wheel build wants
    assert "cmake.args" not in defines and "args" not in defines
    command = ls.configure_command(Path("/src"), Path("/build"), defines)
    assert command[:5] == ["cmake", "-S", "/src", "-B", "/build"]
    assert "-DGGML_AVX2=ON" in command and "-DLLAMA_CURL=OFF" in command and "-DCMAKE_BUILD_TYPE=Release" in command


def test_the_project_flags_are_the_portable_ones() -> None:
    defines = ls.cmake_defines()
    expected = {"GGML_NATIVE": "OFF", "GGML_AVX2": "ON", "GGML_FMA": "ON", "GGML_F16C": "ON", "GGML_AVX512": "OFF"}
    assert {k: defines[k] for k in expected} == expected
    assert defines["LLAMA_CURL"] == "OFF" and defines["LLAMA_USE_PREBUILT_UI"] == "OFF"


def test_only_the_server_target_is_built_niced_on_two_jobs() -> None:
    command = ls.build_command(Path("/build"))
    assert command[:3] == ["nice", "-n", "19"]
    assert command[3:] == ["cmake", "--build", "/build", "--target", "llama-server", "-j2"]


def test_the_server_command_line() -> None:
    command = ls.server_command(Path("/bin/llama-server"), Path("/m.gguf"), parallel=8, ctx=4096, threads=2, port=9)
    assert command[0] == "/bin/llama-server"
    pairs = dict(zip(command[1::2], command[2::2], strict=False))
    assert pairs["-m"] == "/m.gguf" and pairs["-np"] == "8" and pairs["-c"] == "4096"
    assert pairs["-t"] == "2" and pairs["-tb"] == "2" and pairs["--port"] == "9" and pairs["--host"] == "127.0.0.1"


def test_a_cached_binary_built_from_the_same_pin_and_flags_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    pinned = ls.locked_sdist()
    slot = tmp_path / "margin" / "llama-server" / pinned.version
    slot.mkdir(parents=True)
    (slot / "llama-server").write_bytes(b"\x7fELF")
    (slot / "build.json").write_text(json.dumps(ls.build_record(pinned, ls.cmake_defines())))

    def no_download(*_: object) -> Path:
        raise AssertionError("a cached binary must not be rebuilt")

    monkeypatch.setattr(ls, "download", no_download)
    assert ls.ensure_binary() == slot / "llama-server"
    # a cache built with other flags is stale: the build would run (here: the download is refused)
    (slot / "build.json").write_text(json.dumps({**ls.build_record(pinned, ls.cmake_defines()), "defines": {}}))
    with pytest.raises(AssertionError, match="must not be rebuilt"):
        ls.ensure_binary()


def test_running_waits_for_health_and_stops_the_process(tmp_path: Path) -> None:
    (tmp_path / "health").write_text("ok")  # http.server answers GET /health with this file: 200
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    with ls.running(command, port) as (proc, url):
        import httpx

        assert url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/health").text == "ok"
    assert proc.returncode is not None


def test_a_server_that_dies_before_it_is_healthy_is_an_error() -> None:
    with (
        pytest.raises(RuntimeError, match="exited with 3 before it was healthy"),
        ls.running([sys.executable, "-c", "raise SystemExit(3)"], free_port()),
    ):
        pass
