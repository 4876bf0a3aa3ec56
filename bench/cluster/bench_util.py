"""What the cluster benchmarks share."""
import json
import os
import socket
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
xmesh = os.environ.get("XMESH_BIN", f"{repo}/build/tools/xmesh")
prompt = ",".join(str(i) for i in range(11, 75))  # 64 prompt tokens


def port():
    """A TCP port of 127.0.0.1 that is free now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def ab_args(default_rounds):
    """The A/B benchmarks' command line, `[zmq|ucx] [MODEL_DIR] [ROUNDS]`, and XMESH_BENCH_TOKENS:
    (transport, model directory with the bench preset written there once, rounds, new tokens)."""
    transport = sys.argv[1] if len(sys.argv) > 1 else "zmq"
    model = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else f"{repo}/build/bench-model")
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else default_rounds
    if not os.path.exists(f"{model}/config.json"):
        subprocess.run([xmesh, "gen-model", "--family", "mixtral", "--preset", "bench", "--seed", "1", "--dtype",
                        "bf16", "--out", model], check=True, stdout=subprocess.DEVNULL)
    return transport, model, rounds, int(os.environ.get("XMESH_BENCH_TOKENS", "48"))


def three_nodes(tmp, name, model, transport, header="", node_extra=lambda: ""):
    """A 3-process loopback cluster file (head + coordinator with 2 threads, 2 expert nodes with 1):
    `header` goes above `nodes:`, node_extra() into every node's mapping."""
    lines = [f"model: {model}", f"transport: {transport}", header, "nodes:"]
    for node, roles, threads in [("head", "[coordinator, head]", 2), ("experts-a", "[experts]", 1),
                                 ("experts-b", "[experts]", 1)]:
        lines.append(f"  - {{name: {node}, control_port: {port()}, data_port: {port()}{node_extra()}, "
                     f"roles: {roles}, threads: {threads}}}")
    path = f"{tmp}/{name}.yaml"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def env():
    """The environment the benchmarks run xmesh and deploy/local.sh in."""
    return dict(os.environ, XMESH_BIN=xmesh, UCX_NET_DEVICES=os.environ.get("UCX_NET_DEVICES", "lo"))


def local(action, name, path, tmp):
    """deploy/local.sh up|down for cluster `name` (file `path`), its run directory under `tmp`."""
    up = action == "up"
    subprocess.run([f"{repo}/deploy/local.sh", action, path], env=dict(env(), XMESH_RUN_DIR=f"{tmp}/run-{name}"),
                   check=up, capture_output=True, timeout=300 if up else 60)


def generate_command(model, path, tokens):
    """xmesh generate of one greedy request through the cluster file `path`, JSON out."""
    return [xmesh, "generate", "--model", model, "--cluster", path, "--tokens", prompt, "--max-new-tokens",
            str(tokens), "--ignore-eos", "--json"]


def generate(model, path, tokens):
    """One greedy request through the cluster file `path`: xmesh generate's JSON."""
    out = subprocess.run(generate_command(model, path, tokens), env=env(), check=True, capture_output=True,
                         text=True, timeout=600)
    return json.loads(out.stdout)


def alternate(clusters, model, rounds, tokens, tmp, started=lambda: None, finishing=lambda: None):
    """Brings up every cluster (name -> file) side by side, then runs one greedy request on each in
    turn for `rounds` rounds after a warm-up round (connections, page cache), alternating which goes
    first; only one generates at a time. Returns the decode tokens/s per cluster and asserts every
    cluster's tokens equal the others'. `started()` runs once all are up, `finishing()` before they
    go down."""
    runs, outputs = {name: [] for name in clusters}, {}
    try:
        for name, path in clusters.items():
            local("up", name, path, tmp)
        started()
        order = list(clusters.items())
        for r in range(rounds + 1):
            for name, path in (order if r % 2 else order[::-1]):
                j = generate(model, path, tokens)
                outputs.setdefault(name, j["tokens"])
                if r > 0:
                    runs[name].append(j["decode_tokens_per_s"])
    finally:
        finishing()
        for name, path in clusters.items():
            local("down", name, path, tmp)
    first = next(iter(outputs.values()))
    assert all(o == first for o in outputs.values()), f"outputs differ between {list(clusters)}"
    return runs
