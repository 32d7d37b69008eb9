#!/usr/bin/env python3
"""bench/report.py: the bookkeeping half of bench/run (stdlib only).

  meta    describe one result (kind, title, limit, ptest's row, notes) as OUT/ID.meta.json
  record  turn bench_timed files ("start end" lines) into hyperfine-shaped JSON
  render  read OUT/ (hyperfine --export-json files, lib-bench's files of the same shape, .tsv
          readings, machine.tsv) and print RESULTS.md: per scenario the median, p90, ratio to
          the limit and ptest's ratio to each peer

Times in every JSON file are seconds, as hyperfine exports them: {"results": [{"command",
"times": [...]}]}. Files ID.json and ID.r<k>.json (rounds) are merged by command name.
"""

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path


# --- numbers -----------------------------------------------------------------------------------


def median(xs):
    return statistics.median(xs)


def p90(xs):
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def fmt_time(s):
    if s is None:
        return "—"
    a = abs(s)
    if a >= 1:
        return f"{s:.2f} s"
    if a >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} µs"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


# --- loading -----------------------------------------------------------------------------------


def load_results(path):
    """The results of one file; none from a file a failed run left empty or cut short."""
    try:
        return json.loads(path.read_text())["results"]
    except (json.JSONDecodeError, KeyError, TypeError):
        print(f"report.py: {path.name} is unreadable (a failed run?); ignored", file=sys.stderr)
        return []


def load_times(paths):
    """Command name -> all its times across the files, in the order names first appear."""
    merged = {}
    for path in paths:
        for result in load_results(path):
            merged.setdefault(result["command"], []).extend(result["times"])
    return merged


def load_cpu(paths):
    """Command name -> mean user+system CPU seconds per run (hyperfine files only: it measures
    the command's whole process tree; lib-bench files have no such field)."""
    sums = {}
    for path in paths:
        for result in load_results(path):
            if "user" in result and "system" in result:
                n = len(result["times"])
                total, count = sums.get(result["command"], (0.0, 0))
                sums[result["command"]] = (total + (result["user"] + result["system"]) * n, count + n)
    return {name: total / count for name, (total, count) in sums.items() if count}


def files_for(out, stem):
    """OUT/stem.json and OUT/stem.r<k>.json, rounds in order."""
    pattern = re.compile(re.escape(stem) + r"(\.r(\d+))?\.json$")
    found = [p for p in out.iterdir() if pattern.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(pattern.fullmatch(p.name).group(2) or -1))


def read_tsv(path):
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text().splitlines() if line.strip()]


# --- rendering ---------------------------------------------------------------------------------


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_compare(out, meta):
    paths = files_for(out, meta["id"])
    times = load_times(paths)
    if not times:
        return "*no results (the scenario did not run to the end)*"
    cpu = load_cpu(paths)
    stats = {name: (median(t), p90(t), len(t)) for name, t in times.items()}
    limit = stats.get(meta.get("limit"), (None,))[0]
    ptest = stats.get(meta.get("ptest"), (None,))[0]
    limit_cpu = cpu.get(meta.get("limit"))
    rows = []
    for name, (med, q90, n) in stats.items():
        c = cpu.get(name)
        role = " (limit)" if name == meta.get("limit") else ""
        role = " (ptest)" if name == meta.get("ptest") else role
        rows.append(
            [
                f"`{name}`{role}",
                fmt_time(med),
                fmt_time(q90),
                n,
                fmt_ratio(med / limit if limit else None),
                "—" if name == meta.get("ptest") else fmt_ratio(ptest / med if ptest else None),
            ]
            + ([fmt_time(c), fmt_ratio(c / limit_cpu if c and limit_cpu else None)] if cpu else [])
        )
    header = ["contender", "median", "p90", "runs", "÷ limit", "ptest ÷ this"]
    if cpu:
        header += ["CPU (user+sys, mean)", "CPU ÷ limit"]
    return table(header, rows) + render_per_unit(meta, stats, cpu) + render_targets(meta, stats, limit)


