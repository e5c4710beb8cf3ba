#!/usr/bin/env bash
# Side by side on one machine: an etcd 3.4 cluster (Debian's etcd-server) and a
# stead cluster (release build) of the same size, both on free loopback ports,
# both with fsync on (neither is given a flag that turns it off), driven by the
# same stead-bench workloads over gRPC. Each workload runs against etcd, then
# stead, then again (--rounds times), so the machine's noise falls on both.
#
# Prints a table: workload, etcd and stead figures, stead/etcd ratios
# (throughput: above 1 is better for stead; p99 latency: below 1 is better),
# then the servers' CPU per request (all members; below 1 is better for stead)
# with stead's split by thread (its `stead_thread_*` metrics), the floor of
# the 1-client put (the same writes through bench/quorum_floor.rs: no server,
# only each member's write + fdatasync and loopback TCP), then the RSS
# lines: every server after loading 100,000 keys of 256 B, and the
# RSS per idle watcher (10,000 idle watchers on the first member of each,
# measured first, on the fresh clusters).
#
#   bench/compare.sh [--members 1|3] [--total N] [--rounds N] [--quick]
#
#   --members  cluster size for both (default 3)
#   --total    requests per run of the throughput workloads (default 20000;
#              "put, 1 client, to the leader" does a tenth; watch runs do
#              --total/20 puts)
#   --rounds   etcd/stead alternations per workload (default 2)
#   --quick    --total 500 --rounds 1 (unless given), 5,000 keys and 1,000
#              idle watchers: a smoke run, its figures mean little
#
# Needs: cargo, python3, curl; installs etcd-server with apt-get if etcd is
# missing. Leaves nothing behind: servers are stopped by PID and the temp dir
# removed on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

MEMBERS=3
TOTAL=""
ROUNDS=""
QUICK=0
usage() { sed -n '/^#   bench/,/a smoke run, its figures mean little/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --members) MEMBERS=${2:?}; shift 2 ;;
    --total) TOTAL=${2:?}; shift 2 ;;
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) usage ;;
  esac
done
case "$MEMBERS" in 1|3) ;; *) echo "--members must be 1 or 3" >&2; exit 2 ;; esac
LOAD_KEYS=100000
IDLE_WATCHERS=10000
WATCH_RATE=100
if [ "$QUICK" = 1 ]; then
  TOTAL=${TOTAL:-500}; ROUNDS=${ROUNDS:-1}; LOAD_KEYS=5000; IDLE_WATCHERS=1000
fi
TOTAL=${TOTAL:-20000}
ROUNDS=${ROUNDS:-2}
case "$TOTAL$ROUNDS" in *[!0-9]*) echo "--total and --rounds take whole numbers" >&2; exit 2 ;; esac
TOTAL_1CLIENT=$(( TOTAL / 10 > 0 ? TOTAL / 10 : 1 ))
WATCH_PUTS=$(( TOTAL / 20 > 10 ? TOTAL / 20 : 10 ))

if ! command -v etcd >/dev/null 2>&1; then
  echo "compare: installing etcd-server (Debian)" >&2
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq etcd-server >/dev/null
fi
ETCD=$(command -v etcd)
echo "compare: $("$ETCD" --version | head -1)" >&2
cargo build --release --bin stead --bin stead-bench --example quorum-floor >&2
STEAD=target/release/stead
BENCH=target/release/stead-bench
FLOOR=target/release/examples/quorum-floor

