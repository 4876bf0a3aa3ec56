#!/usr/bin/env python3
"""Multi-process cluster tests on loopback: real `xmesh node` processes launched by
deploy/local.sh, real sockets; bit-identical to the single-process run per transport, family and
placement, under concurrent requests, and clear errors when nodes are unreachable.

usage: cluster_test.py XMESH REPO equivalence|concurrent|unreachable|quantized-experts|shard|routing-policy|launcher
       [TRANSPORT]
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

from cluster_harness import (FAMILIES, PROMPTS, cluster_yaml, compute_cpus_of, expect_error, expect_identical,
                             free_ports, pid_of, placement_of, run_case, status_of, threads_of)


def placements(transport):
    if transport == "local":  # in-process transport: one node with every role
        return []
    half = "[0, 1, 2, 3]"
    return [("spread", None), ("static", {"experts-a": "[0, 1, 2, 3, 4, 5, 6, 7]", "experts-b": half})]


def run_concurrently(h, model, cluster, oracles, label):
    """Every prompt at once through `cluster`; each output must equal its oracle (`label` names
    request i with {})."""
    runs = [h.generate(model, p, cluster=cluster, name=f"{os.path.basename(cluster)}-{i}") for i, p in enumerate(PROMPTS)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd, _ in runs]
    for i, (proc, (_, out)) in enumerate(zip(procs, runs)):
        stdout, stderr = proc.communicate(timeout=120)
        if proc.returncode != 0:
            sys.exit(f"FAIL {label.format(i)}: {stderr}")
        expect_identical(label.format(i), (json.loads(stdout)["tokens"], np.load(out)), oracles[i])


def case_equivalence(h, transport):
    for family in FAMILIES:
        model = h.model(family)
        oracle = h.run_generate(model, PROMPTS[0], name=f"{family}-oracle")
        if transport == "local":
            p = free_ports(2)
            text = (f"model: {model}\ntransport: local\nnodes:\n  - {{name: all, control_port: {p[0]}, "
                    f"data_port: {p[1]}, roles: [coordinator, head, experts], threads: 2}}\n")
            configs = [("one-node", text)]
        else:
            configs = [(pl, cluster_yaml(model, transport, pl, experts)) for pl, experts in placements(transport)]
        for label, text in configs:
            with h.cluster(text, f"{family}-{transport}-{label}") as c:
                got = h.run_generate(model, PROMPTS[0], cluster=c.path, name=f"{family}-{label}")
                expect_identical(f"{family} {transport} {label}", got, oracle)
                if transport != "local":
                    expect_compute_below_io(c, transport)
                    expect_frames_shared(h, c)


def expect_frames_shared(h, c):
    """Expert nodes holding their replicas in memory compute a decode step's experts with all
    their compute threads together (kernels::shared_expert_jobs): its frames count as shared."""
    nodes = status_of(h, c)["nodes"]
    for node in ("experts-a", "experts-b"):
        served, shared = nodes[node]["frames_served"], nodes[node]["frames_shared"]
        if not 0 < shared <= served:
            sys.exit(f"FAIL {node}: {shared} of its {served} frames shared by its compute threads")


def expect_compute_below_io(c, transport):
    """On each expert node, the threads that computed experts run `compute_nice` (default 10) below
    its transport's receive thread, which keeps the node's own priority, so frames never queue
    behind expert computations, each bound to a CPU of its own (`pin_compute`); every node's
    transport I/O threads (libzmq's own included) and compute threads are SCHED_BATCH, so waking
    one does not preempt the thread running where it wakes."""
    io_names = {f"xmesh.{transport}"} | ({"ZMQbg/IO/0"} if transport == "zmq" else set())
    for node in ("head", "experts-a", "experts-b"):
        pid = pid_of(c, node)
        threads = threads_of(pid)
        io = {(name, nice, policy) for name, nice, policy in threads if name in io_names}
        want = os.SCHED_BATCH
        if {name for name, _, _ in io} != io_names or {policy for _, _, policy in io} != {want}:
            sys.exit(f"FAIL {node}: {transport} I/O threads (name, nice, policy) {sorted(io)}, want "
                     f"{sorted(io_names)} all at policy {want}: {sorted(threads)}")
        if node == "head":
            continue
        own = os.getpriority(os.PRIO_PROCESS, pid)  # the node's main thread: what it started at
        compute = {(nice, policy) for name, nice, policy in threads if name == "xmesh.compute"}
        io_nice = {nice for name, nice, _ in io if name == f"xmesh.{transport}"}
        if compute != {(min(19, own + 10), want)} or io_nice != {own}:
            sys.exit(f"FAIL {node}: compute threads at (nice, policy) {compute or 'none'}, {transport} receive "
                     f"thread at nice {io_nice or 'none'} (want {(min(19, own + 10), want)} and {own}): "
                     f"{sorted(threads)}")
        # pin_compute (default): each compute thread bound to one CPU, in turn over the node's CPUs.
        cpus, allowed = compute_cpus_of(pid), len(os.sched_getaffinity(pid))
        if allowed > 1 and (any(len(s) != 1 for s in cpus) or
                            len({s[0] for s in cpus if s}) != min(len(cpus), allowed)):
            sys.exit(f"FAIL {node}: its compute threads may run on CPUs {cpus}, want one each, in turn")


def case_concurrent(h, transport):
    """Concurrent requests while heads pick among replicas by expected completion time (experts
    0-3 on both expert nodes, `replica_choice: latency`): every output bit-identical."""
    model = h.model("qwen2_moe")
    oracles = [h.run_generate(model, p, name=f"oracle{i}") for i, p in enumerate(PROMPTS)]
    experts = json.load(open(f"{model}/config.json"))["num_experts"]
    text = "replica_choice: latency\n" + cluster_yaml(model, transport, "static", {
        "experts-a": str(list(range(experts))), "experts-b": str(list(range(4)))})
    with h.cluster(text, f"concurrent-{transport}") as c:
        run_concurrently(h, model, c.path, oracles, f"concurrent request {{}} over {transport}")


def case_quantized_experts(h, transport):
    """Expert nodes read their own q8 or q4 copy (xmesh quantize --experts-only) while the head reads
    the plain model, frames unchanged: the cluster computes exactly what one process of the
    quantized model computes, and not what the plain model computes."""
    model = h.model("qwen3_moe")
    plain = h.run_generate(model, PROMPTS[0], name="plain-oracle")
    for dtype in ("q8", "q4"):
        copy = f"{h.tmp}/qwen3-{dtype}"
        subprocess.run([h.xmesh, "quantize", "--model", model, "--out", copy, "--dtype", dtype, "--experts-only"],
                       check=True, stdout=subprocess.DEVNULL)
        oracle = h.run_generate(copy, PROMPTS[0], name=f"{dtype}-oracle")
        if oracle[1].tobytes() == plain[1].tobytes():
            sys.exit(f"FAIL: the {dtype} copy computes what the plain model computes")
        text = cluster_yaml(model, transport, "spread").replace("roles: [experts]", f"roles: [experts], model: {copy}")
        with h.cluster(text, f"{dtype}-experts-{transport}") as c:
            got = h.run_generate(model, PROMPTS[0], cluster=c.path, name=f"{dtype}-cluster")
            expect_identical(f"{dtype} experts over {transport}", got, oracle)


def case_shard(h, transport):
    """An edge node reads a partial copy of the model (xmesh cluster shard: only the experts the
    file's placement gives it, in one smaller safetensors file); replicas it lacks stream in from a
    peer; outputs stay bit-identical. A partial copy cannot serve a head."""
    model = h.model("mixtral")
    oracle = h.run_generate(model, PROMPTS[0], name="shard-oracle")
    path = f"{h.tmp}/shard-{transport}.yaml"
    text = cluster_yaml(model, transport, "spread")
    open(path, "w").write(text)
    shard = f"{h.tmp}/shard-b"
    r = subprocess.run([h.xmesh, "cluster", "shard", "--cluster", path, "--node", "experts-b", "--out", shard],
                       capture_output=True, text=True, timeout=60)
    print(r.stdout.strip())
    full, part = (os.path.getsize(f"{d}/model.safetensors") for d in (model, shard))
    if r.returncode != 0 or not part < full / 2:
        sys.exit(f"FAIL: shard of experts-b: {r.stderr} ({part} of {full} bytes)")
    edge = text.replace("name: experts-b,", f"name: experts-b, model: {shard}, expert_source: peer,")
    with h.cluster(edge, f"shard-{transport}") as c:
        expect_identical(f"partial copy on experts-b ({transport})",
                         h.run_generate(model, PROMPTS[0], cluster=c.path, name="shard-run"), oracle)
        layer0 = placement_of(h, c)["replicas"][0]
        lacking = next(e for e, nodes in enumerate(layer0) if "experts-b" not in nodes)
        r = subprocess.run([h.xmesh, "cluster", "replicate", "--cluster", c.path, "--layer", "0", "--expert",
                            str(lacking), "--to", "experts-b"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or "experts-b" not in placement_of(h, c)["replicas"][0][lacking]:
            sys.exit(f"FAIL: replicating expert {lacking} onto the partial copy: {r.stdout}{r.stderr}")
        expect_identical(f"after expert {lacking} streamed onto experts-b",
                         h.run_generate(model, PROMPTS[0], cluster=c.path, name="shard-after"), oracle)
    head_on_shard = text.replace("name: head,", f"name: head, model: {shard},")
    open(path, "w").write(head_on_shard)
    expect_error("a head on its own copy", [h.xmesh, "node", "--cluster", path, "--name", "head"], h.env,
                 "node 'head'.model: only a node with just the experts role reads its own copy", 20)


def case_routing_policy(h, transport):
    """A cluster file's routing policy (cache-aware prior and dynamic top-k) routes on the head
    exactly as one process does with the same policy, run after run, and not as exact routing;
    a bad knob stops the head at start with one line naming it."""
    model = h.model("qwen3_moe")
    spec = "cache_aware=prior,prior=2,cache=lru,cache_fraction=0.25,skip_below=0.3"
    exact = h.run_generate(model, PROMPTS[0], name="policy-exact")
    cmd, out = h.generate(model, PROMPTS[0], name="policy-oracle")
    r = subprocess.run(cmd + ["--routing-policy", spec], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"FAIL: generate --routing-policy: {r.stderr}")
    oracle = (json.loads(r.stdout)["tokens"], np.load(out))
    if oracle[1].tobytes() == exact[1].tobytes():
        sys.exit("FAIL: the policy should change the routing")
    section = "routing: {cache_aware: prior, prior: 2, cache: lru, cache_fraction: 0.25, skip_below: 0.3}\n"
    with h.cluster(section + cluster_yaml(model, transport, "spread"), f"policy-{transport}") as c:
        for run in range(2):
            expect_identical(f"routing policy over {transport}, run {run + 1}",
                             h.run_generate(model, PROMPTS[0], cluster=c.path, name=f"policy-{run}"), oracle)
        # Perplexity measured on the deployed system equals the single-process measurement.
        text = f"{h.tmp}/eval.txt"
        open(text, "w").write("The mixture of experts routes every token to two experts. " * 12)
        evaluate = [h.xmesh, "eval", "--model", model, "--file", text, "--context", "32", "--json"]
        local = json.loads(subprocess.run(evaluate + ["--routing-policy", spec], check=True, capture_output=True,
                                          text=True, timeout=120).stdout)
        r = subprocess.run(evaluate + ["--cluster", c.path], capture_output=True, text=True, timeout=120)
        remote = json.loads(r.stdout) if r.returncode == 0 else {}
        print(f"eval through the cluster: {remote.get('perplexity')} (one process: {local['perplexity']})")
        if remote.get("nll_nats") != local["nll_nats"] or remote.get("tokens") != local["tokens"]:
            sys.exit(f"FAIL: xmesh eval --cluster should equal the local eval: {r.stderr}")
    path = f"{h.tmp}/bad-policy.yaml"
    open(path, "w").write("routing: {cache_aware: prior, prior: -1}\n" + cluster_yaml(model, transport, "spread"))
    expect_error("a negative prior", [h.xmesh, "node", "--cluster", path, "--name", "head"], h.env,
                 "node 'head': routing policy: prior: must not be negative", 20)


def case_expert_store(h, transport):
    """An expert node whose store keeps a quarter of the experts it serves resident and reads the
    others from its files at an emulated slow-tier rate: concurrent requests come out bit-identical
    to the single-process run; its /metrics show misses, hits, bytes read, and a peak residency
    per layer within the capacity. Bad store settings stop the node with one line."""
    model = h.model("qwen3_moe")
    config = json.load(open(f"{model}/config.json"))
    experts, layers = config["num_experts"], config["num_hidden_layers"]
    oracles = [h.run_generate(model, p, name=f"store-oracle{i}") for i, p in enumerate(PROMPTS)]
    p = free_ports(5)
    text = f"""model: {model}
transport: {transport}
nodes:
  - {{name: head, control_port: {p[0]}, data_port: {p[1]}, roles: [coordinator, head], threads: 1}}
  - {{name: edge, control_port: {p[2]}, data_port: {p[3]}, metrics_port: {p[4]}, roles: [experts], threads: 2,
     store: "cache_fraction=0.25,cache=lru,rate=50MB"}}
"""
    with h.cluster(text, f"store-{transport}") as c:
        run_concurrently(h, model, c.path, oracles, f"request {{}} through a stored expert node over {transport}")
        time.sleep(0.6)  # the metrics catch up at the next heartbeat
        text = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{p[4]}/metrics"], capture_output=True,
                              text=True).stdout

        def total(name):
            return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + "{"))
        peaks = [float(l.split()[-1]) for l in text.splitlines() if l.startswith("xmesh_store_resident_peak_experts{")]
        capacity = round(0.25 * experts)
        hits, misses = total("xmesh_store_hits_total"), total("xmesh_store_misses_total")
        print(f"store over {transport}: capacity {capacity} of {experts} per layer, hits {hits:.0f}, misses "
              f"{misses:.0f} (hit rate {hits / max(1, hits + misses):.2f}), peak per layer {peaks}")
        if not (hits > 0 and misses > 0 and total("xmesh_store_bytes_loaded_total") > 0):
            sys.exit("FAIL: the store's hits, misses and bytes read should be counted")
        if len(peaks) != layers or max(peaks) > capacity or f"xmesh_store_capacity_experts{{node=\"edge\"}} {capacity}" \
                not in text:
            sys.exit(f"FAIL: residency must stay within the capacity ({capacity}) in every layer")
    # store_misses: head: once a layer of the node's store is full, the head computes what would
    # miss there from its own files. Outputs stay bit-identical; the node only ever reads the
    # experts that filled its layers (no eviction), and serves them from memory afterwards.
    q = free_ports(6)
    text_head = f"""model: {model}
transport: {transport}
store_misses: head
nodes:
  - {{name: head, control_port: {q[0]}, data_port: {q[1]}, metrics_port: {q[5]}, roles: [coordinator, head], threads: 1}}
  - {{name: edge, control_port: {q[2]}, data_port: {q[3]}, metrics_port: {q[4]}, roles: [experts], threads: 2,
     store: "cache_fraction=0.25,cache=lru,rate=50MB"}}
"""
    with h.cluster(text_head, f"store-head-{transport}") as c2:
        run_concurrently(h, model, c2.path, oracles, f"request {{}} with store misses on the head over {transport}")
        time.sleep(0.6)
        edge = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{q[4]}/metrics"], capture_output=True, text=True).stdout
        head = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{q[5]}/metrics"], capture_output=True, text=True).stdout

        def total_of(text, name):
            return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + "{"))
        on_head = total_of(head, "xmesh_store_misses_on_head_total")
        hits2, misses2 = total_of(edge, "xmesh_store_hits_total"), total_of(edge, "xmesh_store_misses_total")
        print(f"store misses on the head over {transport}: {on_head:.0f} rows on the head; the node's store "
              f"hits {hits2:.0f}, misses {misses2:.0f} (at most {capacity} x {layers} layers)")
        if not (on_head > 0 and hits2 > 0 and 0 < misses2 <= capacity * layers):
            sys.exit("FAIL: with store_misses: head the head computes the misses and the node only fills its layers")
    path = f"{h.tmp}/bad-store.yaml"
    open(path, "w").write(text_bad := open(c.path).read().replace("cache_fraction=0.25,", "cache_fraction=2,"))
    subprocess.run([h.xmesh, "cluster", "keygen", "--cluster", path], check=True, capture_output=True)
    expect_error("a store of more than every expert", [h.xmesh, "node", "--cluster", path, "--name", "edge"], h.env,
                 "node 'edge': store: expert store: cache_fraction", 20)
    open(path, "w").write(text_bad.replace("roles: [experts], threads: 2", "roles: [experts, head], threads: 2"))
    expect_error("a store on a head", [h.xmesh, "node", "--cluster", path, "--name", "edge"], h.env,
                 "node 'edge'.store: only a node with just the experts role", 20)


def store_oracles(h, model, store):
    """The single-process run of every prompt with an expert store (`generate --expert-store`)."""
    out = []
    for i, prompt in enumerate(PROMPTS):
        cmd, logits = h.generate(model, prompt, name=f"store-oracle-{len(store)}-{i}")
        g = subprocess.run(cmd + ["--expert-store", store], capture_output=True, text=True, timeout=120)
        if g.returncode != 0:
            sys.exit(f"FAIL: generate --expert-store: {g.stderr}")
        out.append((json.loads(g.stdout)["tokens"], np.load(logits)))
    return out


def case_store_fallback(h, transport):
    """fallback=: an expert node's store keeps a q4 copy of every expert; the head marks the rows its
    sequence's logical cache misses (the store's settings), which the node computes with the q4 copy
    while the full expert loads. Perplexity and concurrent requests through the cluster equal the
    single-process store's with the same settings, bit for bit (the same rows compute in q4), run
    after run, and differ from exact routing's. With prefetch=1 too, the head's pre-gating
    predictions enter its logical cache and reach the node as prefetch frames: again equal to the
    single-process store with prefetch, and not to the store without. A head whose routing cache
    differs from the store's refuses to start."""
    model = h.model("qwen3_moe")
    config = json.load(open(f"{model}/config.json"))
    capacity = round(0.25 * config["num_experts"])
    exact = [h.run_generate(model, p, name=f"fallback-exact{i}") for i, p in enumerate(PROMPTS)]
    q4 = f"{h.tmp}/qwen3_moe-q4"
    subprocess.run([h.xmesh, "quantize", "--model", model, "--out", q4, "--dtype", "q4", "--experts-only"],
                   check=True, capture_output=True)
    store = f"cache_fraction=0.25,cache=lru,rate=50MB,fallback={q4}"
    words = f"{h.tmp}/store-eval.txt"
    open(words, "w").write("Experts that miss the cache compute in four bits while they load. " * 10)
    evaluate = [h.xmesh, "eval", "--model", model, "--file", words, "--context", "32", "--json"]
    local = json.loads(subprocess.run(evaluate + ["--expert-store", store], check=True, capture_output=True,
                                      text=True, timeout=120).stdout)
    plain = json.loads(subprocess.run(evaluate, check=True, capture_output=True, text=True, timeout=120).stdout)
    previous = exact
    for name, spec in (("fallback", store), ("fallback+prefetch", store + ",prefetch=1")):
        oracles = store_oracles(h, model, spec)
        if all(a[1].tobytes() == b[1].tobytes() for a, b in zip(oracles, previous)):
            sys.exit(f"FAIL: {name} should change the logits")
        previous = oracles
        r = free_ports(6)
        text = f"""model: {model}
transport: {transport}
nodes:
  - {{name: head, control_port: {r[0]}, data_port: {r[1]}, metrics_port: {r[5]}, roles: [coordinator, head],
     threads: 1}}
  - {{name: edge, control_port: {r[2]}, data_port: {r[3]}, metrics_port: {r[4]}, roles: [experts], threads: 2,
     store: "{spec}"}}
"""
        with h.cluster(text, f"store-{name}-{transport}") as c:
            if name == "fallback":  # prefill windows: prefetch acts in decode steps only
                e = subprocess.run(evaluate + ["--cluster", c.path], capture_output=True, text=True, timeout=120)
                remote = json.loads(e.stdout) if e.returncode == 0 else {}
                print(f"fallback over {transport}: perplexity through the cluster {remote.get('perplexity')}, one "
                      f"process with the same store {local['perplexity']}, exact {plain['perplexity']}")
                if remote.get("nll_nats") != local["nll_nats"] or local["nll_nats"] == plain["nll_nats"]:
                    sys.exit(f"FAIL: with a fallback the cluster's perplexity should equal the single-process "
                             f"store's and differ from exact routing's: {e.stderr}")
            for run in range(2):
                run_concurrently(h, model, c.path, oracles, f"request {{}} with {name} over {transport}, run {run + 1}")
            time.sleep(0.6)
            edge = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{r[4]}/metrics"], capture_output=True,
                                  text=True).stdout
            low = sum(float(line.split()[-1]) for line in edge.splitlines()
                      if line.startswith("xmesh_store_fallback_rows_total{"))
            peaks = [float(line.split()[-1]) for line in edge.splitlines()
                     if line.startswith("xmesh_store_resident_peak_experts{")]
            asked = sum(float(line.split()[-1]) for line in edge.splitlines()
                        if line.startswith("xmesh_store_prefetched_experts_total{"))
            print(f"{name} over {transport}: {low:.0f} rows in q4, {asked:.0f} experts prefetched, peak residency "
                  f"per layer {peaks}")
            if not (low > 0 and max(peaks) <= capacity):
                sys.exit("FAIL: the node should compute rows with its fallback and stay within its capacity")
            if (asked > 0) != spec.endswith("prefetch=1"):
                sys.exit("FAIL: the head's prefetch frames should reach the node exactly when its store prefetches")
            head = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{r[5]}/metrics"], capture_output=True,
                                  text=True).stdout
            pregate = {o: sum(float(line.split()[-1]) for line in head.splitlines()
                              if line.startswith("xmesh_pregate_experts_total{") and f'outcome="{o}"' in line)
                       for o in ("predicted", "used", "correct")}
            if spec.endswith("prefetch=1"):
                print(f"pre-gating over {transport}: precision {pregate['correct'] / pregate['predicted']:.2f}, "
                      f"recall {pregate['correct'] / pregate['used']:.2f} ({pregate})")
                if not 0 < pregate["correct"] <= min(pregate["predicted"], pregate["used"]):
                    sys.exit("FAIL: the head should score its predictions against what the next layer used")
            elif pregate["predicted"] != 0:
                sys.exit("FAIL: a head whose stores do not prefetch predicts nothing")
            if name == "fallback":  # a node with another low-precision copy (q8) cannot join
                q8 = f"{h.tmp}/qwen3_moe-q8"
                subprocess.run([h.xmesh, "quantize", "--model", model, "--out", q8, "--dtype", "q8",
                                "--experts-only"], check=True, capture_output=True)
                s = free_ports(2)
                more = f"{h.tmp}/store-two-copies-{transport}.yaml"
                open(more, "w").write(f"security: {{keys: {c.path.replace('.yaml', '.keys')}}}\n" + text +
                                      f"  - {{name: edge2, control_port: {s[0]}, data_port: {s[1]}, roles: [experts], "
                                      f"threads: 1, store: \"{spec.replace(q4, q8)}\"}}\n")
                subprocess.run([h.xmesh, "cluster", "keygen", "--cluster", more], check=True, capture_output=True)
                expect_error("a second node with another fallback copy", [h.xmesh, "node", "--cluster", more,
                             "--name", "edge2"], h.env, "node 'edge2' keeps another low-precision copy than node "
                             "'edge'", 30)
    path = f"{h.tmp}/bad-fallback.yaml"
    open(path, "w").write("routing: {cache: lru, cache_fraction: 0.5}\n" + text)
    subprocess.run([h.xmesh, "cluster", "keygen", "--cluster", path], check=True, capture_output=True)
    expect_error("a routing cache unlike the fallback store's", [h.xmesh, "node", "--cluster", path, "--name", "head"],
                 h.env, "node 'head': routing: and node 'edge' store: give both the same cache", 20)


