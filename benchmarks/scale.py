"""Peak memory and time against volume size, for every real-size benchmark, in one table.

Runs each benchmark below as its own subprocess under ``/usr/bin/time -v`` and
``prlimit --as`` (so an out-of-memory kills only that run), once per size, collects
the numbers it writes (``--json``) and prints one markdown table: time, CPU time and
peak RSS against the volume's edge, with the ratio to the baseline each benchmark
measures beside it (the path before the change, or the libraries alone):

==========  ==============================  ======================================
benchmark   runs                            baseline
==========  ==============================  ======================================
segment     ``scale_segment.py``: stream    in memory (and "beyond libs": libraries
            to ``.zarr``, stand-in network  and one plane read)
fossils     ``scale_fossils.py``: blockwise  in memory (TIFF in), up to 512³
autosave    ``autosave.py``: one stroke     whole-volume save, up to 1024³
open_big    ``open_big.py``: napari opens   the same scan without its pyramid
            the scan through its pyramid
dask        ``scale_dask.py`` (when there)  one process
==========  ==============================  ======================================

``peak RSS (all)`` is the whole benchmark's (``/usr/bin/time``'s maximum: its largest
process, which for ``autosave`` is the labels held as napari holds them, and for the
others may be the making of the synthetic data); the per-case numbers are those the
benchmark measures for each run. Every benchmark writes its big files under one
temporary folder, deleted at the end (also on Ctrl-C). Run from the repository root::

    python benchmarks/scale.py                              # 512 1024, all benchmarks
    python benchmarks/scale.py --sizes 2048 --only segment fossils autosave
    python benchmarks/scale.py --sizes 256 --only fossils --markdown out.md

CPU s is the one number that does not depend on what else a shared machine runs.
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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("segment", "fossils", "autosave", "open_big", "dask")
GIB = 2**30


def _segment(n: int, out: Path, tmp: Path, limit: int) -> list[str]:
    modes = ["stream", "memory"] if n <= 512 else ["stream"]
    return [str(HERE / "scale_segment.py"), "--sizes", str(n), "--modes", *modes,
            "--limit", str(limit), "--tmp", str(tmp), "--json", str(out)]  # fmt: skip


def _fossils(n: int, out: Path, tmp: Path, limit: int) -> list[str]:
    base = [] if n <= 512 else ["--skip-baseline"]
    # Its progress bars beside its output, to follow a long run (see --logs).
    return [str(HERE / "scale_fossils.py"), "--size", str(n), *base,
            "--as-limit", str(limit), "--tmp", str(tmp), "--json", str(out),
            "--progress-log", str(out.with_suffix(".progress"))]  # fmt: skip


def _autosave(n: int, out: Path, tmp: Path, limit: int) -> list[str]:
    base = [] if n <= 1024 else ["--no-baseline"]
    return [str(HERE / "autosave.py"), "--size", str(n), *base,
            "--tmp", str(tmp), "--json", str(out)]  # fmt: skip


def _open_big(n: int, out: Path, tmp: Path, limit: int) -> list[str]:
    cmd = [str(HERE / "open_big.py"), "--size", str(n), "--formats", "zarr",
           "--tmp", str(tmp), "--json", str(out)]  # fmt: skip
    return cmd if os.environ.get("DISPLAY") else ["xvfb-run", "-a", sys.executable, *cmd]


def _dask(n: int, out: Path, tmp: Path, limit: int) -> list[str]:
    return [str(HERE / "scale_dask.py"), "--size", str(n),
            "--tmp", str(tmp), "--json", str(out)]  # fmt: skip


COMMANDS: dict[str, Callable[[int, Path, Path, int], list[str]]] = {
    "segment": _segment,
    "fossils": _fossils,
    "autosave": _autosave,
    "open_big": _open_big,
    "dask": _dask,
}


def run_one(cmd: list[str], limit: int, log: Path) -> dict[str, Any]:
    """Wall s, CPU s (user + system, children included), peak RSS MiB and exit code."""
    if cmd[0].endswith(".py"):
        cmd = [sys.executable, *cmd]
    full = ["/usr/bin/time", "-v", "prlimit", f"--as={limit}", *cmd]
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run(full, stdout=err, stderr=subprocess.STDOUT, text=True)
    text = log.read_text(errors="replace")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    cpu = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_s": sum(float(x) for x in cpu) if cpu else None,
        "rss_mib": int(rss.group(1)) / 1024 if rss else None,
        "rc": proc.returncode,
        "tail": "\n".join(text.split("\tCommand being timed")[0].splitlines()[-12:]),
    }


def rows_of(bench: str, n: int, data: Any) -> list[dict[str, Any]]:
    """Table rows ``{case, seconds, cpu_s, rss_mib, base, note}`` from a benchmark's
    JSON; ``base`` names the row this one is compared with."""
    rows: list[dict[str, Any]] = []
    if bench == "segment":
        for r in data:
            if r["case"] == "baseline":
                continue
            note = f"{r['beyond_libs_mib']:.0f} MiB beyond libs" if r["case"] != "memory" else ""
            rows.append(_row(r["case"], r.get("seconds"), None, r.get("rss_mib"),
                             "memory", r.get("error", note)))  # fmt: skip
    elif bench == "fossils":
        for r in data:
            note = f"{r.get('fossils')} fossils" + (" (csv identical)" if r.get("same_csv") else "")
            rows.append(_row(r["case"], r["seconds"], r["cpu_s"], r["rss_gib"] * 1024,
                             "in-memory", note if not r["rc"] else f"exit {r['rc']}"))  # fmt: skip
    elif bench == "autosave":
        for r in data:
            note = f"GUI blocked {r['gui_ms']:.1f} ms (max {r['gui_ms_max']:.1f}"
            note += f", CPU {r['gui_cpu_ms']:.1f} ms)" if "gui_cpu_ms" in r else ")"
            rows.append(_row(r["phase"], r["complete_ms"] / 1000, None, r["peak_rss_gib"] * 1024,
                             "full", note))  # fmt: skip
    elif bench == "open_big":
        for case in ("zarr_plain", "zarr_build", "zarr_pyramid"):
            r = data.get(case) or {}
            if not r:
                continue
            secs = r.get("build_s", r.get("first_view_s"))
            note = "pyramid build" if case.endswith("build") else "to the first view"
            rows.append(_row(case, secs, None, (r.get("peak_rss_gib") or 0) * 1024 or None,
                             "zarr_plain", note))  # fmt: skip
    else:  # a benchmark of its own: records with these keys
        for r in data if isinstance(data, list) else [data]:
            rss = r.get("rss_mib", (r.get("rss_gib") or 0) * 1024 or None)
            rows.append(_row(str(r.get("case", "?")), r.get("seconds"), r.get("cpu_s"), rss,
                             r.get("baseline"), str(r.get("note", ""))))  # fmt: skip
    for r in rows:
        r["size"] = n
    return rows


def _row(case: str, s: Any, cpu: Any, rss: Any, base: Any, note: str) -> dict[str, Any]:
    return {"case": case, "seconds": s, "cpu_s": cpu, "rss_mib": rss, "base": base, "note": note}


def _fmt(x: Any, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def markdown(results: list[dict[str, Any]]) -> str:
    """One table: a row per case, with the whole run's peak and the ratio to its base."""
    lines = [
        "| benchmark | size | case | time s | CPU s | peak RSS MiB | vs baseline (time, RSS) "
        "| peak RSS (all) MiB | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        rows = res["rows"] or [_row("(failed)", None, None, None, None, res["tail"][-200:])]
        by_case = {r["case"]: r for r in rows}
        for r in rows:
            base = by_case.get(r["base"]) if r["base"] != r["case"] else None
            ratio = "–"
            if base and r["seconds"] and base["seconds"] and r["rss_mib"] and base["rss_mib"]:
                ratio = (
                    f"{r['seconds'] / base['seconds']:.2f}×, {r['rss_mib'] / base['rss_mib']:.2f}×"
                )
            lines.append(
                f"| {res['bench']} | {res['size']}³ | {r['case']} | {_fmt(r['seconds'], '.1f')} "
                f"| {_fmt(r['cpu_s'], '.1f')} | {_fmt(r['rss_mib'], ',.0f')} | {ratio} "
                f"| {_fmt(res['rss_mib'], ',.0f')} | {r['note']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="volume edges")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    p.add_argument("--as-limit", type=int, default=8_000_000_000, help="prlimit --as, bytes")
    p.add_argument(
        "--autosave-as-limit",
        type=int,
        default=None,
        help="prlimit --as for autosave (it holds the labels in RAM: 8 GiB at 2048³); "
        "default --as-limit plus the labels' size",
    )
    p.add_argument("--tmp", default=None, help="parent of the temporary folder")
    p.add_argument("--json", default=None, help="write every result here too")
    p.add_argument("--markdown", default=None, help="write the table here too")
    p.add_argument(
        "--logs",
        default=None,
        help="keep each run's output and progress here (default: deleted with the rest)",
    )
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="microfossil-scale-all-", dir=args.tmp))
    if args.logs:
        Path(args.logs).mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in args.sizes:
            for bench in args.only:
                if bench == "dask" and not (HERE / "scale_dask.py").exists():
                    print(f"# dask: {HERE / 'scale_dask.py'} not there, skipped", flush=True)
                    continue
                work = root / f"{bench}-{n}"
                work.mkdir()
                out = (Path(args.logs) if args.logs else work) / f"{bench}-{n}.json"
                limit = args.as_limit
                if bench == "autosave":
                    limit = args.autosave_as_limit or args.as_limit + n**3
                cmd = COMMANDS[bench](n, out, work, args.as_limit)
                print(f"# {bench} {n}³: {' '.join(cmd)}", flush=True)
                r = run_one(
                    cmd, limit, (Path(args.logs) if args.logs else root) / f"{bench}-{n}.log"
                )
                data = json.loads(out.read_text()) if out.exists() else None
                rows = rows_of(bench, n, data) if data else []
                res = {"bench": bench, "size": n, **r, "rows": rows}
                print(
                    f"# {bench} {n}³: exit {r['rc']}, {r['seconds']:.0f} s, "
                    f"{_fmt(r['cpu_s'], '.0f')} CPU s, {_fmt(r['rss_mib'], '.0f')} MiB peak",
                    flush=True,
                )
                if r["rc"] or not rows:
                    print(r["tail"], flush=True)
                results.append(res)
                shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = markdown(results)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
