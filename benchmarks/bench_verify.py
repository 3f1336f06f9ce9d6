"""Verification throughput, measured side by side in one run on a server of its own.

    .venv/bin/python -m benchmarks.bench_verify            # 10k/100k/1M steps, 10,000 x 100
    .venv/bin/python -m benchmarks.bench_verify --quick    # 10k/100k steps, 1,000 x 100
    .venv/bin/python -m benchmarks.bench_verify --lengths 10000,100000,1000000,10000000 \
        --many 0 --repeats 1                               # growth only, up to 10M steps

Starts its own PostgreSQL (LocalPostgres, fsync off) in a temporary directory, builds the data
set through COPY, and measures every verifier as a separate process (wall time, and the peak
RSS of that process plus any it starts, polled from /proc; the client CPU of the process and
every process it waited for, from getrusage(RUSAGE_CHILDREN); the server's CPU, from the
postmaster's /proc/<pid>/stat, which accumulates its backends' when they exit):
- floor: COPY of the rows the verifier reads + SHA-256 of each row (psycopg 3, sync);
- ours, CLI: `run-proof verify` as a whole process, start-up included, with its default
  workers (one per core: long runs are proved in segments by that many processes);
- ours, step 3 op: the coordinator call the Dagster plan's proof op makes (default workers,
  1,000 step summaries), imports excluded;
- ours, 1 process: the coordinator's get_run_proof with workers=1 (the in-process stream),
  imports excluded;
- naive: SQLAlchemy ORM loads the run, then rfc8785 + SHA-256 (the seed origin's shape);
- sweep: `run-proof sweep --full` over 10,000 runs x 100 steps, against one COPY of all rows.
`--chain-format 2` writes the runs in format v2 (benchmarks/dataset.py build_v2, chained by
the database's trigger) and leaves out the naive verifier; RUN_PROOF_NATIVE=0 in the
environment measures the pure path (the results record both).
Results go to benchmarks/results/*.json, a markdown table on stdout and a plot under docs/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.dataset import build, build_v2, run_specs
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUN_PROOF = Path(sys.executable).with_name("run-proof")
WORKERS = max(1, min(os.cpu_count() or 1, 8))  # run-proof verify's default


@dataclass
class Measure:
    """`seconds` is the compared figure: the work itself for the floor, prove_trace and the
    naive verifier (imports excluded), the whole process for the CLI commands;
    `process_seconds` is always the child's wall time, start-up included."""

    name: str
    steps: int
    seconds: float
    peak_rss_mb: float
    process_seconds: float
    status: str | None = None
    # CPU seconds of the client processes (the measured one and all it started: segment
    # workers, sweep shards), start-up included, and of the server's backends.
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0


def _hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (a proof's segment workers), from /proc."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as children:
                    queue.extend(int(child) for child in children.read().split())
            except OSError:
                continue
    return found


@dataclass(frozen=True)
class Ran:
    wall: float
    peak_rss_mb: float
    stdout: str
    client_cpu: float
    server_cpu: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _server_cpu(postmaster: int | None) -> float:
    """CPU seconds of the postmaster and its exited children (backends, once disconnected)."""
    if postmaster is None:
        return 0.0
    with open(f"/proc/{postmaster}/stat") as stat:
        # Fields after the command name (which may hold spaces): utime is the 14th field.
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _run(command: list[str], env: dict[str, str], postmaster: int | None = None) -> Ran:
    """Wall seconds, peak RSS MB, stdout and CPU of one child process and its own children.

    Peak RSS is each process's VmHWM, polled until the child exits, summed over the
    processes (the child and e.g. its segment workers; an upper bound of their RSS at any
    one moment).  rusage's ru_maxrss would carry this (bigger) process's RSS over from fork
    into every child's figure.
    """
    cpu_before, server_before = _children_cpu(), _server_cpu(postmaster)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=ROOT)
        peaks: dict[int, float] = {}
        while child.poll() is None:
            for pid in _tree(child.pid):
                peaks[pid] = max(peaks.get(pid, 0.0), _hwm_mb(pid) or 0.0)
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    if child.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited {child.returncode}: {errors[-2000:]}")
    client = _children_cpu() - cpu_before  # the child and every process it waited for
    time.sleep(0.2)  # the backends of the child's connections end after it does
    server = _server_cpu(postmaster) - server_before
    return Ran(elapsed, sum(peaks.values()), text, client, server)


