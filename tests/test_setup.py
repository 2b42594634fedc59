"""`make setup` chooses where torch comes from: PyTorch's CPU index when it answers, PyPI otherwise, or as told."""
import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "torch_index.py"


def _choose(**env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with-block ends: connections are refused


@pytest.fixture
def cpu_index():
    """A local server that answers /torch/ as a wheel index does."""
    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/torch/" else 404)
            self.end_headers()
            self.wfile.write(b"<a href='torch-2.14.1+cpu.whl'>torch</a>")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


needs_linux_without_nvidia = pytest.mark.skipif(
    not sys.platform.startswith("linux") or Path("/proc/driver/nvidia/version").exists(),
    reason="the CPU index is chosen on Linux machines without an NVIDIA driver")


@needs_linux_without_nvidia
def test_an_unreachable_cpu_index_falls_back_to_pypi_with_a_one_line_notice():
    done = _choose(TORCH_CPU_INDEX=f"http://127.0.0.1:{_closed_port()}")
    assert done.returncode == 0 and done.stdout.strip() == ""
    assert done.stderr.count("\n") == 1 and "is not reachable" in done.stderr and "from PyPI" in done.stderr


@needs_linux_without_nvidia
def test_a_reachable_cpu_index_is_chosen(cpu_index):
    done = _choose(TORCH_CPU_INDEX=cpu_index)
    assert done.returncode == 0 and done.stdout.strip() == cpu_index and done.stderr == ""


def test_gpu_1_keeps_the_default_build_without_asking_any_index(cpu_index):
    done = _choose(GPU="1", TORCH_CPU_INDEX=cpu_index)
    assert done.stdout.strip() == "" and done.stderr == ""


def test_the_makefile_installs_torch_from_the_chosen_index():
    recipe = subprocess.run(["make", "-n", "-B", "setup", "PYTHON=true"], capture_output=True, text=True,
                            cwd=SCRIPT.parent.parent, timeout=60).stdout
    assert ".ci/torch_index.py" in recipe and '--index-url "$index" torch torchvision' in recipe


def test_every_package_folder_is_installed_by_pip():
    """A non-editable `pip install .` ships what pyproject.toml lists: a family folder left out would vanish."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on

    root = SCRIPT.parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(root).parts) for p in (root / "vae_utils").rglob("__init__.py")}
    assert folders == listed


def _report(venv, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--report", str(venv)], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", **env})


@needs_linux_without_nvidia
def test_the_end_of_set_up_repeats_the_notice_with_the_cuda_libraries_size(tmp_path):
    libraries = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "nvidia" / "cublas" / "lib"
    libraries.mkdir(parents=True)
    (libraries / "libcublas.so.12").write_bytes(b"\0" * 2_500_000)
    done = _report(tmp_path / "venv")
    assert done.returncode == 0 and done.stdout == "" and done.stderr.count("\n") == 1
    assert "holds 2.5 MB of CUDA libraries" in done.stderr and "rm -rf" in done.stderr and "TORCH_INDEX=" in done.stderr
    assert _report(tmp_path / "venv", GPU="1").stderr == ""  # asked for


def test_a_cpu_build_gets_no_notice_at_the_end_of_set_up(tmp_path):
    (tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "torch").mkdir(parents=True)
    assert _report(tmp_path / "venv").stderr == ""


def test_the_makefile_repeats_the_notice_after_the_last_install():
    recipe = subprocess.run(["make", "-n", "-B", "setup", "PYTHON=true"], capture_output=True, text=True,
                            cwd=SCRIPT.parent.parent, timeout=60).stdout.splitlines()
    last_install = max(i for i, line in enumerate(recipe) if "pip install" in line)
    assert any(".ci/torch_index.py --report" in line for line in recipe[last_install + 1:])
