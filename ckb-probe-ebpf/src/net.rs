//! Network layer: the target's TCP connections, aggregated per remote peer.
//!
//! Tracepoint path (preferred): `sock:inet_sock_set_state` (lifecycle), `sock:sock_send_length`
//! / `sock:sock_recv_length` (bytes), `tcp:tcp_retransmit_skb`. Kprobe path (kernels without
//! the send/recv tracepoints): `tcp_connect`, `inet_csk_accept` (return), `tcp_sendmsg`
//! (entry + return), `tcp_cleanup_rbuf`, `tcp_close`. Both paths share the socket and peer
//! bookkeeping below; which sockets count as the target's is documented in
//! `ckb_probe_common::net`. Field offsets come from user space (`NET_CONFIG`), read from the
//! running kernel's tracepoint format files and BTF.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{kprobe, kretprobe, map, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};
use ckb_probe_common::net::{
    AF_INET, AF_INET6, IPPROTO_TCP, LISTEN_MAX, MSG_PEEK, NET_FLAG_SOCK_IPV4, NET_FLAG_SOCK_IPV6,
    NetConfig, NetEvent, PEERS_MAX, PeerKey, PeerStats, RING_BYTES, SOCK_ADOPTED, SOCK_ESTABLISHED,
    SOCK_INBOUND, SOCK_OUTBOUND, SOCKS_MAX, SockInfo, counter, kind, state,
};

use crate::{target, util::add};

#[map]
static NET_CONFIG: Array<NetConfig> = Array::with_max_entries(1, 0);
/// The target's sockets, by kernel address.
#[map]
static NET_SOCKS: LruHashMap<u64, SockInfo> = LruHashMap::with_max_entries(SOCKS_MAX, 0);
#[map]
static NET_PEERS: LruHashMap<PeerKey, PeerStats> = LruHashMap::with_max_entries(PEERS_MAX, 0);
/// The target's listening ports (host order): a child socket on one of them was accepted by it.
#[map]
static NET_LISTEN: LruHashMap<u16, u32> = LruHashMap::with_max_entries(LISTEN_MAX, 0);
/// Kprobe path: the socket of a `tcp_sendmsg` in flight, by thread, for its return.
#[map]
static NET_SEND_ARGS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1_024, 0);
#[map]
static NET_EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static NET_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);

