#!/usr/bin/env python3
"""Summarises load-tests results: medians over rounds with the spread, and ratios against nginx and LiteLLM."""
import glob
import json
import os
import statistics
import sys

results, smoke = sys.argv[1], sys.argv[2] == "1"
runs = {}
by_round = {}
errors = 0
for path in sorted(glob.glob(os.path.join(results, "*.json"))):
    r = json.load(open(path))
    rnd, rest = os.path.basename(path)[:-5].split("-", 1)
    target, kind = rest.rsplit("-", 1)
    runs.setdefault((target, kind), []).append(r)
    by_round[(int(rnd), target, kind)] = r
    errors += r["errors"] + ((r.get("baseline") or {}).get("errors") or 0)

order = [t for t in ["direct", "nginx", "nginx-mirror-10", "shadowroute-off", "shadowroute-10", "shadowroute-100", "litellm"] if (t, "closed") in runs]


def med(target, kind, key, sub=None):
    vals = []
    for r in runs.get((target, kind), []):
        v = r.get(key) if sub is None else (r.get(key) or {}).get(sub)
        if v is not None:
            vals.append(v)
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def cell(v, fmt="{:.0f}"):
    m, lo, hi = v
    if m is None:
        return "-"
    return (fmt + " (" + fmt + "–" + fmt + ")").format(m, lo, hi)


print(f"Rounds per target: {len(runs.get((order[0], 'closed'), []))}. Median (min–max) over rounds.\n")
print("| target | throughput req/s (closed loop) | load core busy % | proxy core busy % | req/s per busy proxy core | p50 ms | p99 ms | p99.9 ms at fixed rate | added p99 over direct ms | CPU s / 10k req | peak RSS MiB | SSE TTFT p50 ms | TTFT over direct ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
direct_p99 = med("direct", "open", "latency", "p99_ms")[0]
# Each round's SSE TTFT p50 less that of the same streams sent straight to the upstream alongside.
tt_rounds = {t: [r["ttft"]["p50_ms"] - r["baseline"]["ttft"]["p50_ms"] for r in runs.get((t, "sse"), [])
                 if r.get("ttft") and (r.get("baseline") or {}).get("ttft")] for t in order}
direct_ttft = med("direct", "sse", "ttft", "p50_ms")[0]
for t in order:
    p99 = med(t, "open", "latency", "p99_ms")
    ttft = med(t, "sse", "ttft", "p50_ms")
    added = "-" if p99[0] is None or direct_p99 is None or t == "direct" else f"{p99[0] - direct_p99:+.3f}"
    # Paired where the run sent the same streams straight to the upstream in the same seconds:
    # the median over rounds of each round's difference; otherwise against direct's own rounds.
    if tt_rounds[t]:
        tt_added = f"{statistics.median(tt_rounds[t]):+.3f} paired"
    else:
        tt_added = "-" if ttft[0] is None or direct_ttft is None or t == "direct" else f"{ttft[0] - direct_ttft:+.3f}"
    pct = lambda key: tuple(None if v is None else v * 100 for v in med(t, "closed", key))
    print(f"| {t} | {cell(med(t, 'closed', 'throughput_rps'))} | {cell(pct('load_core_busy'))} | {cell(pct('proxy_core_busy'))} | "
          f"{cell(med(t, 'closed', 'per_core_rps'))} | {cell(med(t, 'open', 'latency', 'p50_ms'), '{:.3f}')} | "
          f"{cell(p99, '{:.3f}')} | {cell(med(t, 'open', 'latency', 'p999_ms'), '{:.3f}')} | {added} | "
          f"{cell(med(t, 'closed', 'cpu_s_per_10k'), '{:.3f}')} | {cell(med(t, 'closed', 'peak_rss_mib'), '{:.1f}')} | "
          f"{cell(ttft, '{:.3f}')} | {tt_added} |")


def ratio(a, b, key, sub=None, kind="closed"):
    x, y = med(a, kind, key, sub)[0], med(b, kind, key, sub)[0]
    if x is None or not y:
        return "-"
    # Two significant digits for small ratios (shadowroute's CPU per request against LiteLLM's).
    return f"{x / y:.2f}x" if x / y >= 0.1 else f"{x / y:.2g}x"


print()
for peer in ["nginx", "litellm"]:
    if (peer, "closed") in runs:
        print(f"- shadowroute (shadowing off) / {peer}: throughput {ratio('shadowroute-off', peer, 'throughput_rps')}, "
              f"per busy proxy core {ratio('shadowroute-off', peer, 'per_core_rps')}, "
              f"CPU per request {ratio('shadowroute-off', peer, 'cpu_s_per_10k')}")
if ("shadowroute-10", "closed") in runs:
    print(f"- 10 % shadowing / shadowing off: throughput {ratio('shadowroute-10', 'shadowroute-off', 'throughput_rps')}, "
          f"per busy proxy core {ratio('shadowroute-10', 'shadowroute-off', 'per_core_rps')}, "
          f"p99 at fixed rate {ratio('shadowroute-10', 'shadowroute-off', 'latency', 'p99_ms', 'open')}")
if ("nginx-mirror-10", "closed") in runs:
    print(f"- nginx mirroring 10 % (mirror module, nothing compared) / nginx: throughput {ratio('nginx-mirror-10', 'nginx', 'throughput_rps')}, "
          f"per busy proxy core {ratio('nginx-mirror-10', 'nginx', 'per_core_rps')}, "
          f"p99 at fixed rate {ratio('nginx-mirror-10', 'nginx', 'latency', 'p99_ms', 'open')}")
split = [t for t in order if med(t, "closed", "cpu_user_s_per_10k")[0] is not None]
if split:
    print("- CPU s / 10k requests, user + system (medians): " + ", ".join(
        f"{t} {med(t, 'closed', 'cpu_user_s_per_10k')[0]:.3f} + {med(t, 'closed', 'cpu_sys_s_per_10k')[0]:.3f}" for t in split))

if any(tt_rounds.values()):
    print("- SSE TTFT p50 over direct's streams in the same seconds, round by round: " + "; ".join(
        f"{t} " + ", ".join(f"{d:+.3f}" for d in v) + f" (median {statistics.median(v):+.3f})" for t, v in tt_rounds.items() if v))
cores = [t for t in order if med(t, "closed", "proxy_core_us_per_req", "user")[0] is not None]
if cores:
    part = lambda t, k: med(t, "closed", "proxy_core_us_per_req", k)[0]
    print("- proxy core µs per request, user + system + softirq (medians): " + ", ".join(
        f"{t} {part(t, 'user'):.2f} + {part(t, 'system'):.2f} + {part(t, 'softirq'):.2f}" for t in cores))
    if "shadowroute-10" in cores and "shadowroute-off" in cores:
        # Round by round, the difference per request times ten is the cost of one mirrored request.
        for k in ["user", "system", "softirq"]:
            diffs = []
            for rnd in sorted({key[0] for key in by_round}):
                on = (by_round.get((rnd, "shadowroute-10", "closed"), {}).get("proxy_core_us_per_req") or {}).get(k)
                off = (by_round.get((rnd, "shadowroute-off", "closed"), {}).get("proxy_core_us_per_req") or {}).get(k)
                if on is not None and off is not None:
                    diffs.append((on - off) * 10)
            if diffs:
                print(f"- proxy core µs per mirrored request ({k}, (on − off) × 10 round by round): "
                      + ", ".join(f"{d:.1f}" for d in diffs) + f" (median {statistics.median(diffs):.1f})")
    if "shadowroute-100" in cores and "shadowroute-off" in cores:
        # Every request mirrored: the difference per request, over the share mirrored, is one
        # mirrored request's cost, read without the 10 % target's tenfold magnification of noise.
        parts = {k: [] for k in ["user", "system", "softirq"]}
        for rnd in sorted({key[0] for key in by_round}):
            on = by_round.get((rnd, "shadowroute-100", "closed"), {})
            off = (by_round.get((rnd, "shadowroute-off", "closed"), {}).get("proxy_core_us_per_req") or {})
            share = on.get("shadow_share")
            share = 1.0 if share is None else share
            if on.get("proxy_core_us_per_req") and off and share > 0:
                for k in parts:
                    parts[k].append((on["proxy_core_us_per_req"][k] - off[k]) / share)
        if parts["user"]:
            totals = [sum(v) for v in zip(*parts.values())]
            kernels = [s + q for s, q in zip(parts["system"], parts["softirq"])]
            print("- proxy core µs per mirrored request, every request mirrored less shadowing off, round by round: "
                  + "; ".join(f"{k} " + ", ".join(f"{d:.1f}" for d in v) + f" (median {statistics.median(v):.1f})"
                              for k, v in parts.items())
                  + "; total " + ", ".join(f"{d:.1f}" for d in totals) + f" (median {statistics.median(totals):.1f})")
            # 10 % shadowing within 5 % of the per-core throughput allows each request 1/0.95 - 1 more
            # of the core, so a mirrored request (one in ten) ten times that.
            request = sum(part("shadowroute-off", k) for k in parts)
            budget = (1 / 0.95 - 1) * 10 * request
            mirrored, kernel = statistics.median(totals), statistics.median(kernels)
            print(f"- 10 % shadowing's budget (5 % of per-core throughput): {budget:.1f} µs of the core per mirrored request "
                  f"(shadowing off takes {request:.1f} µs per request); one mirrored request took {mirrored:.1f} µs, of which "
                  f"system and softirq {kernel:.1f} µs ({kernel / budget * 100:.0f} % of the budget); at that cost 10 % "
                  f"shadowing takes {(1 - 1 / (1 + mirrored / 10 / request)) * 100:.1f} % of per-core throughput")
segs = [t for t in order if med(t, "closed", "tcp_segments_per_req")[0] is not None]
if segs:
    print("- TCP segments per request over the closed loop (all the machine's, /proc/net/snmp; on loopback each is sent once), "
          "and connections opened per 1,000 requests (medians): " + ", ".join(
              f"{t} {med(t, 'closed', 'tcp_segments_per_req')[0]:.2f} ({med(t, 'closed', 'tcp_opens_per_1k')[0]:.1f})" for t in segs))
shares = [t for t in order if med(t, "closed", "shadow_share")[0] is not None]
if shares:
    print("- requests mirrored (shadow requests ended over the closed loops, from /metrics, per request answered): " + ", ".join(
        f"{t} {med(t, 'closed', 'shadow_share')[0] * 100:.1f} % (dropped before sending: {sum(r.get('shadow_dropped') or 0 for r in runs[(t, 'closed')])})"
        for t in shares))


def paired(a, b, key):
    """a/b for each round (the two measured a few seconds apart), then the median of those."""
    out = []
    for rnd in sorted({k[0] for k in by_round}):
        x, y = by_round.get((rnd, a, "closed"), {}).get(key), by_round.get((rnd, b, "closed"), {}).get(key)
        if x is not None and y:
            out.append(x / y)
    if not out:
        return "-"
    return ", ".join(f"{r:.2f}" for r in out) + f" (median {statistics.median(out):.2f})"


for a, b in [("shadowroute-off", "nginx"), ("shadowroute-10", "shadowroute-off"), ("shadowroute-100", "shadowroute-off"), ("nginx-mirror-10", "nginx")]:
    if (a, "closed") in runs and (b, "closed") in runs:
        print(f"- {a} / {b}, round by round: throughput {paired(a, b, 'throughput_rps')}; "
              f"per busy proxy core {paired(a, b, 'per_core_rps')}; CPU per request {paired(a, b, 'cpu_s_per_10k')}")
base = os.path.dirname(results.rstrip("/"))
soak = os.path.join(base, "soak-rss.txt")
if os.path.exists(soak):
    pts = [tuple(map(int, l.split())) for l in open(soak) if l.strip()]
    if len(pts) >= 2:
        first = next((r for t, r in pts if t >= 60), pts[0][1])
        last = pts[-1][1]
        s = json.load(open(os.path.join(base, "soak.json")))
        errors += s["errors"]
        # The trend too: a least-squares line through the samples from one minute on, its rise over
        # that span as a share of its starting level. A leak moves it as it moves the two samples; a
        # single step of the allocator's retained pages near either end of the span moves it far
        # less (about a quarter of the step at the last sample), though one mid-span moves it up to
        # one and a half times the step.
        tail = [(t, r) for t, r in pts if t >= 60]
        trend = ""
        if len(tail) >= 3:
            mt, mr = statistics.mean(t for t, _ in tail), statistics.mean(r for _, r in tail)
            slope = sum((t - mt) * (r - mr) for t, r in tail) / sum((t - mt) ** 2 for t, _ in tail)
            start = mr + slope * (tail[0][0] - mt)
            trend = f"; trend from 1 min on {slope * (tail[-1][0] - tail[0][0]) / start * 100:+.1f} % (least squares over {len(tail)} samples)"
        print(f"- soak: {pts[-1][0]} s at {s['offered_rate']} req/s (10 % shadowing): RSS {first / 1024:.1f} MiB after 1 min, "
              f"{last / 1024:.1f} MiB at the end ({(last - first) / first * 100:+.1f} %){trend}, min {min(r for _, r in pts) / 1024:.1f} MiB, "
              f"max {max(r for _, r in pts) / 1024:.1f} MiB; {s['ok']} requests, {s['errors']} errors")
peak = os.path.join(base, "streams-peak-rss-kb.txt")
if os.path.exists(peak):
    s = json.load(open(os.path.join(base, "streams.json")))
    errors += s["errors"]
    print(f"- {s['concurrency']} concurrent SSE streams (12 s each): peak RSS {int(open(peak).read()) / 1024:.1f} MiB; "
          f"{s['ok']} streams completed, {s['errors']} errors")
print(f"\nErrors across all runs: {errors}")
# The smoke run checks the sampling too: every request mirrored means every request mirrored.
every = med("shadowroute-100", "closed", "shadow_share")[0]
if smoke and every is not None and every < 0.9:
    print(f"shadowroute-100 mirrored {every * 100:.1f} % of requests, not all of them")
    sys.exit(1)
if smoke and errors:
    sys.exit(1)
