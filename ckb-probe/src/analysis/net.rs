//! Interval statistics of the network layer (per peer, totals) from two cumulative snapshots,
//! and the connection-churn rules: a disconnection storm (more than 10 disconnections in the
//! last 60 s) and peers that reconnect repeatedly (3 or more connections in the last 60 s).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant, SystemTime},
};

use crate::model::de::Name;
use ckb_probe_common::net::{
    AF_INET, AF_INET6, NetEvent, PeerKey, PeerStats, SOCK_ESTABLISHED, SOCK_INBOUND, SOCK_OUTBOUND,
    counter, kind, state,
};
use serde::{Deserialize, Serialize};

use crate::{collect::net::NetSnapshot, node::RpcPeer};

/// The remote address of a peer key; `None` when the kernel could not read it.
pub fn ip_of(key: &PeerKey) -> Option<IpAddr> {
    match key.family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
            key.addr[0],
            key.addr[1],
            key.addr[2],
            key.addr[3],
        ))),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(key.addr);
            // A dual-stack socket's IPv4 peer is the same peer as over AF_INET.
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

pub fn family_name(key: &PeerKey) -> &'static str {
    match key.family {
        AF_INET => "ipv4",
        AF_INET6 => "ipv6",
        _ => "unknown",
    }
}

/// `1.2.3.4:8115`, `[::1]:8115`, `?` for an unreadable address.
pub fn endpoint(key: &PeerKey) -> String {
    match ip_of(key) {
        Some(IpAddr::V4(a)) => format!("{a}:{}", key.port),
        Some(IpAddr::V6(a)) => format!("[{a}]:{}", key.port),
        None => "?".into(),
    }
}

fn state_name(s: u32) -> String {
    if s == state::CLOSE as u32 {
        "closed".into()
    } else {
        state::name(s as u8).to_ascii_lowercase()
    }
}

/// Which connections are P2P, and which side opened them.
#[derive(Clone, Debug, Default)]
pub struct Classifier {
    /// Every TCP port the target listens on.
    pub listen_ports: BTreeSet<u16>,
    /// The P2P listening ports (`--listen-port`, CKB's `[network] listen_addresses`); `None`:
    /// every listening port counts as P2P.
    pub p2p_ports: Option<BTreeSet<u16>>,
}

impl Classifier {
    /// Direction of a connection the kernel saw being opened (`SOCK_*` flags), else by rule:
    /// a local port the target listens on means the peer connected to us.
    pub fn direction(&self, sock_flags: u32, local_port: u16) -> &'static str {
        let inbound = sock_flags & SOCK_INBOUND as u32 != 0
            || self.listen_ports.contains(&local_port)
            || self.is_p2p_port(local_port);
        if sock_flags & SOCK_OUTBOUND as u32 == 0 && inbound {
            "inbound"
        } else {
            "outbound"
        }
    }

    fn is_p2p_port(&self, port: u16) -> bool {
        self.p2p_ports.as_ref().is_some_and(|p| p.contains(&port))
    }

    /// Inbound connections to a port that is not a P2P port are clients of another service
    /// of the target (CKB's RPC, metrics), not peers.
    pub fn is_p2p(&self, direction: &str, local_port: u16) -> bool {
        direction != "inbound"
            || self
                .p2p_ports
                .as_ref()
                .is_none_or(|p| p.contains(&local_port))
    }

    /// Direction of a peer from its counters (one remote endpoint may see both in theory).
    pub fn peer_direction(&self, s: &PeerStats) -> &'static str {
        match (s.connects > 0, s.accepts > 0) {
            (true, false) => "outbound",
            (false, true) => "inbound",
            (true, true) => "both",
            (false, false) => self.direction(0, s.local_port as u16),
        }
    }
}