def render_per_unit(meta, stats, cpu):
    """--per-unit BASE|COUNT|UNIT: each row's extra wall and CPU time over BASE's, per UNIT."""
    if not meta.get("per_unit"):
        return ""
    base, count, unit = meta["per_unit"].split("|")
    count = int(count)
    bw, bc = stats.get(base, (None,))[0], cpu.get(base)
    if bw is None:
        return ""
    rows = []
    for name, (med, _, _) in stats.items():
        if name == base:
            continue
        c = cpu.get(name)
        rows.append(
            [
                f"`{name}`",
                fmt_time((med - bw) / count),
                fmt_time((c - bc) / count) if c is not None and bc is not None else "—",
            ]
        )
    return "\n\n" + table(
        ["contender", f"wall over `{base}`, per {unit}", f"CPU over `{base}`, per {unit}"], rows
    )


def render_targets(meta, stats, limit):
    """The targets a scenario states (--at-most ROW|RATIO: ROW's median at most RATIO times the
    limit's; --below ROW|OTHER: ROW's median under OTHER's), each with its verdict."""
    lines = []
    for spec in meta.get("at_most", []):
        row, bound = spec.split("|")
        med = stats.get(row, (None,))[0]
        if med is None or not limit:
            lines.append(f"- target `{row}` ≤ {float(bound):.2f}× the limit: not measured")
            continue
        r = med / limit
        verdict = "**holds**" if r <= float(bound) else "**does not hold**"
        lines.append(f"- target `{row}` ≤ {float(bound):.2f}× the limit: {fmt_ratio(r)}, {verdict}")
    for spec in meta.get("below", []):
        row, other = spec.split("|")
        a, b = stats.get(row, (None,))[0], stats.get(other, (None,))[0]
        if a is None or b is None:
            lines.append(f"- target `{row}` below `{other}`: not measured")
            continue
        verdict = "**holds**" if a < b else "**does not hold**"
        lines.append(f"- target `{row}` below `{other}`: {fmt_time(a)} vs {fmt_time(b)} ({fmt_ratio(a / b)}), {verdict}")
    return ("\n\n" + "\n".join(lines)) if lines else ""


def render_scale(out, meta):
    checkpoints = [int(n) for n in meta["checkpoints"].split()]
    per_n = {}
    for n in checkpoints:
        stem = f"{meta['id']}.n{n}"
        paths = files_for(out, stem) + files_for(out, stem + ".fill")
        if paths:
            per_n[n] = load_times(paths)
    if not per_n:
        return "*no results (the scenario did not run to the end)*"
    ops = []
    for t in per_n.values():
        ops += [op for op in t if op not in ops]
    ns = sorted(per_n)
    parts = ["Median (p90) per operation at population N:", ""]
    rows = []
    for op in ops:
        row = [f"`{op}`"]
        for n in ns:
            t = per_n[n].get(op)
            row.append(f"{fmt_time(median(t))} ({fmt_time(p90(t))})" if t else "—")
        rows.append(row)
    for spec in meta.get("ratio", []):
        op, limit = spec.split("=", 1)
        row = [f"`{op}` ÷ `{limit}`"]
        for n in ns:
            t, lt = per_n[n].get(op), per_n[n].get(limit)
            row.append(fmt_ratio(median(t) / median(lt)) if t and lt else "—")
        rows.append(row)
    parts.append(table(["operation"] + [f"N={n}" for n in ns], rows))
    if len(ns) > 1:
        parts += ["", "Slope of the median, per extra environment (µs):", ""]
        pairs = list(zip(ns, ns[1:])) + ([(ns[0], ns[-1])] if len(ns) > 2 else [])
        rows = []
        for op in ops:
            if op.startswith("limit"):
                continue
            row = [f"`{op}`"]
            for a, b in pairs:
                ta, tb = per_n[a].get(op), per_n[b].get(op)
                row.append(f"{(median(tb) - median(ta)) / (b - a) * 1e6:+.1f}" if ta and tb else "—")
            rows.append(row)
        parts.append(table(["operation"] + [f"{a}→{b}" for a, b in pairs], rows))
    final = files_for(out, meta["id"] + ".final")
    if final:
        parts += ["", f"At N={ns[-1]}, then removing them all:", ""]
        rows = [
            [f"`{op}`", fmt_time(median(t)), fmt_time(p90(t)), fmt_time(statistics.mean(t)), len(t)]
            for op, t in load_times(final).items()
        ]
        parts.append(table(["operation", "median", "p90", "mean", "count"], rows))
    readings = read_tsv(out / f"{meta['id']}.tsv")
    if readings:
        parts += ["", table(["reading", "N", "value"], [[m, n, f"{v} {u}"] for m, n, v, u in readings])]
    return "\n".join(parts)


