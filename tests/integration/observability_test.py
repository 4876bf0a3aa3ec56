#!/usr/bin/env python3
"""Metrics checked against a real Prometheus server: a loopback cluster (1 head + coordinator,
2 expert nodes, each serving /metrics) runs concurrent requests, operator orders and automatic
rebalances while `deploy/local.sh up --prometheus` scrapes it. Then:
  - the generated config passes `promtool check config`;
  - counters add up: tokens and requests the head counted equal what the clients got;
  - every query of every panel of every dashboard, and every template variable, returns data
    through Prometheus's HTTP API, and the recording rules have values;
  - the snapshot script draws the panels as a PNG.
usage: observability_test.py XMESH REPO
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_harness import free_ports  # noqa: E402

PROMPTS = [[5, 99, 311, 42], [1, 2, 3], [400, 12, 12, 77, 300, 8], [9], [17, 17, 4], [250, 3, 60, 61, 62]]


def fail(why):
    sys.exit(f"FAIL: {why}")


def api(url, path, params):
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params, doseq=True)}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        fail(f"{path} {params}: {body}")
    return body["data"]


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def main():
    xmesh, repo = sys.argv[1], sys.argv[2]
    tmp = os.environ.get("XMESH_TEST_DIR") or tempfile.mkdtemp(prefix="xmesh-obs-")
    os.makedirs(tmp, exist_ok=True)
    model = f"{tmp}/model"
    subprocess.run([xmesh, "gen-model", "--family", "olmoe", "--preset", "tiny", "--seed", "5", "--expert-skew", "1",
                    "--out", model], check=True, stdout=subprocess.DEVNULL)
    p = free_ports(10)
    path = f"{tmp}/cluster.yaml"
    with open(path, "w") as f:
        f.write("\n".join([
            f"model: {model}", "transport: zmq", "placement: spread",
            "rebalance: {period: 2s, window: 3s, min_gain: 0, hysteresis: 0}", "nodes:",
            f"  - {{name: head, control_port: {p[0]}, data_port: {p[1]}, metrics_port: {p[2]}, "
            "roles: [coordinator, head]}",
            f"  - {{name: experts-a, control_port: {p[3]}, data_port: {p[4]}, metrics_port: {p[5]}, "
            "roles: [experts], memory_budget: 1GiB}",
            f"  - {{name: experts-b, control_port: {p[6]}, data_port: {p[7]}, metrics_port: {p[8]}, "
            "roles: [experts], memory_budget: 1GiB}"]) + "\n")
    env = dict(os.environ, XMESH_BIN=xmesh, XMESH_RUN_DIR=f"{tmp}/run", XMESH_PROMETHEUS_PORT=str(p[9]),
               XMESH_PROMETHEUS_INTERVAL_S="1")
    local = f"{repo}/deploy/local.sh"
    prom = f"http://127.0.0.1:{p[9]}"
    r = subprocess.run([local, "up", "--prometheus", path], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"local.sh up --prometheus: {r.stdout}{r.stderr}")
    try:
        r = subprocess.run(["promtool", "check", "config", f"{tmp}/run/prometheus.yml"], capture_output=True,
                           text=True, timeout=60)
        print(f"promtool check config: exit {r.returncode}")
        if r.returncode != 0:
            fail(f"promtool check config: {r.stdout}{r.stderr}")
        # Concurrent requests while the placement changes (operator order, automatic rebalances).
        results, errors = [], []

        def client(i):
            for n in range(4):
                r = subprocess.run([xmesh, "generate", "--model", model, "--cluster", path, "--tokens",
                                    ",".join(map(str, PROMPTS[i])), "--max-new-tokens", "12", "--ignore-eos",
                                    "--json"], capture_output=True, text=True, timeout=120)
                if r.returncode != 0:
                    errors.append(r.stderr)
                else:
                    results.append((len(PROMPTS[i]), len(json.loads(r.stdout)["tokens"])))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        time.sleep(0.5)
        subprocess.run([xmesh, "cluster", "replicate", "--cluster", path, "--layer", "0", "--expert", "0", "--to",
                        "experts-b"], capture_output=True, timeout=60)
        for t in threads:
            t.join(timeout=300)
        if errors:
            fail(errors[0])
        time.sleep(3)  # an automatic rebalance measures the load and moves replicas
        head = scrape(p[2])
        got = {"requests": value(head, 'xmesh_requests_total{node="head"}'),
               "prompt": value(head, 'xmesh_prompt_tokens_total{node="head"}'),
               "generated": value(head, 'xmesh_generation_tokens_total{node="head"}')}
        want = {"requests": len(results), "prompt": sum(r[0] for r in results),
                "generated": sum(r[1] for r in results)}
        print(f"head counted {got}, clients got {want}")
        if got != want:
            fail("the head's counters must equal what the clients got")
        served = sum(value(scrape(port), f'xmesh_frames_served_total{{node="{n}"}}') or 0
                     for n, port in [("experts-a", p[5]), ("experts-b", p[8])])
        sent = sum(float(l.split()[-1]) for l in head.splitlines() if l.startswith("xmesh_frames_sent_total{"))
        print(f"frames sent by the head {sent:.0f}, served by the expert nodes {served:.0f}")
        if sent != served or sent == 0:
            fail("every dispatch frame the head sent was served once")

        # Prometheus has scraped every node and sees the same totals.
        deadline = time.time() + 60
        while time.time() < deadline:
            up = api(prom, "/api/v1/query", {"query": 'up{job="xmesh"}'})["result"]
            total = api(prom, "/api/v1/query", {"query": 'xmesh_generation_tokens_total{node="head"}'})["result"]
            if len(up) == 3 and all(s["value"][1] == "1" for s in up) and total and \
                    float(total[0]["value"][1]) == want["generated"]:
                break
            time.sleep(0.5)
        else:
            fail("Prometheus did not scrape all three nodes with the final totals within 60 s")
        time.sleep(2)  # a few more scrapes for rates and an evaluation of the rules

        checked = 0
        for name in sorted(os.listdir(f"{repo}/dashboards/grafana")):
            with open(f"{repo}/dashboards/grafana/{name}") as f:
                board = json.load(f)
            for var in board["templating"]["list"]:
                m = re.match(r"label_values\((\w+), (\w+)\)", var.get("definition", ""))
                if m:
                    values = api(prom, f"/api/v1/label/{m.group(2)}/values", {"match[]": m.group(1)})
                    if not values:
                        fail(f"{name}: variable {var['name']} has no values")
            for panel in board["panels"]:
                for target in panel["targets"]:
                    q = target["expr"].replace("$__rate_interval", "1m").replace("$node", ".*").replace("$layer", ".*")
                    result = api(prom, "/api/v1/query", {"query": q})["result"]
                    if not result:
                        fail(f"{name}: panel '{panel['title']}' query {q} returned no data")
                    checked += 1
        print(f"{checked} panel queries of {len(os.listdir(f'{repo}/dashboards/grafana'))} dashboards returned data")
        deadline = time.time() + 30
        while time.time() < deadline:
            rules = api(prom, "/api/v1/query", {"query": "xmesh:generation_tokens:rate1m"})["result"]
            if rules:
                break
            time.sleep(0.5)
        else:
            fail("the recording rules have no values")
        groups = api(prom, "/api/v1/rules", {})["groups"]
        print(f"rule groups loaded: {[g['name'] for g in groups]}")
        if sorted(g["name"] for g in groups) != ["xmesh.alerts", "xmesh.recording"]:
            fail("Prometheus should have loaded both rule groups")
        png = f"{tmp}/dashboards.png"
        subprocess.run([sys.executable, f"{repo}/dashboards/snapshot.py", prom, png, "2"], check=True, timeout=120)
        print(f"snapshot: {os.path.getsize(png)} bytes")
        if os.path.getsize(png) < 10000:
            fail("the snapshot should draw the panels")
    finally:
        r = subprocess.run([local, "down", path], env=env, capture_output=True, text=True, timeout=60)
        print(r.stdout.strip())
    if "stopped prometheus" not in r.stdout:
        fail("local.sh down should stop prometheus")
    print("PASS")


if __name__ == "__main__":
    main()