/// One peer as reported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerReport {
    pub remote: String,
    pub port: u16,
    #[serde(deserialize_with = "crate::model::de::name")]
    pub family: Name,
    #[serde(deserialize_with = "crate::model::de::name")]
    pub direction: Name,
    pub local_port: u16,
    /// A P2P peer (false: a client of another service of the target, e.g. RPC).
    pub p2p: bool,
    pub node_id: Option<String>,
    pub version: Option<String>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub send_bytes_per_sec: f64,
    pub recv_bytes_per_sec: f64,
    pub sends: u64,
    pub recvs: u64,
    pub retransmits: u64,
    /// Age of the newest connection (its whole life when closed).
    pub age_secs: Option<f64>,
    /// The newest connection predates the probe: its age counts from when it was first seen.
    pub age_from_attach: bool,
    pub state: String,
    pub connects: u64,
    pub accepts: u64,
    pub adopted: u64,
    pub closes: u64,
    pub disconnects: u64,
    pub open: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub send_bytes_per_sec: f64,
    pub recv_bytes_per_sec: f64,
    pub sends: u64,
    pub recvs: u64,
    pub connects: u64,
    pub accepts: u64,
    pub adopted: u64,
    pub closes: u64,
    pub disconnects: u64,
    pub retransmits: u64,
    /// Peers listed (after the P2P filter).
    pub peers: u64,
    pub open_connections: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NetInterval {
    pub secs: f64,
    pub peers: Vec<PeerReport>,
    /// Every TCP connection of the target (P2P or not): cumulative since attach, rates over
    /// the interval.
    pub totals: Totals,
    /// Events dropped because the ring buffer was full (in this interval).
    pub lost_events: u64,
    /// Socket or peer records the kernel could not store (maps full).
    pub map_full: u64,
}

/// RPC peers by the endpoints they are known at.
pub struct RpcIndex<'a> {
    by_endpoint: BTreeMap<(IpAddr, u16), &'a RpcPeer>,
    by_ip: BTreeMap<IpAddr, Vec<&'a RpcPeer>>,
}

impl<'a> RpcIndex<'a> {
    pub fn new(peers: &'a [RpcPeer]) -> Self {
        let mut by_endpoint = BTreeMap::new();
        let mut by_ip: BTreeMap<IpAddr, Vec<&RpcPeer>> = BTreeMap::new();
        for p in peers {
            let mut ips = BTreeSet::new();
            for &(ip, port) in &p.addresses {
                by_endpoint.insert((ip, port), p);
                ips.insert(ip);
            }
            for ip in ips {
                by_ip.entry(ip).or_default().push(p);
            }
        }
        RpcIndex { by_endpoint, by_ip }
    }

    /// The RPC peer at this endpoint; by address alone only when one peer has it (an inbound
    /// peer connects from an ephemeral port, not from the address it advertises).
    pub fn find(&self, key: &PeerKey) -> Option<&'a RpcPeer> {
        let ip = ip_of(key)?;
        if let Some(p) = self.by_endpoint.get(&(ip, key.port)) {
            return Some(p);
        }
        match self.by_ip.get(&ip).map(Vec::as_slice) {
            Some([one]) => Some(one),
            _ => None,
        }
    }
}

fn rate(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 { bytes as f64 / secs } else { 0.0 }
}

