"""`deltaserve serve -tp 2 --nnodes 2` with its two ranks on two "nodes" that reach each other only
over a network: two network namespaces made here (`ip netns`; they still share the hostname, files and
/dev/shm), each joined by a veth pair to a bridge in the root namespace, on a private /24
(10.213.x.0/24, x free and from the pid; bridge .1, node A .2, node B .3). mpirun runs in the root
namespace with `-H A,B` and a launch agent (tests/py/netns_rsh.sh, standing in for ssh) that enters
the host's namespace, so rank 0 (and its HTTP server) lives in namespace A and rank 1 in namespace B,
as `mpirun -H host0,host1 ... --distributed-executor-backend mpi` places them on two machines.

What it proves: the multi-node path (ranks started by the user's mpirun, each joining MPI_COMM_WORLD,
rank 0 serving HTTP, every step's collectives crossing the network) serves greedy tokens equal to the
single-rank offline runner's (offline_greedy), concurrent requests included.

The ranks talk TCP, not shared memory: the job is run with `--mca btl self,tcp` restricted to the
test's /24, and the test checks it twice: Open MPI's own report (`--mca btl_base_verbose 30`: "Using
tcp btl for send to [[job,1],1] on node B") and the kernel's (rank 0 holds an ESTABLISHED TCP socket
from A's address to B's, read from /proc/<rank 0>/net/tcp, i.e. in A's namespace). Observed by hand:
with vader (shared memory) allowed too, it fails to initialise in each rank (alone on its "node", as
Open MPI names nodes by the -H addresses, although both namespaces share the hostname) and TCP is
still chosen, so nothing between the ranks uses shared memory.

Also: `serve -tp 2 --nnodes 2` started without mpirun exits non-zero and tells the user to start the
ranks with mpirun. Needs root (`ip netns add`); skipped with the reason only where that is not
permitted. Namespaces, links and every process in them are removed at teardown, failure or not; every
wait is bounded."""
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types
import urllib.request

import pytest

from conftest import BINARY, REPO, built_tokenizer, complete_ids, free_port, offline_greedy

MODEL = os.path.join(REPO, "tests", "fixtures", "models", "moe-gptq-int4")
AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns_rsh.sh")
PORT = 8000  # in namespace A, which is new and empty
PROMPTS = [[9707, 1052, 11], list(range(1000, 1030)), [151644, 872, 198, 9707]]


def tokenizer_dir():
    return os.path.dirname(built_tokenizer("qwen35", "DS_QWEN35_TOKENIZER"))


def sh(*cmd, check=True, timeout=20):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {r.returncode}: {r.stderr.strip()}")
    return r


class Nodes:
    """Two network namespaces on a bridge; names and the /24 derive from this process's pid so that
    concurrent runs do not collide. teardown() kills every process inside and removes everything."""

    def __init__(self):
        tag = os.getpid()
        self.ns = [f"ds-netns-a-{tag}", f"ds-netns-b-{tag}"]
        self.bridge = f"dsbr{tag}"
        self.veths = [f"dsva{tag}", f"dsvb{tag}"]
        self.net = self.pick_net(tag)
        self.gateway = f"{self.net}.1"
        self.addrs = [f"{self.net}.2", f"{self.net}.3"]
        self.made = []  # ("netns"|"link", name), in creation order

    @staticmethod
    def pick_net(tag):
        used = sh("ip", "-4", "-o", "addr", "show").stdout + sh("ip", "-4", "route", "show").stdout
        for i in range(250):
            net = f"10.213.{(tag + i) % 250 + 1}"
            if not re.search(rf"(?m)(^|\s){re.escape(net)}\.", used):
                return net
        raise RuntimeError("no free 10.213.x.0/24 for the test network")

    def setup(self):
        for ns in self.ns:
            sh("ip", "netns", "add", ns)
            self.made.append(("netns", ns))
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for ns, veth, addr in zip(self.ns, self.veths, self.addrs):
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.made.append(("link", veth))
            sh("ip", "link", "set", veth, "master", self.bridge)
            sh("ip", "link", "set", veth, "up")
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def pids(self, ns):
        r = sh("ip", "netns", "pids", ns, check=False)
        return [int(p) for p in r.stdout.split()]

    def rank_pids(self, ns):
        out = []
        for p in self.pids(ns):
            try:
                with open(f"/proc/{p}/comm") as f:
                    if f.read().strip() == "deltaserve":
                        out.append(p)
            except OSError:
                pass
        return out

    def teardown(self):
        for ns in self.ns:
            if ("netns", ns) in self.made:
                for p in self.pids(ns):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        errors = []
        for kind, name in reversed(self.made):
            cmd = ["ip", "link", "del", name] if kind == "link" else ["ip", "netns", "del", name]
            r = sh(*cmd, check=False)
            if r.returncode != 0 and "Cannot find device" not in r.stderr:
                errors.append(f"{' '.join(cmd)}: {r.stderr.strip()}")
        self.made.clear()
        return errors


def make_nodes():
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        pytest.fail("`ip` (iproute2) not found")
    nodes = Nodes()
    probe = subprocess.run(["ip", "netns", "add", nodes.ns[0]], capture_output=True, text=True, timeout=20)
    if probe.returncode != 0:
        err = probe.stderr.strip()
        if os.geteuid() != 0 or "not permitted" in err or "Permission denied" in err:
            pytest.skip(f"`ip netns add` is not permitted here ({err or 'not root'}): the two-namespace test needs root")
        pytest.fail(f"ip netns add {nodes.ns[0]} failed: {err}")
    sh("ip", "netns", "del", nodes.ns[0])
    return nodes


