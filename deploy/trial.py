#!/usr/bin/env python3
"""xmesh trial --spec TRIAL.yaml --out DIR: a matrix of edge-collaborative inference runs over
emulated links (deploy/netns.sh, root). Cells are link sets x placements x workloads x
repetitions. For each cell the runner writes a cluster file (a datacenter head + coordinator, one
host per expert node behind the cell's links), launches it, warms up, runs the workload (a number
of requests from concurrent clients), records per request TTFT, TPOT, end-to-end latency and the
tokens (checked against the single-process run), per link the bytes sent and the dispatch round
trip (from the head's /metrics), per (layer, expert) the routed tokens and the live placement,
and tears the cell down (also on Ctrl-C or a failure). DIR gets results.csv/json (one row per
request), summary.csv (one row per cell: tokens/s, decode tokens/s, p50/p90/p99 of TTFT, TPOT and
end-to-end latency, and with a store or an eval the hit rate and perplexity), links.csv, PNG plots
and report.md.

Spec (YAML):
  name: edge-vs-datacenter
  model: DIR                       # or gen_model: {family: mixtral, preset: small, seed: 1}
  transport: zmq                   # zmq or ucx
  experts: 2                       # expert nodes, one host each
  links:                           # link set name -> one profile for every expert host, or a list
    datacenter: datacenter
    mixed: [wifi, lte]
  placements: [spread]             # spread, or static lists: {name: ..., experts: [[0, 1], [2, 3]]}
  replica_choices: [least_outstanding, latency]   # how heads pick among replicas (default: the first)
  store: "cache_fraction=0.25,cache=lru,rate=50MB"  # every expert node keeps that share resident
  store_misses: [node, head, fallback]   # where a row the store would miss computes (default:
                                   # node: read from its slow tier; head: from the head's files;
                                   # fallback: on the node, with a q4 copy of its experts that the
                                   # trial writes, while the full expert loads)
  policies:                        # routing policies on the head (cells); default {exact: exact}
    exact: exact
    prior: "cache_aware=prior,prior=0.5,cache=lru,cache_fraction=0.25"
  eval: {text: corpus:heldout, bytes: 60000, context: 128}   # perplexity through each cell's
                                   # cluster; text: a file, or corpus:heldout (tools/train/corpus.py)
  workloads:
    - {name: chat, prompt_tokens: 16, new_tokens: 24, concurrency: 2, requests: 4}
  repetitions: 1
  seed: 1
"""
import csv
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SpecError(Exception):
    pass