/// The interval between `prev` and `cur` (for a whole-run summary, `prev` is the snapshot
/// taken at attach time). `all` keeps non-P2P connections in `peers`.
pub fn interval(
    prev: &NetSnapshot,
    cur: &NetSnapshot,
    cls: &Classifier,
    rpc: Option<&RpcIndex>,
    all: bool,
) -> NetInterval {
    let secs = cur.at.duration_since(prev.at).as_secs_f64();
    let mut peers = Vec::new();
    for (key, s) in &cur.peers {
        // The same entry as before (not evicted and re-created): its growth is the interval's.
        let before = prev.peers.get(key).filter(|p| p.first_ns == s.first_ns);
        let d = |f: fn(&PeerStats) -> u64| f(s).saturating_sub(before.map_or(0, f));
        let direction = match rpc.and_then(|r| r.find(key)).and_then(|p| p.is_outbound) {
            Some(true) => "outbound",
            Some(false) => "inbound",
            None => cls.peer_direction(s),
        };
        let p2p = cls.is_p2p(direction, s.local_port as u16);
        if !(p2p || all) {
            continue;
        }
        let open = s.open();
        let age_ns = if s.conn_start_ns == 0 {
            None
        } else if open > 0 || s.last_close_ns < s.conn_start_ns {
            Some(cur.mono_ns.saturating_sub(s.conn_start_ns))
        } else {
            Some(s.last_close_ns - s.conn_start_ns)
        };
        let found = rpc.and_then(|r| r.find(key));
        peers.push(PeerReport {
            remote: ip_of(key).map_or("?".into(), |ip| ip.to_string()),
            port: key.port,
            family: family_name(key),
            direction,
            local_port: s.local_port as u16,
            p2p,
            node_id: found.map(|p| p.node_id.clone()),
            version: found.map(|p| p.version.clone()),
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            send_bytes_per_sec: rate(d(|p| p.bytes_sent), secs),
            recv_bytes_per_sec: rate(d(|p| p.bytes_received), secs),
            sends: s.sends,
            recvs: s.recvs,
            retransmits: s.retransmits,
            age_secs: age_ns.map(|n| (n as f64 / 1e9 * 10.0).round() / 10.0),
            age_from_attach: s.adopted > 0 && s.connects == 0 && s.accepts == 0,
            state: if open > 0 && s.state == state::CLOSE as u32 {
                "established".into()
            } else {
                state_name(s.state)
            },
            connects: s.connects,
            accepts: s.accepts,
            adopted: s.adopted,
            closes: s.closes,
            disconnects: s.disconnects,
            open,
        });
    }
    // Open connections first, then the busiest.
    peers.sort_by(|a, b| {
        (b.open > 0)
            .cmp(&(a.open > 0))
            .then((b.bytes_sent + b.bytes_received).cmp(&(a.bytes_sent + a.bytes_received)))
            .then(a.remote.cmp(&b.remote))
            .then(a.port.cmp(&b.port))
    });
    let c = |i: u32| cur.counter(i);
    let dc = |i: u32| cur.counter(i).saturating_sub(prev.counter(i));
    let totals = Totals {
        bytes_sent: c(counter::BYTES_SENT),
        bytes_received: c(counter::BYTES_RECEIVED),
        send_bytes_per_sec: rate(dc(counter::BYTES_SENT), secs),
        recv_bytes_per_sec: rate(dc(counter::BYTES_RECEIVED), secs),
        sends: c(counter::SENDS),
        recvs: c(counter::RECVS),
        connects: c(counter::CONNECTS),
        accepts: c(counter::ACCEPTS),
        adopted: c(counter::ADOPTED),
        closes: c(counter::CLOSES),
        disconnects: c(counter::DISCONNECTS),
        retransmits: c(counter::RETRANSMITS),
        peers: peers.len() as u64,
        open_connections: peers.iter().map(|p| p.open).sum(),
    };
    NetInterval {
        secs,
        peers,
        totals,
        lost_events: dc(counter::RING_DROPS),
        map_full: dc(counter::MAP_FULL),
    }
}

/// One connection event as reported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    /// Only the live run has it (a report read back keeps `time`).
    #[serde(skip, default = "epoch")]
    pub wall: SystemTime,
    /// RFC 3339 with milliseconds.
    pub time: String,
    #[serde(deserialize_with = "crate::model::de::name")]
    pub kind: Name,
    pub remote: String,
    pub port: u16,
    pub local_port: u16,
    #[serde(deserialize_with = "crate::model::de::name")]
    pub family: Name,
    #[serde(deserialize_with = "crate::model::de::name")]
    pub direction: Name,
    pub p2p: bool,
    /// At close: how long the connection had been established (null if it never was).
    pub age_secs: Option<f64>,
    /// At close: the connection's own bytes.
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    #[serde(deserialize_with = "crate::model::de::name")]
    pub old_state: Name,
    #[serde(deserialize_with = "crate::model::de::name")]
    pub new_state: Name,
    /// Kernel socket address (hex), to tell connections to one endpoint apart.
    pub socket: String,
}

impl EventRecord {
    pub fn new(ev: &NetEvent, wall: SystemTime, cls: &Classifier) -> Self {
        let direction = cls.direction(ev.sock_flags, ev.local_port);
        let is_close = ev.kind == kind::CLOSE;
        let established = ev.sock_flags & SOCK_ESTABLISHED as u32 != 0;
        EventRecord {
            wall,
            time: rfc3339_ms(wall),
            kind: kind::name(ev.kind),
            remote: ip_of(&ev.key).map_or("?".into(), |ip| ip.to_string()),
            port: ev.key.port,
            local_port: ev.local_port,
            family: family_name(&ev.key),
            direction,
            p2p: cls.is_p2p(direction, ev.local_port),
            age_secs: (is_close && established)
                .then(|| (ev.age_ns as f64 / 1e9 * 1000.0).round() / 1000.0),
            bytes_sent: is_close.then_some(ev.bytes_sent),
            bytes_received: is_close.then_some(ev.bytes_received),
            old_state: state::name(ev.old_state),
            new_state: state::name(ev.new_state),
            socket: format!("{:x}", ev.skaddr),
        }
    }

