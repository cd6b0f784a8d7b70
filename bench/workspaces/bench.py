#!/usr/bin/env python3
"""Workspace throughput benchmark: N Workspaces at once, against the floor of creating the same objects directly.

Run from the repository root:  python3 bench/workspaces/bench.py [--n 200]
It starts its own control plane (hack/cluster-up.sh, state in .k8s-run-bench), builds the release binaries of
kaito-controller and kaito-provisioner, and prints a Markdown table. Standard library only.

Two runs in the same control plane:
  floor      a plain client creates, for each Workspace, the Workspace object, a kwok GPU Node, the StatefulSet
             and the two Services (the end state the operator produces), then waits for every StatefulSet to
             report one ready replica. No reconcile logic.
  operator   after the floor's namespace and Nodes are deleted (so the controller, which watches every namespace,
             does not adopt them), the same client creates only the N Workspaces; kaito-provisioner (kwok backend, zero launch delay)
             and kaito-controller do the rest; done when every Workspace has WorkspaceSucceeded=True.
"""
import argparse, concurrent.futures as cf, json, os, re, ssl, subprocess, sys, time, urllib.error, urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(REPO, ".k8s-run-bench")
SKU = "Standard_NC24ads_A100_v4"


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


class Api:
    """Minimal Kubernetes client: client-certificate TLS to the apiserver of the bench cluster."""

    def __init__(self, run_dir):
        ports = dict(l.split("=") for l in open(os.path.join(run_dir, "ports.env")).read().split())
        self.base = f"https://127.0.0.1:{ports['API_PORT']}"
        self.ctx = ssl.create_default_context(cafile=os.path.join(run_dir, "pki/ca.crt"))
        self.ctx.load_cert_chain(os.path.join(run_dir, "pki/admin.crt"), os.path.join(run_dir, "pki/admin.key"))
        self.requests = 0

    def call(self, method, path, body=None):
        self.requests += 1
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ctx, timeout=60) as resp:
            return json.loads(resp.read() or b"{}")


def apiserver_requests(api):
    """apiserver_request_total summed by (verb, resource): every client's requests, not only the operator's."""
    req = urllib.request.Request(api.base + "/metrics")
    text = urllib.request.urlopen(req, context=api.ctx, timeout=60).read().decode()
    out = {}
    for labels, value in re.findall(r'^apiserver_request_total\{([^}]*)\} (\S+)', text, re.M):
        d = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if d.get("verb") in ("WATCH", "CONNECT"):
            continue
        key = (d.get("verb"), d.get("resource"))
        out[key] = out.get(key, 0) + float(value)
    return out


def control_plane_cpu():
    """CPU seconds (user + system) of each control-plane process, from the pid files cluster-up.sh writes."""
    out = {}
    for f in sorted(os.listdir(os.path.join(RUN, "pids"))):
        try:
            out[f[:-4]] = proc_stats(int(open(os.path.join(RUN, "pids", f)).read()))[1]
        except (OSError, ValueError):
            pass
    return out


def delta(after, before):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}


def describe_phase(name, requests, cpu, top=14):
    total = sum(requests.values())
    writes = sum(v for (verb, _), v in requests.items() if verb not in ("GET", "LIST"))
    busiest = ", ".join(f"{verb} {res} {int(v)}" for (verb, res), v in sorted(requests.items(), key=lambda kv: -kv[1])[:top])
    cpu_text = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
    print(f"{name}: apiserver handled {int(total)} requests ({int(writes)} writes); top: {busiest}")
    print(f"{name}: control-plane CPU: {cpu_text}")


def workspace(ns, i):
    return {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
            "metadata": {"name": f"ws-{i}", "namespace": ns},
            "resource": {"instanceType": SKU, "labelSelector": {"matchLabels": {"apps": f"bench-{i}"}}},
            "inference": {"preset": {"name": "phi-4-mini-instruct"}}}


