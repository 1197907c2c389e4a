//! The network layer: TCP connections of the target, per peer, from the `sock:` and `tcp:`
//! tracepoints (kprobes on older kernels), and the records the kernel programs keep.
//!
//! Which sockets are the target's (the rule the kernel programs apply):
//! - `sock_send_length` / `sock_recv_length` run in the sending or receiving task: a TCP socket
//!   used by the target's tgid is the target's (and only the target's own calls are counted).
//! - `inet_sock_set_state` often runs in softirq or timer context, where the current task is
//!   whichever one the CPU interrupted. Only transitions that a system call of the socket's
//!   owner makes are trusted to identify the owner by tgid: CLOSE→SYN_SENT (`connect`),
//!   CLOSE→LISTEN (`listen`), ESTABLISHED→FIN_WAIT1 and CLOSE_WAIT→LAST_ACK (`close`/`shutdown`).
//! - Accepted sockets are born in softirq: a child socket (LISTEN→SYN_RECV, or
//!   SYN_RECV→ESTABLISHED) whose local port is one of the target's listening ports
//!   (`NET_LISTEN`, filled by user space from /proc and learnt from CLOSE→LISTEN) is the target's.
//! - Every other transition and retransmit counts only for sockets already known (`NET_SOCKS`,
//!   keyed by the socket's kernel address); events of unknown sockets are dropped in the kernel.
//! - A known socket stays known after CLOSE (data that arrived before the FIN is often read
//!   after it); CLOSE→SYN_SENT, CLOSE→LISTEN and →SYN_RECV start a new life at that address and
//!   replace any stale record, and the LRU bounds the rest.

/// `AF_INET` / `AF_INET6` as the tracepoints report them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
/// `MSG_PEEK`: a peeked receive consumes nothing.
pub const MSG_PEEK: u32 = 2;

/// TCP states (include/net/tcp_states.h).
pub mod state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;

    pub const fn name(s: u8) -> &'static str {
        match s {
            ESTABLISHED => "ESTABLISHED",
            SYN_SENT => "SYN_SENT",
            SYN_RECV => "SYN_RECV",
            FIN_WAIT1 => "FIN_WAIT1",
            FIN_WAIT2 => "FIN_WAIT2",
            TIME_WAIT => "TIME_WAIT",
            CLOSE => "CLOSE",
            CLOSE_WAIT => "CLOSE_WAIT",
            LAST_ACK => "LAST_ACK",
            LISTEN => "LISTEN",
            CLOSING => "CLOSING",
            NEW_SYN_RECV => "NEW_SYN_RECV",
            _ => "UNKNOWN",
        }
    }
}

/// Byte offsets of the tracepoint fields and `struct sock_common` members the programs read,
/// written by user space into `NET_CONFIG` (index 0) from the running kernel's
/// `events/*/*/format` files and BTF, so no layout is assumed at compile time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// `NET_FLAG_*`.
    pub flags: u32,
    // sock:inet_sock_set_state
    pub ss_skaddr: u16,
    pub ss_oldstate: u16,
    pub ss_newstate: u16,
    pub ss_sport: u16,
    pub ss_dport: u16,
    pub ss_family: u16,
    pub ss_protocol: u16,
    pub ss_daddr: u16,
    pub ss_daddr_v6: u16,
    // sock:sock_send_length and sock:sock_recv_length (one layout, checked equal)
    pub len_sk: u16,
    pub len_family: u16,
    pub len_protocol: u16,
    pub len_ret: u16,
    pub len_flags: u16,
    // tcp:tcp_retransmit_skb
    pub rt_skaddr: u16,
    // struct sock_common (struct sock starts with it)
    pub sk_daddr: u16,
    pub sk_dport: u16,
    pub sk_num: u16,
    pub sk_family: u16,
    pub sk_state: u16,
    pub sk_v6_daddr: u16,
    pub _pad: u16,
}

/// The `sk_*` offsets are valid: sockets first seen mid-life get their addresses from the
/// socket itself (else they are recorded with family only and shown as unknown).
pub const NET_FLAG_SOCK_IPV4: u32 = 1 << 0;
/// `sk_v6_daddr` is valid too.
pub const NET_FLAG_SOCK_IPV6: u32 = 1 << 1;

/// A remote endpoint: the per-peer aggregation key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    /// `AF_INET` or `AF_INET6`; 0 when the address is unknown.
    pub family: u16,
    /// Remote port, host byte order.
    pub port: u16,
    /// IPv4 in the first 4 bytes (rest zero), or IPv6, network byte order.
    pub addr: [u8; 16],
}

/// What the kernel knows about one socket of the target (`NET_SOCKS`, keyed by its address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockInfo {
    pub key: PeerKey,
    /// Local port, host byte order (0 until bound: SYN_SENT does not know it yet).
    pub local_port: u16,
    /// Last TCP state seen.
    pub state: u8,
    /// `SOCK_*`.
    pub flags: u8,
    /// When the kernel first saw the socket (`CLOCK_MONOTONIC`, ns).
    pub first_ns: u64,
    /// When it reached ESTABLISHED; 0 if not seen.
    pub established_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Opened by the target (`connect`).
