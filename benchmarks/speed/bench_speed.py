"""Speed benchmark: nnip's architectures and the peer packages, side by side, in one run.

``python benchmarks/speed/bench_speed.py`` (repository root, project environment):

1. writes the inputs (`inputs.py`: fcc Cu of 108, 500, 2048 and 16 384 atoms, a 192-atom
   DFT water box, 16 EMT-labelled Cu training frames) and ``spec.json``;
2. installs every peer from PyPI into its own environment (``benchmarks/.venvs/<peer>``,
   ``torch==2.13.0`` first: `peers.py`);
3. runs nnip's side (`run_nnip.py`) and each peer's adapter (``peer_<name>.py``) on the
   same spec, one after another, each model in its own process;
4. writes ``results/speed.md`` and ``results/speed.json``: seconds per energy + forces +
   stress call per structure, training steps per second, MD ns/day, peak memory and the
   ratio of every nnip model to the fastest peer.

All models have random weights (speed does not depend on the values) and comparable
sizes, stated in the table. Timings need an otherwise idle machine.

Options: ``--threads`` (torch threads of every measurement, default 1), ``--peers``
(default: mace nequip schnetpack), ``--models`` (nnip's, default all), ``--sizes``
(structure names; ``cu_55296`` and ``cu_108000`` only on request), ``--repeats``,
``--max-seconds`` and ``--max-memory-gb`` (a larger structure extrapolated past them is
skipped), ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from peers import ensure_peer, markdown_table, peer_env, run_meta  # noqa: E402

sys.path.insert(0, str(HERE))
from inputs import write_inputs  # noqa: E402

PEER_SCRIPTS = {"mace": "peer_mace.py", "nequip": "peer_nequip.py",
                "schnetpack": "peer_schnetpack.py"}
COUNTERPART = {"nnip-schnet": "schnetpack-schnet", "nnip-painn": "schnetpack-painn",
               "nnip-nequip": "nequip-nequip", "nnip-mace": "mace-torch"}
"""The peer model of the same architecture and size as each nnip model."""


def _run_side(python: str, script: str, spec: Path, out: Path, env: dict | None,
              extra: list[str] | None = None) -> dict:
    """Run one side's script; its ``[speed]`` progress lines are shown as they come."""
    out.unlink(missing_ok=True)
    proc = subprocess.Popen([python, str(HERE / script), str(spec), str(out), *(extra or [])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    tail = ""
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith("[speed]"):
            print(line.rstrip(), flush=True)
        tail = (tail + line)[-2000:]
    proc.wait()
    if not out.exists():
        return {"package": script, "failed": tail, "models": []}
    side = json.loads(out.read_text())  # partial results of a side that crashed still count
    if proc.returncode != 0:
        side["failed"] = f"exit {proc.returncode}: {tail}"
    return side


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _cell(inference: dict[str, Any], errors: dict[str, str], name: str) -> str:
    """Milliseconds per call, or why there is no number."""
    if name in inference:
        return _fmt(inference[name]["seconds"] * 1e3)
    error = errors.get(f"inference {name}", "")
    return "skipped" if "skipped" in error else "failed" if error else "–"


def tables(sides: list[dict[str, Any]], names: list[str], meta: dict[str, str]) -> list[str]:
    """Markdown: the measurements, then nnip's ratios to the fastest peer."""
    rows = [(side, m) for side in sides for m in side["models"]]
    header = ["model", "package", "params",
              *[f"{n} (ms)" for n in names], "train (steps/s)", "MD cu_500 (ns/day)",
              "peak RSS (MB)", "largest measured"]
    body = []
    for side, m in rows:
        inf = m.get("inference", {})
        body.append([m["model"], f"{side['package']} {side.get('version', '')}",
                     str(m.get("n_parameters", "–")),
                     *[_cell(inf, m.get("errors", {}), n) for n in names],
                     _fmt(m.get("training", {}).get("steps_per_s")),
                     _fmt(m.get("md", {}).get("ns_per_day")),
                     _fmt(max((v["peak_rss_mb"] for v in inf.values()), default=None), 4),
                     max(inf.values(), key=lambda v: v["n_atoms"])["n_atoms"].__str__()
                     if inf else "–"])
    lines = [f"Speed benchmark, {meta['machine']}, {meta['date']}, torch {meta['torch']}. "
             "Energy + forces + stress per call through each package's ASE calculator "
             "(median), training steps per second (batch of 4 Cu32 frames, float64), NVE "
             "MD through each package's engine (float32). Peak RSS: the process's "
             "peak resident memory over its inference calls (structures in increasing "
             "size), at the largest structure measured.", "",
             *markdown_table(header, body), ""]
    peers = [(side, m) for side, m in rows if side["package"] != "nnip"]
    if not peers:
        return lines

    def best(get: Any, lower: bool) -> float | None:
        values = [v for _, m in peers if (v := get(m)) is not None]
        return (min(values) if lower else max(values)) if values else None

    getters = {n: (lambda m, n=n: m.get("inference", {}).get(n, {}).get("seconds"), True)
               for n in names}
    getters["train"] = (lambda m: m.get("training", {}).get("steps_per_s"), False)
    getters["MD"] = (lambda m: m.get("md", {}).get("ns_per_day"), False)
    def ratio(ours: float | None, theirs: float | None, lower: bool) -> str:
        if ours is None or theirs is None:
            return "–"
        return f"{(theirs / ours if lower else ours / theirs):.2f}x"

    by_name = {m["model"]: m for _, m in peers}
    ratio_rows, pair_rows = [], []
    for side, m in rows:
        if side["package"] != "nnip":
            continue
        ratio_rows.append([m["model"], *[ratio(get(m), best(get, lower), lower)
                                         for get, lower in getters.values()]])
        other = by_name.get(COUNTERPART.get(m["model"].removesuffix("+compile"), ""))
        if other is not None:
            pair_rows.append([f"{m['model']} / {other['model']}",
                              *[ratio(get(m), get(other), lower)
                                for get, lower in getters.values()]])
    lines += ["Speed of each nnip model relative to the same architecture in a peer "
              "package (> 1: nnip faster):", "",
              *markdown_table(["models", *names, "train", "MD"],
                              pair_rows), "",
              "Relative to the fastest peer model of any architecture in each column:", "",
              *markdown_table(["model", *names, "train", "MD"],
                              ratio_rows), "",
              "Models:", ""]
    lines += [f"- `{m['model']}`: {m.get('description', '')}" for _, m in rows]
    failed = [f"- {side['package']}: {side['failed'][-300:]}" for side in sides
              if side.get("failed")]
    errors = [f"- `{m['model']}` {what}: {msg[:200]}" for _, m in rows
              for what, msg in m.get("errors", {}).items()]
    if failed or errors:
        lines += ["", "Failures:", "", *failed, *errors]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peers", nargs="*", default=list(PEER_SCRIPTS))
    parser.add_argument("--sizes", nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=None,
                        help="nnip models to measure (default: all; e.g. nnip-painn "
                             "nnip-painn+compile)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="skip structures extrapolated to take longer per call")
    parser.add_argument("--max-memory-gb", type=float, default=14.0,
                        help="skip structures extrapolated to need more memory")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--tables-only", action="store_true",
                        help="rewrite speed.md from an existing speed.json (no measurement)")
    args = parser.parse_args()
    out = Path(args.out)
    if args.tables_only:
        saved = json.loads((out / "speed.json").read_text())
        names = [n for n in saved["names"]] if "names" in saved else \
            list(saved["sides"][0]["models"][0]["inference"])
        (out / "speed.md").write_text("\n".join(tables(saved["sides"], names,
                                                      saved["meta"])) + "\n")
        return
    work = HERE / "runs"
    spec = write_inputs(work / "inputs", sizes=args.sizes, threads=args.threads,
                        repeats=args.repeats)
    names = [item["name"] for item in json.loads(spec.read_text())["inference"]]
    limits = {"OMP_NUM_THREADS": str(args.threads), "BENCH_MAX_SECONDS": str(args.max_seconds),
              "BENCH_MAX_MEMORY_MB": str(args.max_memory_gb * 1024)}
    chosen = [a for m in args.models or [] for a in ("--model", m)]
    print("measuring nnip ...", flush=True)
    sides = [_run_side(sys.executable, "run_nnip.py", spec, work / "nnip.json",
                       {**os.environ, **limits}, chosen)]
    for peer in args.peers:
        try:
            python = ensure_peer(peer)
        except (RuntimeError, subprocess.CalledProcessError) as err:  # keep the others
            print(f"{peer}: installation failed, not measured", flush=True)
            sides.append({"package": peer, "failed": str(err)[-2000:], "models": []})
            continue
        print(f"measuring {peer} ...", flush=True)
        sides.append(_run_side(str(python), PEER_SCRIPTS[peer], spec, work / f"{peer}.json",
                               {**peer_env(peer), **limits}))
    meta = run_meta(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps({"meta": meta, "names": names,
                                                "sides": sides}, indent=1))
    text = "\n".join(tables(sides, names, meta)) + "\n"
    (out / "speed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