def _json_line(text: str) -> dict[str, Any]:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


class Bench:
    def __init__(self, server: LocalPostgres) -> None:
        self.server = server
        pid_file = server.data_dir / "postmaster.pid"
        self.postmaster = int(pid_file.read_text().split()[0])
        self.env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        self.env["USE_POSTGRES_TRACES"] = "true"
        self.env["PYTHONPATH"] = str(ROOT)

    def measure(self, kind: str, name: str, url: DatabaseUrl, *args: str) -> Measure:
        target = url.libpq() if kind == "floor" else url.sqlalchemy()
        command = [sys.executable, "-m", "benchmarks._measure", kind, target, *args]
        ran = _run(command, self.env, self.postmaster)
        data = _json_line(ran.stdout)
        inner = float(data["inner_seconds"])
        return Measure(
            name,
            int(data["steps"]),
            inner,
            ran.peak_rss_mb,
            ran.wall,
            data.get("status"),
            ran.client_cpu,
            ran.server_cpu,
        )

    def cli(self, name: str, url: DatabaseUrl, *args: str) -> Measure:
        env = {**self.env, "DATABASE_URL": url.sqlalchemy()}
        ran = _run([str(RUN_PROOF), *args, "--json"], env, self.postmaster)
        data = _json_line(ran.stdout)
        steps = int(data.get("steps_read", data.get("steps", 0)))
        status = data.get("integrity", {}).get("verification_status") or (
            "VERIFIED" if data.get("failures") == 0 else "FAILED"
        )
        return Measure(
            name, steps, ran.wall, ran.peak_rss_mb, ran.wall, status, ran.client_cpu, ran.server_cpu
        )


def _database(server: LocalPostgres, name: str) -> DatabaseUrl:
    url = DatabaseUrl.parse(server.create_database(name, exist_ok=True))
    upgrade(url)
    return url


@dataclass(frozen=True)
class Plan:
    """What one run of the script measures."""

    lengths: list[int]
    many_runs: int  # runs x 100 steps for the sweep; 0: no sweep
    naive_max: int
    repeats: int
    # Above this length only the floor and `run-proof verify` are measured (the in-process
    # and op calls of a 10M-step run would take minutes each and show nothing new).
    all_verifiers_max: int = 1_000_000
    profile: bool = True
    # 2: the runs are written in format v2 (dataset.build_v2: chained by the database) and
    # the naive verifier, a format-v1 one, is not measured.
    chain_format: int = 1


def run(plan: Plan, command: str) -> dict[str, Any]:
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "chain_format": plan.chain_format,
        "native": os.environ.get("RUN_PROOF_NATIVE", "1") != "0",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, shared with other work while measured",
        "growth": [],
        "many": {},
    }
    with tempfile.TemporaryDirectory(prefix="run-proof-bench-") as base:
        server = LocalPostgres(Path(base), fast=True)
        try:
            server.start()
            bench = Bench(server)
            long_url = _database(server, "bench_long")
            specs = []
            for size in plan.lengths:
                specs += run_specs(1, size, prefix=f"long{size}")
            t = time.perf_counter()
            write = build_v2 if plan.chain_format == 2 else build
            write(long_url.libpq(), specs)
            print(f"built {len(specs)} long runs in {time.perf_counter() - t:.0f} s", flush=True)
            for spec in specs:
                results["growth"].append(_growth_point(bench, long_url, spec, plan))
            if plan.many_runs:
                many_url = _database(server, "bench_many")
                t = time.perf_counter()
                write(many_url.libpq(), run_specs(plan.many_runs, 100, tenants=4, prefix="many"))
                took = time.perf_counter() - t
                print(f"built {plan.many_runs} x 100 in {took:.0f} s", flush=True)
                results["many"] = _many(bench, many_url, plan.many_runs, plan.repeats)
            if plan.profile and len(specs) > 1:
                middle = specs[1]
                profile_command = [
                    sys.executable,
                    "-m",
                    "benchmarks._measure",
                    "profile",
                    long_url.libpq(),
                    middle.trace_id,
                ]
                results["profile"] = json.loads(
                    _run(profile_command, bench.env).stdout.splitlines()[-1]
                )
        finally:
            server.stop()
    return results


