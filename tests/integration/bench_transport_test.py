#!/usr/bin/env python3
"""`xmesh bench transport` whose echo server dies mid-measurement: the benchmark ends within
seconds with one clear error line and exit status 1. (A measurement that fails while replies
still arrive, e.g. bad replies, used to abort: its callbacks outlived its stack. Only a fault
injected by hand makes a server answer badly, so this test covers the failing path, not that.)

usage: bench_transport_test.py XMESH TRANSPORT
"""
import os
import signal
import subprocess
import sys
import time


def children(pid):
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def main():
    xmesh, transport = sys.argv[1], sys.argv[2]
    env = dict(os.environ, UCX_NET_DEVICES="lo")
    bench = subprocess.Popen([xmesh, "bench", "transport", "--transport", transport, "--sizes", "65536",
                              "--iterations", "10000000", "--window", "8", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 20
        while not children(bench.pid) and time.time() < deadline and bench.poll() is None:
            time.sleep(0.05)
        servers = children(bench.pid)
        if not servers:
            sys.exit(f"FAIL: the benchmark started no echo server (exit {bench.poll()})")
        time.sleep(1.5)  # well into the measurements
        if bench.poll() is not None:
            sys.exit(f"FAIL: the benchmark ended before its server was stopped: {bench.stderr.read()}")
        os.kill(servers[0], signal.SIGKILL)
        _, stderr = bench.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        bench.kill()
        sys.exit("FAIL: the benchmark kept waiting 60 s after its server died")
    lines = stderr.strip().splitlines()
    if bench.returncode != 1 or len(lines) != 1 or not lines[0].startswith("xmesh bench: error: "):
        sys.exit(f"FAIL: want exit 1 and one 'xmesh bench: error: ...' line, got exit {bench.returncode}: "
                 f"{stderr.strip()[-600:]}")
    print(f"PASS ({transport}): {lines[0]}")


if __name__ == "__main__":
    main()
