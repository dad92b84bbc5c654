"""Child processes of a run: each system trains in its own process, so that its
wall time and peak resident memory are its own, under an optional time limit;
and the dev-score curve read back from its training logs."""
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from wasabi import msg


@dataclass
class ChildResult:
    """How a child process ended: exit status, wall time, its own peak resident
    memory, and whether the time limit stopped it."""

    returncode: int
    seconds: float
    peak_rss_mb: float
    timed_out: bool


def run_child(
    cmd: Sequence[str], log_path: Path, prefix: str, timeout: Optional[float] = None
) -> ChildResult:
    """Run a command, stream its output (prefixed) to stdout and to log_path,
    and return its exit status, wall time and own peak RSS (from wait4)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    with log_path.open("w", encoding="utf8") as log:
        log.write("$ " + " ".join(shlex.quote(str(c)) for c in cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            [str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            text=True, errors="replace", start_new_session=True,
            preexec_fn=_default_sigint,
        )

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                sys.stdout.write(f"  [{prefix}] {line}")
                sys.stdout.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        deadline = None if timeout is None else start + timeout
        hwm_kb = 0
        try:
            while True:
                hwm_kb = max(hwm_kb, _vm_hwm_kb(proc.pid))
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    break
                now = time.perf_counter()
                if deadline is not None and now > deadline and not timed_out:
                    timed_out = True
                    msg.warn(f"{prefix}: time limit reached ({timeout / 60:.1f} min), "
                             "stopping training")
                    # SIGINT first: spaCy's training loop then runs its `finally`
                    # blocks (the JSONL logger is flushed); SIGTERM if it lingers.
                    os.killpg(proc.pid, signal.SIGINT)
                elif timed_out and now > deadline + 60:
                    os.killpg(proc.pid, signal.SIGTERM)
                    deadline = now
                time.sleep(0.2)
        except BaseException:
            # the child runs in its own session (so a time limit can end its
            # whole group): Ctrl-C here must end it too
            os.killpg(proc.pid, signal.SIGTERM)
            raise
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join(timeout=10)
    if hwm_kb:
        peak_mb = hwm_kb / 1024
    else:  # no /proc: rusage (KiB on Linux, bytes on macOS)
        peak_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return ChildResult(proc.returncode, seconds, peak_mb, timed_out)


def _default_sigint() -> None:
    """In the child, before exec: a shell starts background jobs (`cmd &`,
    nohup) with SIGINT ignored, and Python keeps an ignored SIGINT ignored, so
    the time limit's SIGINT would do nothing. Restore the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _vm_hwm_kb(pid: int) -> int:
    """Peak resident set size of a running process (Linux /proc), in KiB.

    The child's own rusage ru_maxrss is no good here: Linux carries the
    parent's high-water mark over fork + exec, so every child would report at
    least this (large) process's RSS. VmHWM belongs to the exec'd image alone.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as file_:
            for line in file_:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def read_training_log(path: Path, console_log: Optional[Path] = None) -> List[Tuple[int, float]]:
    """(step, dev score) pairs from a ConsoleLogger.v3 JSONL log, or from the
    console table in `console_log` when that has more rows (a training ended
    by a signal may not have flushed its JSONL file)."""
    curve: List[Tuple[int, float]] = []
    if path.exists():
        for line in path.read_text(encoding="utf8").splitlines():
            try:
                row = json.loads(line)
                curve.append((int(row["step"]), float(row["score"])))
            except (ValueError, KeyError):
                continue
    if console_log is not None and console_log.exists():
        table = read_console_table(console_log)
        if len(table) > len(curve):
            curve = table
    return curve


def read_console_table(path: Path) -> List[Tuple[int, float]]:
    """(step, score) rows of spaCy's console training table
    ("E  #  LOSS ...  SCORE": epoch, step, losses and scores, the last column
    the weighted score)."""
    rows: List[Tuple[int, float]] = []
    in_table = False
    for line in path.read_text(encoding="utf8", errors="replace").splitlines():
        fields = line.split()
        if fields[:2] == ["E", "#"] and fields[-1] == "SCORE":
            in_table = True
            continue
        if not in_table or not fields or set(line.strip()) <= {"-", " "}:
            continue
        try:
            step, score = int(fields[1]), float(fields[-1])
            [float(f) for f in fields]
        except (ValueError, IndexError):
            continue
        rows.append((step, score))
    return rows
