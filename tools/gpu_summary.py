#!/usr/bin/env python3
"""The summary of a tools/gpu-run.sh call (stdlib only: it runs on the GPU machine and in CI).

    gpu_summary.py summarize WORK OUT --budget S [--resume STATE] [--final DEVICE DATE]
        reads the work folder of gpu-run.sh (phases.tsv, logs, gtest XML, JSON), merges the phases an
        earlier call finished (--resume: that call's state.json), and writes OUT/state.json and
        OUT/summary.md, whose last lines are the verdict. --final also writes
        OUT/<DEVICE>-<DATE>.json and .md for bench/results/ (not when DEVICE is no-gpu: nothing was
        measured). Exit status: the verdict's (0 PASS, 1 FAIL, 3 NO GPU, 4 INCOMPLETE).
    gpu_summary.py finished STATE --build BUILD_INFO --device NAME
                                       the phases that STATE finished (pass or fail), one a line;
                                       exit 2 when STATE comes from other binaries or another GPU
    gpu_summary.py suites-done STATE   the test suites that STATE finished (ran to the end), one a line
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

FINISHED = ("pass", "fail")  # a phase with one of these is not run again by --resume
EXIT = {"PASS": 0, "FAIL": 1, "NO GPU": 3, "INCOMPLETE": 4}
SANITIZERS = ("memcheck", "racecheck", "initcheck", "synccheck")


def read(path, default=""):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return default


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def phases_tsv(work):
    """name -> {status, rc, seconds, limit, note}; a later line for the same name wins."""
    phases = {}
    for line in read(os.path.join(work, "phases.tsv")).splitlines():
        cells = line.split("\t")
        if len(cells) < 5:
            continue
        name, status, rc, seconds, limit = cells[:5]
        phases[name] = {"status": status, "rc": rc, "seconds": int(seconds) if seconds.isdigit() else 0,
                        "limit": limit, "note": cells[5] if len(cells) > 5 else ""}
    return phases


def suite_results(work):
    """suite -> {exit, tests, failed, skipped, failures}: the gtest XML of each suite process and its exit code."""
    suites = {}
    for line in read(os.path.join(work, "tests", "exit-codes.txt")).splitlines():
        code, _, suite = line.partition(" ")
        if suite:
            suites[suite] = {"exit": int(code) if code.lstrip("-").isdigit() else -1,
                             "tests": 0, "failed": 0, "skipped": 0, "failures": []}
    for suite, result in suites.items():
        name = suite.replace("/", "_").rstrip(".")
        path = os.path.join(work, "tests", name + ".xml")
        if not os.path.exists(path):
            continue
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            result["failures"].append(f"{suite}: unreadable XML")
            continue
        for case in root.iter("testcase"):
            result["tests"] += 1
            failure = case.find("failure")
            if failure is not None:
                result["failed"] += 1
                message = " | ".join((failure.get("message") or "").split("\n")[:3])
                result["failures"].append(f"{case.get('classname')}.{case.get('name')}: {message[:300]}")
            elif case.get("result") == "skipped" or case.find("skipped") is not None:
                result["skipped"] += 1
    return suites


def tests_status(suites):
    """The tests phase's status from its suites: fail (a failure or a crash), timeout, or pass."""
    if not suites:
        return "fail", "no suite ran"
    crashed = [s for s, r in suites.items() if r["exit"] not in (0, 1, 124, 137, 125)]
    failed = [s for s, r in suites.items() if r["failed"] or r["exit"] == 1]
    late = [s for s, r in suites.items() if r["exit"] in (124, 137, 125)]
    total = sum(r["tests"] for r in suites.values())
    if failed or crashed:
        return "fail", f"{len(failed)} suites with failures, {len(crashed)} crashed"
    if late:
        return "timeout", f"{len(late)} suites timed out or not started"
    if total == 0:
        return "fail", "no test case ran"
    return "pass", f"{total} cases, none failed"


