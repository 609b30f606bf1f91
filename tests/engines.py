"""Real outside engines for tests: a podman Docker-API service, a busybox image tarball, HTTP and SFTP servers.

Plain classes so a script can use them too; the pytest fixtures live in tests/engine_fixtures.py.
Everything runs on this machine only (unix socket, 127.0.0.1) and keeps its state in a temporary directory.
"""

from __future__ import annotations

import contextlib
import getpass
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tests.support import free_port, wait_until

if TYPE_CHECKING:
    import docker

BUSYBOX_IMAGE_NAME = "corral-test/busybox:1"
# Long-lived on purpose: a component container must stay running until the test stops it.
BUSYBOX_DEFAULT_CMD = ["/bin/sh", "-c", "echo corral-test-busybox up; exec sleep 3600"]
_BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
_CATATONIT = "/usr/libexec/podman/catatonit"
# Fixed mtime so the same inputs give the same tar (and so the same image id) on every run.
_EPOCH = 1_700_000_000


class EngineSetupError(RuntimeError):
    """A tool a test engine needs is missing or would not start; says what to install."""


def _require_binary(name: str, apt_package: str) -> str:
    path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
    if not path:
        raise EngineSetupError(f"{name} not found: install it (apt-get install {apt_package}; .ci/run does this)")
    return path


def _static_busybox() -> str:
    for candidate in _BUSYBOX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            # A dynamically linked busybox would need its libc inside the image: insist on the static one.
            if not _has_elf_interpreter(candidate):
                return candidate
    raise EngineSetupError("no static busybox found: install it (apt-get install busybox-static; .ci/run does this)")


def _has_elf_interpreter(path: str) -> bool:
    """Whether a 64-bit little-endian ELF file names a dynamic loader (a PT_INTERP program header)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return True  # not the kind of binary we can vouch for: treat as unusable
        (phoff,) = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(struct.unpack_from("<I", table, i * phentsize)[0] == 3 for i in range(phnum))


# ---------------------------------------------------------------------------------------------------------
# Image tarball
# ---------------------------------------------------------------------------------------------------------


def _tar_add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = _EPOCH
    tar.addfile(info, io.BytesIO(data))


def _busybox_layer(busybox: str) -> bytes:
    """An uncompressed layer tar: /bin/busybox, a symlink per applet, and the usual empty dirs."""
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "run"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            info.mtime = _EPOCH
            tar.addfile(info)
        with open(busybox, "rb") as f:
            _tar_add_bytes(tar, "bin/busybox", f.read(), mode=0o755)
        _tar_add_bytes(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        _tar_add_bytes(tar, "etc/group", b"root:x:0:\n")
        for applet in sorted(set(applets)):
            if applet == "busybox" or "/" in applet:
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            info.mode = 0o777
            info.mtime = _EPOCH
            tar.addfile(info)
    return buf.getvalue()


def build_busybox_image_tar(
    workdir: Path | str,
    image_name: str = BUSYBOX_IMAGE_NAME,
    cmd: list[str] | None = None,
    env: dict[str, str] | None = None,
    compress: bool = False,
) -> Path:
    """Write a docker-archive tar (what `docker save` makes) of a one-layer image of static busybox.

    Built by hand rather than with an engine so it needs no running service and is byte-for-byte
    reproducible. It loads with `docker load` / `client.images.load(data)` / `podman load`.
    Returns the tar's path: ``workdir/<image name with / and : replaced>.tar`` (``.tar.gz`` if compressed).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    layer = _busybox_layer(_static_busybox())
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    image_env = [f"{k}={v}" for k, v in (env or {}).items()]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *image_env],
            "Cmd": list(cmd or BUSYBOX_DEFAULT_CMD),
            "WorkingDir": "/",
            "Labels": {"org.corral.test": "busybox"},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "tests/engines.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_dir = diff_id.split(":", 1)[1]
    manifest = [{"Config": config_name, "RepoTags": [image_name], "Layers": [f"{layer_dir}/layer.tar"]}]
    repo, _, tag = image_name.rpartition(":")
    repositories = {repo: {tag: layer_dir}}

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _tar_add_bytes(tar, f"{layer_dir}/layer.tar", layer)
        _tar_add_bytes(tar, f"{layer_dir}/VERSION", b"1.0")
        _tar_add_bytes(tar, config_name, config_bytes)
        _tar_add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        _tar_add_bytes(tar, "repositories", json.dumps(repositories).encode())
    data = out.getvalue()
    stem = image_name.replace("/", "_").replace(":", "_")
    if compress:
        path = workdir / f"{stem}.tar.gz"
        path.write_bytes(gzip.compress(data, mtime=_EPOCH))
    else:
        path = workdir / f"{stem}.tar"
        path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------------------