def load_spec(path):
    try:
        import yaml  # python3-yaml
    except ImportError:
        raise SpecError("python3-yaml is needed to read trial specs")
    with open(path) as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: expected a mapping")
    known = {"name", "model", "gen_model", "transport", "experts", "links", "placements", "workloads",
             "repetitions", "seed", "profiles", "replica_choices", "store", "store_misses", "policies",
             "eval"}
    for key in spec:
        if key not in known:
            raise SpecError(f"{path}: {key}: unknown key ({', '.join(sorted(known))})")
    for key in ("name", "links", "workloads"):
        if key not in spec:
            raise SpecError(f"{path}: {key}: missing")
    if ("model" in spec) == ("gen_model" in spec):
        raise SpecError(f"{path}: give exactly one of model and gen_model")
    here = os.path.dirname(os.path.abspath(path))  # relative paths are the spec's own
    if "model" in spec:
        spec["model"] = os.path.join(here, spec["model"])
    spec.setdefault("transport", "zmq")
    if spec["transport"] not in ("zmq", "ucx"):
        raise SpecError(f"{path}: transport: expected zmq or ucx, got {spec['transport']!r}")
    spec.setdefault("experts", 2)
    if not isinstance(spec["experts"], int) or not 1 <= spec["experts"] <= 32:
        raise SpecError(f"{path}: experts: expected 1..32")
    spec.setdefault("placements", ["spread"])
    spec.setdefault("replica_choices", ["least_outstanding"])
    spec.setdefault("store_misses", ["node"])
    if not isinstance(spec["store_misses"], list) or not set(spec["store_misses"]) <= {"node", "head", "fallback"} \
            or not spec["store_misses"]:
        raise SpecError(f"{path}: store_misses: expected a list of node, head, fallback")
    if "store" not in spec and spec["store_misses"] != ["node"]:
        raise SpecError(f"{path}: store_misses: head and fallback need a store:")
    spec.setdefault("policies", {"exact": "exact"})
    if not isinstance(spec["policies"], dict) or not spec["policies"]:
        raise SpecError(f"{path}: policies: expected a mapping name -> routing policy spec")
    if "store" in spec and not isinstance(spec["store"], str):
        raise SpecError(f"{path}: store: expected a spec like cache_fraction=0.25,cache=lru,rate=50MB")
    if "eval" in spec:
        e = spec["eval"]
        if not isinstance(e, dict) or not isinstance(e.get("text"), str):
            raise SpecError(f"{path}: eval: expected {{text: FILE or corpus:heldout, bytes: N, context: N}}")
        if e["text"] != "corpus:heldout":
            e["text"] = os.path.join(here, e["text"])
        e.setdefault("bytes", 60000)
        e.setdefault("context", 128)
    for choice in spec["replica_choices"]:
        if choice not in ("least_outstanding", "latency"):
            raise SpecError(f"{path}: replica_choices: unknown {choice!r} (least_outstanding, latency)")
    spec.setdefault("repetitions", 1)
    spec.setdefault("seed", 1)
    if not isinstance(spec["links"], dict) or not spec["links"]:
        raise SpecError(f"{path}: links: expected a mapping name -> profile or list of profiles")
    for name, value in spec["links"].items():
        profiles = value if isinstance(value, list) else [value] * spec["experts"]
        if len(profiles) != spec["experts"] or not all(isinstance(p, str) for p in profiles):
            raise SpecError(f"{path}: links.{name}: expected one profile or {spec['experts']} of them")
        spec["links"][name] = profiles
    for i, w in enumerate(spec["workloads"]):
        for key in ("prompt_tokens", "new_tokens", "concurrency", "requests"):
            if not isinstance(w.get(key), int) or w[key] < 1:
                raise SpecError(f"{path}: workloads[{i}].{key}: expected a positive integer")
        w.setdefault("name", f"w{i}")
    return spec


def progress(done, total, what):
    if sys.stdout.isatty():
        bar = "#" * int(30 * done / total)
        sys.stdout.write(f"\r[{bar:<30}] {done}/{total} {what:<50}")
        sys.stdout.flush()
        if done == total:
            sys.stdout.write("\n")
    else:
        print(f"trial: {done}/{total} {what}", flush=True)


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else None


