#!/usr/bin/env python3
"""xmesh trial over network namespaces (root): a small matrix (experts in the datacenter, on a
wifi and an lte device, or both on lte) runs to completion; its outputs exist and parse; every
request's tokens equal the single-process run; the lte cell's time per output token exceeds the
datacenter cell's by at least the round trips the lte profile adds (one per MoE layer per token:
every dispatch crosses lte there; in the mixed cell a token's experts may all sit on wifi); measured
link RTTs are within 20 % of the profiles. A bad spec is refused naming the field, and a trial
interrupted mid-cell (SIGINT) leaves no namespace or process behind.
usage: trial_test.py XMESH REPO
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_harness import fail, netns_prefix, root_test_model  # noqa: E402


def spec(path, model, requests, new_tokens):
    with open(path, "w") as f:
        f.write(f"""name: test
model: {model}
transport: zmq
experts: 2
links:
  datacenter: datacenter
  mixed: [wifi, lte]
  lte: lte
workloads:
  - {{name: w, prompt_tokens: 6, new_tokens: {new_tokens}, concurrency: 2, requests: {requests}}}
seed: 3
""")


TMP = None


def namespaces():
    """Namespaces of this test's cells (netns.sh names them after a hash of each cell file's path)."""
    prefixes = set()
    for root, _, files in os.walk(TMP):
        for f in files:
            if f.endswith(".yaml"):
                prefixes.add(netns_prefix(os.path.join(root, f)))
    return {l.split()[0] for l in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                 text=True).stdout.splitlines()
            if any(l.startswith(x) for x in prefixes)}


def main():
    xmesh = sys.argv[1]  # (argv[2], the repository, is not needed: xmesh trial finds its runner)
    global TMP
    setup = root_test_model(xmesh, "trial", 3)
    if setup is None:
        return
    tmp, model = setup
    TMP = tmp
    layers = json.load(open(f"{model}/config.json"))["num_hidden_layers"]
    before = namespaces()

    bad = f"{tmp}/bad.yaml"
    with open(bad, "w") as f:
        f.write(f"name: x\nmodel: {model}\nlinks: {{a: datacenter}}\nworkloads: [{{prompt_tokens: 4, new_tokens: 0, "
                "concurrency: 1, requests: 1}]\n")
    r = subprocess.run([xmesh, "trial", "--spec", bad, "--out", f"{tmp}/bad"], capture_output=True, text=True)
    print(f"bad spec: exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode != 2 or "workloads[0].new_tokens: expected a positive integer" not in r.stderr:
        fail("a bad spec must be refused naming the field")

    path = f"{tmp}/trial.yaml"
    spec(path, model, 2, 8)
    out = f"{tmp}/out"
    start = time.time()
    r = subprocess.run([xmesh, "trial", "--spec", path, "--out", out], capture_output=True, text=True, timeout=300)
    took = time.time() - start
    print(f"trial: exit {r.returncode} in {took:.0f} s: {r.stdout.strip().splitlines()[-1] if r.stdout else ''}")
    if r.returncode != 0:
        fail(f"trial: {r.stderr}")
    for name in ("results.csv", "results.json", "summary.csv", "links.csv", "report.md", "latency_cdf.png",
                 "tokens_per_s.png", "expert_load.png"):
        if not os.path.getsize(f"{out}/{name}"):
            fail(f"{name} is empty")
    rows = json.load(open(f"{out}/results.json"))
    if len(rows) != 6 or not all(r["identical"] for r in rows):
        fail("every request's tokens must equal the single-process run")
    tpot = {s["links"]: float(s["tpot_p50_s"]) for s in csv.DictReader(open(f"{out}/summary.csv"))}
    added = layers * 0.050  # one lte round trip (50 ms by its profile) per MoE layer per token
    print(f"TPOT p50: datacenter {1000 * tpot['datacenter']:.1f} ms, wifi + lte {1000 * tpot['mixed']:.1f} ms, "
          f"lte {1000 * tpot['lte']:.1f} ms (at least {1000 * added:.0f} ms over the datacenter expected)")
    if tpot["lte"] - tpot["datacenter"] < 0.9 * added or not tpot["datacenter"] < tpot["mixed"] < tpot["lte"]:
        fail("the lte link's round trips must show in the time per output token")
    measured = [r for r in csv.DictReader(open(f"{out}/links.csv")) if r.get("measured_rtt_ms")]
    for r in measured:
        want, got = float(r["profile_rtt_ms"]), float(r["measured_rtt_ms"])
        if want > 1 and abs(got - want) > 0.2 * want:
            fail(f"{r['cell']} {r['peer']} ({r['profile']}): RTT {got} ms, profile {want} ms")
    print(f"{len(measured)} link RTTs within 20 % of their profiles")
    if namespaces() - before:
        fail(f"the trial left namespaces {namespaces() - before}")

    # Interrupted mid-cell: everything of the cell goes.
    spec(path, model, 40, 200)
    proc = subprocess.Popen([xmesh, "trial", "--spec", path, "--out", f"{tmp}/interrupted"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (namespaces() - before):
        time.sleep(0.2)
    time.sleep(3)  # requests in flight
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"{tmp}/interrupted"], capture_output=True, text=True).stdout.split()
    print(f"interrupted: exit {proc.returncode}: {err.strip().splitlines()[-1] if err else ''}")
    if proc.returncode != 130 or namespaces() - before or left:
        fail(f"an interrupted trial must leave nothing: namespaces {namespaces() - before}, processes {left}")
    print("PASS")


if __name__ == "__main__":
    main()