def floor_objects(ns, i):
    name, node = f"ws-{i}", f"floor-{ns}-{i}"
    labels = {"kaito.sh/workspace": name}
    node_obj = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node, "annotations": {"kwok.x-k8s.io/node": "fake"},
                             "labels": {"kubernetes.io/hostname": node, "node.kubernetes.io/instance-type": SKU,
                                        "kaito.sh/workspace": name, "kaito.sh/workspacenamespace": ns}},
                "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
                "status": {"capacity": {"cpu": "24", "memory": "220Gi", "pods": "110", "nvidia.com/gpu": "1"},
                           "allocatable": {"cpu": "24", "memory": "220Gi", "pods": "110", "nvidia.com/gpu": "1"}}}
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": ns},
           "spec": {"replicas": 1, "serviceName": f"{name}-headless", "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {
                        "nodeSelector": {"kubernetes.io/hostname": node},
                        "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
                        "containers": [{"name": name, "image": "mcr.microsoft.com/aks/kaito/kaito-base:0.5.0",
                                        "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 5000}]}}
    headless = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-headless", "namespace": ns},
                "spec": {"clusterIP": "None", "selector": labels}}
    return [("/api/v1/nodes", node_obj), (f"/apis/kaito.sh/v1beta1/namespaces/{ns}/workspaces", workspace(ns, i)),
            (f"/apis/apps/v1/namespaces/{ns}/statefulsets", sts), (f"/api/v1/namespaces/{ns}/services", svc),
            (f"/api/v1/namespaces/{ns}/services", headless)]


def create_namespace(api, ns):
    api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for _ in range(100):
        try:
            api.call("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")
            return
        except Exception:
            time.sleep(0.1)


def wait_until(check, limit=600):
    deadline = time.time() + limit
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise SystemExit("benchmark timed out")


def run_floor(api, n):
    ns = "bench-floor"
    create_namespace(api, ns)
    start, before = time.time(), api.requests
    req0, cpu0 = apiserver_requests(api), control_plane_cpu()
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda po: api.call("POST", po[0], po[1]), [o for i in range(n) for o in floor_objects(ns, i)]))

    def ready():
        items = api.call("GET", f"/apis/apps/v1/namespaces/{ns}/statefulsets")["items"]
        return sum(1 for s in items if s.get("status", {}).get("readyReplicas") == 1) == n
    wait_until(ready)
    elapsed = time.time() - start
    describe_phase("floor", delta(apiserver_requests(api), req0), delta(control_plane_cpu(), cpu0))
    return elapsed, api.requests - before


def remove_floor(api, n):
    """Deletes the floor's namespace and Nodes and waits until they are gone.

    Otherwise the controller, which watches every namespace, would adopt the floor's N Workspaces during the
    operator phase and re-apply their StatefulSets (rolling N extra pods), which is not work the operator
    phase is meant to measure."""
    api.call("DELETE", "/api/v1/namespaces/bench-floor")
    api.call("DELETE", "/api/v1/nodes?labelSelector=kaito.sh%2Fworkspacenamespace%3Dbench-floor")

    def gone():
        nodes = api.call("GET", "/api/v1/nodes?labelSelector=kaito.sh%2Fworkspacenamespace%3Dbench-floor")["items"]
        try:
            api.call("GET", "/api/v1/namespaces/bench-floor")
            return False
        except urllib.error.HTTPError as e:
            return e.code == 404 and not nodes
    wait_until(gone)


def proc_stats(pid):
    status = open(f"/proc/{pid}/status").read()
    hwm_kib = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return hwm_kib / 1024, cpu


