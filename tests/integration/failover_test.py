#!/usr/bin/env python3
"""Failures and membership under load (1 head + 3 expert nodes, 8 clients, loopback): kill -9 and
SIGSTOP of expert nodes, a kill during migrations, a restarted head and coordinator, two heads,
drain and join; every request bit-identical to the single-process run.

usage: failover_test.py XMESH REPO CASE [TRANSPORT]
  CASE: failure | failure-replicated | failure-migrating | stall | restart | two-heads | drain-join
"""
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

from cluster_harness import (Clients, LIVE_PROMPTS, PROMPTS, expect_all_exact, expect_error, expect_identical,
                             free_ports, gone, hosts_of, kill_and_wait, live_yaml, pid_of, placement_of, status_of,
                             wait_for, run_case)


# Every expert on two of the three expert nodes: killing one leaves each expert a replica.
REPLICATED = "placement: static\nstatic_placement:\n  experts-a: [0, 1, 2, 3, 4, 5]\n" \
             "  experts-b: [0, 1, 4, 5, 6, 7]\n  experts-c: [2, 3, 6, 7]"


def case_failure(h, transport, during_migrations=False, replicated=False):
    """An expert node is killed (-9) while 8 clients generate: every request completes bit-identical
    to the oracle (rows in flight go to another replica or are computed by the head from its own
    files); the coordinator declares the node dead within the heartbeat timeout and re-places the
    experts it held alone (with `replicated`, every expert keeps a replica and nothing is copied);
    it is reported dead; restarted, it loads what it held, registers, and serves again after the
    rejoin wait."""
    model = h.model("olmoe")
    oracles = [h.run_generate(model, p, name=f"oracle{i}", tokens=8) for i, p in enumerate(LIVE_PROMPTS)]
    text = live_yaml(model, transport).replace(
        "rebalance: {period: 1500ms, window: 3s, min_gain: 0, hysteresis: 0}", "heartbeat: {period: 250ms, timeout: 1s, rejoin: 1s}")
    if replicated:
        text = text.replace("placement: spread", REPLICATED)
    with h.cluster(text, f"failure-{transport}") as c:
        clients = Clients(h, model, LIVE_PROMPTS, oracles, c.path)
        mover_stop = threading.Event()

        def mover():  # experts-b gains and loses replicas while it dies
            i = 0
            while not mover_stop.is_set():
                layer, expert = i % 2, (i // 2) % 8
                p = placement_of(h, c)["replicas"][layer][expert]
                kind = ["retire", "--node", "experts-b"] if "experts-b" in p and len(p) > 1 else \
                    ["replicate", "--to", "experts-b"]
                subprocess.run([h.xmesh, "cluster", kind[0], "--cluster", c.path, "--layer", str(layer), "--expert",
                                str(expert), *kind[1:]], capture_output=True, timeout=200)
                i += 1

        movers = [threading.Thread(target=mover)] if during_migrations else []
        for m in movers:
            m.start()
        try:
            time.sleep(1.5)
            killed_at = time.time()
            kill_and_wait(int(open(f"{c.env['XMESH_RUN_DIR']}/experts-b.pid").read()))
            deadline = time.time() + 30
            while time.time() < deadline and not clients.failures:
                p = placement_of(h, c)
                held = [r for layer in p["replicas"] for r in layer]
                if all(r and "experts-b" not in r for r in held):
                    break
                time.sleep(0.2)
            recovered = time.time() - killed_at
            mover_stop.set()
            time.sleep(1.5)  # requests keep flowing on the new placement
        finally:
            mover_stop.set()
            for m in movers:
                m.join(timeout=240)
            done, failures = clients.stop()
        expect_all_exact(done, failures, f"; experts re-placed {recovered:.1f} s after the kill")
        if any(not r or "experts-b" in r for layer in placement_of(h, c)["replicas"] for r in layer):
            sys.exit("FAIL: experts-b's experts should be re-placed on the live nodes")
        if replicated and placement_of(h, c)["replications"] != 0:
            sys.exit("FAIL: every expert kept a replica: nothing should have been copied")
        r = subprocess.run([h.xmesh, "cluster", "status", "--cluster", c.path, "--json"], capture_output=True,
                           text=True, timeout=30)
        status = json.loads(r.stdout)
        print(f"status after the kill: exit {r.returncode}, dead {status['dead']}, deaths {status['deaths']}")
        if r.returncode != 3 or status["dead"] != ["experts-b"] or status["deaths"] != 1:
            sys.exit("FAIL: the coordinator should report experts-b dead")
        c.__enter__()  # local.sh up starts only the node that is down, and waits for it
        wait_for(lambda: status_of(h, c)["rejoins"] == 1 and "experts-b" in hosts_of(placement_of(h, c)), 20,
                 "the restarted experts-b serves again")
        expect_identical(f"after experts-b came back ({transport})",
                         h.run_generate(model, PROMPTS[2], cluster=c.path, name="after"),
                         h.run_generate(model, PROMPTS[2], name="oracle-after"))


def case_stall(h, transport):
    """SIGSTOP of an expert node under 8 clients: it never fails a frame, but the coordinator
    declares it dead after the heartbeat timeout and the heads re-send what it was sent; every
    request completes bit-identical. After SIGCONT its late replies are ignored, it learns it was
    declared dead, registers again with what it holds, and serves after the rejoin wait."""
    model = h.model("olmoe")
    oracles = [h.run_generate(model, p, name=f"oracle{i}", tokens=8) for i, p in enumerate(LIVE_PROMPTS)]
    text = live_yaml(model, transport).replace(
        "rebalance: {period: 1500ms, window: 3s, min_gain: 0, hysteresis: 0}",
        "heartbeat: {period: 250ms, timeout: 1s, rejoin: 1s}")
    with h.cluster(text, f"stall-{transport}") as c:
        clients = Clients(h, model, LIVE_PROMPTS, oracles, c.path)
        try:
            time.sleep(1.0)
            pid = pid_of(c, "experts-b")
            os.kill(pid, 19)  # SIGSTOP
            stopped_at = time.time()
            try:
                wait_for(lambda: status_of(h, c)["dead"] == ["experts-b"], 10, "the stopped node is declared dead")
                print(f"cluster status shows experts-b dead {time.time() - stopped_at:.1f} s after SIGSTOP")
                time.sleep(2.0)  # requests keep flowing without it
            finally:
                os.kill(pid, 18)  # SIGCONT
            wait_for(lambda: status_of(h, c)["rejoins"] == 1 and "experts-b" in hosts_of(placement_of(h, c)), 20,
                     "the resumed node serves again")
            print(f"experts-b serves again {time.time() - stopped_at:.1f} s after SIGSTOP")
            time.sleep(1.5)  # and requests flow through it again
        finally:
            done, failures = clients.stop()
        expect_all_exact(done, failures)
        st = status_of(h, c)
        if st["registered"] != ["head", "experts-a", "experts-b", "experts-c"] or st["dead"]:
            sys.exit(f"FAIL: every node should be a live member again: {st}")


def case_restart(h, transport):
    """kill -9 of the head (which is the coordinator) after the placement moved away from the
    cluster file's: the expert nodes keep running, re-register on their own with what they hold
    when the head comes back, and the coordinator rebuilds the live placement from their reports
    (the moved replica is where it was moved to, nothing orphaned or copied); clients fail at once
    while the head is down, and outputs are bit-identical afterwards."""
    model = h.model("mixtral")
    oracle = h.run_generate(model, PROMPTS[0], name="oracle")
    text = live_yaml(model, transport).replace("rebalance: {period: 1500ms, window: 3s, min_gain: 0, hysteresis: 0}",
                                               "heartbeat: {period: 250ms, timeout: 1s}")
    with h.cluster(text, f"restart-{transport}") as c:
        before = placement_of(h, c)
        owner = before["replicas"][1][3][0]
        target = next(n for n in ["experts-a", "experts-b", "experts-c"] if n != owner)
        r = subprocess.run([h.xmesh, "cluster", "migrate", "--cluster", c.path, "--layer", "1", "--expert", "3",
                            "--from", owner, "--to", target], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            sys.exit(f"FAIL: migrate: {r.stderr}")
        moved = placement_of(h, c)
        experts = {n: pid_of(c, n) for n in ["experts-a", "experts-b", "experts-c"]}
        kill_and_wait(pid_of(c, "head"))
        time.sleep(0.5)
        cmd, _ = h.generate(model, PROMPTS[0], cluster=c.path)
        expect_error("head down", cmd, dict(h.env, XMESH_CONNECT_TIMEOUT_MS="1000"), "cannot reach head 'head'", 10)
        c.__enter__()  # starts the head only
        wait_for(lambda: status_of(h, c)["registered"] == ["head", "experts-a", "experts-b", "experts-c"], 20,
                 "the expert nodes register with the restarted coordinator")
        for n, pid in experts.items():
            if pid_of(c, n) != pid:
                sys.exit(f"FAIL: {n} was restarted; it should have re-registered on its own")
        rebuilt = placement_of(h, c)
        print(f"placement before the kill: version {moved['version']}, after the restart: version "
              f"{rebuilt['version']}, layer 1 expert 3 on {rebuilt['replicas'][1][3]}")
        if rebuilt["replicas"] != moved["replicas"] or rebuilt["version"] <= moved["version"]:
            sys.exit("FAIL: the rebuilt placement should be the one the nodes hold, with a newer version")
        if rebuilt["replications"] != 0:
            sys.exit("FAIL: nothing should have been copied")
        expect_identical(f"after the head restarted ({transport})",
                         h.run_generate(model, PROMPTS[0], cluster=c.path, name="after"), oracle)


def two_heads_yaml(model, transport):
    p = free_ports(8)
    return "\n".join([
        f"model: {model}", f"transport: {transport}", "placement: spread", "nodes:",
        f"  - {{name: head-a, control_port: {p[0]}, data_port: {p[1]}, roles: [head], threads: 1}}",
        f"  - {{name: head-b, control_port: {p[2]}, data_port: {p[3]}, roles: [coordinator, head], threads: 1}}",
        f"  - {{name: experts-a, control_port: {p[4]}, data_port: {p[5]}, roles: [experts], memory_budget: 1GiB}}",
        f"  - {{name: experts-b, control_port: {p[6]}, data_port: {p[7]}, roles: [experts], memory_budget: 1GiB}}",
    ]) + "\n"


def case_two_heads(h, transport):
    """Two heads; 8 clients mid-request on head-a when it is killed (-9): each client replays its
    request on head-b and gets the reply head-a would have given, bit-identical to the oracle."""
    model = h.model("qwen3_moe")
    tokens = 500  # the context holds 512: each request takes a second or more on the cluster
    oracles = [h.run_generate(model, p, name=f"oracle{i}", tokens=tokens) for i, p in enumerate(LIVE_PROMPTS)]
    with h.cluster(two_heads_yaml(model, transport), f"two-heads-{transport}") as c:
        runs = []
        for i, p in enumerate(LIVE_PROMPTS):
            cmd, out = h.generate(model, p, cluster=c.path, name=f"two-heads-{i}", tokens=tokens)
            runs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out))
        # Kill as soon as head-a routes frames: the clients are mid-request.
        wait_for(lambda: status_of(h, c)["nodes"].get("head-a", {}).get("frames_sent", 0) > 0, 20,
                 "head-a serves the clients")
        kill_and_wait(pid_of(c, "head-a"))
        killed_at = time.time()
        replayed = 0
        for i, (proc, out) in enumerate(runs):
            stdout, stderr = proc.communicate(timeout=120)
            if proc.returncode != 0:
                sys.exit(f"FAIL: client {i}: {stderr}")
            replayed += "replaying on head 'head-b'" in stderr
            got = (json.loads(stdout)["tokens"], np.load(out))
            if got[0] != oracles[i][0] or got[1].tobytes() != oracles[i][1].tobytes():
                sys.exit(f"FAIL: client {i}: the replayed reply differs from the oracle")
        print(f"head-a killed: {replayed} of {len(runs)} clients replayed on head-b, all bit-identical, "
              f"last done {time.time() - killed_at:.1f} s after the kill")
        if replayed != len(runs):
            sys.exit("FAIL: every client was on head-a: each must have replayed on head-b")