#[inline(always)]
fn bump(idx: u32, v: u64) {
    if let Some(p) = NET_COUNTERS.get_ptr_mut(idx) {
        add(p, v);
    }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// A tracepoint field at a run-time offset; zero when unreadable.
#[inline(always)]
fn field<T: Copy + Default>(ctx: &TracePointContext, off: u16) -> T {
    // SAFETY: a checked kernel read inside the tracepoint record.
    unsafe { ctx.read_at::<T>(off as usize) }.unwrap_or_default()
}

/// A `struct sock` member at a run-time offset; zero when unreadable.
#[inline(always)]
fn sk_read<T: Copy + Default>(sk: u64, off: u16) -> T {
    // SAFETY: bpf_probe_read_kernel checks the address; a fault yields Err.
    unsafe { bpf_probe_read_kernel((sk + off as u64) as *const T) }.unwrap_or_default()
}

#[inline(always)]
fn is_listen_port(port: u16) -> bool {
    port != 0 && unsafe { NET_LISTEN.get(&port) }.is_some()
}

/// The peer's record, created empty if missing.
#[inline(always)]
fn peer(key: &PeerKey, ts: u64) -> Option<*mut PeerStats> {
    if let Some(p) = NET_PEERS.get_ptr_mut(key) {
        return Some(p);
    }
    let init = PeerStats {
        first_ns: ts,
        ..PeerStats::default()
    };
    let _ = NET_PEERS.insert(key, &init, BPF_NOEXIST as u64);
    let p = NET_PEERS.get_ptr_mut(key);
    if p.is_none() {
        bump(counter::MAP_FULL, 1);
    }
    p
}

#[inline(always)]
fn emit(k: u32, sk: u64, info: &SockInfo, old: u8, new: u8, ts: u64, age: u64) {
    match NET_EVENTS.reserve::<NetEvent>(0) {
        Some(mut slot) => {
            slot.write(NetEvent {
                kind: k,
                tid: bpf_get_current_pid_tgid() as u32,
                ts_ns: ts,
                skaddr: sk,
                age_ns: age,
                bytes_sent: info.bytes_sent,
                bytes_received: info.bytes_received,
                key: info.key,
                local_port: info.local_port,
                old_state: old,
                new_state: new,
                sock_flags: info.flags as u32,
                _pad: 0,
            });
            slot.submit(0);
        }
        None => bump(counter::RING_DROPS, 1),
    }
}

/// Starts tracking a socket: stores it, counts the new connection on its peer and logs `k`
/// (0: store only).
#[inline(always)]
fn open_sock(sk: u64, info: &SockInfo, k: u32, old: u8, new: u8) {
    if NET_SOCKS.insert(&sk, info, 0).is_err() {
        bump(counter::MAP_FULL, 1);
        return;
    }
    if k == 0 {
        return;
    }
    let ts = info.first_ns;
    if let Some(p) = peer(&info.key, ts) {
        // SAFETY: `p` points to the live map value of this peer.
        unsafe {
            match k {
                kind::CONNECT => add(&raw mut (*p).connects, 1),
                kind::ACCEPT => add(&raw mut (*p).accepts, 1),
                kind::ADOPT => add(&raw mut (*p).adopted, 1),
                _ => {}
            }
            (*p).conn_start_ns = ts;
            (*p).state = info.state as u32;
            if info.local_port != 0 {
                (*p).local_port = info.local_port as u32;
            }
        }
    }
    match k {
        kind::CONNECT => bump(counter::CONNECTS, 1),
        kind::ACCEPT => bump(counter::ACCEPTS, 1),
        kind::ADOPT => bump(counter::ADOPTED, 1),
        _ => {}
    }
    emit(k, sk, info, old, new, ts, 0);
}

/// A tracked socket reached CLOSE: counts it and logs it with its age. The record stays (in
/// state CLOSE) because data that arrived before the FIN is often read after it; the next life
/// of that socket address starts with a transition that replaces it, and the LRU bounds it.
#[inline(always)]
fn close_sock(sk: u64, info: *mut SockInfo, old: u8, ts: u64) {
    // SAFETY: `info` points to the live map value of `sk`.
    let mut i = unsafe {
        if (*info).state == state::CLOSE {
            return;
        }
        (*info).state = state::CLOSE;
        *info
    };
    // A half-open inbound child was never counted as a connection: its death is not one
    // either (and a SYN flood must not flood the event log).
    if i.flags & (SOCK_OUTBOUND | SOCK_ADOPTED | SOCK_ESTABLISHED) == 0 {
        return;
    }
    i.state = state::CLOSE;
    let established = i.flags & SOCK_ESTABLISHED != 0;
    let since = if i.established_ns != 0 {
        i.established_ns
    } else {
        i.first_ns
    };
    let age = if established {
        ts.saturating_sub(since)
    } else {
        0
    };
    if let Some(p) = peer(&i.key, ts) {
        // SAFETY: live peer record.
        unsafe {
            add(&raw mut (*p).closes, 1);
            if established {
                add(&raw mut (*p).disconnects, 1);
            }
            (*p).state = state::CLOSE as u32;
            (*p).last_close_ns = ts;
        }
    }
    bump(counter::CLOSES, 1);
    if established {
        bump(counter::DISCONNECTS, 1);
    }
    emit(kind::CLOSE, sk, &i, old, state::CLOSE, ts, age);
}

/// Reads a socket's endpoints from `struct sock_common` (for sockets first seen mid-life or
/// through kprobes, where no tracepoint carries the addresses). `None` for non-TCP families.
#[inline(always)]
fn sock_endpoints(c: &NetConfig, sk: u64) -> Option<(PeerKey, u16, u8)> {
    let mut key = PeerKey::default();
    if c.flags & NET_FLAG_SOCK_IPV4 == 0 {
        return Some((key, 0, 0));
    }
    let family: u16 = sk_read(sk, c.sk_family);
    let st: u8 = sk_read(sk, c.sk_state);
    // skc_dport is network order, skc_num host order.
    let dport: u16 = u16::from_be(sk_read(sk, c.sk_dport));
    let lport: u16 = sk_read(sk, c.sk_num);
    if family == AF_INET {
        let a: [u8; 4] = sk_read(sk, c.sk_daddr);
        key.addr[..4].copy_from_slice(&a);
    } else if family == AF_INET6 {
        if c.flags & NET_FLAG_SOCK_IPV6 == 0 {
            return Some((key, lport, st));
        }
        key.addr = sk_read(sk, c.sk_v6_daddr);
    } else {
        return None;
    }
    key.family = family;
    key.port = dport;
    Some((key, lport, st))
}

/// Whether a TCP state implies the connection had been established.
#[inline(always)]
fn was_established(st: u8) -> bool {
    matches!(
        st,
        state::ESTABLISHED
            | state::FIN_WAIT1
            | state::FIN_WAIT2
            | state::CLOSE_WAIT
            | state::CLOSING
            | state::LAST_ACK
    )
}

/// The tracked socket `sk`, adopting it (reading its endpoints) when the target uses a socket
/// opened before the probe was attached.
#[inline(always)]
fn sock_of_target(c: &NetConfig, sk: u64, flags: u8, ts: u64) -> Option<*mut SockInfo> {
    if let Some(p) = NET_SOCKS.get_ptr_mut(&sk) {
        return Some(p);
    }
    let (key, lport, st) = sock_endpoints(c, sk)?;
    if st == state::LISTEN {
        return None;
    }
    // Opened before the probe unless the caller saw it being opened.
    let mut fl = if flags == 0 { SOCK_ADOPTED } else { flags };
    if was_established(st) {
        fl |= SOCK_ESTABLISHED;
    }
    let info = SockInfo {
        key,
        local_port: lport,
        state: st,
        flags: fl,
        first_ns: ts,
        ..SockInfo::default()
    };
    let k = if st == state::CLOSE || st == state::TIME_WAIT {
        // Already closed (its record was evicted): bytes still count, not as a connection.
        0
    } else if flags & SOCK_OUTBOUND != 0 {
        kind::CONNECT
    } else if flags & SOCK_INBOUND != 0 {
        kind::ACCEPT
    } else {
        kind::ADOPT
    };
    open_sock(sk, &info, k, st, st);
    NET_SOCKS.get_ptr_mut(&sk)
}

/// Counts bytes the target moved through `sk`.
#[inline(always)]
fn count_bytes(c: &NetConfig, sk: u64, bytes: u64, send: bool) {
    let ts = now();
    let Some(info) = sock_of_target(c, sk, 0, ts) else {
        return;
    };
    // SAFETY: `info` points to the live map value of `sk`.
    let key = unsafe {
        if send {
            add(&raw mut (*info).bytes_sent, bytes);
        } else {
            add(&raw mut (*info).bytes_received, bytes);
        }
        (*info).key
    };
    if let Some(p) = peer(&key, ts) {
        // SAFETY: live peer record.
        unsafe {
            if send {
                add(&raw mut (*p).bytes_sent, bytes);
                add(&raw mut (*p).sends, 1);
            } else {
                add(&raw mut (*p).bytes_received, bytes);
                add(&raw mut (*p).recvs, 1);
            }
        }
    }
    if send {
        bump(counter::BYTES_SENT, bytes);
        bump(counter::SENDS, 1);
    } else {
        bump(counter::BYTES_RECEIVED, bytes);
        bump(counter::RECVS, 1);
    }
}

#[inline(always)]
fn retransmit(sk: u64) {
    let Some(info) = NET_SOCKS.get_ptr_mut(&sk) else {
        return;
    };
    // SAFETY: live map value.
    let key = unsafe { (*info).key };
    if let Some(p) = peer(&key, now()) {
        // SAFETY: live peer record.
        unsafe { add(&raw mut (*p).retransmits, 1) };
    }
    bump(counter::RETRANSMITS, 1);
}

// ---------------------------------------------------------------- tracepoint path

#[tracepoint]
pub fn net_set_state(ctx: TracePointContext) -> u32 {
    let _ = on_set_state(&ctx);
    0
}

#[inline(always)]
fn on_set_state(ctx: &TracePointContext) -> Option<()> {
    let c = NET_CONFIG.get(0)?;
    if field::<u16>(ctx, c.ss_protocol) != IPPROTO_TCP {
        return None;
    }
    let sk: u64 = field(ctx, c.ss_skaddr);
    let old = field::<i32>(ctx, c.ss_oldstate) as u8;
    let new = field::<i32>(ctx, c.ss_newstate) as u8;
    let sport: u16 = field(ctx, c.ss_sport);
    let mine = target().is_some();

    if new == state::LISTEN {
        let _ = NET_SOCKS.remove(&sk);
        if mine && sport != 0 {
            let _ = NET_LISTEN.insert(&sport, &1, 0);
        }
        return None;
    }
    if old == state::LISTEN && new == state::CLOSE {
        return None;
    }
    let ts = now();
    // Transitions that start a socket's life: a stale record at a reused address is replaced.
    let born_out = old == state::CLOSE && new == state::SYN_SENT;
    let born_in = new == state::SYN_RECV;
    if born_out || born_in {
        let _ = NET_SOCKS.remove(&sk);
    }
    if let Some(info) = NET_SOCKS.get_ptr_mut(&sk) {
        return on_tracked(sk, info, old, new, sport, ts);
    }

    let accepted =
        (born_in || (old == state::SYN_RECV && new == state::ESTABLISHED)) && is_listen_port(sport);
    // Only these transitions run in a system call of the socket's owner (see the module doc).
    let closing_by_owner = mine
        && ((old == state::ESTABLISHED && new == state::FIN_WAIT1)
            || (old == state::CLOSE_WAIT && new == state::LAST_ACK));
    if !((born_out && mine) || accepted || closing_by_owner) {
        return None;
    }

    let family: u16 = field(ctx, c.ss_family);
    let mut key = PeerKey {
        family,
        port: field(ctx, c.ss_dport),
        addr: [0; 16],
    };
    if family == AF_INET {
        let a: [u8; 4] = field(ctx, c.ss_daddr);
        key.addr[..4].copy_from_slice(&a);
    } else if family == AF_INET6 {
        key.addr = field(ctx, c.ss_daddr_v6);
    } else {
        return None;
    }
    let mut info = SockInfo {
        key,
        local_port: sport,
        state: new,
        flags: 0,
        first_ns: ts,
        ..SockInfo::default()
    };
    if born_out {
        info.flags = SOCK_OUTBOUND;
        open_sock(sk, &info, kind::CONNECT, old, new);
    } else if accepted {
        info.flags = SOCK_INBOUND;
        if new == state::ESTABLISHED {
            // Attached between SYN_RECV and ESTABLISHED: the handshake completes now.
            info.flags |= SOCK_ESTABLISHED;
            info.established_ns = ts;
            open_sock(sk, &info, kind::ACCEPT, old, new);
        } else {
            // Counted as an accept once established; a half-open child may still die.
            if NET_SOCKS.insert(&sk, &info, 0).is_err() {
                bump(counter::MAP_FULL, 1);
            }
        }
    } else {
        info.flags = SOCK_ADOPTED | SOCK_ESTABLISHED;
        open_sock(sk, &info, kind::ADOPT, old, new);
    }
    Some(())
}

/// A state change of a socket already known to be the target's.
#[inline(always)]
fn on_tracked(sk: u64, info: *mut SockInfo, old: u8, new: u8, sport: u16, ts: u64) -> Option<()> {
    if new == state::CLOSE {
        close_sock(sk, info, old, ts);
        return Some(());
    }
    // SAFETY: `info` points to the live map value of `sk`.
    let i = unsafe {
        (*info).state = new;
        if (*info).local_port == 0 && sport != 0 {
            (*info).local_port = sport;
        }
        if new == state::ESTABLISHED && (*info).flags & SOCK_ESTABLISHED == 0 {
            (*info).flags |= SOCK_ESTABLISHED;
            (*info).established_ns = ts;
        }
        *info
    };
    let p = peer(&i.key, ts)?;
    // SAFETY: live peer record.
    unsafe {
        (*p).state = new as u32;
        if i.local_port != 0 {
            (*p).local_port = i.local_port as u32;
        }
    }
    if new == state::ESTABLISHED && (old == state::SYN_SENT || old == state::SYN_RECV) {
        // SAFETY: live peer record.
        unsafe { (*p).conn_start_ns = ts };
        if old == state::SYN_RECV {
            unsafe { add(&raw mut (*p).accepts, 1) };
            bump(counter::ACCEPTS, 1);
            emit(kind::ACCEPT, sk, &i, old, new, ts, 0);
        } else {
            emit(kind::ESTABLISHED, sk, &i, old, new, ts, 0);
        }
    }
    Some(())
}

#[inline(always)]
fn on_length(ctx: &TracePointContext, send: bool) -> Option<()> {
    target()?;
    let c = NET_CONFIG.get(0)?;
    if field::<u16>(ctx, c.len_protocol) != IPPROTO_TCP {
        return None;
    }
    let family: u16 = field(ctx, c.len_family);
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    let ret: i32 = field(ctx, c.len_ret);
    if ret <= 0 {
        return None;
    }
    if !send && field::<i32>(ctx, c.len_flags) as u32 & MSG_PEEK != 0 {
        return None;
    }
    let sk: u64 = field(ctx, c.len_sk);
    count_bytes(c, sk, ret as u64, send);
    Some(())
}

#[tracepoint]
pub fn net_send_len(ctx: TracePointContext) -> u32 {
    let _ = on_length(&ctx, true);
    0
}

#[tracepoint]
pub fn net_recv_len(ctx: TracePointContext) -> u32 {
    let _ = on_length(&ctx, false);
    0
}

#[tracepoint]
pub fn net_retransmit(ctx: TracePointContext) -> u32 {
    if let Some(c) = NET_CONFIG.get(0) {
        retransmit(field(&ctx, c.rt_skaddr));
    }
    0
}

// ---------------------------------------------------------------- kprobe path
// Without the state tracepoint, a connection is seen at the target's own calls: its age runs
// from connect/accept, and a peer's close is noticed when the target closes its socket.

/// `tcp_connect(sk)`: called by `connect` once the local port and addresses are set.
#[kprobe]
pub fn net_kp_connect(ctx: ProbeContext) -> u32 {
    if target().is_some()
        && let (Some(c), Some(sk)) = (NET_CONFIG.get(0), ctx.arg::<u64>(0))
    {
        let _ = NET_SOCKS.remove(&sk);
        let ts = now();
        if let Some(info) = sock_of_target(c, sk, SOCK_OUTBOUND, ts) {
            // SAFETY: live map value.
            unsafe {
                (*info).flags |= SOCK_ESTABLISHED;
                (*info).established_ns = ts;
            }
        }
    }
    0
}

/// `inet_csk_accept` returns the accepted socket.
#[kretprobe]
pub fn net_kr_accept(ctx: RetProbeContext) -> u32 {
    let sk: u64 = ctx.ret();
    if sk != 0
        && target().is_some()
        && let Some(c) = NET_CONFIG.get(0)
    {
        let _ = NET_SOCKS.remove(&sk);
        let ts = now();
        if let Some(info) = sock_of_target(c, sk, SOCK_INBOUND, ts) {
            // SAFETY: live map value.
            unsafe {
                (*info).flags |= SOCK_ESTABLISHED;
                (*info).established_ns = ts;
            }
        }
    }
    0
}

/// `tcp_sendmsg(sk, msg, size)`: the byte count is the return value.
#[kprobe]
pub fn net_kp_sendmsg(ctx: ProbeContext) -> u32 {
    if let Some((pid_tgid, _)) = target()
        && let Some(sk) = ctx.arg::<u64>(0)
    {
        let _ = NET_SEND_ARGS.insert(&pid_tgid, &sk, 0);
    }
    0
}

#[kretprobe]
pub fn net_kr_sendmsg(ctx: RetProbeContext) -> u32 {
    if let Some((pid_tgid, _)) = target()
        && let Some(sk) = unsafe { NET_SEND_ARGS.get(&pid_tgid) }.copied()
    {
        let _ = NET_SEND_ARGS.remove(&pid_tgid);
        let ret: i64 = ctx.ret();
        if ret > 0
            && let Some(c) = NET_CONFIG.get(0)
        {
            count_bytes(c, sk, ret as u64, true);
        }
    }
    0
}

/// `tcp_cleanup_rbuf(sk, copied)`: called by `tcp_recvmsg` with the bytes just read.
#[kprobe]
pub fn net_kp_rbuf(ctx: ProbeContext) -> u32 {
    if target().is_some()
        && let (Some(c), Some(sk), Some(copied)) =
            (NET_CONFIG.get(0), ctx.arg::<u64>(0), ctx.arg::<i64>(1))
    {
        let copied = copied as i32;
        if copied > 0 {
            count_bytes(c, sk, copied as u64, false);
        }
    }
    0
}

/// `tcp_close(sk, timeout)`: the target closes its socket.
#[kprobe]
pub fn net_kp_close(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0)
        && let Some(info) = NET_SOCKS.get_ptr_mut(&sk)
    {
        // SAFETY: live map value.
        let old = unsafe { (*info).state };
        close_sock(sk, info, old, now());
        // After the owner's close nothing more is read: forget it now.
        let _ = NET_SOCKS.remove(&sk);
    }
    0
}