def render(out, pending, machine_file, mode):
    metas = sorted(
        (json.loads(p.read_text()) for p in out.glob("*.meta.json")), key=lambda m: m["seq"]
    )
    machine = read_tsv(machine_file)
    doc = [
        "# ptest benchmark results",
        "",
        f"Written by `bench/run{' --quick' if mode == 'quick' else ''}`; do not edit by hand, "
        "run it again. Every table comes from one run in which the contenders were measured "
        "side by side (hyperfine rounds with the order rotated, or call-by-call interleaving in "
        "bench/lib-bench). Ratios compare medians of wall-clock time. On a shared, loaded machine "
        "wall time includes waiting for a CPU (a woken thread can wait a whole scheduler tick, "
        "so times cluster near multiples of 4 ms); the CPU column (user+sys of the whole process "
        "tree, from hyperfine) is far less sensitive to that. Distrust differences under ~10%.",
        "",
        "## Machine",
        "",
        table(["", ""], [[k, v] for k, v in machine]),
    ]
    for meta in metas:
        renderer = render_scale if meta["kind"] == "scale" else render_compare
        doc += ["", f"## {meta['title']}", "", renderer(out, meta)]
        if meta.get("note"):
            doc += [""] + [f"- {n}" for n in meta["note"]]
    rows = [line.split("\t") for line in pending.read_text().splitlines()]
    rows = [r for r in rows if r and not r[0].startswith("#")]
    if rows:
        doc += [
            "",
            "## Not yet measured (level not built)",
            "",
            table(["scenario", "compares", "waits for"], rows),
        ]
    return "\n".join(doc) + "\n"


# --- command line ------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("meta")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--id", required=True)
    m.add_argument("--kind", choices=["compare", "scale"], required=True)
    m.add_argument("--title", required=True)
    m.add_argument("--limit")
    m.add_argument("--ptest")
    m.add_argument("--checkpoints")
    m.add_argument("--ratio", action="append", default=[])
    m.add_argument("--note", action="append", default=[])
    m.add_argument("--at-most", action="append", default=[], metavar="ROW|RATIO")
    m.add_argument("--below", action="append", default=[], metavar="ROW|OTHER")
    m.add_argument("--per-unit", metavar="BASE|COUNT|UNIT")
    r = sub.add_parser("record")
    r.add_argument("--out-file", type=Path, required=True)
    r.add_argument("--command", nargs=2, action="append", metavar=("NAME", "FILE"), required=True)
    g = sub.add_parser("render")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--pending", type=Path, required=True)
    g.add_argument("--machine", type=Path, required=True)
    g.add_argument("--mode", choices=["quick", "full"], required=True)
    g.add_argument("--results", type=Path, required=True)
    args = parser.parse_args()

    if args.cmd == "meta":
        meta = {k: v for k, v in vars(args).items() if k not in ("cmd", "out") and v is not None}
        path = args.out / f"{args.id}.meta.json"
        # Written again (a scenario re-run into the same OUT): the table keeps its place.
        if path.exists():
            meta["seq"] = json.loads(path.read_text())["seq"]
        else:
            meta["seq"] = max((json.loads(p.read_text())["seq"] for p in args.out.glob("*.meta.json")), default=-1) + 1
        path.write_text(json.dumps(meta, indent=2))
    elif args.cmd == "record":
        results = []
        for name, file in args.command:
            pairs = [line.split() for line in Path(file).read_text().splitlines() if line.strip()]
            results.append({"command": name, "times": [float(b) - float(a) for a, b in pairs]})
        args.out_file.write_text(json.dumps({"results": results}, indent=2))
    else:
        text = render(args.out, args.pending, args.machine, args.mode)
        args.results.write_text(text)
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
