"""Benchmark batch scoring at scale: local, and on a 1- and a 2-worker Dask LocalCluster.

Usage (with the project venv first on PATH; the 10M-row run needs several GiB, so run it
under the machine's big-memory lock):

    flock /work/wt/bigmem.lock python bench/scale.py              # 10,000,000 rows
    python bench/scale.py --rows 1000000 --skip-remotes           # a smaller run
    python bench/scale.py --project /path/to/project              # another built project

The data is the project's test split resampled with replacement (fixed seed) to --rows
rows, written twice: as a partitioned Parquet dataset (--parts files, what `--engine dask`
reads) and as one Parquet file of the same row groups (what `--engine local` reads). Each
run is one `gitml predict` command:
- local: `gitml predict ONE.parquet -o OUT.parquet` (one process, chunks of 100,000 rows);
- dask, N workers: `gitml predict DIR -o OUTDIR --engine dask --workers N` (a LocalCluster
  of N one-thread worker processes started by the command).
Figures per run: the command's wall time (cluster start included), the scoring time the
command reports (dataset found to parts in place; workers' model loading included), rows/s
on both, and the peak resident memory of each process of the command's tree, sampled every
0.1 s (psutil): the client (the gitml process) and each Dask worker; and the CPU seconds of
each kind of process, with rows per CPU second of the scoring processes (the client locally,
the workers on Dask), a figure that other load on the machine hardly moves. The 1 -> 2
worker scaling is the ratio of the two runs' scoring rows/s (goal >= 1.7x on 2 cores); on a
busy machine it says little (two workers cannot get two cores), so compare the runs' rows per
CPU second too: equal values mean the second worker adds no work per row.

Remotes: the push/pull timing of the reference artifacts to each DVC remote (S3 through moto
and SSH through sshd, both on 127.0.0.1, against a local directory) is bench/remotes.py's,
run on the same project and its output kept; --skip-remotes skips it.

Writes bench/out/scale.json (all figures) and prints a table; the load average is recorded
at the start and end of each run, since other work on the machine skews every timing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "bench" / "out"
TEST_SPLIT = "data/processed/test.parquet"
SEED = 14
ROW_GROUP = 100_000


def write_data(project: Path, rows: int, parts: int, directory: Path) -> tuple[Path, Path]:
    """The test split resampled to `rows` rows: `parts` files in `directory/parts/`, and the
    same rows as one file `directory/all.parquet`; written part by part (bounded memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    split = pq.read_table(project / TEST_SPLIT)
    rng = np.random.default_rng(SEED)
    part_dir = directory / "parts"
    part_dir.mkdir(parents=True)
    single = directory / "all.parquet"
    bounds = np.linspace(0, rows, parts + 1).astype(np.int64)
    writer = None
    try:
        for k in range(parts):
            size = int(bounds[k + 1] - bounds[k])
            picked = split.take(pa.array(rng.integers(0, split.num_rows, size)))
            ids = pa.array(np.arange(bounds[k], bounds[k + 1], dtype=np.int64))
            table = picked.append_column("id", ids)
            pq.write_table(table, part_dir / f"part={k:04d}.parquet", row_group_size=ROW_GROUP)
            if writer is None:
                writer = pq.ParquetWriter(single, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()
    return part_dir, single


class TreeSampler:
    """Peak RSS of every process in a command's tree, sampled every `every` seconds."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every = pid, every
        self.peaks: dict[int, int] = {}
        self.cpu: dict[int, float] = {}  # user + system seconds, as last seen
        self.names: dict[int, str] = {}
        self.parents: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in tree:
                try:
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
                    if proc.pid not in self.names:
                        self.names[proc.pid] = _role(proc.cmdline(), proc.pid == self.pid)
                        self.parents[proc.pid] = proc.ppid()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)
            self._stop.wait(self.every)

    def stop(self) -> tuple[dict[str, list[int]], dict[str, float]]:
        """Peak RSS per process, and CPU seconds summed, by role (client, dask-process)."""
        self._stop.set()
        self._thread.join()
        by_role: dict[str, list[int]] = {}
        cpu: dict[str, float] = {}
        # a forkserver's workers are forks of it (same command line): it is their parent
        servers = {self.parents[p] for p, r in self.names.items() if r == "dask-process"}
        for pid, peak in self.peaks.items():
            role = self.names.get(pid, "other")
            role = "dask-forkserver" if role == "dask-process" and pid in servers else role
            by_role.setdefault(role, []).append(peak)
            cpu[role] = cpu.get(role, 0.0) + self.cpu.get(pid, 0.0)
        return {role: sorted(peaks, reverse=True) for role, peaks in by_role.items()}, cpu


def _role(cmdline: list[str], is_root: bool) -> str:
    text = " ".join(cmdline)
    if is_root:
        return "client"
    if "resource_tracker" in text:
        return "other"
    if "multiprocessing" in text or "spawn_main" in text or "forkserver" in text:
        return "dask-process"  # a worker, or (the smaller) nanny helper
    return "other"


def run_predict(args: list[str], project: Path, label: str, log_dir: Path) -> dict[str, Any]:
    """Run one `gitml predict` command, sampling its process tree."""
    command = [sys.executable, "-m", "gitml", *args]
    load_start = os.getloadavg()
    started = time.perf_counter()
    log = log_dir / f"{label}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=project, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid)
        code = proc.wait()
    wall = time.perf_counter() - started
    peaks, cpu = sampler.stop()
    text = log.read_text()
    if code != 0:
        raise SystemExit(f"{label}: `{' '.join(command)}` failed ({code}); see {log}:\n{text}")
    match = re.search(r"scored ([\d,]+) of ([\d,]+) rows.*?\(([\d.]+) s", text)
    if not match:
        raise SystemExit(f"{label}: no summary line in {log}")
    rows = int(match.group(2).replace(",", ""))
    seconds = float(match.group(3))
    return {
        "label": label,
        "command": " ".join(["gitml", *args]),
        "rows": rows,
        "wall_s": round(wall, 2),
        "scoring_s": seconds,
        "rows_per_s_wall": round(rows / wall),
        "rows_per_s_scoring": round(rows / seconds),
        "peak_rss_mib": {k: [round(v / 2**20) for v in vs] for k, vs in peaks.items()},
        # CPU seconds by role: robust to other load, unlike wall time; rows per CPU second of
        # the processes that score (the client locally, the workers on Dask)
        "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
        "rows_per_cpu_s": round(rows / max(_scoring_cpu(cpu), 1e-9)),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
    }


def _scoring_cpu(cpu: dict[str, float]) -> float:
    """CPU seconds of the processes that score: the workers (and the forkserver that imported
    for them), or the client when there are none."""
    workers = cpu.get("dask-process", 0.0) + cpu.get("dask-forkserver", 0.0)
    return workers or cpu.get("client", 0.0)


def run_remotes(skip: bool, project: Path) -> dict[str, Any]:
    if skip:
        return {"skipped": "--skip-remotes"}
    script = ROOT / "bench" / "remotes.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--project", str(project)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "returncode": proc.returncode,
        "output": proc.stdout[-4000:],
        "stderr": proc.stderr[-2000:],
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    project = args.project.resolve()
    if not (project / "models" / "model.skops").is_file() or not (project / TEST_SPLIT).is_file():
        raise SystemExit(f"{project}: needs a built project (models/model.skops, {TEST_SPLIT})")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gitml-bench-scale-"))
    results: dict[str, Any] = {
        "meta": {
            "rows": args.rows,
            "parts": args.parts,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_start": os.getloadavg(),
        },
        "runs": [],
    }
    try:
        started = time.perf_counter()
        parts, single = write_data(project, args.rows, args.parts, scratch / "data")
        results["meta"]["write_data_s"] = round(time.perf_counter() - started, 1)
        runs = results["runs"]
        runs.append(
            run_predict(
                ["predict", str(single), "-o", str(scratch / "local.parquet")],
                project,
                "local",
                OUT_DIR,
            )
        )
        (scratch / "local.parquet").unlink()
        for workers in args.workers:
            out = scratch / f"dask-{workers}"
            command = ["predict", str(parts), "-o", str(out), "--engine", "dask"]
            command += ["--workers", str(workers)]
            runs.append(run_predict(command, project, f"dask-{workers}-workers", OUT_DIR))
            shutil.rmtree(out)
        by_label = {r["label"]: r for r in runs}
        one, two = by_label.get("dask-1-workers"), by_label.get("dask-2-workers")
        if one and two:
            results["scaling_1_to_2"] = {
                "scoring": round(two["rows_per_s_scoring"] / one["rows_per_s_scoring"], 2),
                "wall": round(two["rows_per_s_wall"] / one["rows_per_s_wall"], 2),
                "goal": 1.7,
            }
        results["remotes"] = run_remotes(args.skip_remotes, project)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["meta"]["load_average_end"] = os.getloadavg()
    return results


def print_table(results: dict[str, Any]) -> None:
    meta = results["meta"]
    print(f"{meta['rows']:,} rows in {meta['parts']} parts; {meta['cpus']} CPUs")
    head = (
        "run",
        "wall s",
        "scoring s",
        "rows/s (wall)",
        "rows/s (scoring)",
        "peak RSS MiB",
        "load",
    )
    print(" | ".join(head))
    for r in results["runs"]:
        peaks = r["peak_rss_mib"]
        shown = f"client {peaks.get('client', ['?'])[0]}"
        if "dask-process" in peaks:
            shown += ", workers " + "/".join(str(v) for v in peaks["dask-process"])
        if "dask-forkserver" in peaks:
            shown += f", forkserver {peaks['dask-forkserver'][0]}"
        load = f"{r['load_average_start'][0]:.1f}->{r['load_average_end'][0]:.1f}"
        cpu = f"{r['cpu_s'].get('client', 0)}, {round(_scoring_cpu(r['cpu_s']), 1)}"
        cells = (r["label"], r["wall_s"], r["scoring_s"], f"{r['rows_per_s_wall']:,}",
                 f"{r['rows_per_s_scoring']:,}", shown, cpu, f"{r['rows_per_cpu_s']:,}",
                 load)  # fmt: skip
        print(" | ".join(str(c) for c in cells))
    if "scaling_1_to_2" in results:
        s = results["scaling_1_to_2"]
        verdict = "PASS" if s["scoring"] >= s["goal"] else "FAIL"
        print(
            f"1 -> 2 workers: {s['scoring']}x scoring, {s['wall']}x wall "
            f"(goal {s['goal']}x): {verdict}"
        )
    print(f"remotes: {results['remotes'].get('skipped') or results['remotes'].get('output')}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows to score")
    parser.add_argument("--parts", type=int, default=40, help="files of the partitioned dataset")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="LocalCluster sizes to run"
    )
    parser.add_argument("--project", type=Path, default=ROOT, help="a built gitml project")
    parser.add_argument(
        "--skip-remotes", action="store_true", help="skip bench/remotes.py (push/pull timing)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = bench(args)
    (OUT_DIR / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
