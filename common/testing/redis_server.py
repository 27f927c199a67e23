"""A private ``redis-server`` for test suites (ours and users'), and unique settings.

``RedisServer`` starts a real ``redis-server`` on an ephemeral loopback port in a temporary
directory, and can kill (SIGKILL), stop and restart it on the same port, with or without AOF,
so that fault tests can take the server away from running workers. With ``unixsocket=True`` it
also listens on a Unix socket in that directory (``unix_url``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from common.config import CommonAppSettings

__all__ = ["RedisCluster", "RedisServer", "free_port", "unique_settings"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_settings(**overrides: Any) -> CommonAppSettings:
    """Settings with a queue prefix of their own, so tests never see each other's keys."""
    overrides.setdefault("queue_prefix", "t" + uuid.uuid4().hex[:12])
    return CommonAppSettings(**overrides)


class RedisServer:
    """A private ``redis-server`` process on 127.0.0.1 (never the shared default port)."""

    def __init__(
        self,
        *,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        binary: str | None = None,
        extra_args: tuple[str, ...] = (),
        unixsocket: bool = False,
    ) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = found
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = extra_args
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.unixsocket: Path | None = self.dir / "redis.sock" if unixsocket else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """``unix://`` URL of the server's socket (started with ``unixsocket=True``)."""
        if self.unixsocket is None:
            raise RuntimeError("this RedisServer was not started with unixsocket=True")
        return f"unix://{self.unixsocket}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.process is not None and self.process.poll() is None:
            return self
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
            *(("--unixsocket", str(self.unixsocket)) if self.unixsocket else ()),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited at start:\n{log}")
            if self._answers():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server: what it had not persisted is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP the server: it keeps its sockets but answers nothing (a stalled replica)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM: AOF is flushed when enabled)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, *, kill: bool = True) -> RedisServer:
        self.kill() if kill else self.stop()
        return self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:  # a crashed test run must not leave servers behind
        proc = getattr(self, "process", None)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)


def _redis_cli(*args: str, timeout: float = 10.0) -> str:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli is not installed (apt-get install redis-tools)")
    done = subprocess.run(
        [cli, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def _wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not reached in {timeout}s")


def _cluster_port() -> int:
    """A free port P <= 55535 whose cluster bus port P + 10000 is free too."""
    for _ in range(1000):
        port = free_port()
        if port > 55535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """A private Redis Cluster of ``masters`` masters (no replicas) on ephemeral loopback ports.

    Each node is a :class:`RedisServer` started with ``--cluster-enabled yes``; :meth:`start`
    joins them with ``redis-cli --cluster create`` and waits until every node reports
    ``cluster_state:ok``. ``url`` is the ``redis+cluster://`` form of :class:`RedisManager`.

    A node can be taken down and brought back on its port (``nodes[i].kill()`` or ``.stop()``,
    then ``.start()``): it finds its data and ``nodes.conf`` in its directory and takes its
    slots back; :meth:`wait_ok` waits until the cluster serves every slot again. Its data
    survives a ``kill()`` only with ``appendonly=True, appendfsync="always"``.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        node_timeout_ms: int = 2000,
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.nodes = [
            RedisServer(
                appendonly=appendonly,
                appendfsync=appendfsync,
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                ),
            )
            for _ in range(masters)
        ]
        for node in self.nodes:
            node.port = _cluster_port()

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}"

    def start(self, timeout: float = 30.0) -> RedisCluster:
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            _redis_cli(
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
                timeout=timeout,
            )
            self.wait_ok(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every node reports ``cluster_state:ok`` (all slots served)."""
        _wait_until(self._ok, timeout, "cluster_state:ok on every node")

    def node_on(self, port: int) -> RedisServer:
        """The node listening on ``port``."""
        return next(node for node in self.nodes if node.port == port)

    def _ok(self) -> bool:
        for node in self.nodes:
            info = _redis_cli("-h", "127.0.0.1", "-p", str(node.port), "cluster", "info")
            if "cluster_state:ok" not in info:
                return False
        return True

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
