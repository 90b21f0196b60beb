//! Live capture on network interfaces through libpcap (the `pcap` crate).
//!
//! Owns: opening one capture handle per worker on an interface (snap length,
//! kernel buffer, immediate mode, promiscuous mode, a BPF filter), joining the
//! handles of one interface into a Linux `PACKET_FANOUT` group, and handing out
//! borrowed [`Frame`]s that point straight into libpcap's memory-mapped ring:
//! nothing is copied between the kernel and the decoder.
//!
//! Fanout: with N > 1 workers on an interface, the N packet sockets join one
//! fanout group in `PACKET_FANOUT_HASH` mode. The kernel hashes each packet with
//! its symmetric flow hash (`__skb_get_hash_symmetric`: addresses and ports, the
//! same for both directions) and delivers it to one socket of the group, so both
//! directions of a flow reach the same worker and its flow shard. The group id
//! is chosen by the kernel (`PACKET_FANOUT_FLAG_UNIQUEID`) for the first socket
//! and read back for the others, so two sensors on one machine never share a
//! group. IP fragments are not reassembled (`PACKET_FANOUT_FLAG_DEFRAG` is not
//! set: live capture sees the packets a replay of the same traffic would see);
//! a fragmented datagram may therefore be hashed apart from the rest of its
//! flow, which the flow table already treats as unkeyed packets.
//!
//! Reading: handles are non-blocking; a worker that finds the ring empty waits
//! in `poll(2)` for at most [`READ_TIMEOUT_MS`], so it always regains control.
//!
//! Unsafe code (the only unsafe code of the crate's capture layer):
//! - `wait_readable` calls `poll(2)` on one `pollfd` on the stack holding the
//!   fd of a live handle.
//! - [`join_fanout`] calls `setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &u32, 4)`
//!   and `getsockopt` of the same option on the packet socket libpcap opened.
//!   The fd is borrowed from a live `pcap::Capture` (valid for the call), the
//!   option value is a plain `u32` on the stack with its exact size passed.
//!
//! Invariants: a handle is activated and filtered before it joins the group, so
//! once [`open_interface`] returns every packet of the interface goes to exactly
//! one of the returned handles. Packets arriving while the handles are being
//! opened (before all have joined) may be seen by more than one handle: start
//! traffic-dependent work after the daemon reports ready.

use super::{LinkType, Timestamp};
use crate::capture::Frame;
use std::os::fd::AsRawFd;

/// libpcap read timeout: how long a worker waits on a quiet link before it
/// gets control back to advance its clock, report stats and check for shutdown.
pub const READ_TIMEOUT_MS: i32 = 100;

// From <linux/if_packet.h>; defined here so the build does not depend on the
// libc crate version exporting them.
const SOL_PACKET: libc::c_int = 263;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{interface}: cannot open capture: {message}")]
    Open { interface: String, message: String },
    #[error("{interface}: bad BPF filter {filter:?}: {message}")]
    Filter {
        interface: String,
        filter: String,
        message: String,
    },
    #[error("{interface}: cannot join PACKET_FANOUT group: {source}")]
    Fanout {
        interface: String,
        source: std::io::Error,
    },
    #[error("{interface}: capture failed: {message}")]
    Read { interface: String, message: String },
}

/// How to open the handles of one interface.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub snaplen: u32,
    /// Kernel ring per handle, bytes.
    pub buffer_size: u32,
    pub promisc: bool,
    /// Deliver packets as they arrive instead of when a ring block fills.
    pub immediate: bool,
    /// BPF filter ("" = everything).
    pub bpf: String,
}

/// Kernel counters of one handle (`pcap_stats`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveStats {
    pub received: u64,
    /// Dropped by the kernel: the ring was full.
    pub kernel_drops: u64,
    /// Dropped by the interface or its driver (same for every handle of it).
    pub interface_drops: u64,
}

/// One worker's capture handle.
pub struct LiveHandle {
    pub interface: String,
    /// Worker index within the interface.
    pub worker: usize,
    pub linktype: LinkType,
    cap: ::pcap::Capture<::pcap::Active>,
    /// The last read found the ring empty: wait for the socket before reading again.
    drained: bool,
}

impl LiveHandle {
    /// The next frame, borrowed from libpcap's ring until the next call;
    /// `Ok(None)` when the read timeout passed with nothing to read.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, LiveError> {
        let linktype = self.linktype;
        if self.drained {
            if !wait_readable(self.cap.as_raw_fd(), READ_TIMEOUT_MS) {
                return Ok(None);
            }
            self.drained = false;
        }
        match self.cap.next_packet() {
            Ok(p) => {
                // Nanosecond precision was requested: tv_usec holds nanoseconds.
                let secs = u64::try_from(p.header.ts.tv_sec).unwrap_or(0);
                let nanos = u64::try_from(p.header.ts.tv_usec).unwrap_or(0);
                Ok(Some(Frame {
                    ts: Timestamp::from_parts(secs, nanos),
                    linktype,
                    interface: 0,
                    data: p.data,
                    orig_len: p.header.len,
                }))
            }
            Err(::pcap::Error::TimeoutExpired) => {
                self.drained = true;
                Ok(None)
            }
            Err(e) => Err(LiveError::Read {
                interface: self.interface.clone(),
                message: e.to_string(),
            }),
        }
    }

    pub fn stats(&mut self) -> Option<LiveStats> {
        let s = self.cap.stats().ok()?;
        Some(LiveStats {
            received: u64::from(s.received),
            kernel_drops: u64::from(s.dropped),
            interface_drops: u64::from(s.if_dropped),
        })
    }
}