def case_drain_join(h, transport):
    """Under 8 clients: a node the cluster file does not list joins (`xmesh node --join`), then an
    operator drains experts-b (its experts move away make-before-break, then it stops): zero failed
    requests, every output bit-identical. A drain that cannot be done and a join with another model
    are refused, naming the reason and both models."""
    model = h.model("olmoe")
    other = h.model("mixtral")
    oracles = [h.run_generate(model, p, name=f"oracle{i}", tokens=8) for i, p in enumerate(LIVE_PROMPTS)]
    text = live_yaml(model, transport).replace("rebalance: {period: 1500ms, window: 3s, min_gain: 0, hysteresis: 0}",
                                               "heartbeat: {period: 250ms, timeout: 1s}")
    with h.cluster(text, f"drain-{transport}") as c:
        coord = next(l for l in text.splitlines() if "name: head" in l).split("control_port: ")[1].split(",")[0]
        port = free_ports(1)[0]
        # A node the file does not list gets its key pair from the cluster's CA first.
        subprocess.run([h.xmesh, "cluster", "keygen", "--cluster", c.path, "--node", "experts-d"], check=True,
                       capture_output=True)
        keys = subprocess.run([h.xmesh, "cluster", "keygen", "--cluster", c.path, "--where"], check=True,
                              capture_output=True, text=True).stdout.strip()
        join = [h.xmesh, "node", "--join", f"127.0.0.1:{coord}", "--name", "experts-d", "--data-port", str(port),
                "--transport", transport, "--memory-budget", "1GiB", "--security", keys]
        r = subprocess.run(join + ["--model", other], capture_output=True, text=True, timeout=60, env=h.env)
        print(f"join with another model: exit {r.returncode}: {r.stderr.strip()}")
        if r.returncode == 0 or "serves model mixtral-skew0 (config" not in r.stderr or \
                "but the cluster serves olmoe-skew0 (config" not in r.stderr:
            sys.exit("FAIL: a join with another model must be refused naming both")
        clients = Clients(h, model, LIVE_PROMPTS, oracles, c.path)
        joined = subprocess.Popen(join + ["--model", model], stdout=subprocess.DEVNULL,
                                  stderr=open(f"{h.tmp}/experts-d.log", "w"), env=h.env)
        try:  # the joined node is this test's process: it ends whatever the outcome
            try:
                wait_for(lambda: "experts-d" in status_of(h, c)["registered"], 20, "experts-d joins")
                time.sleep(1.0)
                start = time.time()
                r = subprocess.run([h.xmesh, "cluster", "drain", "--cluster", c.path, "--node", "experts-b"],
                                   capture_output=True, text=True, timeout=120)
                print(f"drain: exit {r.returncode} after {time.time() - start:.1f} s: {r.stdout.strip()}{r.stderr.strip()}")
                if r.returncode != 0:
                    sys.exit("FAIL: the drain should succeed")
                wait_for(lambda: gone(pid_of(c, "experts-b")), 10, "the drained node stops")
                time.sleep(1.0)  # requests keep flowing without it
            finally:
                done, failures = clients.stop()
            expect_all_exact(done, failures)
            p = placement_of(h, c)
            st = status_of(h, c)
            if "experts-b" in hosts_of(p) or st["drained"] != ["experts-b"] or "experts-d" not in st["registered"]:
                sys.exit(f"FAIL: experts-b should be drained and experts-d a member: {st}")
            if "experts-d" not in hosts_of(p):
                sys.exit("FAIL: the joined node should have taken replicas (the roomiest node)")
            if any(not r for layer in p["replicas"] for r in layer):
                sys.exit("FAIL: every expert should keep a replica")
            r = subprocess.run([h.xmesh, "cluster", "drain", "--cluster", c.path, "--node", "head"],
                               capture_output=True, text=True, timeout=30)
            print(f"drain of the head: exit {r.returncode}: {r.stderr.strip()}")
            if r.returncode == 0 or "cannot drain 'head': it is not an expert node of this cluster" not in r.stderr:
                sys.exit("FAIL: draining a node without experts must be refused")
            cmd, _ = h.generate(other, [1, 2], cluster=c.path)
            expect_error("client with another model", cmd, h.env,
                         "the cluster serves model olmoe-skew0 (config", 20)
        finally:
            joined.terminate()
            joined.wait(timeout=20)


if __name__ == "__main__":
    run_case({"failure": case_failure,
              "failure-replicated": lambda h, t: case_failure(h, t, replicated=True),
              "failure-migrating": lambda h, t: case_failure(h, t, during_migrations=True),
              "stall": case_stall, "restart": case_restart, "two-heads": case_two_heads,
              "drain-join": case_drain_join})
