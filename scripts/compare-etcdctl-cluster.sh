#!/usr/bin/env bash
# Side-by-side check of the cluster commands: etcdctl 3.4.23 against a throwaway
# 3-member etcd, steadctl against a throwaway 3-member stead (or, with
# STEAD=etcd, a second etcd: steadctl's own fidelity without stead's server).
#
#   scripts/compare-etcdctl-cluster.sh
#
# Commands: member list (all formats), endpoint status/health --cluster,
# member add --learner / promote / update / remove and their errors, move-leader,
# alarm list. (`defrag --cluster` prints members in their random-ID order: not here.)
# stdout, stderr and exit code are compared after normalising what must differ
# between two clusters: member/cluster IDs, ports, raft numbers, sizes,
# durations, log timestamps and client UUIDs, the program name, and the order of
# members (etcd lists them by their random IDs; rows, field blocks and JSON
# member arrays are sorted after normalising).
#
# Env: ETCDCTL (default etcdctl), STEADCTL (default target/debug/steadctl),
# STEAD (default target/debug/stead; both built if missing), KEEP=1 keeps the
# output directory. Exit 1 on any difference. Only 127.0.0.1 is ever used.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ETCDCTL=${ETCDCTL:-etcdctl}
STEADCTL=${STEADCTL:-$ROOT/target/debug/steadctl}
STEAD=${STEAD:-$ROOT/target/debug/stead}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare-etcdctl-cluster.XXXXXX")
PIDS="$WORK/started.pids"