class Cell:
    """One launched cluster: its file, the netns launcher, and the head's metrics port."""

    def __init__(self, xmesh, spec, model, out, key, profiles, placement, net, choice, policy, misses, store):
        self.xmesh, self.path = xmesh, f"{out}/cells/{key}.yaml"
        self.env = dict(os.environ, XMESH_BIN=xmesh, XMESH_RUN_DIR=f"{out}/cells/{key}-run")
        self.edges = [f"{net}.{i + 2}" for i in range(len(profiles))]
        lines = [f"model: {model}", f"transport: {spec['transport']}", f"replica_choice: {choice}",
                 f"store_misses: {'head' if misses == 'head' else 'node'}"]
        if policy != "exact":
            knobs = ", ".join(f"{k}: {v}" for k, v in (item.split("=", 1) for item in policy.split(",")))
            lines.append(f"routing: {{{knobs}}}")
        if isinstance(placement, dict):
            lines += ["placement: static", "static_placement:"]
            lines += [f"  edge-{i}: {list(e)}" for i, e in enumerate(placement["experts"])]
        lines += ["nodes:",
                  f"  - {{name: head, host: {net}.1, control_port: 7300, data_port: 7301, metrics_port: 7302, "
                  "roles: [coordinator, head], link: datacenter}"]
        store = f', metrics_port: 7302, store: "{store}"' if store else ""
        for i, p in enumerate(profiles):
            lines.append(f"  - {{name: edge-{i}, host: {net}.{i + 2}, control_port: 7300, data_port: 7301, "
                         f"roles: [experts], link: {p}{store}}}")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.netns = f"{REPO}/deploy/netns.sh"

    def up(self):
        r = subprocess.run([self.netns, "up", self.path], env=self.env, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"netns.sh up {self.path}: {r.stderr.strip()}")

    def down(self):
        subprocess.run([self.netns, "down", self.path], env=self.env, capture_output=True, timeout=120)

    def run(self, *args, timeout=600):
        return subprocess.run([self.netns, "exec", self.path, "--", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def metrics(self, host=None):
        r = self.run("python3", "-c", "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                     f"'http://{host or self.head_host()}:7302/metrics', timeout=10).read().decode())")
        return r.stdout

    def store_counts(self):
        """(hits, misses, rows computed with the fallback) of every expert node's store so far."""
        hits = misses = low = 0
        for host in self.edges:
            text = self.metrics(host)
            hits += sum(series(text, "xmesh_store_hits_total").values())
            misses += sum(series(text, "xmesh_store_misses_total").values())
            low += sum(series(text, "xmesh_store_fallback_rows_total").values())
        return hits, misses, low

    def head_host(self):
        with open(self.path) as f:
            return next(l.split("host: ")[1].split(",")[0] for l in f if "name: head" in l)

    def status_links(self):
        r = subprocess.run([self.netns, "status", self.path], env=self.env, capture_output=True, text=True,
                           timeout=120)
        out = {}
        for line in r.stdout.splitlines()[1:]:
            try:
                host, rest = line.split(" (", 1)
                profile, rest = rest.split("): ", 1)
                want, got = rest.split(" | ")
                out[host] = {"profile": profile, "profile_rtt_ms": float(want),
                             "measured_rtt_ms": float(got.split(" ms")[0])}
            except ValueError:
                continue
        return out


def series(text, name):
    """{labels-string: value} of one metric in exposition text."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1:].rsplit("} ", 1)
            out[labels] = float(value)
    return out


def label(labels, key):
    for part in labels.split(","):
        k, _, v = part.partition("=")
        if k == key:
            return v.strip('"')
    return ""


def eval_text(spec, out):
    """The text each cell's perplexity is measured on: a file, or the trained model's held-out
    text (tools/train/corpus.py, from Debian's documentation packages), cut to eval.bytes."""
    e = spec["eval"]
    if e["text"] == "corpus:heldout":
        sys.path.insert(0, f"{REPO}/tools/train")
        import corpus  # noqa: E402
        try:
            text = "\n\n".join(corpus.build()[1])
        except OSError as err:
            raise SpecError(f"eval.text: corpus:heldout needs the documentation packages tools/train reads: {err}")
    else:
        with open(e["text"], encoding="utf-8") as f:
            text = f.read()
    path = f"{out}/eval.txt"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.encode("utf-8")[:e["bytes"]].decode("utf-8", "ignore"))
    return path


def run_trial(spec, xmesh, out):
    os.makedirs(out, exist_ok=True)
    if os.geteuid() != 0:
        raise SpecError("trials run over network namespaces: run as root")
    model = spec.get("model")
    if model is None:
        g = spec["gen_model"]
        model = f"{out}/model"
        if not os.path.exists(f"{model}/config.json"):
            subprocess.run([xmesh, "gen-model", "--family", g.get("family", "mixtral"), "--preset",
                            g.get("preset", "small"), "--seed", str(g.get("seed", 1)), "--out", model], check=True,
                           stdout=subprocess.DEVNULL)
    model = os.path.abspath(model)
    if "fallback" in spec["store_misses"]:  # the experts' q4 copy the fallback cells' nodes keep
        q4 = f"{out}/model-q4"
        if not os.path.exists(f"{q4}/config.json"):
            subprocess.run([xmesh, "quantize", "--model", model, "--out", q4, "--dtype", "q4", "--experts-only"],
                           check=True, stdout=subprocess.DEVNULL)
    rng = random.Random(spec["seed"])
    cells = [(ln, pl, ch, sm, pol, w, rep) for ln in spec["links"] for pl in spec["placements"]
             for ch in spec["replica_choices"] for sm in spec["store_misses"] for pol in spec["policies"]
             for w in spec["workloads"] for rep in range(spec["repetitions"])]
    text = eval_text(spec, out) if "eval" in spec else None
    rows, summary, links_rows, loads = [], [], [], {}
    oracles = {}
    net = f"10.{rng.randrange(200, 250)}.{rng.randrange(0, 250)}"
    for i, (ln, pl, choice, misses, pol, w, rep) in enumerate(cells):
        pname = pl["name"] if isinstance(pl, dict) else pl
        policy = spec["policies"][pol]
        # The default replica choice and policy keep the keys cells always had.
        key = (f"{ln}-{pname}{'' if choice == spec['replica_choices'][0] else '-' + choice}"
               f"{'' if misses == spec['store_misses'][0] else '-misses-on-' + misses.replace('fallback', 'node-in-q4')}"
               f"{'' if pol == next(iter(spec['policies'])) else '-' + pol}-{w['name']}-{rep}")
        progress(i, len(cells), key)
        # The same prompts in every cell of a workload and repetition: cells differ only in what they vary.
        cell_rng = random.Random(f"{spec['seed']}/{w['name']}/{rep}")
        prompts = [[cell_rng.randrange(1, 400) for _ in range(w["prompt_tokens"])] for _ in range(w["requests"])]
        store = spec.get("store")
        if misses == "fallback":
            store += f",fallback={out}/model-q4"
        # The single-process run with the same routing policy (and with a fallback, the same
        # store, whose misses compute in q4 as the cell's) is each request's oracle.
        oracle_store = store if misses == "fallback" else None
        for p in prompts:
            k = (tuple(p), w["new_tokens"], policy, oracle_store)
            if k not in oracles:
                r = subprocess.run([xmesh, "generate", "--model", model, "--tokens", ",".join(map(str, p)),
                                    "--max-new-tokens", str(w["new_tokens"]), "--ignore-eos", "--json"] +
                                   (["--routing-policy", policy] if policy != "exact" else []) +
                                   (["--expert-store", oracle_store] if oracle_store else []),
                                   check=True, capture_output=True, text=True)
                oracles[k] = json.loads(r.stdout)["tokens"]
        cell = Cell(xmesh, spec, model, out, key, spec["links"][ln], pl, net, choice, policy, misses, store)
        try:
            cell.up()
            cell.run(xmesh, "generate", "--model", model, "--cluster", cell.path, "--tokens", "1,2,3",
                     "--max-new-tokens", "2")  # warm-up: connections, page cache
            before = cell.metrics()
            store_before = cell.store_counts() if "store" in spec else None
            started = time.time()
            pending = list(enumerate(prompts))
            procs = []
            results = []
            while pending or procs:
                while pending and len(procs) < w["concurrency"]:
                    j, p = pending.pop(0)
                    cmd = [cell.netns, "exec", cell.path, "--", xmesh, "generate", "--model", model, "--cluster",
                           cell.path, "--tokens", ",".join(map(str, p)), "--max-new-tokens", str(w["new_tokens"]),
                           "--ignore-eos", "--json"]
                    procs.append((j, p, time.time(), subprocess.Popen(cmd, env=cell.env, stdout=subprocess.PIPE,
                                                                      stderr=subprocess.PIPE, text=True)))
                for entry in list(procs):
                    j, p, t0, proc = entry
                    if proc.poll() is None:
                        continue
                    procs.remove(entry)
                    stdout, stderr = proc.communicate()
                    wall = time.time() - t0
                    if proc.returncode != 0:
                        raise RuntimeError(f"cell {key}: request {j} failed: {stderr.strip()}")
                    r = json.loads(stdout)
                    ts = r["token_seconds"]
                    results.append({
                        "cell": key, "links": ln, "placement": pname, "replica_choice": choice,
                        "store_misses": misses, "policy": pol,
                        "workload": w["name"], "repetition": rep, "request": j, "prompt_tokens": len(p), "generated_tokens": len(r["tokens"]),
                        "ttft_s": ts[0] if ts else None,
                        "tpot_s": (ts[-1] - ts[0]) / (len(ts) - 1) if len(ts) > 1 else None,
                        "e2e_s": wall,
                        "identical": r["tokens"] == oracles[(tuple(p), w["new_tokens"], policy, oracle_store)]})
                time.sleep(0.02)
            duration = time.time() - started
            after = cell.metrics()
            hit_rate = None
            if store_before is not None:
                # Rows the head computed instead (store_misses: head), and rows the node computed
                # with its q4 copy (fallback), missed the store too.
                hits, missed, low = (b - a for a, b in zip(store_before, cell.store_counts()))
                missed += low + sum(series(after, "xmesh_store_misses_on_head_total").values()) - \
                    sum(series(before, "xmesh_store_misses_on_head_total").values())
                hit_rate = hits / (hits + missed) if hits + missed else None
            perplexity = None
            if text is not None:
                r = cell.run(xmesh, "eval", "--model", model, "--cluster", cell.path, "--file", text, "--context",
                             str(spec["eval"]["context"]), "--json", timeout=3600)
                if r.returncode != 0:
                    raise RuntimeError(f"cell {key}: eval through the cluster failed: {r.stderr.strip()}")
                perplexity = json.loads(r.stdout)["perplexity"]
            for peer_labels, v in series(after, "xmesh_bytes_sent_total").items():
                peer = label(peer_labels, "peer")
                rtt_sum = series(after, "xmesh_dispatch_round_trip_seconds_sum")
                rtt_cnt = series(after, "xmesh_dispatch_round_trip_seconds_count")
                b0 = series(before, "xmesh_bytes_sent_total").get(peer_labels, 0)
                match = [k for k in rtt_sum if label(k, "peer") == peer]
                s1 = sum(rtt_sum[k] for k in match) - sum(series(before, "xmesh_dispatch_round_trip_seconds_sum").get(k, 0) for k in match)
                c1 = sum(rtt_cnt[k] for k in match) - sum(series(before, "xmesh_dispatch_round_trip_seconds_count").get(k, 0) for k in match)
                links_rows.append({"cell": key, "peer": peer, "bytes_sent": v - b0,
                                   "dispatch_rtt_ms": 1000 * s1 / c1 if c1 else None})
            measured = cell.status_links()
            for host, m in measured.items():
                links_rows.append({"cell": key, "peer": host, "profile": m["profile"],
                                   "profile_rtt_ms": m["profile_rtt_ms"], "measured_rtt_ms": m["measured_rtt_ms"]})
            load = {}
            for lab, v in series(after, "xmesh_tokens_routed_total").items():
                k2 = (int(label(lab, "layer")), label(lab, "expert"))
                load[k2] = v - series(before, "xmesh_tokens_routed_total").get(lab, 0)
            loads[key] = load
            r = cell.run(xmesh, "cluster", "placement", "--cluster", cell.path, "--json")
            with open(f"{out}/cells/{key}-placement.json", "w") as f:
                f.write(r.stdout)
        finally:
            cell.down()
        rows += results
        gen = sum(x["generated_tokens"] for x in results)
        tpots = [x["tpot_s"] for x in results if x["tpot_s"]]
        row = {"cell": key, "links": ln, "placement": pname, "replica_choice": choice, "store_misses": misses,
               "policy": pol,
               "workload": w["name"], "repetition": rep, "requests": len(results), "tokens_per_s": gen / duration,
               "decode_tokens_per_s": len(tpots) / sum(tpots) if tpots else None,
               "perplexity": perplexity, "hit_rate": hit_rate,
               "identical": all(x["identical"] for x in results)}
        for metric in ("ttft", "tpot", "e2e"):
            vals = [x[f"{metric}_s"] for x in results if x[f"{metric}_s"] is not None]
            for q in (50, 90, 99):
                row[f"{metric}_p{q}_s"] = percentile(vals, q / 100)
        summary.append(row)
    progress(len(cells), len(cells), "done")
    write_outputs(spec, out, rows, summary, links_rows, loads)
    return rows, summary


def write_csv(path, rows):
    if not rows:
        return
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def write_outputs(spec, out, rows, summary, links_rows, loads):
    write_csv(f"{out}/results.csv", rows)
    with open(f"{out}/results.json", "w") as f:
        json.dump(rows, f, indent=1)
    write_csv(f"{out}/summary.csv", summary)
    write_csv(f"{out}/links.csv", links_rows)
    plots = []
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for ln in spec["links"]:
            vals = sorted(r["e2e_s"] for r in rows if r["links"] == ln)
            if vals:
                ax.plot(vals, [(i + 1) / len(vals) for i in range(len(vals))], label=ln)
        ax.set_xlabel("end-to-end latency (s)")
        ax.set_ylabel("fraction of requests")
        ax.set_title("Latency CDF per link set")
        ax.legend()
        fig.tight_layout()
        fig.savefig(f"{out}/latency_cdf.png", dpi=80)
        plots.append("latency_cdf.png")
        fig, ax = plt.subplots(figsize=(6, 4))
        cells = sorted({s["cell"] for s in summary})
        ax.bar(range(len(cells)), [next(s["tokens_per_s"] for s in summary if s["cell"] == c) for c in cells])
        ax.set_xticks(range(len(cells)), cells, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("generated tokens/s")
        ax.set_title("Throughput per cell")
        fig.tight_layout()
        fig.savefig(f"{out}/tokens_per_s.png", dpi=80)
        plots.append("tokens_per_s.png")
        if all(s["perplexity"] is not None and s["decode_tokens_per_s"] for s in summary):
            fig, ax = plt.subplots(figsize=(6, 4))
            for s in summary:
                ax.scatter(s["perplexity"], s["decode_tokens_per_s"])
                name = s["policy"] + {"head": " + misses on head", "fallback": " + q4 fallback"}.get(
                    s["store_misses"], "") + \
                    (f" ({s['links']})" if len(spec["links"]) > 1 else "")
                ax.annotate(name, (s["perplexity"], s["decode_tokens_per_s"]), fontsize=7)
            ax.set_xlabel("perplexity (held-out text, through the cluster)")
            ax.set_ylabel("decode tokens/s (per request)")
            ax.set_title("Speed against accuracy, one point per cell")
            fig.tight_layout()
            fig.savefig(f"{out}/speed_vs_perplexity.png", dpi=80)
            plots.append("speed_vs_perplexity.png")
        first = next(iter(loads.values()), {})
        if first:
            layers = sorted({l for l, _ in first})
            experts = sorted({e for _, e in first}, key=lambda e: int(e) if e.isdigit() else -1)
            fig, ax = plt.subplots(figsize=(6, 3))
            im = ax.imshow([[first.get((l, e), 0) for e in experts] for l in layers], aspect="auto")
            ax.set_xlabel("expert")
            ax.set_ylabel("layer")
            ax.set_title(f"Tokens routed per layer x expert ({next(iter(loads))})")
            fig.colorbar(im, ax=ax)
            fig.tight_layout()
            fig.savefig(f"{out}/expert_load.png", dpi=80)
            plots.append("expert_load.png")
    except ImportError:
        pass
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    with open(f"{out}/report.md", "w") as f:
        f.write(f"# Trial: {spec['name']}\n\n")
        f.write(f"Machine: {platform.node()}, {cpu}, {os.cpu_count()} CPUs, {platform.platform()}; "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}.\n\n")
        f.write("Parameters:\n\n```json\n" + json.dumps({k: v for k, v in spec.items()}, indent=1, default=str)
                + "\n```\n\n")
        f.write("| cell | policy | tokens/s | decode tokens/s | TTFT p50 s | TPOT p50 s | e2e p99 s | hit rate | "
                "perplexity | bit-identical |\n" + "| --- " * 10 + "|\n")
        for s in summary:
            def fmt(x, d=4):
                return "-" if x is None else f"{x:.{d}f}"
            f.write(f"| {s['cell']} | {s['policy']} | {fmt(s['tokens_per_s'], 1)} | "
                    f"{fmt(s['decode_tokens_per_s'], 1)} | {fmt(s['ttft_p50_s'])} | {fmt(s['tpot_p50_s'])} | "
                    f"{fmt(s['e2e_p99_s'])} | {fmt(s['hit_rate'], 3)} | {fmt(s['perplexity'], 3)} | "
                    f"{s['identical']} |\n")
        f.write("\n")
        for p in plots:
            f.write(f"![{p}]({p})\n\n")


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="xmesh trial", description="edge trials over emulated links")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--xmesh", default=os.environ.get("XMESH_BIN", f"{REPO}/build/tools/xmesh"))
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        spec = load_spec(a.spec)
        rows, _ = run_trial(spec, os.path.abspath(a.xmesh), os.path.abspath(a.out))
    except SpecError as e:
        print(f"xmesh trial: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xmesh trial: interrupted; the running cell was torn down", file=sys.stderr)
        return 130
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"xmesh trial: error: {e}", file=sys.stderr)
        return 1
    bad = sum(not r["identical"] for r in rows)
    print(f"xmesh trial: {len(rows)} requests, {bad} differing from the single-process run; report in "
          f"{os.path.abspath(a.out)}/report.md")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