# podman as a Docker Engine API service
# ---------------------------------------------------------------------------------------------------------

_CONTAINERS_CONF = """\
# Written by tests/engines.py for one private podman service; nothing here is system-wide.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
init_path = "{catatonit}"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
image_copy_tmp_dir = "{tmp}"

[network]
network_config_dir = "{net}"
"""

# Run inside fresh network and mount namespaces: the CNI bridge, its iptables rules, /run/netns and
# /var/lib/cni that podman's Docker-compatible "bridge" default creates then live and die with this
# service instead of landing on the host. /run and /var/lib are overlaid in that namespace only, so the
# service still sees the host's files there but its writes land in $1 (our state dir).
_SERVICE_SCRIPT = """\
set -e
state="$1"; shift
for d in run var/lib; do
    n=$(echo "$d" | tr / _)
    mkdir -p "$state/overlay/$n.upper" "$state/overlay/$n.work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$state/overlay/$n.upper,workdir=$state/overlay/$n.work" "/$d"
done
# podman's lock segment is a POSIX shm object: a private /dev/shm keeps it apart from any other podman.
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ip link set lo up
exec "$@"
"""


class PodmanEngine:
    """A private `podman system service` that serves the Docker Engine API on a unix socket."""

    def __init__(self, base_dir: Path | str | None = None) -> None:
        self.dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="corral-test-podman-"))
        self.socket_path = self.dir / "docker.sock"
        self.docker_host = f"unix://{self.socket_path}"
        self.log_path = self.dir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._mnt_ns: str | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a child process (an agent) needs in its environment to reach this engine."""
        return {"DOCKER_HOST": self.docker_host}

    def _podman_args(self) -> list[str]:
        return [
            _require_binary("podman", "podman"),
            "--root",
            str(self.dir / "storage"),
            "--runroot",
            str(self.dir / "run"),
            "--tmpdir",
            str(self.dir / "libpod-tmp"),
            "--storage-driver",
            "vfs",
            "--runtime",
            "runc",
            "--runtime-flag",
            f"root={self.dir / 'runc'}",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
        ]

    def start(self) -> PodmanEngine:
        if os.geteuid() != 0:
            raise EngineSetupError("PodmanEngine needs root (rootful podman with a private network namespace)")
        _require_binary("runc", "runc")
        _require_binary("conmon", "conmon")
        _require_binary("unshare", "util-linux")
        _require_binary("ip", "iproute2")
        if not os.access(_CATATONIT, os.X_OK):
            raise EngineSetupError(f"{_CATATONIT} missing: install it (apt-get install catatonit; .ci/run does this)")
        for sub in ("storage", "run", "runc", "tmp", "libpod-tmp", "net"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        conf = self.dir / "containers.conf"
        conf.write_text(
            _CONTAINERS_CONF.format(catatonit=_CATATONIT, tmp=self.dir / "tmp", net=self.dir / "net"),
        )
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(conf)
        env["TMPDIR"] = str(self.dir / "tmp")
        # A user's or the system's registries/storage config must not leak in.
        env.pop("CONTAINERS_STORAGE_CONF", None)
        env.pop("CONTAINERS_REGISTRIES_CONF", None)
        args = [
            "unshare",
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            _SERVICE_SCRIPT,
            "sh",
            str(self.dir),
            *self._podman_args(),
            "system",
            "service",
            "--time=0",
            self.docker_host,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir, start_new_session=True
            )
        try:
            wait_until(self._ready, timeout=30, interval=0.05, what=f"podman service on {self.socket_path}")
        except AssertionError as exc:
            self.stop()
            raise EngineSetupError(f"podman service did not start: {exc}; log: {self.log_tail()}") from exc
        try:
            self._mnt_ns = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
        except OSError:
            self._mnt_ns = None
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise EngineSetupError(f"podman service exited with {self.proc.returncode}: {self.log_tail()}")
        if not self.socket_path.exists():
            return False
        client = self.client(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def client(self, timeout: int = 60) -> docker.DockerClient:
        import docker

        return docker.DockerClient(base_url=self.docker_host, timeout=timeout)

    def remove_all_containers(self) -> None:
        """Force-remove every container of this engine (used between tests and at stop)."""
        client = self.client()
        try:
            for container in client.containers.list(all=True):
                try:
                    container.remove(force=True, v=True)
                except Exception:  # noqa: BLE001 - it may be going away by itself right now
                    pass
        finally:
            client.close()

    def remove_image(self, name: str) -> None:
        """Remove one image if present, so a test can see it downloaded and loaded afresh."""
        import docker

        client = self.client()
        try:
            client.images.remove(name, force=True)
        except docker.errors.ImageNotFound:
            pass
        finally:
            client.close()

    def _namespace_pids(self) -> list[int]:
        """Processes left in the service's mount namespace (conmon, container processes)."""
        if not self._mnt_ns:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == self._mnt_ns:
                    pids.append(int(entry))
            except OSError:
                continue
        return pids

    def stop(self) -> None:
        """Remove all containers, stop the service, kill what it left behind, delete the state dir."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.remove_all_containers()
            except Exception:  # noqa: BLE001 - the service may already be unusable; clean up below anyway
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # conmon and container processes outlive the service by design: end the ones in our namespace.
        for pid in self._namespace_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self._namespace_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# HTTP file server
# ---------------------------------------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    served: list[str]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self.served.append(self.path)
        super().do_GET()


class HttpFileServer:
    """Serves the files of one directory over HTTP on a free 127.0.0.1 port, in a thread."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.served: list[str] = []
        handler = type("Handler", (_QuietHandler,), {"served": self.served})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(self.directory)))
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-file-server", daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{quote(name)}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# ---------------------------------------------------------------------------------------------------------
# sshd for SFTP
# ---------------------------------------------------------------------------------------------------------

_SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


class SshServer:
    """A real sshd on a free loopback port, with its own host key and one authorized client key."""

    def __init__(self, base_dir: Path | str | None = None) -> None:
        self.dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="corral-test-sshd-"))
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key_path = self.dir / "ssh_host_ed25519_key"
        self.client_key_path = self.dir / "client_ed25519"
        self.known_hosts_path = self.dir / "known_hosts"
        self.log_path = self.dir / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def sftp_url(self, path: Path | str) -> str:
        path = str(Path(path).resolve())
        return f"sftp://{self.user}@127.0.0.1:{self.port}{quote(path)}"

    @property
    def host_key_line(self) -> str:
        """The host key as `type base64`, as in a known_hosts line after the host field."""
        return " ".join(Path(f"{self.host_key_path}.pub").read_text().split()[:2])

    def start(self) -> SshServer:
        sshd = _require_binary("/usr/sbin/sshd", "openssh-server")
        keygen = _require_binary("ssh-keygen", "openssh-client")
        self.dir.mkdir(parents=True, exist_ok=True)
        for key in (self.host_key_path, self.client_key_path):
            subprocess.run(
                [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "corral-test", "-f", str(key)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        authorized = self.dir / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key_path}.pub").read_text())
        self.known_hosts_path.write_text(f"[127.0.0.1]:{self.port} {self.host_key_line}\n")
        config = self.dir / "sshd_config"
        config.write_text(
            _SSHD_CONFIG.format(
                port=self.port,
                host_key=self.host_key_path,
                pid_file=self.dir / "sshd.pid",
                authorized_keys=authorized,
                user=self.user,
            )
        )
        # sshd refuses to start without its compiled-in privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_until(self._listening, timeout=15, what=f"sshd on 127.0.0.1:{self.port}")
        except AssertionError as exc:
            self.stop()
            raise EngineSetupError(f"sshd did not start: {exc}; log: {self.log_path.read_text()[-2000:]}") from exc
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise EngineSetupError(f"sshd exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # The listener's session holds the per-connection children too: end the whole group.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class UnixSocketRelay:
    """A unix socket that relays every connection to another one (an engine's), and can be cut and restored.

    Cut, it closes the connections it relays and hangs up on new ones at once: a client sees its engine go
    down, while the engine itself (shared by the whole session) keeps running.
    """

    def __init__(self, path: Path, target: Path) -> None:
        self.path = Path(path)
        self.target = Path(target)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def cut(self) -> None:
        """Close every relayed connection and hang up on new ones."""
        with self._lock:
            self._cut = True
            open_now, self._open = self._open, set()
        for sock in open_now:
            _hang_up(sock)

    def restore(self) -> None:
        """Relay new connections again."""
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self.cut()
        _hang_up(self._listener)
        self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        while True:
            try:
                client, _addr = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                cut = self._cut
            if cut:
                _hang_up(client)
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(self.target))
            except OSError:
                _hang_up(client)
                upstream.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:  # one direction ended: the connection is over, in both directions
            self._open.discard(src)
            self._open.discard(dst)
        _hang_up(src)
        _hang_up(dst)


def _hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
