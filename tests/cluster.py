"""A real two-node Ray cluster on this machine, for tests of jobs that join a cluster (``--address``).

``LoopbackCluster`` starts a head node and one worker node with the venv's ``ray start --block``, each
a child process in its own process group, and ends them by PID/process group (never ``ray stop``,
which would also end every other Ray session on the machine)::

    with LoopbackCluster(tmp_path) as cluster:
        subprocess.run([sys.executable, "driver.py", cluster.address], env=cluster.env)
        cluster.kill_worker_raylet()   # the worker node dies mid-job
        cluster.wait_node_dead()       # GCS declares it dead within a few seconds

A driver joins with ``ray.init(address=cluster.address)`` ("127.0.0.1:PORT"); run it with
``env=cluster.env`` so it uses the cluster's auth mode. Test modules get the module-scoped fixture
``loopback_cluster`` by importing it: ``from tests.cluster import loopback_cluster_fixture  # noqa: F401``.

Choices, and why:
- GCS health checks every 0.5 s, three misses declare a node dead (Ray's defaults took 17 s here), so a killed
  raylet is seen as dead in ~2 s; the 2 s timeout per check keeps a busy but live node from being
  declared dead on this 2-core machine (a killed raylet refuses connections at once, so the timeout
  does not slow the detection down).
- ``RAY_AUTH_MODE=disabled``: Ray 2.60 turns token auth on for a new cluster when
  ``~/.ray/auth_token`` exists and off otherwise, and a worker node or a driver given an explicit
  address never turns it on itself; fixing the mode makes the cluster the same on every machine and
  silences the token-auth warnings. Ray binds its ports on every interface: while a test runs,
  anything that can reach this machine could submit work to it (fine in a CI sandbox).
- Ray's temp dir is a short directory under /tmp of our own (unix socket paths must stay under 108
  bytes: pytest's tmp_path is too long); ``ray start``'s own output goes to ``log_dir``.
- Every port is chosen free (GCS, client server, dashboard, both dashboard agents) and worker ports are
  left to the OS, so two clusters, or a cluster and another test's local Ray, never collide.
- Ray resolves ``--node-ip-address 127.0.0.1`` to the machine's routable IP for the nodes' own
  records; the GCS listens on every interface, so ``127.0.0.1:PORT`` reaches it either way.
- No autoscaler monitor and no log monitor (a fixed cluster needs neither; they cost ~80 MB and a
  Python process each); the dashboard API server and agents still start (they carry runtime_env).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import psutil
import pytest

# GCS health checks of the raylets: see the module docstring
SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 2000,
    "health_check_failure_threshold": 3,
}
ALIVE = 0  # GcsNodeInfo.GcsNodeState
# set to the cluster's root dir in every process of the cluster (and its drivers): the one mark that
# survives re-parenting, new sessions and Ray's renamed process titles (``ray::IDLE``)
MARK = "LOOPBACK_CLUSTER_ROOT"


class ClusterError(RuntimeError):
    """The loopback cluster did not come up, or a node did not reach the expected state in time."""


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on every interface (the GCS binds 0.0.0.0), all held open together so
    the kernel cannot hand the same one out twice."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# Runs each `ray start`: asks the kernel to SIGKILL it when the test process dies (PR_SET_PDEATHSIG
# survives exec), so a killed pytest leaves no cluster behind (`ray start` fate-shares its own children
# the same way). A launcher rather than preexec_fn: preexec_fn is unsafe once the test process has
# threads (the GCS client's).
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit('the test process died before the cluster started')\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def marked(proc: psutil.Process, root: str | os.PathLike) -> bool:
    """Whether ``proc`` belongs to the cluster rooted at ``root`` (by its environment)."""
    try:
        return proc.environ().get(MARK) == str(root)
    except (psutil.Error, OSError):  # gone, or another user's process
        return False


def _tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"  ({path}: missing)"
    return "\n".join(f"  {line}" for line in lines[-n:])


class LoopbackCluster:
    """A head node (``head_cpus`` CPUs) and a worker node (``worker_cpus`` CPUs) on 127.0.0.1.

    ``log_dir``: where ``ray start``'s stdout/stderr go (default: Ray's temp dir, removed by ``stop``).
    ``object_store_mb``: per node (Ray's minimum is ~75 MB). ``start_timeout_s``: for each node to
    register as alive. ``system_config``: overrides of ``SYSTEM_CONFIG``.
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, head_cpus: int = 1, worker_cpus: int = 1,
                 object_store_mb: int = 100, start_timeout_s: float = 60.0, system_config: dict | None = None):
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.object_store_mb, self.start_timeout_s = object_store_mb, start_timeout_s
        self.system_config = {**SYSTEM_CONFIG, **(system_config or {})}
        self.ray_cli = Path(sys.executable).parent / "ray"
        if not self.ray_cli.exists():
            raise ClusterError(f"no `ray` CLI beside {sys.executable}: install ray[default] in this environment")
        self.root = Path(tempfile.mkdtemp(prefix="rlc-", dir="/tmp"))
        self.log_dir = Path(log_dir) if log_dir is not None else self.root
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port: int | None = None
        self.head: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.killed_at: float | None = None  # time.monotonic() of kill_worker_raylet
        self._pgids: list[int] = []
        self._seen: dict[int, psutil.Process] = {}
        self._gcs = None
        self.timings: dict[str, float] = {}

    # --- public properties -------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def head_pid(self) -> int:
        return self.head.pid

    @property
    def worker_pid(self) -> int:
        return self.worker.pid

    @property
    def env(self) -> dict[str, str]:
        """Environment for the cluster's processes and for drivers that join it."""
        env = dict(os.environ)
        for k in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.pop(k, None)  # a driver must join this cluster, not whatever the caller's shell points at
        env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
        env[MARK] = str(self.root)
        return env

    # --- start ---------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _common_args(self, temp_dir: Path, cpus: int, agent_port: int) -> list[str]:
        return ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--num-gpus", "0",
                "--object-store-memory", str(self.object_store_mb * 1024 * 1024),
                "--min-worker-port", "0", "--max-worker-port", "0",  # 0: the OS picks, no shared range
                "--dashboard-agent-listen-port", str(agent_port),
                "--include-log-monitor", "false", "--disable-usage-stats", "--temp-dir", str(temp_dir)]

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.out", "wb") as out:  # the child keeps its own copy of the fd
            p = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(os.getpid()), str(self.ray_cli), "start", *args],
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                                 cwd=self.root, start_new_session=True)
        self._pgids.append(p.pid)  # start_new_session: pgid == pid
        return p

    def start(self) -> Self:
        t0 = time.monotonic()
        try:
            gcs, client, dash, agent_h, agent_w = _free_ports(5)
            self.port = gcs
            self.head = self._spawn("head", [
                "--head", "--port", str(gcs), "--ray-client-server-port", str(client),
                "--include-dashboard", "false", "--dashboard-port", str(dash), "--no-monitor",
                "--system-config", json.dumps(self.system_config),
                *self._common_args(self.root / "h", self.head_cpus, agent_h)])
            self._wait_alive({"h"}, self.head)
            self.timings["start_head_s"] = time.monotonic() - t0
            self.worker = self._spawn("worker", [
                "--address", self.address, *self._common_args(self.root / "w", self.worker_cpus, agent_w)])
            self._wait_alive({"h", "w"}, self.worker)
            self._track()
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = time.monotonic() - t0
        return self

    def _gcs_client(self):
        if self._gcs is None:
            # imported here: importing this module must not import ray
            from ray._raylet import GcsClient

            self._gcs = GcsClient(address=self.address)
        return self._gcs

    def nodes(self) -> dict[str, dict]:
        """``{"h"|"w": {"node_id": hex, "alive": bool}}`` for the nodes the GCS knows, keyed by role
        (recognised by their temp dir)."""
        out = {}
        for node_id, info in self._gcs_client().get_all_node_info(timeout=5).items():
            role = Path(info.temp_dir).name
            # a restarted node would re-register under the same role: the live record wins
            if Path(info.temp_dir).parent == self.root and (role not in out or info.state == ALIVE):
                out[role] = {"node_id": node_id.hex(), "alive": info.state == ALIVE}
        return out

    def _gcs_up(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True
        return False

    def _wait_alive(self, roles: set[str], proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ClusterError(f"`ray start` exited with {proc.returncode} before its node came up\n"
                                   + self._diagnostics())
            with contextlib.suppress(Exception):  # GCS not up yet / not answering yet
                if self._gcs_up():
                    n = self.nodes()
                    if all(n.get(r, {}).get("alive") for r in roles):
                        return
            time.sleep(0.2)
        raise ClusterError(f"nodes {sorted(roles)} not alive after {self.start_timeout_s:.0f} s\n"
                           + self._diagnostics())

    def _diagnostics(self) -> str:
        parts = []
        for name in ("head", "worker"):
            if (self.log_dir / f"{name}.out").exists():
                parts.append(f"--- ray start ({name}) output, last lines:\n{_tail(self.log_dir / f'{name}.out')}")
        for role in ("h", "w"):
            for log in ("gcs_server.out", "raylet.out", "raylet.err"):
                for p in sorted((self.root / role).glob(f"session_2*/logs/{log}")):
                    parts.append(f"--- {p}, last lines:\n{_tail(p, 10)}")
        return "\n".join(parts)

    @property
    def head_node_id(self) -> str:
        return self.nodes()["h"]["node_id"]

    @property
    def worker_node_id(self) -> str:
        return self.nodes()["w"]["node_id"]

    # --- processes -----------------------------------------------------------------------------
    def _track(self) -> list[psutil.Process]:
        """Every live process of the cluster: the two ``ray start`` processes, their descendants,
        anything left in their process groups (Ray's agents, whose environment does not show our mark)
        and anything carrying our ``MARK`` (Ray's workers, which run in process groups of their own and
        outlive a killed raylet for a moment; drivers started with ``env``). Remembered, so a process
        seen once is still ended if it changes group."""
        found = {}
        for p in (self.head, self.worker):
            if p is not None and p.poll() is None:
                with contextlib.suppress(psutil.Error):
                    top = psutil.Process(p.pid)
                    found[top.pid] = top
                    found.update({c.pid: c for c in top.children(recursive=True)})
        in_group = set()
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                pgid = os.getpgid(proc.pid)
                if pgid in self._pgids:
                    in_group.add(pgid)
                    found[proc.pid] = proc
                elif marked(proc, self.root):
                    found[proc.pid] = proc
        # an emptied group's number may be reused by an unrelated process once its leader is reaped:
        # stop looking for it (Linux does not reuse a PID while a live group still carries it)
        leaders_alive = {p.pid for p in (self.head, self.worker) if p is not None and p.returncode is None}
        self._pgids = [g for g in self._pgids if g in in_group or g in leaders_alive]
        self._seen.update(found)
        live = []
        for pid, proc in list(self._seen.items()):
            # is_running() also compares the create time, so a recycled PID is not taken for ours
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                live.append(proc)
            else:
                del self._seen[pid]
        return live

    def processes(self) -> list[psutil.Process]:
        """The cluster's live processes (see ``_track``)."""
        return self._track()

    def kill_worker_raylet(self) -> int:
        """SIGKILL the worker node's raylet (its workers and agents die with it; ``ray start`` then
        ends the rest of that node). Returns the raylet's PID."""
        self._track()
        raylets = [c for c in psutil.Process(self.worker.pid).children() if c.name() == "raylet"]
        if len(raylets) != 1:
            raise ClusterError(f"expected one raylet under the worker's `ray start` ({self.worker.pid}), "
                               f"found {[c.pid for c in raylets]}")
        raylets[0].kill()
        self.killed_at = time.monotonic()
        # gone once its parent, the worker's `ray start`, reaps it (it looks every second)
        with contextlib.suppress(psutil.TimeoutExpired):
            raylets[0].wait(timeout=10)
        return raylets[0].pid

    def wait_node_dead(self, role: str = "w", timeout_s: float = 30.0) -> float:
        """Block until the GCS declares node ``role`` dead; returns seconds since ``kill_worker_raylet``
        (or since this call, if nothing was killed)."""
        t0 = self.killed_at or time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.nodes()[role]["alive"]:
                self.timings["death_detected_s"] = time.monotonic() - t0
                return self.timings["death_detected_s"]
            time.sleep(0.1)
        raise ClusterError(f"GCS still reports node {role!r} alive {timeout_s:.0f} s later\n" + self._diagnostics())

    # --- stop ----------------------------------------------------------------------------------
    def stop(self, grace_s: float = 3.0) -> None:
        """End every process of the cluster: SIGTERM to the ``ray start`` processes (worker first, so
        the head's GCS is still there when it says goodbye), then SIGKILL whatever is left after
        ``grace_s``. Ray's graceful shutdown can hang for a minute (the head drains itself through a
        GCS that is already stopping), so the grace is short: a test cluster has nothing to save.
        Idempotent. Removes Ray's temp dir."""
        t0 = time.monotonic()
        self._gcs = None
        self._track()  # remember every process before their parents go
        for p in (self.worker, self.head):
            if p is not None and p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=grace_s)
        for _ in range(3):  # a process may fork while we kill: look again until nothing is left
            procs = self._track()
            if not procs:
                break
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            for pgid in self._pgids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            psutil.wait_procs(procs, timeout=5)
        for p in (self.head, self.worker):
            if p is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)  # reap: no zombie of ours outlives the cluster
        left = self._track()
        if left:
            raise ClusterError(f"processes of the cluster still running after SIGKILL: {[p.pid for p in left]}")
        if self.log_dir != self.root:  # keep Ray's own logs (~200 kB) beside ours for a failed test
            for logs in self.root.glob("[hw]/session_2*/logs"):
                with contextlib.suppress(OSError):
                    shutil.copytree(logs, self.log_dir / f"ray-logs-{logs.parent.parent.name}", symlinks=True,
                                    dirs_exist_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)
        self.timings["stop_s"] = time.monotonic() - t0


@pytest.fixture(scope="module", name="loopback_cluster")
def loopback_cluster_fixture(tmp_path_factory):
    """A started ``LoopbackCluster`` (1 CPU head + 1 CPU worker) shared by a test module."""
    with LoopbackCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster
