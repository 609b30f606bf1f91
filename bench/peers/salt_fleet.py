"""A Salt master and N minions as the current user on loopback, everything in one scratch directory.

    with SaltFleet(size=10) as fleet:   # started, and all 10 minions answered test.ping
        fleet.config_dir                # the master's configuration, for a LocalClient
    # every daemon stopped here, whatever happened inside (an exception, Ctrl-C, SIGTERM)

Run alone (`.venv/bin/python bench/peers/salt_fleet.py --size 3`) it starts a fleet, waits for it, prints
where it is and stops it: a check of the Salt install. Salt comes from var/peers/salt (bench/peers/install.py).

Each daemon's root_dir is the scratch directory (the master's) or a directory of its own in it (each minion's),
so Salt's default paths (/etc/salt, /var/cache/salt, /var/run/salt, /var/log/salt) all land inside: nothing
on the system is read or written, and two fleets (or a system Salt) never meet. Ports are free ones on
127.0.0.1. Keys are auto-accepted: the bench measures jobs, not key management.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from install import venv_bin  # noqa: E402  (bench/peers/install.py)

from tests.support import free_port  # noqa: E402

CLIENT = Path(__file__).with_name("salt_client.py")


def yaml_lines(settings: dict[str, object]) -> str:
    """The few settings we write, as YAML (strings and numbers only; no YAML library in corral's venv)."""
    return "".join(f"{key}: {value}\n" for key, value in settings.items())


class Daemon:
    """A Salt daemon in the foreground as our child, in a session of its own: it and every process it forks
    (the master's workers, a minion's job processes) form one process group that we alone stop, and a Ctrl-C
    at the terminal reaches the bench (which then stops them) rather than the daemons half-way."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def tree(self) -> list[int]:
        """The daemon's pid and its descendants' (for PSS)."""
        try:
            return [self.popen.pid, *(c.pid for c in psutil.Process(self.popen.pid).children(recursive=True))]
        except psutil.Error:
            return []

    def signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # the group is the daemon's own session: its pid is the group id
        except ProcessLookupError:
            pass

    def group_alive(self) -> bool:
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        return True


class SaltFleet:
    """A salt-master and ``size`` salt-minions (ids salt-000...) in ``root`` (a new temp dir if None)."""

    def __init__(self, size: int, root: Path | None = None, start_deadline: float = 600) -> None:
        self.size = size
        self.start_deadline = start_deadline
        self.owns_root = root is None
        self.root = root if root is not None else Path(tempfile.mkdtemp(prefix="corral-salt-"))
        self.config_dir = self.root / "master-conf"
        self.master: Daemon | None = None
        self.minions: list[Daemon] = []

    def __enter__(self) -> SaltFleet:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        user = getpass.getuser()
        publish_port, ret_port = free_port(), free_port()
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "srv").mkdir(exist_ok=True)
        (self.config_dir / "master").write_text(
            yaml_lines(
                {
                    "root_dir": self.root,
                    "user": user,
                    "interface": "127.0.0.1",
                    "publish_port": publish_port,
                    "ret_port": ret_port,
                    "auto_accept": "True",
                    "file_roots": f"{{base: [{self.root / 'srv'}]}}",
                    "pillar_roots": f"{{base: [{self.root / 'srv'}]}}",
                    "log_level_logfile": "warning",
                }
            )
        )
        self.master = Daemon(
            "salt-master",
            [str(venv_bin("salt", "salt-master")), "-c", str(self.config_dir), "-l", "warning"],
            self.root / "master.out",
        )
        for i in range(self.size):
            minion_id = f"salt-{i:03d}"
            minion_root = self.root / "minions" / minion_id
            conf = minion_root / "conf"
            conf.mkdir(parents=True)
            (conf / "minion").write_text(
                yaml_lines(
                    {
                        "id": minion_id,
                        "root_dir": minion_root,
                        "user": user,
                        "master": "127.0.0.1",
                        "master_port": ret_port,
                        "publish_port": publish_port,
                        # Start-up only: the key is accepted on the first try (auto_accept), so a retry need
                        # not wait the default 10 s; the fqdn grains' reverse lookups are slow and unused.
                        "acceptance_wait_time": 1,
                        "enable_fqdns_grains": "False",
                        "log_level_logfile": "warning",
                    }
                )
            )
            self.minions.append(
                Daemon(
                    minion_id,
                    [str(venv_bin("salt", "salt-minion")), "-c", str(conf), "-l", "warning"],
                    minion_root / "minion.out",
                )
            )

    def wait_ready(self) -> None:
        """Until every minion answers test.ping through the master (salt_client.py in Salt's venv)."""
        done = subprocess.run(
            [
                str(venv_bin("salt", "python")),
                str(CLIENT),
                "ping",
                "--config",
                str(self.config_dir),
                "--expect",
                str(self.size),
                "--deadline",
                str(self.start_deadline),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"Salt fleet of {self.size} not ready: {done.stderr.strip()[-2000:]}\n{self.logs()}")

    def logs(self, lines: int = 20) -> str:
        """The tail of the master's output (where a failed start says why)."""
        path = self.root / "master.out"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def minion_pids(self) -> list[int]:
        return [pid for minion in self.minions for pid in minion.tree()]

    def master_pids(self) -> list[int]:
        return self.master.tree() if self.master is not None else []

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM every daemon's process group (minions first: they then leave no job half-sent), wait, then
        SIGKILL what is left; then remove the scratch directory if it is ours."""
        daemons = [*self.minions, *([self.master] if self.master is not None else [])]
        for daemon in daemons:
            daemon.signal_group(signal.SIGTERM)
        end = time.monotonic() + timeout
        while any(d.group_alive() for d in daemons) and time.monotonic() < end:
            for daemon in daemons:
                daemon.popen.poll()  # reap our children so that a dead leader does not linger as a zombie
            time.sleep(0.2)
        for daemon in daemons:
            if daemon.group_alive():
                print(f"salt fleet: {daemon.name} ignored SIGTERM for {timeout:.0f} s: SIGKILL", file=sys.stderr)
                daemon.signal_group(signal.SIGKILL)
            try:
                daemon.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.minions = []
        self.master = None
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    with SaltFleet(args.size) as fleet:
        print(f"{args.size} minions answered test.ping {time.perf_counter() - t0:.1f} s after start; root {fleet.root}")
    print("stopped")


if __name__ == "__main__":
    main()
