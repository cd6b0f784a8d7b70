#!/usr/bin/env python3
"""Builds the RAG benchmark corpus from the manual pages Debian packages ship.

Writes into OUT_DIR:
  corpus.jsonl   {"doc_id", "text", "metadata": {"section", "name"}} one per line
  queries.jsonl  {"query", "doc_id"}: the page's NAME description; exactly one page
                 carries it (labelled query set, one known answer per query)

Usage: gen_corpus.py OUT_DIR [--docs 10000] [--queries 500] [--min-bytes 1500]
                     [--max-bytes 4096] [--seed 1]
Deterministic for a given set of installed pages and arguments.
"""
import argparse
import gzip
import hashlib
import json
import os
import random
import re
import sys

MAN_ROOT = "/usr/share/man"
SECTIONS = ["man1", "man8", "man5", "man7", "man3", "man2", "man6", "man4"]

FONT = re.compile(r"\\f(\[[^\]]*\]|\(..|.)")
SIZE = re.compile(r"\\s[+-]?\d+")
NAMED = re.compile(r"\\\((..)|\\\[([^\]]*)\]|\\\*(\(..|\[[^\]]*\]|.)")
GLYPHS = {"em": "—", "en": "–", "hy": "-", "bu": "•", "lq": "“", "rq": "”", "aq": "'",
          "dq": '"', "co": "©", "rg": "®", "tm": "™", "mi": "-", "pl": "+", "mu": "×",
          "<=": "≤", ">=": "≥", "->": "→", "oq": "‘", "cq": "’", "R": "®", "Tm": "™"}


def inline(s: str) -> str:
    s = FONT.sub("", s)
    s = SIZE.sub("", s)
    s = NAMED.sub(lambda m: GLYPHS.get(m.group(1) or m.group(2) or "", ""), s)
    s = (s.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "").replace("\\ ", " ")
          .replace("\\|", "").replace("\\^", "").replace("\\c", "").replace("\\0", " ")
          .replace("\\%", "").replace("\\:", ""))
    s = re.sub(r"\\[a-zA-Z]", "", s)
    return s


def macro_args(rest: str) -> list:
    out, cur, quoted = [], "", False
    for ch in rest:
        if ch == '"':
            quoted = not quoted
        elif ch in " \t" and not quoted:
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def roff_to_text(src: str) -> str:
    paras, cur = [], []

    def flush():
        if cur:
            paras.append(" ".join(" ".join(cur).split()))
            cur.clear()

    for line in src.splitlines():
        if line.startswith(".\\\"") or line.startswith("'\\\"") or line.startswith('.\\"'):
            continue
        if line.startswith(".") or line.startswith("'"):
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            name, rest = parts[0], (parts[1] if len(parts) > 1 else "")
            if name in ("SH", "SS"):
                flush()
                paras.append(inline(" ".join(macro_args(rest))).upper() if name == "SH"
                             else inline(" ".join(macro_args(rest))))
            elif name in ("PP", "P", "LP", "TP", "sp", "br", "HP"):
                flush()
            elif name == "IP":
                flush()
                args = macro_args(rest)
                if args:
                    cur.append(inline(args[0]))
            elif name in ("B", "I", "SM", "SB"):
                cur.append(inline(" ".join(macro_args(rest))))
            elif name in ("BR", "RB", "IR", "RI", "BI", "IB"):
                cur.append(inline("".join(macro_args(rest))))
            elif name == "Nm" or name == "Nd":
                cur.append(inline(rest))
            continue
        cur.append(inline(line))
    flush()
    return "\n\n".join(p for p in paras if p.strip())


def description(text: str) -> str:
    m = re.search(r"^NAME\n\n(.+?)$", text, re.M)
    if not m:
        return ""
    line = m.group(1)
    parts = re.split(r"\s+[-—–]+\s+", line, maxsplit=1)
    return parts[1].strip() if len(parts) == 2 else ""


def cut(text: str, max_bytes: int) -> str:
    if len(text.encode()) <= max_bytes:
        return text
    out = ""
    for para in text.split("\n\n"):
        nxt = (out + "\n\n" + para) if out else para
        if len(nxt.encode()) > max_bytes:
            break
        out = nxt
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--min-bytes", type=int, default=1500)
    ap.add_argument("--max-bytes", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    files = []
    for sec in SECTIONS:
        d = os.path.join(MAN_ROOT, sec)
        if os.path.isdir(d):
            files.extend(os.path.join(d, f) for f in sorted(os.listdir(d)))
    docs, seen = [], set()
    for path in files:
        if len(docs) >= a.docs:
            break
        try:
            raw = gzip.open(path, "rt", errors="replace").read() if path.endswith(".gz") \
                else open(path, errors="replace").read()
        except (OSError, EOFError):
            continue
        if raw.lstrip().startswith(".so "):
            continue
        text = cut(roff_to_text(raw), a.max_bytes)
        if len(text.encode()) < a.min_bytes:
            continue
        h = hashlib.sha256(text.encode()).hexdigest()
        if h in seen:
            continue
        seen.add(h)
        name = os.path.basename(path).split(".gz")[0]
        docs.append({"doc_id": h, "text": text,
                     "metadata": {"section": os.path.basename(os.path.dirname(path)), "name": name}})
    if len(docs) < a.docs:
        print(f"only {len(docs)} pages qualify", file=sys.stderr)
    # Labelled queries: descriptions carried by exactly one page.
    by_desc = {}
    for d in docs:
        desc = description(d["text"])
        if len(desc.split()) >= 4:
            by_desc.setdefault(desc.lower(), []).append(d["doc_id"])
    unique = sorted((k, v[0]) for k, v in by_desc.items() if len(v) == 1)
    random.Random(a.seed).shuffle(unique)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "corpus.jsonl"), "w") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    with open(os.path.join(a.out, "queries.jsonl"), "w") as f:
        for q, doc_id in unique[: a.queries]:
            f.write(json.dumps({"query": q, "doc_id": doc_id}) + "\n")
    total = sum(len(d["text"].encode()) for d in docs)
    print(json.dumps({"docs": len(docs), "queries": min(a.queries, len(unique)),
                      "bytes": total, "avg_bytes": total // max(1, len(docs))}))


if __name__ == "__main__":
    main()
