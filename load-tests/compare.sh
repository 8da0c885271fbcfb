#!/usr/bin/env bash
# Side-by-side on one machine: direct (the limit), nginx (plain, and mirroring 10 %), shadowroute
# (shadowing off, 10 %, and every request mirrored, the last for the cost of one mirrored request),
# and the LiteLLM proxy, against the same fast upstream, in interleaved rounds.
#
#   load-tests/compare.sh                 full comparison (3 rounds; 5 rounds took about 23 minutes here), results in target/bench/
#   load-tests/compare.sh --smoke         a few seconds: direct and shadowroute only, asserts no errors
#   load-tests/compare.sh --instructions  user-space instructions per request through nginx and
#                                         shadowroute (callgrind), and per mirrored request (every
#                                         request mirrored), for the chat mix and for an embeddings
#                                         answer of real size (4 x 1,536): repeatable where times on
#                                         a shared machine are not
#   ROUNDS=5 DURATION=20 load-tests/compare.sh
#
# Each proxy runs pinned to CPU 1 with one worker; the load generator and the upstream share CPU 0.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/bench
SMOKE=0
INSTR=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
[ "${1:-}" = "--instructions" ] && INSTR=1 && SMOKE=1
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONC=${CONC:-64}
RATE=${RATE:-2000}
SOAK=${SOAK:-300}          # seconds of steady load for the memory soak (0 skips it)
STREAMS=${STREAMS:-1000}   # concurrent open SSE streams for the memory check
LITELLM_VERSION=1.100.0   # pinned; 1.82.7 and 1.82.8 were the compromised releases; newer [proxy] extras do not resolve on PyPI
if [ $SMOKE = 1 ]; then ROUNDS=1; DURATION=2; RATE=300; CONC=16; fi
ulimit -n 65536 2>/dev/null || true
mkdir -p "$OUT/results" "$OUT/logs"
rm -f "$OUT"/results/*.json "$OUT"/soak* "$OUT"/streams*

need() { command -v "$1" >/dev/null 2>&1; }
if [ $SMOKE = 0 ] || [ $INSTR = 1 ]; then
  if ! need nginx; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx; fi
fi
if [ $SMOKE = 0 ]; then
  if [ "${SKIP_LITELLM:-0}" = 0 ] && [ ! -x "$ROOT/target/litellm-venv/bin/litellm" ]; then
    python3 -m venv "$ROOT/target/litellm-venv"
    "$ROOT/target/litellm-venv/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
  fi
fi
cargo build --release --locked -q -p shadowroute -p loadgen
SR=$ROOT/target/release/shadowroute
LG=$ROOT/target/release/loadgen
CPUS=$(nproc)
PROXY_CPU=$((CPUS > 1 ? 1 : 0))
PIN_PROXY="taskset -c $PROXY_CPU"
PIN_LOAD="taskset -c 0"
# This script's own helpers (pgrep, awk, python) stay off the proxies' core too.
taskset -cp 0 $$ > /dev/null

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }

# --- the upstream: nginx serving fixed OpenAI-shaped bodies (never the bottleneck) -------------
UP=$(free_port); SIM=$(free_port)
CHAT='{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Paris is the capital of France."},"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":7,"total_tokens":28}}'
EMB='{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3,0.4]},{"object":"embedding","index":1,"embedding":[0.2,0.1,0.4,0.3]},{"object":"embedding","index":2,"embedding":[0.4,0.3,0.2,0.1]},{"object":"embedding","index":3,"embedding":[0.3,0.4,0.1,0.2]}],"model":"bench","usage":{"prompt_tokens":12,"total_tokens":12}}'
CMPL='{"id":"cmpl-1","object":"text_completion","created":0,"model":"bench","choices":[{"index":0,"text":"Hello!","finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}'
# An embeddings answer of real size (four rows of 1,536 numbers written as OpenAI writes them,
# about 116 KB), served from a file under /big/v1 (nginx answers a POST to a file by fetching it).
python3 - "$OUT/emb1536.json" <<'PY'
import json, random, struct, sys
rng = random.Random(1536)
row = lambda: [struct.unpack("f", struct.pack("f", rng.gauss(0, 0.025)))[0] for _ in range(1536)]
data = [{"object": "embedding", "index": i, "embedding": row()} for i in range(4)]
body = {"object": "list", "data": data, "model": "bench", "usage": {"prompt_tokens": 12, "total_tokens": 12}}
open(sys.argv[1], "w").write(json.dumps(body, separators=(",", ":")))
PY
cat > "$OUT/upstream.conf" <<NGX
worker_processes 1; daemon off; pid $OUT/upstream.pid; error_log $OUT/logs/upstream.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream itself { server 127.0.0.1:$UP; keepalive 16; }
  server { listen 127.0.0.1:$UP; default_type application/json;
    location = /v1/chat/completions { return 200 '$CHAT'; }
    location = /v1/embeddings { return 200 '$EMB'; }
    location = /v1/completions { return 200 '$CMPL'; }
    location = /emb1536.json { root $OUT; }
    location = /big/v1/embeddings { proxy_method GET; proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://itself/emb1536.json; }
    location / { return 200 '$CHAT'; } } }
NGX
if need nginx; then
  $PIN_LOAD nginx -c "$OUT/upstream.conf" -p "$OUT" > "$OUT/logs/upstream.log" 2>&1 & PIDS+=($!)
else
  # Smoke runs may lack nginx: the sim stands in as the upstream.
  printf 'servers:\n  - { name: up, listen: "127.0.0.1:%s", behavior: { ttft: 0ms, per_token: 0ms, jitter: 0, words: 4 } }\n' "$UP" > "$OUT/up-sim.yaml"
  $PIN_LOAD "$SR" sim --config "$OUT/up-sim.yaml" > "$OUT/logs/upstream.log" 2>&1 & PIDS+=($!)
fi
# A streaming upstream for TTFT: the sim, 5 ms to the first token, 1 ms per token.
SLOW=$(free_port)
printf 'servers:\n  - { name: sse, listen: "127.0.0.1:%s", behavior: { ttft: 5ms, per_token: 1ms, jitter: 0, words: 20 } }\n  - { name: slow, listen: "127.0.0.1:%s", behavior: { ttft: 50ms, per_token: 200ms, jitter: 0, words: 60 } }\n' "$SIM" "$SLOW" > "$OUT/sim.yaml"
$PIN_LOAD "$SR" sim --config "$OUT/sim.yaml" > "$OUT/logs/sim.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/v1/models"
wait_http "http://127.0.0.1:$SIM/v1/models"

# --- the targets ------------------------------------------------------------------------------
declare -A URL SSE PID ADMIN
URL[direct]=http://127.0.0.1:$UP; SSE[direct]=http://127.0.0.1:$SIM; PID[direct]=

start_shadowroute() { # name sample
  local name=$1 sample=$2 port admin; port=$(free_port); admin=$(free_port)
  cat > "$OUT/$name.yaml" <<YAML
server: { listen: "127.0.0.1:$port", admin_listen: "127.0.0.1:$admin", state: "$OUT/$name.db" }
models:
  up:   { url: "http://127.0.0.1:$UP/v1", model: bench }
  cand: { url: "http://127.0.0.1:$UP/v1", model: bench-candidate }
  sse:  { url: "http://127.0.0.1:$SIM/v1", model: bench }
  slow: { url: "http://127.0.0.1:$SLOW/v1", model: bench }
  big:  { url: "http://127.0.0.1:$UP/big/v1", model: bench }
  bigc: { url: "http://127.0.0.1:$UP/big/v1", model: bench-candidate }
routes:
  - name: emb1536
    modality: embeddings
    match: { headers: { x-bench: emb1536 } }
    leader: big
    candidates: [{ model: bigc, sample: $sample, max_inflight: 256 }]
    evaluate: { noise_sample: 0 }
  - name: slow
    modality: text
    match: { headers: { x-bench: slow } }
    leader: slow
  - name: stream
    modality: text
    match: { headers: { x-bench: sse } }
    leader: sse
  - name: chat
    modality: [text, vision, embeddings]
    leader: up
    candidates: [{ model: cand, sample: $sample, max_inflight: 256 }]
    evaluate: { agreement: token_f1, noise_sample: 0 }
YAML
  local wrap=""
  [ $INSTR = 1 ] && wrap="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$OUT/callgrind.$name"
  TOKIO_WORKER_THREADS=1 SHADOWROUTE_LOG=warn $PIN_PROXY $wrap "$SR" serve --config "$OUT/$name.yaml" > "$OUT/logs/$name.log" 2>&1 &
  PID[$name]=$!; PIDS+=($!)
  URL[$name]=http://127.0.0.1:$port; SSE[$name]=http://127.0.0.1:$port; ADMIN[$name]=http://127.0.0.1:$admin
  wait_http "http://127.0.0.1:$admin/readyz"
}
if [ $INSTR = 1 ] && ! need valgrind; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind; fi
rm -f "$OUT"/callgrind.*
start_shadowroute shadowroute-off 0
start_shadowroute shadowroute-10 0.1
# Every request mirrored: its cost less shadowing-off's is one mirrored request's (instructions
# with --instructions; the core's time in the rounds, read without the tenfold magnification of
# noise that the 10 % target's difference carries).
start_shadowroute shadowroute-100 1
TARGETS=(direct shadowroute-off shadowroute-10 shadowroute-100)

# --- instructions: counted only while a closed loop of DURATION seconds runs, after a warm-up ---
if [ $INSTR = 1 ]; then
  # nginx as the reference, one process (no master) so callgrind sees the worker.
  NG=$(free_port)
  cat > "$OUT/proxy-instr.conf" <<NGX
worker_processes 1; master_process off; daemon off; pid $OUT/proxy-instr.pid; error_log $OUT/logs/proxy-instr.err warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP; keepalive 256; }
  server { listen 127.0.0.1:$NG;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX
  $PIN_PROXY valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.nginx" nginx -c "$OUT/proxy-instr.conf" -p "$OUT" > "$OUT/logs/proxy-instr.log" 2>&1 &
  PID[nginx]=$!; PIDS+=($!); URL[nginx]=http://127.0.0.1:$NG
  wait_http "http://127.0.0.1:$NG/v1/models"
  # measure target mix dump [header]: instructions per request while the mix runs (dump: the
  # process's how-manyth dump this is).
  measure() {
    local t=$1 mix=$2 dump=$3 name=$1${4:+-$4} pid=${PID[$1]} header=(); [ -n "${4:-}" ] && header=(--header "x-bench: $4")
    $PIN_LOAD "$LG" --name "$t" --url "${URL[$t]}" --mode closed --concurrency 8 --duration 1 --warmup 0 --drain --mix "$mix" ${header[@]+"${header[@]}"} --json "$OUT/instr-warm.json" > /dev/null
    callgrind_control -i on "$pid" > /dev/null 2>&1
    $PIN_LOAD "$LG" --name "$t" --url "${URL[$t]}" --mode closed --concurrency 8 --duration "${INSTR_SECONDS:-3}" --warmup 0 --drain --mix "$mix" ${header[@]+"${header[@]}"} --json "$OUT/instr-$name.json" > /dev/null
    sleep 1
    callgrind_control -i off "$pid" > /dev/null 2>&1
    callgrind_control -d "$pid" > /dev/null 2>&1
    ir=$(callgrind_annotate "$OUT/callgrind.$t.$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n {gsub(",", "", $1); print $1; n = 1}')
    python3 - "$OUT/instr-$name.json" "$ir" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); n = r["ok"] + r["errors"]; ir = int(sys.argv[2])
assert r["errors"] == 0, f"{r['errors']} errors"
print(f"{sys.argv[3]}: {ir / n:,.0f} instructions per request (user space, {n} requests; callgrind)")
open(sys.argv[1][:-5] + ".ir", "w").write(f"{ir / n}")
PY
  }
  mirrored() { # label on off
    python3 -c "import sys; on, off = (float(open(p).read()) for p in sys.argv[2:]); print(f'one mirrored {sys.argv[1]}: {on - off:,.0f} instructions (shadowroute-100 less shadowroute-off)')" "$@"
  }
  for t in nginx shadowroute-off shadowroute-10 shadowroute-100; do measure $t load-tests/mix/chat.jsonl 1; done
  mirrored "request" "$OUT/instr-shadowroute-100.ir" "$OUT/instr-shadowroute-off.ir"
  # Embeddings answers of real size (the mix's embeddings request, answered with four rows of 1,536).
  for t in shadowroute-off shadowroute-100; do measure $t load-tests/mix/embeddings.jsonl 2 emb1536; done
  mirrored "1,536-dimension embeddings request" "$OUT/instr-shadowroute-100-emb1536.ir" "$OUT/instr-shadowroute-off-emb1536.ir"
  exit 0
fi

if [ $SMOKE = 0 ]; then
  NG=$(free_port); NGS=$(free_port)
  cat > "$OUT/proxy.conf" <<NGX
worker_processes 1; daemon off; pid $OUT/proxy.pid; error_log $OUT/logs/proxy.err warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP; keepalive 256; }
  upstream sse { server 127.0.0.1:$SIM; keepalive 64; }
  server { listen 127.0.0.1:$NG;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:$NGS;
    location / { proxy_pass http://sse; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }
NGX
  $PIN_PROXY nginx -c "$OUT/proxy.conf" -p "$OUT" > "$OUT/logs/proxy.log" 2>&1 &
  PID[nginx]=$!; PIDS+=($!); URL[nginx]=http://127.0.0.1:$NG; SSE[nginx]=http://127.0.0.1:$NGS
  # nginx mirroring a random 10 % of requests to the same upstream (the mirror module; nothing
  # is compared or stored): the bare cost of the second exchange, next to shadowroute's 10 %.
  NGM=$(free_port)
  cat > "$OUT/mirror.conf" <<NGX
worker_processes 1; daemon off; pid $OUT/mirror.pid; error_log $OUT/logs/mirror.err warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  split_clients "\${request_id}" \$sampled { 10% 1; * ""; }
  upstream up { server 127.0.0.1:$UP; keepalive 256; }
  server { listen 127.0.0.1:$NGM;
    location / { mirror /mirror; proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location = /mirror { internal; if (\$sampled = "") { return 204; }
      proxy_pass http://up\$request_uri; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX
  $PIN_PROXY nginx -c "$OUT/mirror.conf" -p "$OUT" > "$OUT/logs/mirror.log" 2>&1 &
  PID[nginx-mirror-10]=$!; PIDS+=($!); URL[nginx-mirror-10]=http://127.0.0.1:$NGM; SSE[nginx-mirror-10]=
  TARGETS=(direct nginx nginx-mirror-10 shadowroute-off shadowroute-10 shadowroute-100)
  wait_http "http://127.0.0.1:$NG/v1/models"
  wait_http "http://127.0.0.1:$NGM/v1/models"
fi
if [ $SMOKE = 0 ] && [ "${SKIP_LITELLM:-0}" = 0 ]; then
  LP=$(free_port); LPS=$(free_port)
  for pair in "$LP:$UP:litellm" "$LPS:$SIM:litellm-sse"; do
    IFS=: read -r lport uport lname <<< "$pair"
    cat > "$OUT/$lname.yaml" <<YAML
model_list:
  - model_name: bench
    litellm_params: { model: openai/bench, api_base: "http://127.0.0.1:$uport/v1", api_key: sk-bench }
  - model_name: bench-embed
    litellm_params: { model: openai/bench, api_base: "http://127.0.0.1:$uport/v1", api_key: sk-bench }
litellm_settings: { drop_params: true, telemetry: false }
general_settings: { disable_spend_logs: true }
YAML
    LITELLM_LOG=ERROR $PIN_PROXY "$ROOT/target/litellm-venv/bin/litellm" --config "$OUT/$lname.yaml" --host 127.0.0.1 --port "$lport" --num_workers 1 > "$OUT/logs/$lname.log" 2>&1 &
    PIDS+=($!); [ "$lname" = litellm ] && PID[litellm]=$!
  done
  URL[litellm]=http://127.0.0.1:$LP; SSE[litellm]=http://127.0.0.1:$LPS
  for u in "http://127.0.0.1:$LP/health/liveliness" "http://127.0.0.1:$LPS/health/liveliness"; do
    for _ in $(seq 1 600); do curl -s -o /dev/null "$u" && break; sleep 0.2; done
  done
  TARGETS=(direct nginx nginx-mirror-10 shadowroute-off shadowroute-10 shadowroute-100 litellm)
fi

# --- measurement -------------------------------------------------------------------------------
# A target is a process tree (nginx and LiteLLM fork workers): sum CPU over it, and RSS too.
tree() { local p=$1; echo "$p"; for c in $(pgrep -P "$p" || true); do tree "$c"; done; }
# CPU ticks as "user system", summed over the tree.
cpu_ticks() { [ -z "$1" ] && { echo "0 0"; return; }; for p in $(tree "$1"); do awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null; done | awk '{u+=$1; s+=$2} END {print u+0, s+0}'; }
hwm_kb() { [ -z "$1" ] && { echo 0; return; }; for p in $(tree "$1"); do awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null; done | awk '{s+=$1} END {print s+0}'; }
# A core's ticks from /proc/stat as "user system softirq idle": user counts nice, softirq counts
# hardware interrupts, and busy is the first three (on loopback much of a proxy's TCP work runs
# as softirq, which no process is charged for); steal (another guest's time) is neither.
core_ticks() { awk -v c="cpu$1" '$1 == c {print $2 + $3, $4, $7 + $8, $5 + $6}' /proc/stat; }
TCK=$(getconf CLK_TCK)
# A shadowroute's shadow requests so far, from its /metrics, as "sent dropped" (sent: those that
# ended, whatever their outcome; dropped: those shed before sending).
shadow_counts() {
  [ -z "${ADMIN[$1]:-}" ] && { echo "- -"; return; }
  curl -s "${ADMIN[$1]}/metrics" | awk '/^shadowroute_shadow_requests_total/ {m += $NF} /^shadowroute_shadow_dropped_total/ {d += $NF} END {print m + 0, d + 0}'
}
# The machine's TCP segments sent and connections opened so far, as "segments opens" (on
# loopback each segment is sent once and received once; /proc/net/snmp's OutSegs, ActiveOpens).
tcp_counts() { awk '$1 == "Tcp:" && $2 ~ /^[0-9]/ {print $12, $6}' /proc/net/snmp; }
measure() { # round target
  local r=$1 t=$2 base=${URL[$2]} pid=${PID[$2]:-} c0 c1 k0 k1 l0 l1 m0 m1 n0 n1
  m0=$(shadow_counts "$t")
  c0=$(cpu_ticks "$pid"); k0=$(core_ticks "$PROXY_CPU"); l0=$(core_ticks 0); n0=$(tcp_counts)
  $PIN_LOAD "$LG" --name "$t" --url "$base" --mode closed --concurrency "$CONC" --duration "$DURATION" --mix load-tests/mix/chat.jsonl --json "$OUT/results/$r-$t-closed.json" > /dev/null
  k1=$(core_ticks "$PROXY_CPU"); l1=$(core_ticks 0); c1=$(cpu_ticks "$pid"); n1=$(tcp_counts)
  # Shadow requests still in flight as the loop ends finish within milliseconds on this upstream.
  [ -n "${ADMIN[$t]:-}" ] && sleep 0.5
  m1=$(shadow_counts "$t")
  python3 - "$OUT/results/$r-$t-closed.json" "$c0" "$c1" "$TCK" "$(hwm_kb "$pid")" "$k0" "$k1" "$l0" "$l1" "$CPUS" "$m0" "$m1" "$n0" "$n1" <<'PY'
import json, sys
path, c0, c1, tck, hwm = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4]), int(sys.argv[5] or 0)
(u0, s0), (u1, s1) = map(int, c0), map(int, c1)
k0, k1, l0, l1 = (list(map(int, a.split())) for a in sys.argv[6:10])
(kb0, ki0), (kb1, ki1), (lb0, li0), (lb1, li1) = ((sum(t[:3]), t[3]) for t in (k0, k1, l0, l1))
r = json.load(open(path))
# CPU time is read over the whole run, so it is divided by every request answered in it.
n = r["answered_with_warmup"]
per_10k = lambda ticks: round(ticks / tck / n * 10000, 4)
r["cpu_s_per_10k"] = per_10k(u1 + s1 - u0 - s0) if n and u1 + s1 > u0 + s0 else None
r["cpu_user_s_per_10k"] = per_10k(u1 - u0) if r["cpu_s_per_10k"] else None
r["cpu_sys_s_per_10k"] = per_10k(s1 - s0) if r["cpu_s_per_10k"] else None
r["peak_rss_mib"] = round(hwm / 1024, 1) if hwm else None
# The proxy's core as a whole: how busy it was, and requests per second of its busy time (the
# throughput one saturated core would give). Only with a core to itself, and not for direct.
busy = lambda b0, i0, b1, i1: (b1 - b0) / max(1, b1 - b0 + i1 - i0)
r["load_core_busy"] = round(busy(lb0, li0, lb1, li1), 4)
own_core = int(sys.argv[10]) > 1 and c1 != c0
r["proxy_core_busy"] = round(busy(kb0, ki0, kb1, ki1), 4) if own_core else None
r["per_core_rps"] = round(n / ((kb1 - kb0) / tck)) if own_core and kb1 > kb0 and n else None
# Where the proxy core's time went, in microseconds per request: user space, system calls, and
# the softirq work of the sockets' packets.
us = lambda i: round((k1[i] - k0[i]) / tck / n * 1e6, 3)
r["proxy_core_us_per_req"] = {"user": us(0), "system": us(1), "softirq": us(2)} if own_core and n else None
# A shadowroute's shadow requests over the loop (warm-up included, as n is): the share mirrored.
(s0, d0), (s1, d1) = sys.argv[11].split(), sys.argv[12].split()
if s0 != "-":
    r["shadow_sent"], r["shadow_dropped"] = int(float(s1) - float(s0)), int(float(d1) - float(d0))
    r["shadow_share"] = round(r["shadow_sent"] / n, 4) if n else None
# Segments per request and connections opened per 1,000 requests, over the loop (the warm-up's
# requests included, as n is): how many packets each request costs the machine.
(g0, o0), (g1, o1) = (map(int, a.split()) for a in sys.argv[13:15])
if n:
    r["tcp_segments_per_req"], r["tcp_opens_per_1k"] = round((g1 - g0) / n, 3), round((o1 - o0) / n * 1000, 2)
json.dump(r, open(path, "w"))
PY
  # Every request mirrored is measured for its cost alone, not its latency.
  [ "$t" = shadowroute-100 ] && return
  $PIN_LOAD "$LG" --name "$t" --url "$base" --mode open --rate "$RATE" --concurrency 512 --duration "$DURATION" --mix load-tests/mix/chat.jsonl --json "$OUT/results/$r-$t-open.json" > /dev/null
  if [ -n "${SSE[$2]}" ]; then
    # A proxy's streams are paired with the same streams sent straight to the upstream in the
    # same seconds (half an interval apart), so its TTFT overhead is read against this moment's
    # direct figure rather than another minute's.
    local paired=()
    [ "$t" != direct ] && paired=(--baseline-url "${SSE[direct]}")
    $PIN_LOAD "$LG" --name "$t" --url "${SSE[$2]}" --mode open --rate 100 --concurrency 256 --duration "$DURATION" --mix load-tests/mix/stream.jsonl --header "x-bench: sse" "${paired[@]}" --json "$OUT/results/$r-$t-sse.json" > /dev/null
  fi
}
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    echo "round $r: $t" >&2
    measure "$r" "$t"
  done
done
# --- memory: a soak at a steady rate, and many open streams -------------------------------------
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
if [ $SMOKE = 0 ] && [ "$SOAK" -gt 0 ]; then
  echo "soak: ${SOAK}s at $((RATE / 2)) req/s against shadowroute-10" >&2
  pid=${PID[shadowroute-10]}
  $PIN_LOAD "$LG" --name soak --url "${URL[shadowroute-10]}" --mode open --rate $((RATE / 2)) --concurrency 512 --duration "$SOAK" --warmup 0 --mix load-tests/mix/chat.jsonl --json "$OUT/soak.json" > /dev/null &
  lg=$!
  : > "$OUT/soak-rss.txt"
  for t in $(seq 10 10 "$SOAK"); do sleep 10; echo "$t $(rss_kb "$pid")" >> "$OUT/soak-rss.txt"; done
  wait $lg || true
fi
if [ $SMOKE = 0 ] && [ "$STREAMS" -gt 0 ]; then
  echo "streams: $STREAMS concurrent SSE streams through shadowroute-off" >&2
  pid=${PID[shadowroute-off]}
  $PIN_LOAD "$LG" --name streams --url "${URL[shadowroute-off]}" --mode closed --concurrency "$STREAMS" --duration 20 --warmup 5 --mix load-tests/mix/stream.jsonl --header "x-bench: slow" --json "$OUT/streams.json" > /dev/null &
  lg=$!
  peak=0
  for _ in $(seq 1 25); do sleep 1; r=$(rss_kb "$pid"); [ "$r" -gt "$peak" ] && peak=$r; done
  wait $lg || true
  echo "$peak" > "$OUT/streams-peak-rss-kb.txt"
fi
python3 load-tests/report.py "$OUT/results" "$SMOKE" | tee "$OUT/report.md"
