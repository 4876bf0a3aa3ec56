#!/usr/bin/env python3
"""Where a decode layer's time goes between threads: one greedy request through the 3-process
loopback cluster (1 head + coordinator, 2 expert nodes, bench shapes, `security: none`) under
`perf sched record`, cut per layer at the scheduler's events (threads are named: xmesh.session,
xmesh.compute, ...). From the moment the head's session goes to sleep on its batch:
  frames_delivered  until each expert node has woken a compute thread for its frame (the frames
                    sent just before the session slept count from then: 0)
  expert_nodes      until the last expert node's reply wakes a thread of the head
  reply_delivered   until a head thread wakes the session
  session_runs      until the session is on a core
A layer's sum is the session's time asleep. Needs root (perf records every CPU).
usage: bench/cluster/timeline.py [zmq|ucx] [MODEL_DIR]   (prints JSON)"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

import bench_util
from bench_util import ab_args, local, three_nodes

transport, model, _, tokens = ab_args(1)
SWITCH = re.compile(r"\s*([\d.]+) \[\d+\]\s+(\S+)\[(\d+)/(\d+)\]\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+(\S)\s*$")
WAKE = re.compile(r"\s*([\d.]+) \[\d+\]\s+(\S+)\[(\d+)/(\d+)\]\s+awakened: (\S+)\[(\d+)/(\d+)\]")


def events(text):
    """('wake', t, pid, woken name, woken tid, woken pid) and ('out', t, name, tid, pid, ran s, state)."""
    for line in text.splitlines():
        if m := WAKE.match(line):
            yield ("wake", float(m[1]), int(m[4]), m[5], int(m[6]), int(m[7]))
        elif m := SWITCH.match(line):
            yield ("out", float(m[1]), m[2], int(m[3]), int(m[4]), float(m[5]) / 1e3, m[6])


def layers(evs, head, experts):
    """Per layer the four segments (seconds), from the session's sleeps on its batches."""
    out, woken_at = [], None
    for i, e in enumerate(evs):
        if e[0] == "wake" and e[3] == "xmesh.session":
            woken_at = e[1]
        if not (e[0] == "out" and e[2] == "xmesh.session" and e[4] == head and e[6] == "S"):
            continue
        asleep, session = e[1], e[3]
        delivered, replied, woken = {}, None, None
        # Hand-offs to compute threads since the session last woke (it may send, then compute).
        for f in (evs[j] for j in range(i - 1, -1, -1)):
            if f[1] <= (woken_at or 0) or asleep - f[1] > 0.002:
                break
            if f[0] == "wake" and f[3] == "xmesh.compute" and f[2] in experts:
                delivered.setdefault(f[2], f[1])
        for f in evs[i + 1:]:
            if f[1] - asleep > 0.05:
                break
            if f[0] == "wake" and f[3] == "xmesh.compute" and f[2] in experts and f[2] not in delivered:
                delivered[f[2]] = f[1]
            elif f[0] == "wake" and f[2] in experts and f[5] == head:
                replied = f[1]
            elif f[0] == "wake" and f[4] == session:
                woken = f[1]
            elif f[0] == "out" and f[3] == session and woken:
                runs = f[1] - f[5]  # its switch-in
                if len(delivered) == len(experts) and replied:
                    reach = max(asleep, max(delivered.values()))
                    out.append({"frames_delivered": reach - asleep, "expert_nodes": replied - reach,
                                "reply_delivered": woken - replied, "session_runs": max(0.0, runs - woken)})
                break
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="xmesh-timeline-bench-")
    path = three_nodes(tmp, "c", model, transport, header="security: none")
    trace = f"{tmp}/sched.data"
    try:
        local("up", "c", path, tmp)
        pid = lambda node: int(open(f"{tmp}/run-c/{node}.pid").read())
        head, experts = pid("head"), {pid("experts-a"), pid("experts-b")}
        bench_util.generate(model, path, tokens)  # warm-up: connections, page cache
        rec = subprocess.run(["perf", "sched", "record", "-a", "-o", trace, "--"] +
                             bench_util.generate_command(model, path, tokens), env=bench_util.env(),
                             capture_output=True, text=True, timeout=600)
        if rec.returncode != 0:
            sys.exit(f"perf sched record failed (root and linux-perf needed): {rec.stderr.strip()[-300:]}")
        decode = json.loads(rec.stdout)["decode_tokens_per_s"]
    finally:
        local("down", "c", path, tmp)
    hist = subprocess.run(["perf", "sched", "timehist", "-i", trace, "--state", "-w"], capture_output=True,
                          text=True, timeout=600).stdout
    per_layer = layers(list(events(hist)), head, experts)[2 * 12:]  # past the prefill's layers
    us = lambda xs: {"median": round(1e6 * statistics.median(xs)), "mean": round(1e6 * statistics.mean(xs)),
                     "p90": round(1e6 * sorted(xs)[9 * len(xs) // 10])}
    print(json.dumps({
        "benchmark": "cluster_layer_timeline", "transport": transport, "processes": 3,
        "model": os.path.basename(model), "new_tokens": tokens, "decode_tokens_per_s_traced": decode,
        "layers": len(per_layer), "statistic": "microseconds per layer: median, mean, p90",
        **{k: us([layer[k] for layer in per_layer]) for k in per_layer[0]},
        "session_asleep": us([sum(layer.values()) for layer in per_layer])}, indent=1))


if __name__ == "__main__":
    main()