    /// A close of a connection that had been established (not a failed attempt).
    pub fn is_disconnect(&self) -> bool {
        self.kind == "close" && self.age_secs.is_some()
    }

    /// A new connection (opened, accepted, or first seen already open).
    pub fn is_connection(&self) -> bool {
        matches!(self.kind, "connect" | "accept" | "adopt")
    }

    /// Who reconnects: outbound peers by endpoint (their listening port), inbound ones by
    /// address (each connection comes from a new ephemeral port).
    pub fn reconnect_key(&self) -> String {
        if self.direction == "inbound" {
            self.remote.clone()
        } else if self.remote.contains(':') {
            format!("[{}]:{}", self.remote, self.port)
        } else {
            format!("{}:{}", self.remote, self.port)
        }
    }
}

fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

fn rfc3339_ms(t: SystemTime) -> String {
    // Before 1970 (a clock set wrong) reads as the epoch, as in `view::rfc3339`.
    let t = jiff::Timestamp::try_from(t.max(SystemTime::UNIX_EPOCH));
    format!("{:.3}", t.unwrap_or(jiff::Timestamp::MAX))
}

/// An alert, as shown in the table and in JSON `alerts`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NetAlert {
    #[serde(rename = "type", deserialize_with = "crate::model::de::name")]
    pub kind: Name,
    /// Wall-clock time the condition started, RFC 3339.
    pub since: String,
    pub message: String,
    /// Disconnections (storm) or connections (reconnecting peer) in the last 60 s.
    pub count: u64,
    pub threshold: u64,
    /// The reconnecting peer (endpoint or address), for `reconnecting_peer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// A peer that connected repeatedly within the window.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reconnecting {
    pub peer: String,
    pub connections: u64,
    pub disconnections: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct ChurnConfig {
    pub window: Duration,
    /// An alert fires above this many disconnections in the window.
    pub max_disconnects: u64,
    /// A peer with at least this many connections in the window is reconnecting.
    pub min_reconnects: u64,
    pub warmup: Duration,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            window: Duration::from_secs(60),
            max_disconnects: 10,
            min_reconnects: 3,
            warmup: Duration::from_secs(300),
        }
    }
}

/// Connection churn over a sliding window of P2P events.
pub struct ChurnDetector {
    cfg: ChurnConfig,
    start: Instant,
    /// (wall time, is disconnect, is connection, reconnect key)
    window: VecDeque<(SystemTime, bool, bool, String)>,
    storm_since: Option<SystemTime>,
    reconnect_since: BTreeMap<String, SystemTime>,
    /// Most disconnections seen in one window, and alerts raised, over the run.
    pub max_disconnects: u64,
    pub storms: u64,
    pub reconnecting_seen: BTreeSet<String>,
}

impl ChurnDetector {
    pub fn new(cfg: ChurnConfig, start: Instant) -> Self {
        ChurnDetector {
            cfg,
            start,
            window: VecDeque::new(),
            storm_since: None,
            reconnect_since: BTreeMap::new(),
            max_disconnects: 0,
            storms: 0,
            reconnecting_seen: BTreeSet::new(),
        }
    }

    pub fn warmup_left(&self, now: Instant) -> Duration {
        self.cfg
            .warmup
            .saturating_sub(now.duration_since(self.start))
    }

    pub fn config(&self) -> ChurnConfig {
        self.cfg
    }

    pub fn push(&mut self, e: &EventRecord) {
        if !e.p2p || !(e.is_disconnect() || e.is_connection()) {
            return;
        }
        self.window.push_back((
            e.wall,
            e.is_disconnect(),
            e.is_connection(),
            e.reconnect_key(),
        ));
    }

