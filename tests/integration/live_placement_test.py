#!/usr/bin/env python3
"""The live placement under load (1 head + 3 expert nodes, loopback): operator orders, requested
and automatic rebalances while 8 clients generate, bit-identical throughout; orders refused with
their reasons, and replicas streamed from peers (a corrupt peer refused).

usage: live_placement_test.py XMESH REPO live|orders [TRANSPORT]
"""
import json
import subprocess
import sys
import time

from cluster_harness import Clients, LIVE_PROMPTS, PROMPTS, expect_all_exact, expect_identical, free_ports, live_yaml, run_case


def case_live(h, transport):
    """1 head + 3 expert nodes; 8 clients generate continuously while the placement changes under
    them (operator orders, requested and automatic rebalances): every request is bit-identical to
    the single-process run, and at least 20 replicas are added."""
    model = h.model("mixtral", skew=1.0)
    prompts = LIVE_PROMPTS
    oracles = [h.run_generate(model, p, name=f"oracle{i}", tokens=8) for i, p in enumerate(prompts)]
    with h.cluster(live_yaml(model, transport), f"live-{transport}") as c:
        def ctl(*args, expect_ok=True):
            r = subprocess.run([h.xmesh, "cluster", *args, "--cluster", c.path], capture_output=True, text=True,
                               timeout=120)
            if expect_ok and r.returncode != 0:
                sys.exit(f"FAIL: xmesh cluster {' '.join(args)}: {r.stderr}")
            return r

        def placement():
            return json.loads(ctl("placement", "--json").stdout)

        clients = Clients(h, model, prompts, oracles, c.path)
        try:
            time.sleep(2.0)
            first = json.loads(ctl("rebalance", "--json").stdout)
            print(f"requested rebalance: {first}")
            p = placement()
            nodes = p["nodes"]
            experts = len(p["replicas"][0])
            tokens = p["tokens"][:experts]
            hot = max(range(experts), key=lambda e: tokens[e])
            # The automatic loop runs meanwhile, so an order is re-planned from the live table when
            # the loop moved its expert first (refused: already hosts, does not host, or the
            # loop retired the other replica).
            def move(kind, layer, e, pick):
                for _ in range(5):
                    have = placement()["replicas"][layer][e]
                    args = pick(have)
                    if args is None:
                        return
                    r = ctl(kind, "--layer", str(layer), "--expert", str(e), *args, expect_ok=False)
                    if r.returncode == 0:
                        return
                    raced = ("already hosts", "does not host", "without a replica")
                    if not any(reason in r.stderr for reason in raced):
                        sys.exit(f"FAIL: {kind} {layer}/{e} {args}: {r.stderr}")
                sys.exit(f"FAIL: {kind} {layer}/{e} kept racing with the automatic loop")

            def away(have):
                target = [n for n in nodes if n not in have]
                return ["--from", have[0], "--to", target[0]] if target else None

            # The hot expert moves twice, gains a replica and loses one while batches are in flight.
            move("migrate", 0, hot, away)
            move("migrate", 0, hot, away)
            move("replicate", 0, hot, lambda have: ["--to", next(n for n in nodes if n not in have)]
                 if len(have) < len(nodes) else None)
            move("retire", 0, hot, lambda have: ["--node", have[-1]] if len(have) > 1 else None)
            # Every other expert of both layers moves once: to the next node that lacks it.
            for layer in range(len(p["replicas"])):
                for e in range(experts):
                    if (layer, e) != (0, hot):
                        move("migrate", layer, e, away)
            # Refused orders name their reason and change nothing (re-tried when the automatic
            # loop moved the chosen expert, or gave it a second replica, in between).
            for _ in range(5):
                p = placement()
                single = next((l, e) for l in range(len(p["replicas"])) for e in range(experts)
                              if len(p["replicas"][l][e]) == 1)
                r = ctl("retire", "--layer", str(single[0]), "--expert", str(single[1]), "--node",
                        p["replicas"][single[0]][single[1]][0], expect_ok=False)
                if r.returncode != 0 and "does not host" not in r.stderr:
                    break
            if r.returncode == 0 or "without a replica" not in r.stderr or r.stderr.count("\n") != 1:
                sys.exit(f"FAIL: retiring the last replica should be refused: {r.stderr}")
            # The automatic loop (every 1.5 s) rebalances what the manual moves disturbed.
            deadline = time.time() + 60
            while placement()["automatic_rebalances"] < 1 and time.time() < deadline and not clients.failures:
                time.sleep(0.5)
        finally:
            done, failures = clients.stop()
        p = placement()
        expect_all_exact(done, failures,
                         f"; placement version {p['version']}, {p['replications']} replications, "
                         f"{p['retirements']} retirements, {p['bytes_moved']} bytes moved, {p['rebalances']} "
                         f"rebalances ({p['automatic_rebalances']} automatic), failed moves {p['failed_moves']}")
        if p["automatic_rebalances"] < 1:
            sys.exit("FAIL: the automatic loop carried out no rebalance")
        if p["replications"] < 20 or min(done) < 2:
            sys.exit("FAIL: expected at least 20 replications and every client to finish 2 requests")
        print(f"live placement over {transport}: every request bit-identical")


