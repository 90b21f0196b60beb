#!/usr/bin/env python3
"""Summarizes fuzz/logs/<target>.log (written by run-all.sh) as the table in
fuzz/README.md: when and how long each target ran, executions, exec/s, edge
coverage (cov) and features (ft) at start and end, what the last third of the
executions added, corpus size, peak RSS and the plateau verdict.

Plateau: no new edge (cov) in the last third of the executions. The features
(ft, finer than edges) gained in that third are shown beside it.

Usage: fuzz/figures.py [--logs DIR] [TARGET...]   (DIR: default fuzz/logs)
"""
import datetime
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/\S+.*?exec/s: (\d+) rss: (\d+)Mb")
DONE = re.compile(r"^Done (\d+) runs in (\d+) second")
TARGETS = ["decode", "reassembly", "tls", "quic_initial", "capture", "pipeline", "mdm_files", "plist",
           "config", "dns", "dhcp", "mdm_api", "mdm_webhook", "state", "webhook", "identity"]


def at_or_before(lines, execs, field, default):
    return max((int(m.group(field)) for m in lines if int(m.group(1)) <= execs), default=default)


args = sys.argv[1:]
logs = os.path.join(HERE, "logs")
if args[:1] == ["--logs"] and len(args) > 1:
    logs, args = args[1], args[2:]
print("| target | finished (UTC) | seconds | executions | exec/s | cov (start → end) | cov in last ⅓ "
      "| ft (start → end) | ft in last ⅓ | corpus | peak RSS | plateau | result |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for t in args or TARGETS:
    p = os.path.join(logs, t + ".log")
    if not os.path.exists(p):
        continue
    text = open(p, errors="replace").read()
    when = datetime.datetime.fromtimestamp(os.path.getmtime(p), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    lines = [m for m in (STATUS.match(l) for l in text.splitlines()) if m]
    if not lines:
        print(f"| {t} | {when} | - | - | - | - | - | - | - | - | - | - | no status line |")
        continue
    init = next((m for m in lines if m.group(2) == "INITED"), lines[0])
    last = lines[-1]
    done = [m for m in (DONE.match(l) for l in text.splitlines()) if m]
    secs = done[-1].group(2) if done else "-"
    total = int(last.group(1))
    cov_third = int(last.group(3)) - at_or_before(lines, total * 2 // 3, 3, int(init.group(3)))
    ft_third = int(last.group(4)) - at_or_before(lines, total * 2 // 3, 4, int(init.group(4)))
    execs_per_sec = total // int(secs) if done and int(secs) > 0 else int(last.group(6))
    crash = "crash" if ("panicked" in text or "deadly signal" in text) else (
        "timeout" if "ALARM" in text else ("oom" if "out-of-memory" in text else "clean"))
    plateau = "yes" if cov_third == 0 else "no"
    print(f"| {t} | {when} | {secs} | {total:,} | {execs_per_sec:,} | {init.group(3)} → {last.group(3)} | +{cov_third} "
          f"| {init.group(4)} → {last.group(4)} | +{ft_third} | {last.group(5)} | {last.group(7)} MB | {plateau} | {crash} |")