cleanup() {
    local pid
    if [[ -f "$PIDS" ]]; then
        while read -r pid; do kill "$pid" 2>/dev/null; done <"$PIDS"
        sleep 1
        while read -r pid; do kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null; done <"$PIDS"
    fi
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; else echo "outputs kept in $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case "${1:-}" in -h|--help) sed -n '2,19p' "$0"; exit 0 ;; esac

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_cluster NAME BIN: three members on loopback; writes $WORK/NAME.eps
# (host:port,…) and $WORK/NAME.map ("mN client-host:port peer-host:port" lines).
start_cluster() {
    local name=$1 bin=$2 i initial="" c p
    local -a cports pports
    for i in 1 2 3; do cports[$i]=$(free_port); pports[$i]=$(free_port); done
    for i in 1 2 3; do initial+="${initial:+,}m$i=http://127.0.0.1:${pports[$i]}"; done
    : >"$WORK/$name.map"
    for i in 1 2 3; do
        c="127.0.0.1:${cports[$i]}"; p="127.0.0.1:${pports[$i]}"
        "$bin" --name "m$i" --data-dir "$WORK/$name.m$i" \
            --listen-client-urls "http://$c" --advertise-client-urls "http://$c" \
            --listen-peer-urls "http://$p" --initial-advertise-peer-urls "http://$p" \
            --initial-cluster "$initial" --initial-cluster-token "cmp-$name" --initial-cluster-state new \
            >"$WORK/$name.m$i.log" 2>&1 &
        echo $! >>"$PIDS"
        disown $!
        echo "m$i $c $p" >>"$WORK/$name.map"
    done
    echo "127.0.0.1:${cports[1]},127.0.0.1:${cports[2]},127.0.0.1:${cports[3]}" >"$WORK/$name.eps"
    for _ in $(seq 1 200); do
        # Ready: a leader, and every member published (no "unstarted").
        if "$STEADCTL" --endpoints="$(cat "$WORK/$name.eps")" --command-timeout=1s endpoint status 2>/dev/null | grep -q ', true, ' &&
            ! "$STEADCTL" --endpoints="$(cat "$WORK/$name.eps")" --command-timeout=1s member list 2>/dev/null | grep -q unstarted; then
            return 0
        fi
        sleep 0.1
    done
    echo "$bin cluster $name did not start; see $WORK/$name.m*.log" >&2
    return 1
}

for bin in steadctl stead; do
    target=$STEADCTL; [[ $bin == stead ]] && target=$STEAD
    if [[ $target == "$ROOT"/target/* && ! -x "$target" ]]; then
        (cd "$ROOT" && cargo build --bin "$bin") || exit 2
    fi
done
start_cluster etcd etcd || exit 2
start_cluster stead "$STEAD" || exit 2
# etcd refuses membership changes until its members have been connected 5 s.
sleep 6

# ---------------------------------------------------------------------------
# `c MODE NAME [--ep EPS] -- ARGS…` runs one command with $TOOL against $EPS
# (default: all three members). MODE: full (stdout+stderr+rc), rc (exit code
# only: protobuf). Names starting with "list" or "status" sort member order.
cases() {
    local fol=$FOLLOWERS lead=$LEADER_ID target=$FOLLOWER_ID
    for w in simple table json fields; do
        c full list-$w -- member list -w $w
        c full status-$w -- endpoint status --cluster -w $w
    done
    c rc   list-protobuf -- member list -w protobuf
    c full list-health -- endpoint health --cluster
    c full list-health-json -- endpoint health --cluster -w json
    c full alarm-list-cluster -- alarm list
    c full status-cluster-one-ep --ep "${EPS%%,*}" -- endpoint status --cluster
    c full list-prefix -- mem li
    # cobra's usage text differs in layout and program name: exit code only
    c rc   member-noargs -- member
    c rc   member-unknown -- member bogus

    c full add-noname -- member add
    c full add-nourls -- member add x
    c full add-toomany -- member add a b http://x
    c full add-badurl -- member add x --peer-urls=bad
    c full add-path -- member add x --peer-urls=http://127.0.0.1:1/p
    c full add-noport -- member add x --peer-urls=http://127.0.0.1
    c full add-dup -- member add x --peer-urls=http://$PEER1
    c full add-learner --ep "$fol" -- member add learner1 --peer-urls=http://127.0.0.1:1,http://127.0.0.1:2 --learner
    NEWID=$(head -1 "$LAST.out" | awk '{print $2}')
    c full list-after-add -- member list
    c full list-after-add-table -- member list -w table
    c full promote-unsynced --ep "$fol" -- member promote "$NEWID"
    c full update-learner -- member update "$NEWID" --peer-urls=http://127.0.0.1:3
    c full update-fields -- member update "$NEWID" --peer-urls=http://127.0.0.1:4 -w fields
    c full remove-learner --ep "$fol" -- member remove "$NEWID"
    c full remove-again --ep "$fol" -- member remove "$NEWID"
    c full remove-badid -- member remove zz
    c full remove-noid -- member remove
    c full promote-missing -- member promote 12
    c full update-missing -- member update 12 --peer-urls=http://127.0.0.1:5
    c full update-nourls -- member update 12
    c full list-after-remove -- member list

    c full move-noargs -- move-leader
    c full move-badid -- move-leader 0x1
    c full move-not-member -- move-leader 12
    c full move-no-leader --ep "$fol" -- move-leader "$lead"
    c full move-fields -- move-leader "$lead" -w fields
    c full move -- move-leader "$target"
}
# ---------------------------------------------------------------------------

c() { # MODE NAME [--ep EPS] -- ARGS...
    local mode=$1 name=$2 eps=$EPS; shift 2
    if [[ "$1" == --ep ]]; then eps=$2; shift 2; fi
    [[ "$1" == -- ]] && shift
    N=$((N + 1))
    LAST=$(printf '%s/%03d-%s' "$OUT" "$N" "$name")
    "$TOOL" --endpoints="$eps" "$@" >"$LAST.out" 2>"$LAST.err" </dev/null
    echo "rc=$?" >"$LAST.rc"
    echo "$mode" >"$LAST.mode"
    echo "$*" >"$LAST.cmd"
    python3 "$WORK/normalise.py" "$LAST" "$CLUSTER_MAP" "$name"
}

cat >"$WORK/normalise.py" <<'PY'
import json, re, sys
prefix, cmap, name = sys.argv[1], sys.argv[2], sys.argv[3]
# Members are named by role (L: the leader when the run started; F1, F2: the
# followers in name order), since which member leads differs between clusters.
subs, roles = [], {}
for line in open(cmap):
    m, c, p, role = line.split()
    roles[m] = role
    subs += [(c, "<C:%s>" % role), (p, "<P:%s>" % role)]
sort_members = name.startswith(("list", "status"))

def text(s):
    for a, b in subs:
        s = s.replace(a, b)
    s = re.sub(r"\b(m[123])\b", lambda g: roles[g.group(1)], s)
    s = re.sub(r'^(ETCD_INITIAL_CLUSTER=)"([^"]*)"', lambda g: g.group(1) + '"' + ",".join(sorted(g.group(2).split(","))) + '"', s, flags=re.M)
    s = re.sub(r"\b(etcdctl|steadctl)\b", "CTL", s)
    # steadctl prints `Error:  ` (two spaces, the project spec), etcdctl 3.4 one
    s = re.sub(r"^Error:  ", "Error: ", s, flags=re.M)
    # clientv3's retry warnings: etcdctl 3.4 always, steadctl with --debug
    s = re.sub(r'^.*"msg":"retrying of unary invoker failed".*\n', "", s, flags=re.M)
    s = re.sub(r'"ts":"[^"]*"', '"ts":"<TS>"', s)
    s = re.sub(r"client-[0-9a-f-]{36}", "client-<UUID>", s)
    s = re.sub(r"/127\.0\.0\.1:\d+", "/<EP>", s)
    s = re.sub(r"Member +[0-9a-f]+ (\w+ \w+) cluster +[0-9a-f]+", r"Member <ID> \1 cluster <CID>", s)
    s = re.sub(r"Leadership transferred from [0-9a-f]+ to [0-9a-f]+", "Leadership transferred from <ID> to <ID>", s)
    s = re.sub(r"took = \S+", "took = <DUR>", s)
    s = re.sub(r"^[0-9a-f]{1,16}(, (?:un)?started, )", r"<ID>\1", s, flags=re.M)
    # endpoint status rows (simple)
    s = re.sub(r"^((?:http://)?<C:\w+>), [0-9a-f]+, ([^,]+), [^,]+, (\w+), (\w+), \d+, \d+, \d+,", r"\1, <ID>, \2, <SIZE>, \3, \4, <N>, <N>, <N>,", s, flags=re.M)
    s = re.sub(r'^("(?:ClusterID|MemberID|RaftTerm|ID|Leader|RaftIndex|RaftAppliedIndex|DBSize)" : )\d+', r"\1<N>", s, flags=re.M)
    if name.startswith("status"):
        s = re.sub(r'^("Revision" : )\d+', r"\1<N>", s, flags=re.M)
    return s

def norm_json(v, key=""):
    if isinstance(v, dict):
        return {k: norm_json(x, k) for k, x in v.items()}
    if isinstance(v, list):
        items = [norm_json(x, key) for x in v]
        if sort_members:
            items.sort(key=lambda x: json.dumps(x))
        return items
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and key in ("ID", "cluster_id", "member_id", "raft_term", "leader", "raftIndex",
                                      "raftTerm", "raftAppliedIndex", "dbSize", "dbSizeInUse") or \
            (isinstance(v, int) and key == "revision" and name.startswith("status")):
        return "<N>"
    if isinstance(v, str):
        if key == "took":
            return "<DUR>"
        return text(v)
    return v

def table(lines):
    out, body = [], []
    for l in lines:
        if l.startswith("|"):
            cells = [c.strip() for c in l.strip("|").split("|")]
            if cells[0] in ("ID", "ENDPOINT"):  # the header row stays as printed
                pass
            elif cells and re.fullmatch(r"[0-9a-f]{1,16}", cells[0] or "-"):
                cells[0] = "<ID>"
            elif len(cells) == 10:  # endpoint status: ID, size, term, index, applied
                for i in (1, 3, 6, 7, 8):
                    cells[i] = "<N>"
            elif len(cells) == 4 and cells[2]:
                cells[2] = "<DUR>"
            body.append("| " + " | ".join(cells) + " |")
        else:
            out.append(("B", re.sub(r"-+", "-", l)))
            continue
        out.append(("R", body.pop()))
    # sort body rows (between the 2nd and 3rd border) when members are listed
    rows = [i for i, (k, _) in enumerate(out) if k == "R"][1:]
    if sort_members and rows:
        sorted_rows = sorted(out[i][1] for i in rows)
        for i, r in zip(rows, sorted_rows):
            out[i] = ("R", r)
    return [l for _, l in out]

for part in ("out", "err"):
    try:
        raw = open(prefix + "." + part, encoding="utf-8").read()
    except UnicodeDecodeError:
        raw = "<binary>"
    s = text(raw)
    lines = s.split("\n")
    if any(l.startswith("+-") for l in lines):
        lines = table(lines)
    res = []
    for l in lines:
        if l.startswith("{") or l.startswith("[{"):
            try:
                l = json.dumps(norm_json(json.loads(raw_line := l)), separators=(",", ":"), ensure_ascii=False)
            except ValueError:
                pass
        res.append(l)
    if sort_members and not any(l.startswith("+-") for l in res):
        if any(l.startswith('"') for l in res):
            # fields: the header block, then one block per member/endpoint
            blocks = "\n".join(res).split("\n\n")
            head = blocks[0].split('"ID"')[0] if '"ID"' in blocks[0] else ""
            first = blocks[0][len(head):]
            rest = [first] + blocks[1:]
            res = (head + "\n\n".join(sorted(b for b in rest if b.strip())) + "\n").split("\n")
        else:
            res = sorted(l for l in res if l) + [""]
    open(prefix + "." + part + ".norm", "w").write("\n".join(res))
PY

run_all() { # NAME TOOL OUTDIR
    local name=$1
    TOOL=$2; OUT=$3; EPS=$(cat "$WORK/$name.eps"); mkdir -p "$OUT"; N=0
    PEER1=$(awk 'NR==1{print $3}' "$WORK/$name.map")
    local st; st=$("$STEADCTL" --endpoints="$EPS" endpoint status)
    # Role labels for the normaliser: L leads, F1/F2 follow (in name order).
    CLUSTER_MAP="$WORK/$name.roles"; : >"$CLUSTER_MAP"
    local m c p f=0
    while read -r m c p; do
        if echo "$st" | grep -q "^$c, [0-9a-f]*, [^,]*, [^,]*, true,"; then
            echo "$m $c $p L" >>"$CLUSTER_MAP"
        else
            f=$((f + 1)); echo "$m $c $p F$f" >>"$CLUSTER_MAP"
        fi
    done <"$WORK/$name.map"
    # --endpoints in role order, so that the first endpoint (which clientv3 names
    # in its log lines) plays the same role in both runs.
    EPS=$(sort -k4 "$CLUSTER_MAP" | awk '{print $2}' | paste -sd,)
    FOLLOWERS=$(echo "$st" | awk -F', ' '$5=="false"{print $1}' | paste -sd,)
    LEADER_ID=$(echo "$st" | awk -F', ' '$5=="true"{print $2}')
    FOLLOWER_ID=$(echo "$st" | awk -F', ' '$5=="false"{print $2}' | head -1)
    cases
}

echo "etcdctl  ($ETCDCTL) -> etcd  $(cat "$WORK/etcd.eps")"
echo "steadctl ($STEADCTL) -> stead $(cat "$WORK/stead.eps")"
run_all etcd "$ETCDCTL" "$WORK/etcdctl" || exit 2
run_all stead "$STEADCTL" "$WORK/steadctl" || exit 2

fail=0; total=0
for want in "$WORK"/etcdctl/*.rc; do
    base=$(basename "$want" .rc); got="$WORK/steadctl/$base"; want="${want%.rc}"
    total=$((total + 1))
    parts=(rc)
    [[ $(cat "$want.mode") == full ]] && parts=(rc out.norm err.norm)
    for p in "${parts[@]}"; do
        if ! cmp -s "$want.$p" "$got.$p"; then
            echo "=== DIFF $base ($p): $(cat "$want.cmd")"
            diff -a -u --label "etcdctl" --label "steadctl" "$want.$p" "$got.$p" | head -40
            fail=$((fail + 1))
        fi
    done
done
if [[ $fail -ne 0 ]]; then
    echo "FAIL: $fail difference(s) over $total commands"
    exit 1
fi
echo "OK: $total commands, steadctl on stead identical to etcdctl on etcd (after normalisation)"