def grep(text, pattern, limit):
    return [line for line in text.splitlines() if re.search(pattern, line)][:limit]


def details(work, phases):
    """What each phase found, from its logs (only the phases this call ran)."""
    d = {}
    phases = {n: p for n, p in phases.items() if p["status"] not in ("no-gpu", "no-time", "unavailable")}
    if "validate" in phases:
        j = load_json(os.path.join(work, "validate", "validate.json")) or {}
        rows = [r for r in j.get("rows", []) if str(r.get("result", "")).lower() not in ("pass", "ok", "skip", "skipped")]
        d["validate"] = {"summary": j.get("summary"),
                         "lines": grep(read(os.path.join(work, "validate.txt")), r"checks: \d+ passed|FAIL|rror", 25),
                         "failed_rows": rows[:40]}
    for tool in SANITIZERS:
        if tool in phases:
            text = read(os.path.join(work, tool + ".txt"))
            d[tool] = (grep(text, r"ERROR SUMMARY|checks: \d+ passed", 2) or text.strip().splitlines()[-2:]) + \
                grep(text, r"^=+ +(Invalid|Race|Uninitialized|Barrier|Error|Program hit)", 8)
    if "peercheck" in phases:
        d["peercheck"] = grep(read(os.path.join(work, "peercheck.txt")) + read(os.path.join(work, "peercheck-export.txt")),
                              r"^FAIL|passed|failed|Error", 10)
    for name in phases:
        if name.startswith("reproduce-") or name == "clibench":
            d[name] = read(os.path.join(work, name + ".txt")).strip().splitlines()[-12:]
        if name.startswith(("bench-", "peer-")) and phases[name]["status"] == "pass":
            j = load_json(os.path.join(work, name + ".json"))
            if j is not None:
                d.setdefault("runs", {})[name + ".json"] = j
        if name.startswith(("bench-", "peer-")) and phases[name]["status"] not in ("pass", "no-gpu", "no-time"):
            d.setdefault("problems", {})[name] = grep(read(os.path.join(work, name + ".txt")),
                                                     r"Error|rror:|out of memory|Killed|Traceback", 3)
    return d


def merge(previous, current):
    """The earlier call's finished phases (and their details) under this call's."""
    if not previous:
        return current
    merged = dict(current)
    kept = {n: dict(p, call="earlier") for n, p in previous.get("phases", {}).items()
            if p["status"] in FINISHED and n not in current["phases"]}
    merged["phases"] = {**kept, **current["phases"]}
    old_suites = {s: r for s, r in previous.get("suites", {}).items() if r["exit"] in (0, 1)}
    merged["suites"] = {**old_suites, **current.get("suites", {})}
    for key, value in previous.get("details", {}).items():
        if key == "runs" or key == "problems":
            merged["details"][key] = {**value, **current["details"].get(key, {})}
        elif key not in current["details"] and key in kept:
            merged["details"][key] = value
    merged["calls"] = previous.get("calls", []) + current["calls"]
    return merged


def verdict(phases):
    bad = [n for n, p in phases.items() if p["status"] == "fail"]
    if bad:
        return "FAIL", f"{len(bad)} phases failed: {', '.join(bad)}"
    gpu_ran = [n for n, p in phases.items() if n != "smoke" and p["status"] not in ("no-gpu", "no-time", "unavailable")]
    if any(p["status"] == "no-gpu" for p in phases.values()) and not gpu_ran:
        return "NO GPU", "no GPU: nothing ran on a GPU; the binaries load and the summary is written"
    running = [n for n, p in phases.items() if p["status"] == "running"]
    if running:
        return "INCOMPLETE", f"still running, or the call was cut short: {', '.join(running)} (call again with --resume)"
    open_ = [n for n, p in phases.items() if p["status"] not in ("pass", "unavailable")]
    # A phase that lacked its tool (compute-sanitizer, torch) lacks it again on a resume.
    lacking = [n for n, p in phases.items() if p["status"] == "unavailable"]
    if open_ or lacking:
        why = [f"not finished: {', '.join(open_)} (call again with --resume)"] if open_ else []
        why += [f"no tool for: {', '.join(lacking)} on this machine (a resume cannot run them)"] if lacking else []
        return "INCOMPLETE", "; ".join(why)
    return "PASS", f"all {len(phases)} phases passed"