def case_orders(h, transport):
    """Replicas streamed from a peer for a node without its own copy, a peer whose copy is corrupt
    (checksum), a memory budget that cannot take one more replica: each order succeeds or is refused
    with one line naming the reason, and nothing is served from bad weights."""
    model = h.model("mixtral")
    config = json.load(open(f"{model}/config.json"))
    expert_bytes = 3 * config["hidden_size"] * config["intermediate_size"] * 4  # f32
    oracle = h.run_generate(model, PROMPTS[0], name="oracle")
    p = free_ports(8)
    text = "\n".join([
        f"model: {model}", f"transport: {transport}", "placement: static", "static_placement:",
        "  experts-a: [0, 1, 2]", "  experts-b: [3, 4, 5]", "  experts-c: [6, 7]", "nodes:",
        f"  - {{name: head, control_port: {p[0]}, data_port: {p[1]}, roles: [coordinator, head], threads: 1}}",
        f"  - {{name: experts-a, control_port: {p[2]}, data_port: {p[3]}, roles: [experts], "
        f"memory_budget: {6 * expert_bytes}B}}",
        f"  - {{name: experts-b, control_port: {p[4]}, data_port: {p[5]}, roles: [experts]}}",
        f"  - {{name: experts-c, control_port: {p[6]}, data_port: {p[7]}, roles: [experts], expert_source: peer}}",
    ]) + "\n"
    h.env["XMESH_FAULT_CORRUPT_WEIGHTS"] = "experts-b"  # b streams a corrupted copy to its peers
    try:
        with h.cluster(text, f"orders-{transport}") as c:
            def ctl(*args):
                return subprocess.run([h.xmesh, "cluster", *args, "--cluster", c.path], capture_output=True,
                                      text=True, timeout=120)

            def replicas(layer, expert):
                out = ctl("placement", "--json")
                return json.loads(out.stdout)["replicas"][layer][expert]

            r = ctl("replicate", "--layer", "1", "--expert", "2", "--to", "experts-c")
            log = open(f"{c.env['XMESH_RUN_DIR']}/experts-c.log").read()
            print(f"replicate from a peer: {r.stdout.strip()} {r.stderr.strip()}")
            if r.returncode != 0 or "from peer experts-a" not in log or replicas(1, 2) != ["experts-a", "experts-c"]:
                sys.exit(f"FAIL: experts-c should stream expert 2 of layer 1 from experts-a\n{log}")
            r = ctl("replicate", "--layer", "0", "--expert", "4", "--to", "experts-c")
            print(f"replicate from a corrupt peer: status {r.returncode}: {r.stderr.strip()}")
            if (r.returncode == 0 or "checksum" not in r.stderr or "experts-b" not in r.stderr
                    or r.stderr.count("\n") != 1 or replicas(0, 4) != ["experts-b"]):
                sys.exit("FAIL: a corrupt peer copy must be refused with one line naming the checksum")
            r = ctl("replicate", "--layer", "0", "--expert", "7", "--to", "experts-a")
            print(f"replicate beyond a budget: status {r.returncode}: {r.stderr.strip()}")
            if r.returncode == 0 or "memory budget holds 6 experts" not in r.stderr or replicas(0, 7) != ["experts-c"]:
                sys.exit("FAIL: a replica beyond experts-a's budget must be refused naming the budget")
            r = ctl("migrate", "--layer", "0", "--expert", "6", "--from", "experts-c", "--to", "experts-a")
            if r.returncode == 0 or "memory budget" not in r.stderr:
                sys.exit(f"FAIL: a migration into a full node must be refused: {r.stderr}")
            expect_identical(f"after the orders ({transport})",
                             h.run_generate(model, PROMPTS[0], cluster=c.path, name="after"), oracle)
    finally:
        del h.env["XMESH_FAULT_CORRUPT_WEIGHTS"]


if __name__ == "__main__":
    run_case({"live": case_live, "orders": case_orders})