def _best(measures: list[Measure]) -> Measure:
    return min(measures, key=lambda m: m.seconds)


def _growth_point(bench: Bench, url: DatabaseUrl, spec: Any, plan: Plan) -> dict[str, Any]:
    floors: list[Measure] = []
    clis: list[Measure] = []
    inner: list[Measure] = []
    ops: list[Measure] = []
    everything = spec.steps <= plan.all_verifiers_max
    for _ in range(plan.repeats):  # interleaved, so that load from elsewhere hits all alike
        floors.append(bench.measure("floor", "floor", url, spec.trace_id))
        clis.append(
            bench.cli(
                f"run-proof verify ({WORKERS} workers)",
                url,
                "verify",
                "--tenant-id",
                spec.tenant_id,
                "--run-id",
                spec.run_id,
            )
        )
        if not everything:
            continue
        inner.append(
            bench.measure("prove", "prove_trace, 1 process", url, spec.tenant_id, spec.run_id, "1")
        )
        ops.append(
            bench.measure(
                "prove",
                f"step 3 op's call ({WORKERS} workers)",
                url,
                spec.tenant_id,
                spec.run_id,
                "0",
                "1000",
            )
        )
    point: dict[str, Any] = {
        "steps": spec.steps,
        "floor": asdict(_best(floors)),
        "cli": asdict(_best(clis)),
    }
    if everything:
        point["op"] = asdict(_best(ops))
        point["in_process"] = asdict(_best(inner))
    if spec.steps <= plan.naive_max and plan.chain_format == 1:
        point["naive"] = asdict(bench.measure("naive", "naive ORM+rfc8785", url, spec.trace_id))
    print(json.dumps(point), flush=True)
    return point


def _many(bench: Bench, url: DatabaseUrl, runs: int, repeats: int) -> dict[str, Any]:
    floors, sweeps2, sweeps1 = [], [], []
    for _ in range(repeats):
        floors.append(bench.measure("floor", "floor", url))
        sweeps2.append(
            bench.cli("run-proof sweep --workers 2", url, "sweep", "--full", "--workers", "2")
        )
        sweeps1.append(
            bench.cli("run-proof sweep --workers 1", url, "sweep", "--full", "--workers", "1")
        )
    out = {
        "runs": runs,
        "floor": asdict(_best(floors)),
        "sweep_2_workers": asdict(_best(sweeps2)),
        "sweep_1_worker": asdict(_best(sweeps1)),
    }
    print(json.dumps(out), flush=True)
    return out


