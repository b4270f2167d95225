#!/usr/bin/env python3
"""bench/report.py RESULTS.jsonl -- Markdown tables (Portcullis vs nginx) from a compare.sh run.

Same medians as ../shared/bench/lib/benchlib.py summary: per scenario and listener, median req/s,
p50/p99 (ms), gateway CPU µs per OK request, and the Portcullis/nginx ratios.
"""
import json, statistics, sys

NAMES = {"h1": "HTTP/1.1 keep-alive (64 conns)", "h2": "HTTP/2 (16 conns x 4 streams)",
         "hs": "new TLS 1.3 handshake per request (64 concurrent)",
         "x1": "h2load HTTP/1.1 cross-check", "x2": "h2load HTTP/2 cross-check"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, nd=0):
    return "–" if x is None else f"{x:,.{nd}f}"


def main(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    g = {}
    for r in rows:
        g.setdefault((r["scenario"], r["target"]), []).append(r)
    agg = {}
    for k, rs in g.items():
        agg[k] = dict(
            n=len(rs),
            rps=med([r["ok_rps"] for r in rs]),
            p50=med([r.get("p50") for r in rs]),
            p99=med([r.get("p99") for r in rs]),
            cpu=med([r["cpu_s"] / r["ok"] * 1e6 if r.get("cpu_s") is not None and r.get("ok") else None for r in rs]),
            spread=(max(r["ok_rps"] for r in rs) - min(r["ok_rps"] for r in rs)) / (med([r["ok_rps"] for r in rs]) or 1) * 100,
            errors=sum(r["errors"] if isinstance(r.get("errors"), int) else 1 for r in rs) + sum(r.get("non2xx") or 0 for r in rs),
            foreign=max(r.get("foreign_cores") or 0 for r in rs),
        )
    scen = []
    for r in rows:
        if r["scenario"] not in scen:
            scen.append(r["scenario"])
    for sc in scen:
        print(f"### {sc}: {NAMES.get(sc, sc)}\n")
        print("| listener | gateway | req/s (median) | spread | p50 ms | p99 ms | gw CPU µs/req | errors | Portcullis/nginx req/s | Portcullis/nginx CPU/req |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        if (sc, "backend") in agg:
            a = agg[(sc, "backend")]
            print(f"| – | backend direct | {f(a['rps'])} | {f(a['spread'])}% | {f(a['p50'],2)} | {f(a['p99'],2)} | – | {a['errors']} | | |")
        for l in ("tls", "mtls"):
            n, c = agg.get((sc, f"nginx-{l}")), agg.get((sc, f"cand-{l}"))
            for who, a in (("nginx", n), ("Portcullis", c)):
                if not a:
                    continue
                rr = cr = ""
                if who == "Portcullis" and n and n["rps"]:
                    rr = f"**{a['rps'] / n['rps']:.2f}**"
                    cr = f"**{a['cpu'] / n['cpu']:.2f}**" if a["cpu"] and n["cpu"] else "–"
                print(f"| {l} | {who} | {f(a['rps'])} | {f(a['spread'])}% | {f(a['p50'],2)} | {f(a['p99'],2)} | {f(a['cpu'],1)} | {a['errors']} | {rr} | {cr} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