    /// Trims the window to `wall` and evaluates the rules; alerts only after the warm-up.
    pub fn evaluate(
        &mut self,
        now: Instant,
        wall: SystemTime,
    ) -> (Vec<NetAlert>, Vec<Reconnecting>) {
        let cutoff = wall.checked_sub(self.cfg.window).unwrap_or(wall);
        while self.window.front().is_some_and(|(t, ..)| *t < cutoff) {
            self.window.pop_front();
        }
        let disconnects = self.window.iter().filter(|w| w.1).count() as u64;
        self.max_disconnects = self.max_disconnects.max(disconnects);
        let mut per_peer: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (_, disc, conn, key) in &self.window {
            let e = per_peer.entry(key.as_str()).or_default();
            e.0 += *conn as u64;
            e.1 += *disc as u64;
        }
        let reconnecting: Vec<Reconnecting> = per_peer
            .into_iter()
            .filter(|(_, (c, _))| *c >= self.cfg.min_reconnects)
            .map(|(k, (c, d))| Reconnecting {
                peer: k.to_string(),
                connections: c,
                disconnections: d,
            })
            .collect();
        let warm = self.warmup_left(now).is_zero();
        let mut alerts = Vec::new();
        if disconnects > self.cfg.max_disconnects && warm {
            let since = *self.storm_since.get_or_insert_with(|| {
                self.storms += 1;
                wall
            });
            alerts.push(NetAlert {
                kind: "disconnection_storm",
                since: crate::view::rfc3339(since),
                message: format!(
                    "{disconnects} disconnections in the last {} s (more than {})",
                    self.cfg.window.as_secs(),
                    self.cfg.max_disconnects
                ),
                count: disconnects,
                threshold: self.cfg.max_disconnects,
                peer: None,
            });
        } else {
            self.storm_since = None;
        }
        let keys: BTreeSet<&str> = reconnecting.iter().map(|r| r.peer.as_str()).collect();
        self.reconnect_since
            .retain(|k, _| keys.contains(k.as_str()));
        for r in &reconnecting {
            self.reconnecting_seen.insert(r.peer.clone());
            if !warm {
                continue;
            }
            let since = *self.reconnect_since.entry(r.peer.clone()).or_insert(wall);
            alerts.push(NetAlert {
                kind: "reconnecting_peer",
                since: crate::view::rfc3339(since),
                message: format!(
                    "{} connected {} times in the last {} s",
                    r.peer,
                    r.connections,
                    self.cfg.window.as_secs()
                ),
                count: r.connections,
                threshold: self.cfg.min_reconnects,
                peer: Some(r.peer.clone()),
            });
        }
        (alerts, reconnecting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::multiaddr_tcp;

    #[test]
    fn rpc_peers_match_by_endpoint_then_unique_address() {
        let peer = |id: &str, m: &str| RpcPeer {
            node_id: id.into(),
            version: "0.210.0".into(),
            is_outbound: Some(false),
            addresses: multiaddr_tcp(m).into_iter().collect(),
        };
        assert_eq!(
            multiaddr_tcp("/ip6/::1/tcp/8115/p2p/Qm"),
            Some((IpAddr::V6(Ipv6Addr::LOCALHOST), 8115))
        );
        assert_eq!(multiaddr_tcp("/dns4/x/tcp/1"), None);
        let one = [peer("A", "/ip4/10.0.0.2/tcp/8115/p2p/QmA")];
        let idx = RpcIndex::new(&one);
        assert_eq!(idx.find(&key4([10, 0, 0, 2], 8115)).unwrap().node_id, "A");
        // Inbound from an ephemeral port: the only peer at that address.
        assert_eq!(idx.find(&key4([10, 0, 0, 2], 50_000)).unwrap().node_id, "A");
        let two = [
            peer("A", "/ip4/127.0.0.1/tcp/8115/p2p/QmA"),
            peer("B", "/ip4/127.0.0.1/tcp/8125/p2p/QmB"),
        ];
        let idx = RpcIndex::new(&two);
        assert_eq!(idx.find(&key4([127, 0, 0, 1], 8125)).unwrap().node_id, "B");
        assert!(
            idx.find(&key4([127, 0, 0, 1], 50_000)).is_none(),
            "ambiguous"
        );
    }

    #[test]
    fn reconnecting_peers_are_listed_by_endpoint() {
        let start = Instant::now();
        let mut d = ChurnDetector::new(
            ChurnConfig {
                warmup: Duration::ZERO,
                ..Default::default()
            },
            start,
        );
        let cls = Classifier::default();
        for i in 0..3 {
            let ev = NetEvent {
                kind: kind::CONNECT,
                key: key4([10, 0, 0, 3], 8115),
                sock_flags: SOCK_OUTBOUND as u32,
                ..Default::default()
            };
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100 + i);
            d.push(&EventRecord::new(&ev, t, &cls));
        }
        let (alerts, list) = d.evaluate(start, SystemTime::UNIX_EPOCH + Duration::from_secs(103));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].peer, "10.0.0.3:8115");
        assert_eq!(list[0].connections, 3);
        assert_eq!(alerts[0].kind, "reconnecting_peer");
    }

    fn key4(a: [u8; 4], port: u16) -> PeerKey {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&a);
        PeerKey {
            family: AF_INET,
            port,
            addr,
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint(&key4([127, 0, 0, 1], 8115)), "127.0.0.1:8115");
        let v6 = PeerKey {
            family: AF_INET6,
            port: 9,
            addr: Ipv6Addr::LOCALHOST.octets(),
        };
        assert_eq!(endpoint(&v6), "[::1]:9");
        let mapped = PeerKey {
            family: AF_INET6,
            port: 9,
            addr: Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets(),
        };
        assert_eq!(endpoint(&mapped), "10.0.0.1:9");
        assert_eq!(endpoint(&PeerKey::default()), "?");
    }

    #[test]
    fn direction_and_p2p() {
        let cls = Classifier {
            listen_ports: [8114, 8115].into(),
            p2p_ports: Some([8115].into()),
        };
        assert_eq!(cls.direction(SOCK_OUTBOUND as u32, 8115), "outbound");
        assert_eq!(cls.direction(0, 8115), "inbound");
        assert_eq!(cls.direction(0, 40000), "outbound");
        assert!(cls.is_p2p("inbound", 8115));
        assert!(!cls.is_p2p("inbound", 8114), "an RPC client is not a peer");
        assert!(cls.is_p2p("outbound", 40000));
    }

    fn close_event(sec: u64, port: u16) -> EventRecord {
        let ev = NetEvent {
            kind: kind::CLOSE,
            key: key4([10, 0, 0, 2], port),
            local_port: 8115,
            sock_flags: (SOCK_INBOUND | SOCK_ESTABLISHED) as u32,
            age_ns: 1,
            ..Default::default()
        };
        let cls = Classifier {
            listen_ports: [8115].into(),
            p2p_ports: None,
        };
        EventRecord::new(&ev, SystemTime::UNIX_EPOCH + Duration::from_secs(sec), &cls)
    }

    #[test]
    fn storm_needs_more_than_ten_in_a_minute_after_warmup() {
        let start = Instant::now();
        let mut d = ChurnDetector::new(
            ChurnConfig {
                warmup: Duration::ZERO,
                ..Default::default()
            },
            start,
        );
        for i in 0..10 {
            d.push(&close_event(1_000 + i, 40_000 + i as u16));
        }
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_010);
        assert!(
            d.evaluate(start, wall).0.is_empty(),
            "10 is not more than 10"
        );
        d.push(&close_event(1_011, 50_000));
        let (alerts, _) = d.evaluate(start, wall + Duration::from_secs(1));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, "disconnection_storm");
        assert_eq!(alerts[0].count, 11);
        // A minute later the window is empty again.
        let (alerts, _) = d.evaluate(start, wall + Duration::from_secs(62));
        assert!(alerts.is_empty());
        assert_eq!(d.storms, 1);

        let (_, listed) = d.evaluate(start, wall);
        assert!(listed.is_empty(), "closes alone are no reconnections");
        let mut warming = ChurnDetector::new(ChurnConfig::default(), start);
        for i in 0..20 {
            warming.push(&close_event(1_000, 40_000 + i));
        }
        assert!(
            warming.evaluate(start, wall).0.is_empty(),
            "alert in warm-up"
        );
    }

    #[test]
    fn alert_times_have_milliseconds() {
        let at = |secs, ms| {
            SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(secs)
                + std::time::Duration::from_millis(ms)
        };
        assert_eq!(
            rfc3339_ms(at(1_709_251_199, 999)),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(rfc3339_ms(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_ms(SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
