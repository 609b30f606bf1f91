"""Install the peers corral is compared with into virtualenvs of their own under var/peers/ (gitignored).

Usage: python3 bench/peers/install.py [--salt SPEC] [--ansible SPEC]

var/peers/salt gets Salt (salt-master, salt-minion and its Python client) and var/peers/ansible gets
ansible-core, each from the package index through pip, apart from corral's .venv: their pins (Salt's
tornado, pyzmq, Jinja...) must not move corral's, and corral's must not move theirs. Running it again only
installs what is missing or does not match SPEC; it prints the versions either way.
"""

from __future__ import annotations

import argparse
import subprocess
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO / "var" / "peers"

# The newest Salt line that installs on Python 3.11 from PyPI (3008.4 on 2026-12-04); 3007 works too.
SALT_SPEC = "salt==3008.*"
ANSIBLE_SPEC = "ansible-core"


def venv_dir(name: str) -> Path:
    return PEERS / name


def venv_bin(name: str, program: str) -> Path:
    """A program of the peer's virtualenv (python, salt-master, ansible...)."""
    return venv_dir(name) / "bin" / program


def installed_version(name: str, distribution: str) -> str | None:
    """The version of ``distribution`` in the peer's virtualenv, None when it has none (or no virtualenv)."""
    python = venv_bin(name, "python")
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def satisfies(name: str, distribution: str, spec: str) -> bool:
    """Whether the installed ``distribution`` matches ``spec``, asked of the virtualenv's own pip
    (packaging is there: pip vendors it), so that `salt==3008.*` is read as pip reads it."""
    python = venv_bin(name, "python")
    code = (
        "import sys, importlib.metadata as m\n"
        "from pip._vendor.packaging.requirements import Requirement\n"
        f"r = Requirement({spec!r})\n"
        f"sys.exit(0 if r.specifier.contains(m.version({distribution!r}), prereleases=True) else 1)\n"
    )
    return subprocess.run([str(python), "-c", code], capture_output=True).returncode == 0


def ensure(name: str, distribution: str, spec: str) -> str:
    """Create the virtualenv if needed and pip-install ``spec`` unless what is there already matches."""
    if not venv_bin(name, "python").exists():
        print(f"creating {venv_dir(name)}", flush=True)
        venv.create(venv_dir(name), with_pip=True, clear=True)
    if installed_version(name, distribution) is None or not satisfies(name, distribution, spec):
        print(f"installing {spec} into {venv_dir(name)} (a minute or two)", flush=True)
        subprocess.run([str(venv_bin(name, "python")), "-m", "pip", "install", "--quiet", spec], check=True)
    version = installed_version(name, distribution)
    if version is None:
        raise SystemExit(f"{distribution} is not importable in {venv_dir(name)} after pip install {spec}")
    return version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--salt", default=SALT_SPEC, help=f"pip requirement for Salt (default {SALT_SPEC})")
    parser.add_argument("--ansible", default=ANSIBLE_SPEC, help=f"pip requirement (default {ANSIBLE_SPEC})")
    args = parser.parse_args()
    salt = ensure("salt", "salt", args.salt)
    ansible = ensure("ansible", "ansible-core", args.ansible)
    print(f"salt {salt} in {venv_dir('salt')}")
    print(f"ansible-core {ansible} in {venv_dir('ansible')}")


if __name__ == "__main__":
    main()