def run_operator(api, n, env, target):
    ns = "bench-operator"
    create_namespace(api, ns)
    logs = os.path.join(RUN, "logs")
    prov = subprocess.Popen([os.path.join(target, "kaito-provisioner"), "--metrics-addr", "127.0.0.1:18081"],
                            env=env, stdout=open(os.path.join(logs, "bench-provisioner.log"), "w"), stderr=subprocess.STDOUT)
    ctrl = subprocess.Popen([os.path.join(target, "kaito-controller"), "--metrics-addr", "127.0.0.1:18080"],
                            env=env, stdout=open(os.path.join(logs, "bench-controller.log"), "w"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _up("http://127.0.0.1:18080/healthz") and _up("http://127.0.0.1:18081/healthz"), 60)
        start, before = time.time(), api.requests
        req0, cpu0 = apiserver_requests(api), control_plane_cpu()
        with cf.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: api.call("POST", f"/apis/kaito.sh/v1beta1/namespaces/{ns}/workspaces", workspace(ns, i)), range(n)))

        def succeeded():
            items = api.call("GET", f"/apis/kaito.sh/v1beta1/namespaces/{ns}/workspaces")["items"]
            done = sum(1 for w in items for c in w.get("status", {}).get("conditions", [])
                       if c["type"] == "WorkspaceSucceeded" and c["status"] == "True")
            return done == n
        try:
            wait_until(succeeded)
        except SystemExit:
            # Say where the Workspaces got stuck before the control plane (and its evidence) is torn down.
            items = api.call("GET", f"/apis/kaito.sh/v1beta1/namespaces/{ns}/workspaces")["items"]
            stuck = {}
            for w in items:
                key = tuple(f"{c['type']}={c['status']}/{c['reason']}" for c in w.get("status", {}).get("conditions", []))
                stuck[key] = stuck.get(key, 0) + 1
            for key, count in sorted(stuck.items(), key=lambda kv: -kv[1]):
                print(f"timed out: {count} Workspaces with {', '.join(key) or 'no status'}")
            raise
        elapsed, client_requests = time.time() - start, api.requests - before
        describe_phase("operator", delta(apiserver_requests(api), req0), delta(control_plane_cpu(), cpu0))
        items = api.call("GET", f"/apis/kaito.sh/v1beta1/namespaces/{ns}/workspaces")["items"]
        for phase in ("NodesReady", "InferenceReady", "WorkspaceSucceeded"):
            secs = sorted(p["secondsSinceCreation"] for w in items for p in w.get("status", {}).get("phases", []) if p.get("name") == phase)
            if secs:
                print(f"operator: seconds from creation to {phase}: p50 {secs[len(secs) // 2]}, "
                      f"p90 {secs[len(secs) * 9 // 10]}, max {secs[-1]}")
        rss, cpu = proc_stats(ctrl.pid)
        prss, pcpu = proc_stats(prov.pid)
        metrics = urllib.request.urlopen("http://127.0.0.1:18080/metrics").read().decode()
        by_method = {m: int(float(v)) for m, v in
                     re.findall(r'^kaito_api_requests_total\{method="([^"]*)"\} (\S+)', metrics, re.M)}
        controller_requests = sum(by_method.values())
        reconciles = sum(float(v) for v in re.findall(r'^kaito_workspace_reconciles_total\{[^}]*\} (\S+)', metrics, re.M))
        return dict(elapsed=elapsed, client_requests=client_requests, rss=rss, cpu=cpu, prov_rss=prss, prov_cpu=pcpu,
                    controller_requests=int(controller_requests), by_method=by_method, reconciles=int(reconciles))
    finally:
        for p in (ctrl, prov):
            p.terminate()
            p.wait(10)


def _up(url):
    try:
        urllib.request.urlopen(url, timeout=1)
        return True
    except Exception:
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    parser.add_argument("--keep", action="store_true", help="leave the control plane running afterwards")
    args = parser.parse_args()
    # With both cores saturated, kwok's node heartbeats can fall more than the default 40 s behind; the node
    # lifecycle controller would then mark the nodes' pods not ready, and kwok never makes them ready again.
    # That is the local control plane, not the operator, so the bench's control plane waits 5 minutes instead.
    env = dict(os.environ, KAITO_RUN_DIR=RUN, KAITO_NODE_MONITOR_GRACE_PERIOD="5m")
    target = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/kaito-rs/target")), "release")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "kaito-controller", "-p", "kaito-provisioner"],
                       check=True, cwd=REPO)
    subprocess.run([os.path.join(REPO, "hack/cluster-down.sh")], env=env)
    subprocess.run([os.path.join(REPO, "hack/cluster-up.sh")], check=True, env=env)
    try:
        bins = open(os.path.join(RUN, "env")).read()
        env["KUBECONFIG"] = os.path.join(RUN, "admin.kubeconfig")
        kubectl = os.path.join(re.search(r"KAITO_K8S_BINS=(\S+)", bins).group(1), "kubectl")
        subprocess.run([kubectl, "apply", "--server-side", "-f", os.path.join(REPO, "config/crd"),
                        "-f", os.path.join(re.search(r"KAITO_K8S_BINS=(\S+)", bins).group(1), "karpenter-crds")],
                       check=True, env=env, capture_output=True)
        time.sleep(2)
        api = Api(RUN)
        floor_s, floor_req = run_floor(api, args.n)
        remove_floor(api, args.n)
        op = run_operator(api, args.n, env, target)
    finally:
        if not args.keep:
            subprocess.run([os.path.join(REPO, "hack/cluster-down.sh")], env=env)
    print(f"| N | floor (plain client) | operator (controller + provisioner) | ratio |")
    print(f"|---|---|---|---|")
    print(f"| {args.n} | {floor_s:.1f} s, {floor_req} requests | {op['elapsed']:.1f} s | {op['elapsed'] / floor_s:.2f}x |")
    print()
    print(f"controller: peak RSS {op['rss']:.1f} MiB, CPU {op['cpu']:.1f} s, {op['controller_requests']} API requests "
          f"({op['controller_requests'] / args.n:.1f} per Workspace); provisioner: peak RSS {op['prov_rss']:.1f} MiB, "
          f"CPU {op['prov_cpu']:.1f} s; the benchmark client made {op['client_requests']} requests (creates + polls)")
    print(f"controller requests by method: {op['by_method']}; reconciles: {op['reconciles']}")


if __name__ == "__main__":
    sys.exit(main())