def render(state, budget):
    phases, det, suites = state["phases"], state["details"], state.get("suites", {})
    out = ["# d2r GPU run (tools/gpu-run.sh; the verdict is at the end)", "", "```", f"build: {state['build']}",
           state["probe"].strip(), "```", ""]
    for name in [n for n in det if n == "clibench" or n.startswith("reproduce-")]:
        out += [f"## {name}", "```"] + det[name] + ["```", ""]
    if det.get("report"):
        out += ["## Benchmarks vs PyTorch peers (tools/bench_report.py)", "", det["report"][:8000], ""]
    for name, lines in det.get("problems", {}).items():
        out += [f"- {name}: " + (" / ".join(lines) or "see logs.tgz")]
    total = {k: sum(r[k] for r in suites.values()) for k in ("tests", "failed", "skipped")}
    bad = [f"{s}: exit {r['exit']}" + {124: " (timed out)", 137: " (timed out)", 125: " (not started: no time)"}.get(r["exit"], "")
           for s, r in suites.items() if r["exit"] not in (0, 1)]
    failures = [f for r in suites.values() for f in r["failures"]]

    out += ["## Verdict", "", "Phases (status, exit code, seconds, limit, note; 'earlier': from the --resume call):", "```"]
    for name, p in phases.items():
        out.append(f"{name:<24} {p['status']:<11} {p['rc']:>4} {p['seconds']:>5} {p['limit']:>5}  {p['note']}"
                   + ("  [earlier]" if p.get("call") == "earlier" else ""))
    out += [f"budget {budget} s", "```", ""]
    if suites:
        out.append(f"Tests (gpu_kernels_test, D2R_EXPECT_GPU=1): {total['tests']} cases in {len(suites)} suites, "
                   f"{total['failed']} failed, {total['skipped']} skipped; {len(bad)} suite processes ended abnormally")
        out += [f"- FAIL {f}" for f in failures[:25]] + [f"- {b}" for b in bad[:25]]
        if len(failures) > 25:
            out.append(f"- ... {len(failures) - 25} more in logs.tgz (tests/*.xml)")
        out.append("")
    if "validate" in det:
        out += ["d2r validate --device cuda --sizes medium:", "```"] + (det["validate"]["lines"] or ["(no output)"]) + ["```", ""]
    lines = [f"{tool}: " + " / ".join(det[tool]) for tool in SANITIZERS if tool in det]
    if lines:
        out += ["compute-sanitizer on d2r validate --sizes small:", "```"] + lines + ["```", ""]
    if "peercheck" in det:
        out += ["Peer cross-check (float64, CPU):", "```"] + (det["peercheck"] or ["(no output)"]) + ["```", ""]
    word, why = verdict(phases)
    out += [f"Verdict: {word} (exit {EXIT[word]}): {why}"]
    return "\n".join(out) + "\n", word