def case_store_peer(h, transport):
    """A peer as a store's slow tier: an edge node with a partial copy of the model (its shard) and
    a store is given a replica it has no copy of; its store reads that expert from the peer that
    sent it whenever a batch misses it, checked against the coordinator's checksum, even after the
    peer retired its own replica (it still holds the expert in its files). Concurrent requests,
    the expert served only by the edge node, are bit-identical to the single-process run."""
    model = h.model("qwen3_moe")
    oracles = [h.run_generate(model, p, name=f"peer-oracle{i}") for i, p in enumerate(PROMPTS)]
    experts = json.load(open(f"{model}/config.json"))["num_experts"]
    path = f"{h.tmp}/store-peer-{transport}.yaml"
    text = cluster_yaml(model, transport, "static", {"experts-a": list(range(experts)), "experts-b": [experts - 1]})
    open(path, "w").write(text)
    shard = f"{h.tmp}/store-peer-shard-{transport}"
    subprocess.run([h.xmesh, "cluster", "shard", "--cluster", path, "--node", "experts-b", "--out", shard],
                   check=True, capture_output=True, timeout=60)
    metrics = free_ports(1)[0]
    edge = text.replace("name: experts-b,", f"name: experts-b, model: {shard}, expert_source: peer, metrics_port: "
                        f"{metrics}, store: \"cache_fraction=0.25,cache=lru,rate=50MB\",")
    with h.cluster(edge, f"store-peer-{transport}") as c:
        for layer in range(2):  # expert 2 of each layer: only experts-b serves it, from experts-a's files
            for cmd in (["replicate", "--to", "experts-b"], ["retire", "--node", "experts-a"]):
                r = subprocess.run([h.xmesh, "cluster", cmd[0], "--cluster", c.path, "--layer", str(layer),
                                    "--expert", "2", *cmd[1:]], capture_output=True, text=True, timeout=60)
                if r.returncode != 0:
                    sys.exit(f"FAIL: {cmd[0]} expert 2 of layer {layer}: {r.stdout}{r.stderr}")
        if any(placement_of(h, c)["replicas"][layer][2] != ["experts-b"] for layer in range(2)):
            sys.exit("FAIL: expert 2 should be served by experts-b alone")
        run_concurrently(h, model, c.path, oracles, f"request {{}} with a store reading from a peer over {transport}")
        time.sleep(0.6)
        text = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{metrics}/metrics"], capture_output=True,
                              text=True).stdout

        def total(name):
            return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{"))
        peer, loaded = total("xmesh_store_peer_bytes_total"), total("xmesh_store_bytes_loaded_total")
        print(f"store reading from a peer over {transport}: {peer:.0f} of {loaded:.0f} bytes loaded came from "
              f"experts-a, {total('xmesh_store_misses_total'):.0f} misses")
        if not 0 < peer < loaded:
            sys.exit("FAIL: the store should read expert 2 from the peer and its own experts from its files")


def case_launcher(h, transport):
    """deploy/local.sh as a new user meets it: `up` over a running cluster is refused and changes
    nothing; a stale pid file naming an unrelated process is neither killed nor counted; logs
    survive restarts; `down` says what it stopped."""
    model = h.model("mixtral")
    c = h.cluster(cluster_yaml(model, transport, "spread"), f"launcher-{transport}")
    run_dir = c.env["XMESH_RUN_DIR"]
    local = lambda cmd: subprocess.run([c.script, cmd, c.path], env=c.env, capture_output=True,  # noqa: E731
                                       text=True, timeout=90)
    with c:
        pids = {n: open(f"{run_dir}/{n}.pid").read().strip() for n in ("head", "experts-a", "experts-b")}
        again = local("up")
        if again.returncode == 0 or "is already running (head experts-a experts-b" not in again.stderr:
            sys.exit(f"FAIL: up over a running cluster should be refused: {again.stdout}{again.stderr}")
        if {n: open(f"{run_dir}/{n}.pid").read().strip() for n in pids} != pids:
            sys.exit("FAIL: the refused up changed the pid files")
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        with open(f"{run_dir}/experts-a.pid", "w") as f:
            f.write(str(stranger.pid))
        down = local("down")
        if "no node of this cluster was running" not in down.stdout or stranger.poll() is not None:
            sys.exit(f"FAIL: down must not stop an unrelated process a stale pid file names: {down.stdout}")
        with c:
            pass
        down = local("down")  # the with block stopped it already
        log = open(f"{run_dir}/head.log").read()
        if log.count("--- local.sh: starting head") != 2:
            sys.exit("FAIL: the head's log should keep both runs")
        if stranger.poll() is not None:
            sys.exit("FAIL: the unrelated process was stopped")
    finally:
        stranger.kill()
        stranger.wait()
    up = local("up")
    down = local("down")
    if up.returncode != 0 or "stopped 3 nodes: " not in down.stdout:
        sys.exit(f"FAIL: down should name the 3 nodes it stopped: {down.stdout}")
    print("launcher: refusal, stale pid, kept logs and down's report as expected")


def case_unreachable(h, transport):
    model = h.model("mixtral")
    text = cluster_yaml(model, transport, "spread")
    path = f"{h.tmp}/unreachable.yaml"
    with open(path, "w") as f:
        f.write(text)
    subprocess.run([h.xmesh, "cluster", "keygen", "--cluster", path], check=True, capture_output=True)
    env = dict(h.env, XMESH_CONNECT_TIMEOUT_MS="2000")
    cmd, _ = h.generate(model, [1, 2], cluster=path)
    expect_error("no head running", cmd, env, "cannot reach head 'head' at 127.0.0.1:", 20)
    expect_error("rebalance without a coordinator", [h.xmesh, "cluster", "rebalance", "--cluster", path], env,
                 "cannot reach coordinator 'head' at 127.0.0.1:", 20)
    expect_error("expert node without coordinator", [h.xmesh, "node", "--cluster", path, "--name", "experts-a"],
                 env, "cannot reach coordinator 'head' at 127.0.0.1:", 20)
    # A node still waiting for its coordinator stops at once on SIGTERM.
    waiting = subprocess.Popen([h.xmesh, "node", "--cluster", path, "--name", "experts-a"],
                               env=dict(env, XMESH_CONNECT_TIMEOUT_MS="30000"), stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    start = time.time()
    waiting.terminate()
    _, err = waiting.communicate(timeout=20)
    print(f"SIGTERM while waiting for the coordinator: exit {waiting.returncode} after {time.time() - start:.1f}s")
    if time.time() - start > 2 or "stopped during start-up" not in err:
        sys.exit(f"FAIL: a node waiting for its coordinator must stop at once on SIGTERM: {err}")
    head = subprocess.Popen([h.xmesh, "node", "--cluster", path, "--name", "head"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # No expert node ever came up: the live placement has no replica (it holds only what nodes
        # report), so the head computes every expert from its own model files, with the oracle's
        # output.
        time.sleep(1.0)
        oracle = h.run_generate(model, [1, 2], name="unreachable-oracle")
        start = time.time()
        got = h.run_generate(model, [1, 2], cluster=path, name="unreachable-head-only")
        print(f"expert nodes down: served by the head in {time.time() - start:.1f} s")
        expect_identical("expert nodes down, head computes from its files", got, oracle)
    finally:
        head.terminate()
        head.wait(timeout=20)


if __name__ == "__main__":
    run_case({"equivalence": case_equivalence, "concurrent": case_concurrent, "unreachable": case_unreachable,
              "quantized-experts": case_quantized_experts, "shard": case_shard, "routing-policy": case_routing_policy,
              "launcher": case_launcher, "expert-store": case_expert_store,
              "store-fallback": case_store_fallback, "store-peer": case_store_peer})