pub const SOCK_OUTBOUND: u8 = 1 << 0;
/// Accepted on one of the target's listening ports.
pub const SOCK_INBOUND: u8 = 1 << 1;
/// Reached ESTABLISHED (a close is then a disconnection, not a failed attempt).
pub const SOCK_ESTABLISHED: u8 = 1 << 2;
/// Already open when first seen: its age is counted from then.
pub const SOCK_ADOPTED: u8 = 1 << 3;

/// Per-peer aggregates (`NET_PEERS`). Counters only grow while the entry lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub sends: u64,
    pub recvs: u64,
    pub retransmits: u64,
    /// Connections the target opened to this peer (CLOSE→SYN_SENT).
    pub connects: u64,
    /// Connections accepted from this peer that reached ESTABLISHED.
    pub accepts: u64,
    /// Connections already open when first seen.
    pub adopted: u64,
    /// Connections closed (reached CLOSE).
    pub closes: u64,
    /// Of `closes`, those that had been established (disconnections).
    pub disconnects: u64,
    /// When this entry was created (`CLOCK_MONOTONIC`, ns).
    pub first_ns: u64,
    /// Start of the newest connection (established, or first seen when adopted).
    pub conn_start_ns: u64,
    pub last_close_ns: u64,
    /// Local port of the newest connection.
    pub local_port: u32,
    /// TCP state of the newest connection.
    pub state: u32,
}

impl PeerStats {
    /// Connections open now: opened (however first seen) minus closed.
    pub fn open(&self) -> u64 {
        (self.connects + self.accepts + self.adopted).saturating_sub(self.closes)
    }
}

/// Ring-buffer record kinds.
pub mod kind {
    /// The target called `connect` (CLOSE→SYN_SENT).
    pub const CONNECT: u32 = 1;
    /// An outbound connection completed its handshake (SYN_SENT→ESTABLISHED).
    pub const ESTABLISHED: u32 = 2;
    /// An inbound connection completed its handshake on a listening port.
    pub const ACCEPT: u32 = 3;
    /// A connection reached CLOSE.
    pub const CLOSE: u32 = 4;
    /// An open connection was seen for the first time (it predates the probe).
    pub const ADOPT: u32 = 5;

    pub const fn name(k: u32) -> &'static str {
        match k {
            CONNECT => "connect",
            ESTABLISHED => "established",
            ACCEPT => "accept",
            CLOSE => "close",
            ADOPT => "adopt",
            _ => "unknown",
        }
    }
}

/// One connection event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetEvent {
    /// `kind::*`.
    pub kind: u32,
    /// Current task when the event fired (not necessarily the target: softirq).
    pub tid: u32,
    /// `CLOCK_MONOTONIC`, ns.
    pub ts_ns: u64,
    /// Kernel address of the socket (tells connections to one peer apart).
    pub skaddr: u64,
    /// At CLOSE: since ESTABLISHED (or since first seen for adopted sockets); else 0.
    pub age_ns: u64,
    /// At CLOSE: the connection's own byte totals (as far as seen).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub key: PeerKey,
    pub local_port: u16,
    pub old_state: u8,
    pub new_state: u8,
    /// The socket's `SOCK_*` flags.
    pub sock_flags: u32,
    pub _pad: u32,
}

/// Indexes of the per-CPU `NET_COUNTERS` array: totals over every connection of the target,
/// exact even when the LRU maps evict peers.
pub mod counter {
    pub const BYTES_SENT: u32 = 0;
    pub const BYTES_RECEIVED: u32 = 1;
    pub const SENDS: u32 = 2;
    pub const RECVS: u32 = 3;
    pub const CONNECTS: u32 = 4;
    pub const ACCEPTS: u32 = 5;
    pub const CLOSES: u32 = 6;
    pub const DISCONNECTS: u32 = 7;
    pub const RETRANSMITS: u32 = 8;
    pub const ADOPTED: u32 = 9;
    /// Events dropped because the ring buffer was full.
    pub const RING_DROPS: u32 = 10;
    /// Socket or peer records that could not be stored (map update failed).
    pub const MAP_FULL: u32 = 11;
    pub const LEN: u32 = 12;
}

/// Capacities: sockets, peers (the 256), listening ports, ring buffer.
pub const SOCKS_MAX: u32 = 4_096;
pub const PEERS_MAX: u32 = 256;
pub const LISTEN_MAX: u32 = 64;
pub const RING_BYTES: u32 = 256 * 1024;

crate::user_pod!(NetConfig, PeerKey, SockInfo, PeerStats, NetEvent);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        // Map keys are hashed bytewise: padding would make equal keys differ.
        assert_eq!(size_of::<PeerKey>(), 20);
        assert_eq!(size_of::<SockInfo>(), 20 + 2 + 1 + 1 + 4 * 8);
        assert_eq!(
            size_of::<NetEvent>(),
            4 + 4 + 5 * 8 + 20 + 2 + 1 + 1 + 4 + 4
        );
        assert_eq!(size_of::<NetConfig>() % 4, 0);
    }

    #[test]
    fn open_connections() {
        let s = PeerStats {
            connects: 3,
            accepts: 1,
            adopted: 1,
            closes: 4,
            ..Default::default()
        };
        assert_eq!(s.open(), 1);
    }
}
