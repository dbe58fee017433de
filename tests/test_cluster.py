"""The loopback cluster harness (tests/cluster.py): a real two-node Ray cluster, a worker raylet killed
mid-job, tasks retried on the head, and nothing left running after stop()."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.cluster import (
    ClusterError,
    LoopbackCluster,
    loopback_cluster_fixture,  # noqa: F401  (the fixture)
    marked,
)

N_TASKS = 8

# The driver: its own process, as `synth build --address` would be. Each task leaves a mark file
# "<i>-<node id>-<start ns>" when it starts (the nodes share this machine's disk), so the test sees
# where and when every attempt ran, retried ones included. The worker node's first task finishes;
# its second one holds on until the test kills that node (no race between the kill and a short
# task finishing on a loaded machine); attempts on the head take 1 s.
DRIVER = r"""
import json, sys, time
from pathlib import Path
import ray

address, marks, n, worker = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ray.init(address=address, log_to_driver=False)

@ray.remote(num_cpus=1, max_retries=3)
def work(i):
    import models.files  # the repo's packages import on every node, no PYTHONPATH needed
    node = ray.get_runtime_context().get_node_id()
    held = node == worker and any(p.name.split("-")[1] == node for p in marks.iterdir())
    (marks / f"{i}-{node}-{time.time_ns()}").touch()
    time.sleep(120 if held else 1.0)
    return {"i": i, "node": node, "models": models.files.__file__}

print("RESULT", json.dumps(ray.get([work.remote(i) for i in range(n)])))
"""


def _result(stdout: str):
    """The driver's JSON result line (Ray also prints to the driver's stdout, e.g. a dead node's log)."""
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, stdout[-3000:]
    return json.loads(lines[0].removeprefix("RESULT "))


def _attempts(marks: Path) -> list[tuple[int, str, int]]:
    """Every task attempt so far as (task index, node id, start time in ns)."""
    out = []
    for p in marks.iterdir():
        i, node, ns = p.name.split("-")
        out.append((int(i), node, int(ns)))
    return out


def _live(procs) -> list[int]:
    return [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _cluster_processes_on_machine(cluster: LoopbackCluster) -> list[psutil.Process]:
    """The cluster's processes found here, apart from the harness's own bookkeeping: the descendants
    of both `ray start` processes, and anything on the machine carrying the cluster's mark."""
    out = [p for p in psutil.process_iter() if marked(p, cluster.root)]
    for pid in (cluster.head_pid, cluster.worker_pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            top = psutil.Process(pid)
            out += [top, *top.children(recursive=True)]
    return out


def test_tasks_survive_a_killed_worker_raylet(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    cluster = LoopbackCluster(tmp_path / "logs")
    with cluster:
        head, worker = cluster.head_node_id, cluster.worker_node_id
        assert head != worker
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, cluster.address, str(marks), str(N_TASKS), worker],
                                  env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # kill once a task has finished on the worker node and the next one holds on there
        deadline = time.monotonic() + 60
        while sum(node == worker for _, node, _ in _attempts(marks)) < 2:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, f"no two task starts on the worker node: {_attempts(marks)}"
            time.sleep(0.05)
        killed_ns = time.time_ns()
        raylet_pid = cluster.kill_worker_raylet()
        assert not psutil.pid_exists(raylet_pid)
        detected_s = cluster.wait_node_dead()
        assert cluster.nodes()["h"]["alive"]

        out, err = driver.communicate(timeout=120)
        done_ns = time.time_ns()
        assert driver.returncode == 0, err[-3000:]
        results = _result(out)
        known, found = cluster.processes(), _cluster_processes_on_machine(cluster)
        assert known and found
    # after stop(): nothing of the cluster runs, neither what the harness knew nor what we found
    assert not _live(known) and not _live(found)
    assert not [p.pid for p in psutil.process_iter() if marked(p, cluster.root)]
    assert not cluster.root.exists()
    assert (tmp_path / "logs" / "ray-logs-h" / "raylet.out").exists()  # Ray's logs kept for a failed test

    # every task's result exactly once, run with the repo's own packages
    assert sorted(r["i"] for r in results) == list(range(N_TASKS))
    repo = Path(__file__).resolve().parents[1]
    assert all(Path(r["models"]).resolve().is_relative_to(repo) for r in results)
    attempts = sorted(_attempts(marks), key=lambda a: a[2])
    before = [(i, node) for i, node, ns in attempts if ns < killed_ns]
    after = [(i, node) for i, node, ns in attempts if ns > killed_ns]
    # tasks ran on both nodes before the kill, and only on the head after it
    assert {node for _, node in before} == {head, worker}
    assert after and {node for _, node in after} == {head}
    # the worker node's first task kept its result; the one it was running when it died was run
    # again on the head; nothing else ran twice
    on_worker = [i for i, node in before if node == worker]
    assert len(on_worker) == 2
    by_i = {r["i"]: r["node"] for r in results}
    assert [by_i[i] for i in on_worker] == [worker, head]
    assert sorted(i for i, _, _ in attempts) == sorted([*range(N_TASKS), on_worker[1]])

    print(f"\nloopback cluster: start {cluster.timings['start_s']:.1f} s, node death detected "
          f"{detected_s:.1f} s after the kill, whole job {(done_ns - killed_ns) / 1e9:.1f} s after it, "
          f"stop {cluster.timings['stop_s']:.1f} s")


def test_fixture_cluster_runs_tasks_on_both_nodes_with_shipped_code(loopback_cluster, tmp_path):
    """A driver joins the fixture's cluster the way pipelines/ray_session.py does for ``--address``:
    code shipped with ``runtime_env["py_modules"]``, tasks spread over both nodes."""
    pkg = tmp_path / "shipped_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 'from the driver'\n")
    driver = r"""
import json, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(address=sys.argv[1], log_to_driver=False, runtime_env={"py_modules": [sys.argv[2]]})

@ray.remote(num_cpus=1)
def where():
    import shipped_pkg
    return ray.get_runtime_context().get_node_id(), shipped_pkg.VALUE

on = lambda node: NodeAffinitySchedulingStrategy(node, soft=False)
print("RESULT", json.dumps(ray.get([where.options(scheduling_strategy=on(n)).remote() for n in sys.argv[3:]])))
"""
    nodes = [loopback_cluster.head_node_id, loopback_cluster.worker_node_id]
    r = subprocess.run([sys.executable, "-c", driver, loopback_cluster.address, str(pkg), *nodes],
                       env=loopback_cluster.env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _result(r.stdout) == [[n, "from the driver"] for n in nodes]


def test_start_failure_names_the_cause_and_leaves_nothing(tmp_path):
    cluster = LoopbackCluster(tmp_path, object_store_mb=10)  # under Ray's 75 MiB minimum
    with pytest.raises(ClusterError, match=r"(?s)exited with 1 before its node came up.*minimum allowed is"):
        cluster.start()
    assert not [p.pid for p in psutil.process_iter() if marked(p, cluster.root)]
    assert not cluster.root.exists()