tmp=$(mktemp -d)
pids=() # servers
idle="" # a running watch-idle bench, if any
cleanup() {
  trap - EXIT INT TERM
  local p
  if [ -n "$idle" ]; then kill "$idle" 2>/dev/null || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # Up to 5 s for all of them together (an etcd member may wait to hand over
  # leadership to peers that are already gone), then SIGKILL.
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${pids[@]}"; do if kill -0 "$p" 2>/dev/null; then alive=1; fi; done
    if [ "$alive" = 0 ]; then break; fi
    sleep 0.1
  done
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      echo "compare: $(ps -o comm= -p "$p") ($p) still running 5 s after SIGTERM; SIGKILL" >&2
      kill -9 "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "compare: interrupted" >&2; exit 130' INT TERM

# N distinct free loopback ports (all bound at once, so none repeats).
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# start_cluster NAME BIN: starts $MEMBERS members of BIN (etcd and stead take the
# same flags); records their PIDs in $tmp/NAME.pids and endpoints in $tmp/NAME.eps.
start_cluster() {
  local name=$1 bin=$2 i initial="" eps=""
  read -r -a ports <<<"$(free_ports $((2 * MEMBERS)))"
  for i in $(seq 0 $((MEMBERS - 1))); do
    initial+="${initial:+,}$name$i=http://127.0.0.1:${ports[$((2 * i + 1))]}"
  done
  for i in $(seq 0 $((MEMBERS - 1))); do
    local cp=${ports[$((2 * i))]} pp=${ports[$((2 * i + 1))]}
    "$bin" --name "$name$i" --data-dir "$tmp/$name$i" \
      --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
      --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
      --initial-cluster "$initial" --initial-cluster-token "$name-bench" --initial-cluster-state new \
      >"$tmp/$name$i.log" 2>&1 &
    pids+=("$!")
    echo "$!" >>"$tmp/$name.pids"
    disown "$!" # stopped by cleanup, by PID; no job notices from the shell
    eps+="${eps:+,}127.0.0.1:$cp"
  done
  echo "$eps" >"$tmp/$name.eps"
}

wait_healthy() { # name
  local name=$1 ep i=0
  for ep in $(tr ',' ' ' <"$tmp/$name.eps"); do
    local ok=0
    for _ in $(seq 1 300); do
      if curl -sf "http://$ep/health" 2>/dev/null | grep -q '"health":"true"'; then ok=1; break; fi
      sleep 0.1
    done
    if [ "$ok" != 1 ]; then
      echo "compare: $name member $i ($ep) not healthy after 30 s; its log ends:" >&2
      tail -20 "$tmp/$name$i.log" >&2
      exit 1
    fi
    i=$((i + 1))
  done
}

start_cluster etcd "$ETCD"
start_cluster stead "$STEAD"
wait_healthy etcd
wait_healthy stead
ETCD_EPS=$(cat "$tmp/etcd.eps")
STEAD_EPS=$(cat "$tmp/stead.eps")
echo "compare: etcd at $ETCD_EPS; stead at $STEAD_EPS" >&2

# Stops the comparison if a server has died (its figures would mean nothing).
check_alive() {
  local name i p
  for name in etcd stead; do
    i=0
    while read -r p; do
      if ! kill -0 "$p" 2>/dev/null; then
        echo "compare: $name member $i (PID $p) is not running; its log ends:" >&2
        tail -20 "$tmp/$name$i.log" >&2
        exit 1
      fi
      i=$((i + 1))
    done <"$tmp/$name.pids"
  done
}

RESULTS=$tmp/results.jsonl
CLK_TCK=$(getconf CLK_TCK)
# CPU seconds (user + system) used so far by a system's server processes. The
# process name in `stat` may hold spaces: fields are counted after its ")".
cpu_seconds() {
  local p ticks=0
  while read -r p; do
    ticks=$((ticks + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done <"$tmp/$1.pids"
  python3 -c "print($ticks / $CLK_TCK)"
}
# stead's per-thread CPU seconds so far, every member's `stead_thread_cpu_seconds_total`
# lines concatenated (a member that does not answer adds nothing).
stead_threads() {
  local ep
  for ep in $(tr ',' ' ' <"$tmp/stead.eps"); do
    curl -sf "http://$ep/metrics" | grep '^stead_thread_cpu_seconds_total' || true
  done
}
# run_one ROW SYSTEM ARGS...: one stead-bench run, its JSON line recorded with
# the CPU the servers used during it (and, for stead, by thread name).
run_one() {
  local row=$1 system=$2; shift 2
  check_alive
  local eps; eps=$(cat "$tmp/$system.eps")
  local out rc=0 cpu_before cpu_after threads_before="" threads_after=""
  if [ "$system" = stead ]; then threads_before=$(stead_threads); fi
  cpu_before=$(cpu_seconds "$system")
  out=$("$BENCH" --endpoints "$eps" --json "$@" 2>"$tmp/bench.err") || rc=$?
  cpu_after=$(cpu_seconds "$system")
  if [ "$system" = stead ]; then threads_after=$(stead_threads); fi
  if [ "$rc" = 2 ] || [ -z "$out" ]; then
    echo "compare: $row on $system could not run: $(cat "$tmp/bench.err")" >&2
    out='null'
  fi
  python3 - "$row" "$system" "$out" "$cpu_before" "$cpu_after" "$threads_before" "$threads_after" >>"$RESULTS" <<'PY'
import json, re, sys
row, system, out, cpu_before, cpu_after, before, after = sys.argv[1:]
def by_thread(text):
    sums = {}
    for m in re.finditer(r'thread="([^"]*)"\} (\S+)', text):
        sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(2))
    return sums
b, a = by_thread(before), by_thread(after)
threads = {t: a[t] - b.get(t, 0.0) for t in a}
print(json.dumps({"row": row, "system": system, "summary": json.loads(out),
                  "cpu_seconds": float(cpu_after) - float(cpu_before), "threads": threads}))
PY
  echo "compare: $row, $system: $out" >&2
}
# workload ROW ARGS...: ROUNDS alternations etcd, stead.
workload() {
  local row=$1 r; shift
  for r in $(seq 1 "$ROUNDS"); do
    run_one "$row" etcd "$@"
    run_one "$row" stead "$@"
  done
}

# Sum of VmRSS (KiB) over PIDs.
rss_kib() { local p sum=0; for p in "$@"; do sum=$((sum + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$sum"; }

# 1. Memory per idle watcher: IDLE_WATCHERS idle watchers on the first member
# of the fresh clusters, closed again before the load. After the load, a
# member's allocator has room left over that new watchers fill without growing
# the RSS (stead read 20-70 B per watcher there, 350 B on a fresh member).
WATCHER_LINES=()
for system in etcd stead; do
  check_alive
  pid=$(head -1 "$tmp/$system.pids")
  first_ep=$(cut -d, -f1 <"$tmp/$system.eps")
  before=$(rss_kib "$pid")
  "$BENCH" --endpoints "$first_ep" --json watch-idle --watchers "$IDLE_WATCHERS" --streams 1 --hold-secs 600 \
    >"$tmp/idle.out" 2>"$tmp/idle.err" &
  idle=$!
  for _ in $(seq 1 1200); do
    [ -s "$tmp/idle.out" ] && break
    kill -0 "$idle" 2>/dev/null || break
    sleep 0.1
  done
  if [ -s "$tmp/idle.out" ]; then
    sleep 1 # let the server settle after the last create
    check_alive
    after=$(rss_kib "$pid")
    WATCHER_LINES+=("RSS per idle watcher ($IDLE_WATCHERS on member0), $system: before $before KiB, after $after KiB, $(python3 -c "print(f'{($after-$before)*1024/$IDLE_WATCHERS:.0f}')") B/watcher")
  else
    WATCHER_LINES+=("RSS per idle watcher, $system: watch-idle failed: $(cat "$tmp/idle.err")")
  fi
  kill "$idle" 2>/dev/null || true
  wait "$idle" 2>/dev/null || true
  idle=""
done

# 2. Memory: load LOAD_KEYS keys of 256 B, then read RSS.
for system in etcd stead; do
  run_one "load $LOAD_KEYS keys x 256 B, 64 clients" "$system" --conns 8 --clients 64 --total "$LOAD_KEYS" \
    --key-space-size "$LOAD_KEYS" --sequential-keys --val-size 256 put
done
check_alive
RSS_LINES=()
for system in etcd stead; do
  mapfile -t mp <"$tmp/$system.pids"
  line="RSS after $LOAD_KEYS keys of 256 B, $system:"
  for i in "${!mp[@]}"; do line+=" member$i $(rss_kib "${mp[$i]}") KiB"; done
  line+=" (sum $(rss_kib "${mp[@]}") KiB)"
  RSS_LINES+=("$line")
done
rss_sum() { mapfile -t mp <"$tmp/$1.pids"; rss_kib "${mp[@]}"; }
ETCD_RSS=$(rss_sum etcd)
STEAD_RSS=$(rss_sum stead)
RSS_LINES+=("RSS sum stead/etcd: $(python3 -c "print(f'{$STEAD_RSS/$ETCD_RSS:.2f}x')")")
RSS_LINES+=("${WATCHER_LINES[@]}")

# 3. The suite, over gRPC. Ranges read one of the loaded keys.
# To the leader, as etcd's own table of this row (op-guide/performance.md):
# through a follower the write takes one more hop each way, and which member
# leads is chance, so the row would measure the draw.
workload "put, 1 client, to the leader"    --target-leader --conns 1 --clients 1 --total "$TOTAL_1CLIENT" --key-space-size 100000 put
# The same writes with no server at all (bench/quorum_floor.rs): what the disk
# and loopback TCP alone cost a quorum write here, to read the row above against.
for _ in $(seq 1 "$ROUNDS"); do
  "$FLOOR" --members "$MEMBERS" --total "$TOTAL_1CLIENT" --dir "$tmp" --json >>"$tmp/floor.jsonl"
done
workload "put, 64 clients"                 --conns 8 --clients 64 --total "$TOTAL" --key-space-size 100000 put
workload "range linearizable, 64 clients"  --conns 8 --clients 64 --total "$TOTAL" range 00000042 --consistency l
workload "range serializable, 64 clients"  --conns 8 --clients 64 --total "$TOTAL" range 00000042 --consistency s
workload "txn-put, 64 clients"             --conns 8 --clients 64 --total "$TOTAL" --key-space-size 100000 txn-put
workload "watch put-to-event, 1 watcher"   --conns "$MEMBERS" --clients 1 --total "$WATCH_PUTS" --rate "$WATCH_RATE" \
  --val-size 16 watch --watchers 1 --streams 1
workload "watch put-to-event, 1000 watchers" --conns "$MEMBERS" --clients 1 --total "$WATCH_PUTS" --rate "$WATCH_RATE" \
  --val-size 16 watch --watchers 1000 --streams 10
workload "lease-keepalive, 16 clients"     --conns 4 --clients 16 --total "$TOTAL" lease-keepalive

echo
echo "members: $MEMBERS; rounds: $ROUNDS; $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores"
python3 - "$RESULTS" "$tmp/floor.jsonl" <<'PY'
import json, sys
rows, order = {}, []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["row"] not in rows:
        rows[r["row"]] = {"etcd": [], "stead": []}
        order.append(r["row"])
    rows[r["row"]][r["system"]].append(r["summary"])
def mean(runs, key):
    ok = [s[key] for s in runs if s]
    return sum(ok) / len(ok) if ok else None
def errors(runs):
    failed = sum(1 for s in runs if not s)
    errs = sum(s["errors"] for s in runs if s)
    return ("" if not errs else f"{errs} err") + ("" if not failed else f" {failed} failed")
def fmt(x, digits):
    return "n/a" if x is None else f"{x:.{digits}f}"
def ratio(s, e):
    return "n/a" if s is None or e is None or e == 0 else f"{s / e:.2f}x"
head = ("workload", "etcd op/s", "stead op/s", "ratio", "etcd p99 ms", "stead p99 ms", "ratio", "errors etcd/stead")
w = max(len(r) for r in order + ["workload"])
print(f"{head[0]:<{w}} {head[1]:>11} {head[2]:>11} {head[3]:>7} {head[4]:>12} {head[5]:>12} {head[6]:>7}  {head[7]}")
for name in order:
    e, s = rows[name]["etcd"], rows[name]["stead"]
    et, st = mean(e, "requests_per_second"), mean(s, "requests_per_second")
    ep, sp = mean(e, "p99_ms"), mean(s, "p99_ms")
    errs = f"{errors(e) or '0'} / {errors(s) or '0'}"
    print(f"{name:<{w}} {fmt(et,1):>11} {fmt(st,1):>11} {ratio(st,et):>7} {fmt(ep,3):>12} {fmt(sp,3):>12} {ratio(sp,ep):>7}  {errs}")
floor = [json.loads(line) for line in open(sys.argv[2])]
put1 = rows.get("put, 1 client, to the leader")
if floor and put1:
    fo, fp = mean(floor, "requests_per_second"), mean(floor, "p99_ms")
    eo, so = mean(put1["etcd"], "requests_per_second"), mean(put1["stead"], "requests_per_second")
    print()
    print(f"floor of that 1-client put, no server (bench/quorum_floor.rs: {floor[0]['members']} members as threads, "
          f"write + fdatasync each, loopback TCP): {fo:.1f} writes/s, p99 {fp:.3f} ms")
    print(f"  share of the floor's writes/s: etcd {ratio(eo, fo)}, stead {ratio(so, fo)}; "
          f"half etcd's latency needs {ratio(2 * eo if eo else None, fo)}")
# CPU per request: what the servers used during a run (all members), over the
# requests it completed (watch rows: events delivered). Less noisy than op/s on
# a shared machine: it does not depend on how much CPU the servers were given.
cpu = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["summary"] and r["summary"].get("done"):
        cpu.setdefault(r["row"], {"etcd": [], "stead": []})[r["system"]].append(
            (r["cpu_seconds"] / r["summary"]["done"], {t: v / r["summary"]["done"] for t, v in r["threads"].items()}))
print()
print(f"{'CPU per request, all members (us)':<{w}} {'etcd':>11} {'stead':>11} {'ratio':>7}  stead by thread")
for name in order:
    e, s = cpu.get(name, {}).get("etcd", []), cpu.get(name, {}).get("stead", [])
    ec = sum(c for c, _ in e) / len(e) * 1e6 if e else None
    sc = sum(c for c, _ in s) / len(s) * 1e6 if s else None
    threads = {}
    for _, t in s:
        for k, v in t.items():
            threads[k] = threads.get(k, 0.0) + v * 1e6 / len(s)
    top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.5)
    print(f"{name:<{w}} {fmt(ec,1):>11} {fmt(sc,1):>11} {ratio(sc,ec):>7}  {top}")
PY
for line in "${RSS_LINES[@]}"; do echo "$line"; done