def tcp_peers(pid):
    """(local ip, remote ip) of each ESTABLISHED IPv4 TCP socket that process pid holds, as its own
    network namespace sees them."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ip = lambda h: socket.inet_ntoa(struct.pack("<I", int(h.split(":")[0], 16)))
    out = []
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            col = line.split()
            if col[3] == "01" and col[9] in inodes:
                out.append((ip(col[1]), ip(col[2])))
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if subprocess.run(["which", "mpirun"], capture_output=True).returncode != 0:
        pytest.fail("mpirun not found: tools/setup.sh installs openmpi-bin")
    tok = tokenizer_dir()
    if not os.path.exists(os.path.join(tok, "tokenizer.json")):
        pytest.fail(f"no Qwen3.5 tokenizer at {tok} (tools/setup.sh)")
    nodes = make_nodes()
    log_path = tmp_path_factory.mktemp("tp_netns") / "mpirun.log"
    log = open(log_path, "wb")
    proc = None
    saved_no_proxy = {k: os.environ.get(k) for k in ("no_proxy", "NO_PROXY")}
    try:
        nodes.setup()
        for k, v in saved_no_proxy.items():
            os.environ[k] = ",".join(x for x in (v, nodes.addrs[0]) if x)
        env = dict(os.environ)
        env.update({
            "DS_NETNS_HOSTS": " ".join(f"{a}={ns}" for a, ns in zip(nodes.addrs, nodes.ns)),
            "DS_NUM_THREADS": "1",  # two ranks on a small shared machine
            "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        })
        for k in [k for k in env if k.startswith(("OMPI_COMM_WORLD", "PMI_", "PMIX_"))]:
            del env[k]
        subnet = f"{nodes.net}.0/24"
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "--tag-output",
               "-H", ",".join(nodes.addrs), "-n", "2",
               "--mca", "plm_rsh_agent", AGENT,
               "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", subnet,
               "--mca", "oob_tcp_if_include", subnet, "--mca", "btl_base_verbose", "30",
               "--mca", "mpi_yield_when_idle", "1",
               BINARY, "serve", MODEL, "--tokenizer", tok, "-tp", "2", "--nnodes", "2",
               "--distributed-executor-backend", "mpi", "--host", "0.0.0.0", "--port", str(PORT),
               "--max-model-len", "512", "--max-num-seqs", "4", "--kv-cache-memory-bytes", "64M"]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=REPO)
        c = types.SimpleNamespace(proc=proc, nodes=nodes, base_url=f"http://{nodes.addrs[0]}:{PORT}",
                                  read_log=lambda: open(log_path, "rb").read().decode("utf-8", "replace"))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mpirun exited with {proc.returncode} before rank 0 served:\n{c.read_log()[-6000:]}")
            if time.time() > deadline:
                raise TimeoutError(f"rank 0 not healthy at {c.base_url} after 60 s:\n{c.read_log()[-6000:]}")
            try:
                with opener.open(c.base_url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.1)
        yield c
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # mpirun forwards it to the ranks
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        errors = nodes.teardown()
        log.close()
        for k, v in saved_no_proxy.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if sys.exc_info()[0] is None:  # do not hide the error that got us here
            assert not errors, errors


def test_ranks_live_in_separate_namespaces(cluster):
    a, b = cluster.nodes.ns
    ranks_a, ranks_b = cluster.nodes.rank_pids(a), cluster.nodes.rank_pids(b)
    assert len(ranks_a) == 1 and len(ranks_b) == 1, (ranks_a, ranks_b)
    log = cluster.read_log()
    assert "(rank 0 of 2)" in log and "rank 1 of 2 ready" in log, log[-6000:]
    assert "starting 2 tensor-parallel ranks" not in log  # joined mpirun's ranks, did not start its own


def test_ranks_talk_tcp_across_namespaces(cluster):
    addr_a, addr_b = cluster.nodes.addrs
    log = cluster.read_log()
    used = re.findall(r"mca: bml: Using (\S+) btl for send to \S+ on node (\S+)", log)
    assert ("tcp", addr_b) in used and ("tcp", addr_a) in used, log[-6000:]  # each rank to the other
    assert {btl for btl, _ in used} == {"self", "tcp"}, used  # no shared memory anywhere
    # The kernel's view, from inside namespace A: rank 0 is connected to node B.
    (rank0,) = cluster.nodes.rank_pids(cluster.nodes.ns[0])
    peers = tcp_peers(rank0)
    assert (addr_a, addr_b) in peers, peers


def test_greedy_tokens_match_single_rank(cluster):
    want = [offline_greedy(MODEL, p, 8) for p in PROMPTS]
    got = [complete_ids(cluster, p, 8, timeout=60) for p in PROMPTS]
    assert got == want
    # and concurrently (continuous batching across the two nodes)
    results = [None] * len(PROMPTS)

    def one(i):
        results[i] = complete_ids(cluster, PROMPTS[i], 8, timeout=60)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert results == want
    assert cluster.proc.poll() is None, cluster.read_log()[-6000:]


def test_nnodes_without_mpirun_says_to_use_mpirun(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_", "PMIX_"))}
    r = subprocess.run([BINARY, "serve", MODEL, "--tokenizer", tokenizer_dir(), "-tp", "2", "--nnodes", "2",
                        "--host", "127.0.0.1", "--port", str(free_port())], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "ranks on several machines are started by mpirun" in r.stderr, r.stderr
    assert "mpirun -np 2" in r.stderr and "--distributed-executor-backend mpi" in r.stderr, r.stderr
    assert "starting 2 tensor-parallel ranks" not in r.stdout + r.stderr  # it did not launch mpirun itself
