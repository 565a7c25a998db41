"""Run Python snippets in fresh interpreters with forced CPU devices (multi-device tests).

JAX fixes its device count at import, so a test that needs 4 devices runs its code in a subprocess
with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before ``import jax``. Every
subprocess has a timeout, so a hang (e.g. a collective waiting for a peer) fails the test instead of
blocking CI. Keep the number of subprocesses small: each pays the JAX import (seconds).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: every process computes its own copy
    fcntl = None

REPO = Path(__file__).resolve().parent.parent


def once_per_session(tmp_path_factory, key: str, produce: Callable[[Path], None]) -> Path:
    """Run ``produce(folder)`` once per pytest session, across xdist workers; return ``folder``.

    A module fixture runs once per xdist worker that gets one of the module's tests, and the load
    scheduler can split a module's tests between workers: an expensive subprocess job then runs
    twice. The workers share the parent of their ``basetemp``; the first that needs ``key`` runs
    ``produce`` there under a file lock and the others wait for it, then read its files. A failure
    is recorded and raised again in every worker (no second try of a job that timed out).
    """
    base = tmp_path_factory.getbasetemp()
    if fcntl is not None and os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers (without a lock: each worker its own copy)
    folder = base / f"once-{key}"
    done, failed = folder / ".done", folder / ".failed"
    with open(base / f"once-{key}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists() and not failed.exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                try:
                    produce(folder)
                except BaseException as e:
                    failed.write_text(f"{type(e).__name__}: {e}")
                    raise
                done.touch()
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
    if failed.exists():
        raise AssertionError(f"{key} failed earlier in this session:\n{failed.read_text()}")
    return folder


def _env(devices: int, extra: dict | None) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("JAX_ENABLE_X64", None)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def _fail(what: str, proc_out: str, proc_err: str) -> None:
    raise AssertionError(
        f"{what}\n--- stdout ---\n{proc_out[-4000:]}\n--- stderr ---\n{proc_err[-8000:]}"
    )


def run_python(
    code: str, *, devices: int = 4, timeout: float = 120, env: dict | None = None
) -> str:
    """Run ``code`` in a new interpreter with ``devices`` forced CPU devices; return its stdout.

    Raises:
        AssertionError: non-zero exit (with the subprocess's stdout and stderr), or a timeout.
    """
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=_env(devices, env), cwd=REPO
        )
    except subprocess.TimeoutExpired as e:
        _fail(f"subprocess timed out after {timeout} s", str(e.stdout or ""), str(e.stderr or ""))
    if proc.returncode != 0:
        _fail(f"subprocess exited with {proc.returncode}", proc.stdout, proc.stderr)
    return proc.stdout


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a jax.distributed coordinator)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_processes(
    script: str | Path,
    num_processes: int,
    *,
    args: tuple = (),
    devices: int = 2,
    timeout: float = 120,
) -> list[str]:
    """Run ``script`` as ``num_processes`` cooperating processes of one ``jax.distributed`` job.

    Each process gets ``devices`` forced CPU devices and the environment variables
    ``JAXCONTEXT_COORDINATOR`` (``127.0.0.1:<free port>``), ``JAXCONTEXT_NUM_PROCESSES`` and
    ``JAXCONTEXT_PROCESS_ID``. Returns the stdout of every process.

    Raises:
        AssertionError: a process exits non-zero or the job outlives ``timeout`` (all processes are
            then killed), with every process's output.
    """
    coord = f"127.0.0.1:{free_port()}"
    procs, logs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(num_processes):
            env = _env(
                devices,
                {
                    "JAXCONTEXT_COORDINATOR": coord,
                    "JAXCONTEXT_NUM_PROCESSES": num_processes,
                    "JAXCONTEXT_PROCESS_ID": i,
                },
            )
            out = open(Path(tmp) / f"{i}.out", "w+")  # files, not pipes: no pipe-buffer deadlock
            err = open(Path(tmp) / f"{i}.err", "w+")
            logs.append((out, err))
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(script), *map(str, args)],
                    stdout=out,
                    stderr=err,
                    text=True,
                    env=env,
                    cwd=REPO,
                )
            )
        failed = None
        deadline = time.monotonic() + timeout
        while failed is None and any(p.poll() is None for p in procs):
            bad = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            if bad:  # one died: its peers would wait for it until the timeout
                failed = f"process {bad[0]} exited with {procs[bad[0]].returncode}"
            elif time.monotonic() > deadline:
                failed = f"job timed out after {timeout} s"
            else:
                time.sleep(0.05)
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if failed is None:
            bad = [i for i, p in enumerate(procs) if p.returncode != 0]
            failed = f"process {bad[0]} exited with {procs[bad[0]].returncode}" if bad else None
        texts = []
        for out, err in logs:
            out.seek(0)
            err.seek(0)
            texts.append((out.read(), err.read()))
            out.close()
            err.close()
    if failed:
        text = "\n".join(
            f"=== process {i} ===\n{o[-3000:]}\n{e[-6000:]}" for i, (o, e) in enumerate(texts)
        )
        raise AssertionError(f"{failed}\n{text}")
    return [o for o, _ in texts]
