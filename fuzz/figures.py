#!/usr/bin/env python3
"""Summarizes fuzz/logs/<target>.log (written by run-all.sh) as the table in
fuzz/README.md: executions, coverage at start and end, exec/s, and where the
last new coverage was found (how close the run came to a plateau)."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/\S+.*?exec/s: (\d+) rss: (\d+)Mb")
print("| target | executions | cov (start → end) | cov gained in the last ¼ of executions | ft | corpus | exec/s | last new cov at | peak RSS | result |")
print("|---|---|---|---|---|---|---|---|---|---|")
for t in sys.argv[1:] or ["decode", "reassembly", "tls", "quic_initial", "capture", "pipeline", "mdm_files",
                         "plist", "config", "dns", "dhcp", "mdm_api", "mdm_webhook", "state", "webhook"]:
    p = os.path.join(HERE, "logs", t + ".log")
    if not os.path.exists(p):
        continue
    text = open(p, errors="replace").read()
    lines = [STATUS.match(l) for l in text.splitlines()]
    lines = [m for m in lines if m]
    if not lines:
        print(f"| {t} | - | - | - | - | - | - | - | - | no status line |")
        continue
    init = next((m for m in lines if m.group(2) == "INITED"), lines[0])
    last = lines[-1]
    # Execution at which edge coverage (cov) last grew.
    last_new, best = init.group(1), int(init.group(3))
    for m in lines:
        if int(m.group(3)) > best:
            best, last_new = int(m.group(3)), m.group(1)
    # Plateau measure: edges found in the last quarter of the executions.
    total = int(last.group(1))
    at_3q = max((int(m.group(3)) for m in lines if int(m.group(1)) <= total * 3 // 4), default=int(init.group(3)))
    late = int(last.group(3)) - at_3q
    crash = "crash" if ("panicked" in text or "deadly signal" in text) else (
        "timeout" if "ALARM" in text else ("oom" if "out-of-memory" in text else "clean"))
    print(f"| {t} | {int(last.group(1)):,} | {init.group(3)} → {last.group(3)} | +{late} | {last.group(4)} | "
          f"{last.group(5)} | {last.group(6)} | #{int(last_new):,} | {last.group(7)} MB | {crash} |")