/// Opens `workers` handles on `interface`, joined in one fanout group when
/// there is more than one. Needs CAP_NET_RAW.
pub fn open_interface(
    interface: &str,
    workers: usize,
    opts: &LiveOptions,
) -> Result<Vec<LiveHandle>, LiveError> {
    let mut handles = Vec::with_capacity(workers);
    let mut group: Option<u16> = None;
    for worker in 0..workers.max(1) {
        let open_err = |e: ::pcap::Error| LiveError::Open {
            interface: interface.to_string(),
            message: e.to_string(),
        };
        let mut cap = ::pcap::Capture::from_device(interface)
            .map_err(open_err)?
            .snaplen(i32::try_from(opts.snaplen).unwrap_or(i32::MAX))
            .buffer_size(i32::try_from(opts.buffer_size).unwrap_or(i32::MAX))
            .promisc(opts.promisc)
            .immediate_mode(opts.immediate)
            .timeout(READ_TIMEOUT_MS)
            .precision(::pcap::Precision::Nano)
            .open()
            .and_then(|c| c.setnonblock())
            .map_err(open_err)?;
        if !opts.bpf.is_empty() {
            cap.filter(&opts.bpf, true).map_err(|e| LiveError::Filter {
                interface: interface.to_string(),
                filter: opts.bpf.clone(),
                message: e.to_string(),
            })?;
        }
        if workers > 1 {
            let id = join_fanout(cap.as_raw_fd(), group).map_err(|source| LiveError::Fanout {
                interface: interface.to_string(),
                source,
            })?;
            group = Some(id);
        }
        let dlt = cap.get_datalink().0;
        handles.push(LiveHandle {
            interface: interface.to_string(),
            worker,
            linktype: LinkType(linktype_of_dlt(dlt)),
            cap,
            drained: false,
        });
    }
    Ok(handles)
}

/// Waits up to `timeout_ms` for the packet socket to have something to read.
/// (The handles are non-blocking: libpcap's own blocking read may wait
/// forever on an idle link with TPACKET_V3, and a worker must get control
/// back to advance its clock and notice shutdown.)
fn wait_readable(fd: libc::c_int, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd on our stack and the count passed is 1;
    // `fd` belongs to a live pcap handle owned by the caller.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    rc > 0
}

/// libpcap reports DLT values; the decoder speaks LINKTYPE values. They agree
/// except for raw IP, which Linux libpcap reports as DLT_RAW (12 here, 14 on
/// some BSDs); tun/wg interfaces have it.
fn linktype_of_dlt(dlt: i32) -> u16 {
    match dlt {
        12 | 14 => 101,
        d => u16::try_from(d).unwrap_or(u16::MAX),
    }
}

/// Joins the packet socket `fd` to a hash fanout group: a new group with a
/// kernel-chosen id when `group` is None, else the given one. Returns the id.
fn join_fanout(fd: libc::c_int, group: Option<u16>) -> std::io::Result<u16> {
    let (id, flags) = match group {
        Some(id) => (u32::from(id), 0),
        None => (0, PACKET_FANOUT_FLAG_UNIQUEID),
    };
    let arg: u32 = id | ((PACKET_FANOUT_HASH | flags) << 16);
    // SAFETY: `fd` is the open packet socket of a live pcap handle owned by the
    // caller for the duration of the call; `arg` is a u32 on our stack and the
    // length passed is exactly its size, which is what PACKET_FANOUT reads.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_PACKET,
            PACKET_FANOUT,
            (&arg as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if let Some(id) = group {
        return Ok(id);
    }
    let mut val: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: as above; `val` and `len` are valid, writable locals and `len`
    // holds `val`'s size, so the kernel writes at most 4 bytes into `val`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_PACKET,
            PACKET_FANOUT,
            (&mut val as *mut u32).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The low 16 bits are the group id (the kernel's answer to UNIQUEID).
    Ok((val & 0xffff) as u16)
}

/// Whether an interface of that name exists on this machine.
pub fn interface_exists(name: &str) -> bool {
    !name.contains('/') && std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Compiles `filter` for the interface's link type without opening it (no
/// privileges needed): what `nightjar check-config` uses.
pub fn check_filter(interface: &str, filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Ok(());
    }
    // ARPHRD_ETHER is 1; tun/wg and other raw-IP devices report something else.
    let arphrd = std::fs::read_to_string(format!("/sys/class/net/{interface}/type"))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(1);
    let lt = if arphrd == 1 {
        ::pcap::Linktype::ETHERNET
    } else {
        ::pcap::Linktype(12)
    };
    let dead = ::pcap::Capture::dead(lt).map_err(|e| e.to_string())?;
    dead.compile(filter, true)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
