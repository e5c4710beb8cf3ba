//! steadctl's cluster commands against a real 3-member stead cluster:
//! `member list`, `endpoint status|health --cluster`, `member add --learner` /
//! `member remove` (sent to a follower: steadctl must find the leader itself),
//! and `move-leader`. Output shapes are etcdctl 3.4.23's (captured from it);
//! only member IDs, ports and raft numbers are normalised.
//! The side-by-side comparison with etcdctl on etcd is
//! scripts/compare-etcdctl-cluster.sh.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{free_ports, post, Launched, Server};

fn steadctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steadctl"))
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_WRITE_OUT")
        .output()
        .expect("run steadctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs steadctl and insists on success; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = steadctl(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: stderr {}", text(&out.stderr));
    text(&out.stdout)
}

struct Member {
    server: Server,
    name: String,
    /// Hex, as etcdctl prints member IDs.
    id: String,
    client_port: u16,
    peer_port: u16,
}

/// Three members that advertise their real client URLs (the shared harness
/// advertises 127.0.0.1:2379 for all, which `--cluster` would follow).
struct TestCluster {
    members: Vec<Member>,
    cluster_id: String,
    _tmp: tempfile::TempDir,
}

impl TestCluster {
    fn start() -> TestCluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(6);
        let (clients, peers) = ports.split_at(3);
        let initial: Vec<String> =
            peers.iter().enumerate().map(|(i, p)| format!("m{}=http://127.0.0.1:{p}", i + 1)).collect();
        let launched: Vec<Launched> = (0..3)
            .map(|i| {
                let client = format!("http://127.0.0.1:{}", clients[i]);
                let peer = format!("http://127.0.0.1:{}", peers[i]);
                let args: Vec<String> = [
                    "--name", &format!("m{}", i + 1),
                    "--listen-client-urls", &client, "--advertise-client-urls", &client,
                    "--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer,
                    "--initial-cluster", &initial.join(","), "--initial-cluster-token", "steadctl-cluster",
                    "--initial-cluster-state", "new",
                    "--heartbeat-interval", "50", "--election-timeout", "500",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                Launched::new(&tmp.path().join(format!("m{}", i + 1)), args)
            })
            .collect();
        let servers: Vec<Server> = launched.into_iter().map(Launched::wait_ready).collect();
        let mut cluster_id = String::new();
        let members = servers
            .into_iter()
            .enumerate()
            .map(|(i, server)| {
                let (_, st) = server.post("/v3/maintenance/status", "{}");
                let id: u64 = st["header"]["member_id"].as_str().unwrap().parse().unwrap();
                let cid: u64 = st["header"]["cluster_id"].as_str().unwrap().parse().unwrap();
                cluster_id = format!("{cid:x}");
                Member { server, name: format!("m{}", i + 1), id: format!("{id:x}"), client_port: clients[i], peer_port: peers[i] }
            })
            .collect();
        let c = TestCluster { members, cluster_id, _tmp: tmp };
        c.wait_leader(None, Duration::from_secs(20));
        // Every member must have published its name and client URLs.
        let deadline = Instant::now() + Duration::from_secs(20);
        while ok(&["--endpoints", &c.endpoints(), "member", "list"]).contains("unstarted") {
            assert!(Instant::now() < deadline, "members never published their attributes");
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn endpoint(&self, i: usize) -> String {
        self.members[i].server.host_port()
    }

    fn endpoints(&self) -> String {
        (0..3).map(|i| self.endpoint(i)).collect::<Vec<_>>().join(",")
    }

    /// The index of the member all agree leads (optionally: the one expected).
    fn wait_leader(&self, want: Option<usize>, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<u64>> = self
                .members
                .iter()
                .map(|m| {
                    let (code, st) = m.server.post("/v3/maintenance/status", "{}");
                    (code == 200).then(|| st["leader"].as_str().and_then(|l| l.parse().ok())).flatten()
                })
                .collect();
            if let Some(Some(l)) = leaders.first() {
                if *l != 0 && leaders.iter().all(|x| *x == Some(*l)) {
                    let idx = self.members.iter().position(|m| m.id == format!("{l:x}"));
                    if let Some(idx) = idx {
                        if want.is_none_or(|w| w == idx) {
                            return idx;
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader (want {want:?}) within {timeout:?}: {leaders:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Members in etcd's listing order (by ID).
    fn by_id(&self) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.iter().collect();
        v.sort_by_key(|m| u64::from_str_radix(&m.id, 16).unwrap());
        v
    }
}

/// Cells of a `-w table` body row, trimmed.
fn cells(row: &str) -> Vec<String> {
    row.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
}

/// The table's frame must be tablewriter's: equal-width lines, borders at
/// lines 1, 3 and last, the header line as given (collapsed spaces).
fn check_frame(table: &str, header: &str, rows: usize) -> Vec<Vec<String>> {
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), rows + 4, "{table}");
    let width = lines[0].chars().count();
    assert!(lines.iter().all(|l| l.chars().count() == width), "ragged table:\n{table}");
    for i in [0, 2, rows + 3] {
        assert!(lines[i].starts_with("+-") && lines[i].chars().all(|c| c == '+' || c == '-'), "{table}");
    }
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>().join(" "), header, "{table}");
    lines[3..3 + rows].iter().map(|r| cells(r)).collect()
}

#[test]
fn cluster_commands_match_etcdctl_shapes() {
    let c = TestCluster::start();
    let all = c.endpoints();
    let ordered = c.by_id();

    // member list, simple and table: sorted by ID, all started voters.
    let simple = ok(&["--endpoints", &all, "member", "list"]);
    let want: String = ordered
        .iter()
        .map(|m| {
            format!(
                "{}, started, {}, http://127.0.0.1:{}, http://127.0.0.1:{}, false\n",
                m.id, m.name, m.peer_port, m.client_port
            )
        })
        .collect();
    assert_eq!(simple, want);
    let table = ok(&["--endpoints", &all, "member", "list", "-w", "table"]);
    let rows = check_frame(&table, "| ID | STATUS | NAME | PEER ADDRS | CLIENT ADDRS | IS LEARNER |", 3);
    for (row, m) in rows.iter().zip(&ordered) {
        let want = [
            m.id.clone(),
            "started".into(),
            m.name.clone(),
            format!("http://127.0.0.1:{}", m.peer_port),
            format!("http://127.0.0.1:{}", m.client_port),
            "false".into(),
        ];
        assert_eq!(row, &want, "{table}");
    }
    // Cells are right-aligned, as etcdctl's ALIGN_RIGHT.
    assert!(table.lines().nth(3).unwrap().contains(" |   m"), "{table}");

    // endpoint status --cluster: every member's client URL, in member-list order.
    let leader = c.wait_leader(None, Duration::from_secs(10));
    let table = ok(&["--endpoints", &c.endpoint(0), "endpoint", "status", "--cluster", "-w", "table"]);
    let hdr = "| ENDPOINT | ID | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |";
    let rows = check_frame(&table, hdr, 3);
    for (row, m) in rows.iter().zip(&ordered) {
        assert_eq!(row[0], format!("http://127.0.0.1:{}", m.client_port), "{table}");
        assert_eq!(row[1], m.id);
        assert_eq!(row[2], "3.4.23");
        assert!(row[3].ends_with(" B") || row[3].ends_with(" kB") || row[3].ends_with(" MB"), "{table}");
        assert_eq!(row[4], (m.id == c.members[leader].id).to_string(), "{table}");
        assert_eq!(row[5], "false");
        assert!(row[6..9].iter().all(|n| n.parse::<u64>().is_ok()), "{table}");
        assert_eq!(row[9], "");
    }
    let simple = ok(&["--endpoints", &c.endpoint(1), "endpoint", "status", "--cluster"]);
    assert_eq!(simple.lines().count(), 3);
    for (line, m) in simple.lines().zip(&ordered) {
        assert!(line.starts_with(&format!("http://127.0.0.1:{}, {}, 3.4.23, ", m.client_port, m.id)), "{simple}");
        assert!(line.ends_with(", "), "{simple}");
    }
    let out = steadctl(&["--endpoints", &c.endpoint(2), "endpoint", "health", "--cluster"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut healthy: Vec<String> = text(&out.stderr)
        .lines()
        .map(|l| {
            let (ep, rest) = l.split_once(" is healthy: successfully committed proposal: took = ").expect(l);
            assert!(rest.ends_with('s'), "{l}");
            ep.to_string()
        })
        .collect();
    healthy.sort();
    let mut want: Vec<String> = c.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect();
    want.sort();
    assert_eq!(healthy, want);

    // member add --learner, sent to a follower only: steadctl finds the leader.
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let fep = c.endpoint(follower);
    let new_peer = format!("http://127.0.0.1:{}", free_ports(1)[0]);
    let added = ok(&["--endpoints", &fep, "member", "add", "learner1", "--peer-urls", &new_peer, "--learner"]);
    let lines: Vec<&str> = added.lines().collect();
    assert_eq!(lines.len(), 6, "{added}");
    let first: Vec<&str> = lines[0].split(' ').filter(|w| !w.is_empty()).collect();
    assert_eq!((first[0], first[2], first[3], first[4]), ("Member", "added", "to", "cluster"), "{added}");
    let new_id = first[1].to_string();
    assert_eq!(lines[0], format!("Member {:>16} added to cluster {:>16}", new_id, c.cluster_id));
    assert_eq!(lines[1], "");
    assert_eq!(lines[2], "ETCD_NAME=\"learner1\"");
    // Every member's peer URLs in ID order, the new one under its given name.
    let mut conf: Vec<(u64, String)> =
        c.members.iter().map(|m| (u64::from_str_radix(&m.id, 16).unwrap(), format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))).collect();
    conf.push((u64::from_str_radix(&new_id, 16).unwrap(), format!("learner1={new_peer}")));
    conf.sort();
    let conf: Vec<String> = conf.into_iter().map(|(_, s)| s).collect();
    assert_eq!(lines[3], format!("ETCD_INITIAL_CLUSTER=\"{}\"", conf.join(",")));
    assert_eq!(lines[4], format!("ETCD_INITIAL_ADVERTISE_PEER_URLS=\"{new_peer}\""));
    assert_eq!(lines[5], "ETCD_INITIAL_CLUSTER_STATE=\"existing\"");

    let listed = ok(&["--endpoints", &all, "member", "list"]);
    assert!(listed.contains(&format!("{new_id}, unstarted, , {new_peer}, , true\n")), "{listed}");
    // The same URL again: etcd's error text, clientv3's warning line (--debug), exit 1.
    let out = steadctl(&["--endpoints", &fep, "--debug", "member", "add", "again", &format!("--peer-urls={new_peer}")]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.ends_with("\nError:  etcdserver: Peer URLs already exists\n"), "{err}");
    assert!(err.starts_with("{\"level\":\"warn\""), "{err}");
    assert!(
        err.contains("\"target\":\"endpoint://client-") && err.contains(&format!("/{fep}\"")),
        "logs as the client of the given endpoint: {err}"
    );

    // A learner that never started cannot be promoted.
    let out = steadctl(&["--endpoints", &fep, "member", "promote", &new_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).ends_with("Error:  etcdserver: can only promote a learner member which is in sync with leader\n"),
        "{}",
        text(&out.stderr)
    );

    // member remove, also through the follower.
    let removed = ok(&["--endpoints", &fep, "member", "remove", &new_id]);
    assert_eq!(removed, format!("Member {:>16} removed from cluster {:>16}\n", new_id, c.cluster_id));
    let out = steadctl(&["--endpoints", &fep, "member", "remove", &new_id]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Error:  etcdserver: member not found\n");
    assert_eq!(ok(&["--endpoints", &all, "member", "list"]).lines().count(), 3);

    // move-leader: to a follower, through all endpoints.
    let target = (0..3).find(|i| *i != leader).unwrap();
    let moved = ok(&["--endpoints", &all, "move-leader", &c.members[target].id]);
    assert_eq!(moved, format!("Leadership transferred from {} to {}\n", c.members[leader].id, c.members[target].id));
    c.wait_leader(Some(target), Duration::from_secs(10));
    // Only followers given: etcdctl's bad-args exit.
    let followers: Vec<String> = (0..3).filter(|i| *i != target).map(|i| c.endpoint(i)).collect();
    let out = steadctl(&["--endpoints", &followers.join(","), "move-leader", &c.members[leader].id]);
    assert_eq!(out.status.code(), Some(128));
    assert_eq!(text(&out.stderr), format!("Error:  no leader endpoint given at [{}]\n", followers.join(" ")));
    // Not a member: the leader refuses.
    let out = steadctl(&["--endpoints", &all, "move-leader", "12"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Error:  etcdserver: bad leader transferee\n");

    // The gateway agrees with what steadctl printed.
    let (_, list) = post(&c.members[0].server.endpoint, "/v3/cluster/member/list", "{}");
    assert_eq!(list["members"].as_array().map(Vec::len), Some(3));
}
