"""Training jobs from the outside: launch, watch, cancel (the Train tab and `python -m training jobs|cancel`).

A job is a row in the trace store (`traces.jobs`) plus the process running it. `launch` creates the row, starts
`python -m training KIND ... --job-id N` (or `accelerate launch ... -m training ...` for several processes) in its
own session with its output in a log file, and records the process. The process keeps the row current
(`training.job`, `training.callbacks`). `cancel` sends SIGTERM: training stops at the end of the current step on
every rank and saves a checkpoint there, rollouts stop mid-episode; after a grace period the whole process group
gets SIGKILL. `list_jobs` and `get_job` mark a job whose process is gone without reporting as `interrupted`.
An eval job is `python -m agent eval ... --job-id N` (one process): it records its progress and accuracy so far in
the row, and SIGTERM stops it like Ctrl-C (finished episodes kept, the same command resumes).

Public functions (what the Train tab calls): `launch`, `preview_command`, `cancel`, `list_jobs`, `get_job`,
`metric_history`, `log_tail`, `job_configs`, `job_name`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.flags import field_default, flag_name
from traces import jobs as job_rows
from traces.records import JobMetricRecord, JobRecord
from traces.store import TraceStore, open_store
from training.config import GRPOSettings, LaunchSettings, SFTSettings, settings_dict

KINDS = ("sft", "grpo", "eval")  # eval: `python -m agent eval`, one process, recording its progress here
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GRACE_S = 30.0
# Our own children, so that a finished one is reaped (a zombie still answers kill(pid, 0)).
_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


# ---- commands ---------------------------------------------------------------------------------------------------


def config_argv(config: object) -> list[str]:
    """The flags that rebuild `config` (a settings dataclass) through `agent.flags`: every field that differs
    from its default. Booleans become --x / --no-x; tuples repeat their flag."""
    argv: list[str] = []
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        if not f.init:
            continue
        value = getattr(config, f.name)
        if value == field_default(f):
            continue
        flag = flag_name(f)
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple | list):
            for item in value:
                argv += [flag, str(item)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def _training_argv(kind: str, configs: Sequence[object], launch: LaunchSettings) -> list[str]:
    if kind not in KINDS:
        raise ValueError(f"job kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "eval":
        if launch.num_processes > 1:
            raise ValueError("an eval job runs in one process (its --concurrency sets the episodes in flight)")
        flags = [flag for config in configs for flag in config_argv(config)]
        return [sys.executable, "-m", "agent", "eval", *flags, *([] if "--db" in flags else ["--db", launch.db])]
    flags = [kind]
    for config in configs:
        flags += config_argv(config)
    flags += ["--db", launch.db]
    if launch.num_processes > 1:
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            str(launch.num_processes),
            "--config_file",
            str(launch.accelerate_config_path()),
            "-m",
            "training",
            *flags,
        ]
    return [sys.executable, "-m", "training", *flags]


def preview_command(kind: str, configs: Sequence[object], launch: LaunchSettings) -> str:
    """The command `launch` would run (without the job id it adds), as one shell line to paste."""
    argv = _training_argv(kind, configs, launch)
    shown = ["accelerate", "launch", *argv[3:]] if launch.num_processes > 1 else ["python", *argv[1:]]
    return shlex.join(shown)


def _main_settings(configs: Sequence[object]) -> SFTSettings | GRPOSettings:
    for config in configs:
        if isinstance(config, SFTSettings | GRPOSettings):
            return config
    raise ValueError("a training job needs its SFTSettings or GRPOSettings among its configs")


def job_name(kind: str, configs: Sequence[object]) -> str:
    """The job row's name: what is trained (or evaluated) and where it goes."""
    if kind == "eval":
        from agent.config import ModelConfig
        from agent.eval import EvalConfig

        model = next((c.model for c in configs if isinstance(c, ModelConfig)), "?")
        data = next((c.data for c in configs if isinstance(c, EvalConfig)), "?")
        return f"eval {Path(model).name or model} on {Path(data).name or data}"
    main = _main_settings(configs)
    return f"{kind} {Path(main.model).name or main.model} -> {main.output_dir}"


def job_configs(configs: Sequence[object]) -> dict[str, Any]:
    """What the job row keeps as its config: each settings object by class name, JSON-safe."""
    return {type(c).__name__: settings_dict(c) for c in configs}


