"""The wheel is what a host installs (issue 14): built with `python -m build`, installed into a fresh virtualenv
(no system site-packages, no source tree on the path), its three console scripts run and a manager serves its
console and API reference from the files the wheel carries."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import free_port, wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh venv with the freshly built wheel installed; its bin dir and an environment without the repo."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    # From a copy of the checkout's files (tracked, or new and not ignored): the checkout's build/ and
    # corral.egg-info/SOURCES.txt of an editable install would lend the wheel files package_data leaves out.
    source = tmp / "source"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():  # a file deleted but not yet staged is still listed
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)], check=True)
    wheels = list(dist.glob("corral-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    config = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config, config
    bin_dir = venv / "bin"
    subprocess.run([str(bin_dir / "pip"), "install", "-q", str(wheels[0])], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CORRAL_API_TOKEN")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["CORRAL_RUNTIME_DIR"] = str(tmp / "run")
    yield bin_dir, env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_console_scripts_answer_help_outside_the_source_tree(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    for script, words in (("manager", "--db-path"), ("agent", "--manager-url"), ("corral", "deploy")):
        answer = run([str(bin_dir / script), "--help"], env, tmp_path)
        assert answer.returncode == 0, answer.stderr
        assert words in answer.stdout, answer.stdout


def test_the_installed_package_comes_from_the_venv_and_carries_its_assets(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    code = (
        "import pathlib, manager_api; root = pathlib.Path(manager_api.__file__).parent; print(root); "
        "print(*sorted(str(p.relative_to(root)) for p in root.rglob('*') "
        "if p.is_file() and p.suffix in ('.html', '.js', '.css')), sep='\\n')"
    )
    answer = run([str(bin_dir / "python"), "-c", code], env, tmp_path)
    assert answer.returncode == 0, answer.stderr
    root, *files = answer.stdout.splitlines()
    assert Path(root).is_relative_to(bin_dir.parent), root  # the wheel's copy, not the repo's
    assert "console/templates/console/base.html" in files, files
    assert "console/static/console/console.js" in files, files
    assert any(f.startswith("console/static/console/vendor/htmx-") for f in files), files
    assert "api/docs_ui/api_docs.html" in files, files
    assert any(f.startswith("api/docs_ui/vendor/swagger-ui-bundle-") for f in files), files


def test_the_installed_manager_serves_its_console_and_api_reference(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "manager.log"
    args = [str(bin_dir / "manager"), "--port", str(port), "--db-path", str(tmp_path / "data" / "corral.db")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return requests.get(url + "/healthz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(healthy, timeout=60, what=f"installed manager on {url}")
        console = requests.get(url + "/", timeout=10)
        assert console.status_code == 200, console.text
        docs = requests.get(url + "/api/docs", timeout=10)
        assert docs.status_code == 200, docs.text
        # Each page's scripts are files of the wheel's package_data: fetch every one the pages name.
        scripts = re.findall(r'src="(/[^"]+\.js)"', console.text + docs.text)
        assert any("htmx-" in s for s in scripts) and any("swagger-ui-bundle-" in s for s in scripts), scripts
        for script in scripts:
            answer = requests.get(url + script, timeout=10)
            assert answer.status_code == 200 and len(answer.content) > 100, script
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