def write_atomic(path, text):
    tmp = f"{path}.{os.getpid()}.tmp"  # the periodic snapshot may write at the same time
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def summarize(args):
    work, out = args.work, args.out
    phases = phases_tsv(work)
    suites = suite_results(work)
    for name, p in phases.items():  # a benchmark binary exits 0 even when its rows skip or fail
        if name.startswith("bench-") and p["status"] == "pass":
            rows = (load_json(os.path.join(work, name + ".json")) or {}).get("benchmarks", [])
            errored = [r for r in rows if r.get("error_occurred")]
            if not rows or errored:
                p["status"] = "fail"
                p["note"] += f"; {len(errored)} of {len(rows)} rows failed or skipped" + \
                    (f" ({errored[0].get('error_message', '')[:120]})" if errored else "")
    build = " ".join(read(os.path.join(work, "BUILD_INFO")).split())
    state = {"schema": 1, "build": build, "device": read(os.path.join(work, "DEVICE")).strip(), "probe": read(os.path.join(work, "probe.txt")), "phases": phases,
             "suites": suites, "details": details(work, phases), "calls": [{"budget": args.budget, "build": build}]}
    previous = load_json(args.resume) if args.resume else None
    state = merge(previous, state)
    tests = state["phases"].get("tests")
    if tests and tests["status"] == "pending":  # this call's suites and those an earlier call finished
        tests["status"], why = tests_status(state["suites"])
        tests["note"] += f"; {why}"
    final = args.final is not None
    device, date = args.final if final else (None, None)
    if final:
        runs = state["details"].get("runs", {})
        ours = [os.path.join(work, n) for n in runs if n.startswith("bench-")]
        peers = [os.path.join(work, n) for n in runs if n.startswith("peer-")]
        if ours:
            # Earlier calls' JSON is in state.json only: write it back for bench_report.py.
            for name in runs:
                if not os.path.exists(os.path.join(work, name)):
                    with open(os.path.join(work, name), "w") as f:
                        json.dump(runs[name], f)
            report = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_report.py"),
                                     "--ours", *ours, "--peer", *peers], capture_output=True, text=True)
            state["details"]["report"] = report.stdout if report.returncode == 0 else f"(bench_report.py failed: {report.stderr[-500:]})"
    text, word = render(state, args.budget)
    write_atomic(os.path.join(out, "state.json"), json.dumps(state, indent=1))
    write_atomic(os.path.join(out, "summary.md"), text)
    if final and device != "no-gpu":
        commit = state["build"].split()[0] if state["build"] else "unknown"
        results = {"device": device, "date": date, "build": state["build"], "verdict": word,
                   "phases": state["phases"], "tests": {k: sum(r[k] for r in state["suites"].values())
                                                        for k in ("tests", "failed", "skipped")},
                   "validate": (state["details"].get("validate") or {}).get("summary"),
                   "runs": state["details"].get("runs", {})}
        write_atomic(os.path.join(out, f"{device}-{date}.json"), json.dumps(results, indent=1))
        write_atomic(os.path.join(out, f"{device}-{date}.md"),
                     text.replace("# d2r GPU run (tools/gpu-run.sh; the verdict is at the end)",
                                  f"# GPU run: {device}, {date}, commit {commit} (tools/gpu-run.sh)", 1))
    return EXIT[word]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("work")
    s.add_argument("out")
    s.add_argument("--budget", type=int, required=True)
    s.add_argument("--resume")
    s.add_argument("--final", nargs=2, metavar=("DEVICE", "DATE"))
    f = sub.add_parser("finished")
    f.add_argument("state")
    f.add_argument("--build", required=True, help="this call's BUILD_INFO file")
    f.add_argument("--device", required=True)
    sub.add_parser("suites-done").add_argument("state")
    args = parser.parse_args()
    if args.command == "summarize":
        return summarize(args)
    state = load_json(args.state)
    if state is None:
        print(f"gpu_summary.py: cannot read '{args.state}'", file=sys.stderr)
        return 2
    if args.command == "finished":
        build = " ".join(read(args.build).split())
        if state.get("build") != build or state.get("device") != args.device:
            print(f"gpu-run.sh: --resume: the earlier call ran '{state.get('build')}' on '{state.get('device')}'; "
                  f"this one runs '{build}' on '{args.device}': results of other binaries or another GPU are not "
                  "merged (run without --resume)", file=sys.stderr)
            return 2
        print("\n".join(n for n, p in state.get("phases", {}).items() if p["status"] in FINISHED))
    else:
        print("\n".join(s for s, r in state.get("suites", {}).items() if r["exit"] in (0, 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