def launch(
    kind: str,
    configs: Sequence[object],
    launch_settings: LaunchSettings,
    *,
    store: TraceStore | None = None,
    launched_by: str | None = None,
) -> int:
    """Create the job's row and start its process in the background; returns the job id. `launched_by` names
    who asked (the Train tab's signed-in user; default: the account running this process)."""
    own_store = store is None
    store = store or open_store(launch_settings.db)
    try:
        argv = _training_argv(kind, configs, launch_settings)
        job_id = job_rows.create_job(
            store,
            kind,
            job_name(kind, configs),
            job_configs(configs),
            command=argv,
            launched_by=launched_by or os.environ.get("USER") or None,
        )
        main = _main_settings(configs) if kind != "eval" else None
        if isinstance(main, GRPOSettings) and main.record_rollouts:
            # Created here, before any process starts, so that every rank records into the same run.
            from training.grpo import rollout_run

            run_id = rollout_run(store, main, job_id=job_id, dataset=Path(main.data).stem)
            job_rows.update_job(store, job_id, run_id=run_id)
        log_dir = Path(launch_settings.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = (log_dir / f"job-{job_id}.log").resolve()
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
        with log_path.open("ab") as log:
            log.write(f"$ {shlex.join(argv)} --job-id {job_id}\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(
                    [*argv, "--job-id", str(job_id)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: cancel reaches every rank, not us
                    env=env,
                )
            except OSError as exc:
                job_rows.finish_job(store, job_id, "failed", error=f"cannot start {argv[0]}: {exc}")
                raise
        with _children_lock:
            _children[process.pid] = process
        job_rows.update_job(store, job_id, pid=process.pid, host=socket.gethostname(), log_path=str(log_path))
        return job_id
    finally:
        if own_store:
            store.close()


# ---- watching ---------------------------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie does not count) and is a training process (a reused pid does not)."""
    with _children_lock:
        child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        with _children_lock:
            _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, but we cannot tell more
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError):
            return True
        if state == "Z" or not (b"training" in cmdline or b"agent eval" in cmdline):
            return False
    return True


def _refresh(store: TraceStore, job: JobRecord) -> JobRecord:
    """Mark a job interrupted when its process on this host is gone without having reported an ending."""
    if job.status in job_rows.FINAL_STATUSES or job.pid is None or job.host != socket.gethostname():
        return job
    if process_alive(job.pid):
        return job
    if job.status == "cancelling":
        job_rows.finish_job(store, job.id, "cancelled", error="cancelled; the process exited before reporting")
        return job_rows.get_job(store, job.id)
    job_rows.mark_interrupted(
        store,
        job.id,
        f"process {job.pid} exited without reporting an ending (killed, out of memory, or the machine restarted); "
        f"see {job.log_path or 'its log'}; earlier checkpoints are in the output folder",
    )
    return job_rows.get_job(store, job.id)


def get_job(store: TraceStore, job_id: int) -> JobRecord:
    return _refresh(store, job_rows.get_job(store, job_id))


def list_jobs(store: TraceStore, *, status: str | None = None, limit: int = 50) -> list[JobRecord]:
    """Newest first; a job found dead is marked interrupted on the way."""
    return [_refresh(store, job) for job in job_rows.list_jobs(store, status=status, limit=limit)]


def metric_history(store: TraceStore, job_id: int, *, since_step: int | None = None) -> list[JobMetricRecord]:
    return job_rows.metric_history(store, job_id, since_step=since_step)


def log_tail(job: JobRecord, *, max_bytes: int = 20_000) -> str:
    """The end of the job's log file ('' when there is none yet)."""
    if not job.log_path:
        return ""
    try:
        with open(job.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


# ---- cancelling -------------------------------------------------------------------------------------------------


def _signal(pid: int, sig: int) -> None:
    """To the process group when the job leads one (launched jobs: every rank), else to the process."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.1)
    return not process_alive(pid)


def cancel(store: TraceStore, job_id: int, *, grace_s: float = DEFAULT_GRACE_S, wait: bool = True) -> JobRecord:
    """Ask a job to stop (SIGTERM: it finishes its step and saves), SIGKILL it after `grace_s` seconds.

    With `wait=False` it returns at once and a background thread does the escalation."""
    job = get_job(store, job_id)
    if job.status in job_rows.FINAL_STATUSES:
        return job
    if job.host is not None and job.host != socket.gethostname():
        raise RuntimeError(f"job {job_id} runs on {job.host}; cancel it there")
    if job.pid is None:
        job_rows.finish_job(store, job_id, "cancelled", error="cancelled before its process started")
        return job_rows.get_job(store, job_id)
    pid = job.pid
    job_rows.request_cancel(store, job_id)
    _signal(pid, signal.SIGTERM)

    def escalate() -> None:
        if _wait_gone(pid, time.monotonic() + grace_s):
            # The process wrote its own ending (cancelled, with a checkpoint); if it died first, say so.
            job_rows.finish_job(store, job_id, "cancelled", error="cancelled; the process exited before reporting")
            return
        _signal(pid, signal.SIGKILL)
        _wait_gone(pid, time.monotonic() + 10)
        job_rows.finish_job(
            store, job_id, "cancelled", error=f"killed after {grace_s:.0f} s: it did not stop at the end of its step"
        )

    if wait:
        escalate()
        return job_rows.get_job(store, job_id)
    threading.Thread(target=escalate, name=f"cancel-job-{job_id}", daemon=True).start()
    return job_rows.get_job(store, job_id)