def _table(results: dict[str, Any]) -> str:
    rows = [
        "| case | verifier | steps | time (s) | process (s) | steps/s | x floor | peak RSS (MB)"
        " | client CPU (us/step) | server CPU (us/step) | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def add(case: str, m: dict[str, Any], floor: float) -> None:
        rows.append(
            f"| {case} | {m['name']} | {m['steps']:,} | {m['seconds']:.2f} | "
            f"{m['process_seconds']:.2f} | "
            f"{m['steps'] / m['seconds']:,.0f} | {m['seconds'] / floor:.2f} | "
            f"{m['peak_rss_mb']:.0f} | {_per_step(m, 'client_cpu_seconds')} | "
            f"{_per_step(m, 'server_cpu_seconds')} | {m.get('status') or '-'} |"
        )

    for point in results["growth"]:
        floor = point["floor"]["seconds"]
        case = f"1 run x {point['steps']:,}"
        for key in ("floor", "cli", "op", "in_process", "naive"):
            if key in point:
                add(case, point[key], floor)
    many = results["many"]
    if many:
        floor = many["floor"]["seconds"]
        case = f"{many['runs']:,} runs x 100"
        for key in ("floor", "sweep_2_workers", "sweep_1_worker"):
            add(case, many[key], floor)
    return "\n".join(rows)


def _per_step(m: dict[str, Any], key: str) -> str:
    """Microseconds per step of a CPU figure (start-up included), or - where not measured."""
    seconds = m.get(key)
    return f"{seconds / m['steps'] * 1e6:.1f}" if seconds and m["steps"] else "-"


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = {
        "floor": "floor (COPY + SHA-256)",
        "cli": f"run-proof verify, {WORKERS} workers (whole process)",
        "op": f"step 3 op's proof call, {WORKERS} workers (imports excluded)",
        "in_process": "prove_trace, 1 process (imports excluded)",
        "naive": "naive ORM + rfc8785",
    }
    for key, label in labels.items():
        points = [p for p in results["growth"] if key in p]
        if not points:
            continue
        xs = [p["steps"] for p in points]
        left.plot(xs, [p[key]["seconds"] for p in points], marker="o", label=label)
        right.plot(xs, [p[key]["peak_rss_mb"] for p in points], marker="o", label=label)
    for axis, title, unit in ((left, "time", "seconds"), (right, "peak RSS", "MB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("steps in the run")
        axis.set_ylabel(unit)
        axis.set_title(f"One run: {title} by length")
        axis.grid(True, which="both", alpha=0.3)
    right.axhline(200, color="grey", linestyle="--", linewidth=1)
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _lengths(text: str) -> list[int]:
    try:
        lengths = [int(part) for part in text.split(",")]
    except ValueError as error:
        message = f"not a comma-separated list of integers: {text!r}"
        raise argparse.ArgumentTypeError(message) from error
    if not lengths or min(lengths) < 2:
        raise argparse.ArgumentTypeError("each length must be at least 2 steps")
    return lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k/100k steps, 1,000 x 100")
    parser.add_argument(
        "--lengths", type=_lengths, help="Run lengths in steps, e.g. 10000,100000,1000000"
    )
    parser.add_argument("--many", type=int, help="Runs of 100 steps to sweep (0: no sweep)")
    parser.add_argument(
        "--naive-max",
        type=int,
        default=1_000_000,
        help="Longest run the naive verifier gets (it holds the run in memory: ~5 GB at 1M)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="Runs of each fast verifier")
    parser.add_argument("--name", help="Results file name (default: quick, full or growth)")
    parser.add_argument(
        "--chain-format",
        type=int,
        choices=(1, 2),
        default=1,
        help="Write the runs in format v1 (the client hashes) or v2 (the database chains)",
    )
    args = parser.parse_args()
    lengths = args.lengths or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    many = args.many if args.many is not None else (1_000 if args.quick else 10_000)
    name = args.name or (
        "quick" if args.quick else "growth" if args.lengths and max(lengths) > 1_000_000 else "full"
    )
    plan = Plan(lengths, many, args.naive_max, args.repeats, chain_format=args.chain_format)
    results = run(plan, "python -m benchmarks.bench_verify " + " ".join(sys.argv[1:]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"bench-{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot = ROOT / "docs" / f"benchmarks-{'growth' if name == 'full' else name}.png"
    _plot(results, plot)
    print(_table(results))
    print(f"results: {RESULTS / f'bench-{name}.json'}; plot: {plot}")


if __name__ == "__main__":
    main()
