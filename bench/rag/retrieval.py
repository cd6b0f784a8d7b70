#!/usr/bin/env python3
"""Retrieval-only latency of a kaito-rag binary over an existing store (no indexing).

    python bench/rag/retrieval.py BINARY DATA_DIR

DATA_DIR holds a store with an index named "bench" (copy it first: the service opens it for writing).
The model comes from the environment (RAG_MODEL_DIR, RAG_ONNXRUNTIME_LIB). Measures 200 queries with
1 client, then 8 clients for 15 s, queries from ~/.cache/kaito-rs/rag-bench-corpus/queries.jsonl.
"""
import json, os, subprocess, sys, time, threading, http.client, shutil
binary, data = sys.argv[1], sys.argv[2]
env = dict(os.environ, RAG_DATA_DIR=data, RAG_HOST="127.0.0.1", RAG_PORT="0", RUST_LOG="warn")
p = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
line = p.stdout.readline().strip(); host, port = line.split()[1].rsplit(":", 1)
qs = [json.loads(l)["query"] for l in open(os.path.expanduser("~/.cache/kaito-rs/rag-bench-corpus/queries.jsonl"))]
def call(c, q):
    c.request("POST", "/retrieve", json.dumps({"index_name": "bench", "query": q, "max_node_count": 5}), {"Content-Type": "application/json"})
    r = c.getresponse(); r.read(); assert r.status == 200, r.status
c = http.client.HTTPConnection(host, int(port))
for q in qs[:30]: call(c, q)
lat = []
for q in qs[:200]:
    t = time.perf_counter(); call(c, q); lat.append((time.perf_counter()-t)*1000)
lat.sort(); print("1 client p50 %.1f p99 %.1f" % (lat[len(lat)//2], lat[int(len(lat)*.99)]))
lat8 = []; stop = time.time() + 15; lock = threading.Lock()
def reader(k):
    c = http.client.HTTPConnection(host, int(port)); i = k; loc = []
    while time.time() < stop:
        t = time.perf_counter(); call(c, qs[i % len(qs)]); loc.append((time.perf_counter()-t)*1000); i += 8
    with lock: lat8.extend(loc)
ts = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
t0 = time.time(); [t.start() for t in ts]; [t.join() for t in ts]
lat8.sort(); print("8 clients p50 %.1f p99 %.1f rps %.1f" % (lat8[len(lat8)//2], lat8[int(len(lat8)*.99)], len(lat8)/(time.time()-t0)))
p.terminate(); p.wait()
