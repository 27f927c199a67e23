"""A private Sentinel deployment for test suites (:class:`RedisSentinel`): a master, replicas
and Sentinels, each a real ``redis-server`` on an ephemeral loopback port."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from common.testing.redis_server import RedisServer, _redis_cli, _wait_until, free_port

__all__ = ["RedisSentinel"]


class RedisSentinel:
    """A private Sentinel deployment: a master, ``replicas`` replicas (``replica`` is the
    first) and ``sentinels`` Sentinels
    (``redis-server --sentinel``), all on ephemeral loopback ports, monitoring ``name``.

    ``url`` is the ``redis+sentinel://`` form of :class:`RedisManager`. :meth:`failover` asks
    the Sentinels to promote the replica (``SENTINEL FAILOVER``) and waits until they name the
    new master; :meth:`kill_master` SIGKILLs the current master instead (Sentinel then notices
    after ``down_after_ms``).
    """

    def __init__(
        self,
        *,
        sentinels: int = 1,
        name: str = "mymaster",
        down_after_ms: int = 1000,
        replicas: int = 1,
    ) -> None:
        if replicas < 1:
            raise ValueError("a Sentinel deployment needs at least one replica")
        self.name = name
        self.down_after_ms = down_after_ms
        no_delay = ("--repl-diskless-sync-delay", "0")  # a full sync starts at once
        self.master = RedisServer(extra_args=no_delay)
        self.replicas = [
            RedisServer(extra_args=(*no_delay, "--replicaof", "127.0.0.1", str(self.master.port)))
            for _ in range(replicas)
        ]
        self.replica = self.replicas[0]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.dir = Path(tempfile.mkdtemp(prefix="redis-sentinel-"))
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.name}"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self, timeout: float = 30.0) -> RedisSentinel:
        try:
            self.master.start()
            for replica in self.replicas:
                replica.start()
            _wait_until(self._replica_synced, timeout, "replica in sync")
            quorum = len(self.sentinel_ports) // 2 + 1
            for port in self.sentinel_ports:
                self._start_sentinel(port, quorum, timeout)
            _wait_until(self._sentinels_see_replica, timeout, "Sentinels seeing the replica")
        except BaseException:
            self.close()
            raise
        return self

    def _start_sentinel(self, port: int, quorum: int, timeout: float) -> None:
        config = self.dir / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"logfile {self.dir / f'sentinel-{port}.log'}\n"
            f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.name} 10000\n"
            f"sentinel parallel-syncs {self.name} 1\n"
        )
        binary = shutil.which("redis-server")
        assert binary is not None
        process = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._processes.append(process)

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server --sentinel exited at start (port {port})")
            try:
                return "PONG" in _redis_cli("-p", str(port), "ping", timeout=2)
            except RuntimeError:
                return False

        _wait_until(answers, timeout, f"Sentinel on port {port} answering")

    def _replica_synced(self) -> bool:
        for replica in self.replicas:
            info = _redis_cli("-p", str(replica.port), "info", "replication")
            if "master_link_status:up" not in info:
                return False
        return True

    def _sentinels_see_replica(self) -> bool:
        for port in self.sentinel_ports:
            out = _redis_cli("-p", str(port), "sentinel", "replicas", self.name).split()
            if any(str(replica.port) not in out for replica in self.replicas):
                return False
        return True

    def master_port(self) -> int:
        """The port of the master the (first) Sentinel names now."""
        out = _redis_cli(
            "-p", str(self.sentinel_ports[0]), "sentinel", "get-master-addr-by-name", self.name
        )
        return int(out.split()[1])

    def current_master(self) -> RedisServer:
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def failover(self, timeout: float = 30.0) -> RedisServer:
        """Promote the replica with ``SENTINEL FAILOVER`` and wait until the new master is
        writable and named by every Sentinel; returns the new master."""
        old = self.master_port()
        _redis_cli("-p", str(self.sentinel_ports[0]), "sentinel", "failover", self.name)
        return self.await_new_master(old, timeout)

    def kill_master(self, timeout: float = 30.0) -> RedisServer:
        """SIGKILL the current master and wait until the Sentinels have promoted the replica."""
        old = self.current_master()
        old.kill()
        return self.await_new_master(old.port, timeout)

    def await_new_master(self, old_port: int, timeout: float = 30.0) -> RedisServer:
        """Wait until every Sentinel names a master other than the one on ``old_port`` and
        that master is writable; returns it."""

        def promoted() -> bool:
            for port in self.sentinel_ports:
                out = _redis_cli("-p", str(port), "sentinel", "get-master-addr-by-name", self.name)
                if int(out.split()[1]) == old_port:
                    return False
            info = _redis_cli("-p", str(self.master_port()), "info", "replication")
            return "role:master" in info

        _wait_until(promoted, timeout, "Sentinel failover")
        return self.current_master()

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        self._processes.clear()
        for server in self.servers:
            server.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisSentinel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
