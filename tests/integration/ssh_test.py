#!/usr/bin/env python3
"""deploy/ssh.sh against real sshd servers (root): deploy/netns.sh builds three host namespaces
(no nodes), each runs its own sshd (private config, key login only, no password); ssh.sh, run from
the first host, copies the binary, the model and the cluster file to every host's folder and starts
the nodes there. The cluster registers, a request is bit-identical to the single-process run, a
second `up` is refused, `logs` collects every node's log, and `down` stops every node.
usage: ssh_test.py XMESH REPO
"""
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_harness import fail, netns_prefix, root_test_model  # noqa: E402


def main():
    xmesh, repo = sys.argv[1], sys.argv[2]
    setup = root_test_model(xmesh, "ssh", 6)
    if setup is None:
        return
    tmp, model = setup
    key = f"{tmp}/id_ed25519"
    if not os.path.exists(key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{tmp}/hostkey"], check=True)
    net = f"10.{random.Random(os.getpid() + 1).randrange(200, 250)}.1"
    hosts = [f"{net}.{i}" for i in (1, 2, 3)]
    path = f"{tmp}/cluster.yaml"
    with open(path, "w") as f:
        f.write(f"""model: {model}
transport: zmq
ssh: {{user: root, port: 22, identity: {key}, dir: '{tmp}/hosts/{{host}}'}}
nodes:
  - {{name: head, host: {hosts[0]}, control_port: 7400, data_port: 7401, roles: [coordinator, head], link: datacenter}}
  - {{name: edge-a, host: {hosts[1]}, control_port: 7400, data_port: 7401, roles: [experts], link: wifi, device: edge}}
  - {{name: edge-b, host: {hosts[2]}, control_port: 7400, data_port: 7401, roles: [experts], link: 5g}}
""")
    env = dict(os.environ, XMESH_BIN=xmesh, XMESH_RUN_DIR=f"{tmp}/run", XMESH_SSH_KNOWN_HOSTS=f"{tmp}/known_hosts")
    prefix = netns_prefix(path) + "h"
    netns = f"{repo}/deploy/netns.sh"
    r = subprocess.run([netns, "net", path], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"netns.sh net: {r.stderr}")
    sshd = []
    try:
        os.makedirs("/run/sshd", exist_ok=True)
        with open(f"{key}.pub") as f, open(f"{tmp}/authorized_keys", "w") as g:
            g.write(f.read())
        for i, h in enumerate(hosts, 1):
            cfg = f"{tmp}/sshd-{h}.conf"
            with open(cfg, "w") as f:
                f.write(f"Port 22\nListenAddress {h}\nHostKey {tmp}/hostkey\nPidFile {tmp}/sshd-{h}.pid\n"
                        f"AuthorizedKeysFile {tmp}/authorized_keys\nPermitRootLogin prohibit-password\n"
                        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                        "Subsystem sftp internal-sftp\n")
            sshd.append(subprocess.Popen(["ip", "netns", "exec", f"{prefix}{i}", "/usr/sbin/sshd", "-D", "-e",
                                          "-f", cfg], stderr=open(f"{tmp}/sshd-{h}.log", "w")))
        time.sleep(0.5)

        def ssh_sh(*args, timeout=180):
            return subprocess.run(["ip", "netns", "exec", f"{prefix}1", f"{repo}/deploy/ssh.sh", *args, path],
                                  env=env, capture_output=True, text=True, timeout=timeout)

        start = time.time()
        r = ssh_sh("up")
        print(f"ssh.sh up: exit {r.returncode} after {time.time() - start:.1f} s: {r.stdout.strip()} {r.stderr.strip()}")
        if r.returncode != 0:
            fail("ssh.sh up")
        for h in (hosts[0], hosts[2]):
            if not os.path.exists(f"{tmp}/hosts/{h}/xmesh") or not os.path.exists(f"{tmp}/hosts/{h}/model/config.json"):
                fail(f"{h} did not get the binary and the model")
        # The edge node's host gets only its experts' tensors.
        shard = f"{tmp}/hosts/{hosts[1]}/model-edge-a/model.safetensors"
        if os.path.exists(f"{tmp}/hosts/{hosts[1]}/model") or not os.path.exists(shard):
            fail("the edge host should get a partial copy of the model, not the whole one")
        full = os.path.getsize(f"{model}/model.safetensors")
        print(f"edge-a's copy: {os.path.getsize(shard)} of {full} bytes")
        if not os.path.getsize(shard) < full / 2:
            fail("the edge node's copy should hold only its experts")
        again = ssh_sh("up")
        if again.returncode == 0 or "already run" not in again.stderr:
            fail(f"a second up must be refused: {again.stderr}")
        st = ssh_sh("status")
        print(st.stdout.strip())
        if st.returncode != 0:
            fail("status")
        gen = [xmesh, "generate", "--model", model, "--tokens", "3,1,4,1,5", "--max-new-tokens", "6", "--ignore-eos",
               "--json"]
        oracle = json.loads(subprocess.run(gen, check=True, capture_output=True, text=True).stdout)["tokens"]
        r = subprocess.run([netns, "exec", path, "--", *gen, "--cluster", path], env=env, capture_output=True,
                           text=True, timeout=120)
        got = json.loads(r.stdout)["tokens"] if r.returncode == 0 else None
        print(f"generate over the ssh-launched cluster: {got} {'bit-identical' if got == oracle else 'DIFFERENT'}")
        if got != oracle:
            fail(f"the output must equal the single-process run: {r.stderr}")
        r = ssh_sh("logs")
        logs = [f"{tmp}/run/{h}/{n}.log" for h, n in zip(hosts, ["head", "edge-a", "edge-b"])]
        if not all(os.path.exists(l) and "ready" in open(l).read() for l in logs):
            fail(f"logs should hold every node's start: {r.stdout} {r.stderr}")
        r = ssh_sh("down")
        print(r.stdout.strip())
        if "stopped 3 nodes" not in r.stdout:
            fail("down should stop the three nodes")
        time.sleep(1)
        left = subprocess.run(["pgrep", "-f", f"{tmp}/hosts"], capture_output=True, text=True).stdout.split()
        if left:
            fail(f"nodes left running: {left}")
    finally:
        for p in sshd:
            p.terminate()
        subprocess.run([netns, "down", path], env=env, capture_output=True, timeout=120)
    print("PASS")


if __name__ == "__main__":
    main()
