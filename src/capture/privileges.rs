//! Dropping privileges once capture is open (kept beside the capture code: the
//! libc calls here are, with the packet-socket options, the only `unsafe` code).
//!
//! `nightjar run` needs CAP_NET_RAW only to open its packet sockets. Right
//! after, and before it reads a packet or opens any other file, it:
//! 1. as root with `[daemon] user` set: drops every capability from the
//!    bounding set, clears supplementary groups, and switches group and user
//!    (`setresgid`/`setresuid`; the kernel clears the permitted and effective
//!    capabilities when a process with all-root uids becomes non-root);
//! 2. in every case: clears the ambient set and the effective, permitted and
//!    inheritable sets (`capset`), which covers systemd's
//!    `AmbientCapabilities=` when the unit already runs as the dedicated user;
//! 3. sets `PR_SET_NO_NEW_PRIVS`, so nothing it could execute regains any.
//!
//! The open packet sockets keep working without capabilities (the check is
//! made when a socket is created). [`effective_capabilities`] reads
//! `/proc/self/status` so callers and tests can verify the result.
//!
//! Credentials set by raw syscalls (`capset`, `prctl`) belong to the calling
//! thread: [`drop_privileges`] must run before any other thread is started,
//! so every thread inherits the dropped state (the daemon calls it before it
//! starts its runtime and data-plane threads).
//!
//! Unsafe code: each libc call below has a SAFETY comment; all take plain
//! integers or pointers to locals that outlive the call.

use std::ffi::CString;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("daemon.user: no user named {0:?} on this machine")]
    NoSuchUser(String),
    #[error("daemon.user {user:?}: only root can switch users (running as uid {uid})")]
    NotRoot { user: String, uid: u32 },
    #[error("{what} failed: {source}")]
    Call {
        what: &'static str,
        source: std::io::Error,
    },
}

/// A resolved account.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Looks a user up in the password database.
pub fn lookup_user(name: &str) -> Result<Account, PrivilegeError> {
    let cname = CString::new(name).map_err(|_| PrivilegeError::NoSuchUser(name.into()))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: `passwd` is plain old data; zeroed is a valid (empty) value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live local: `cname` is NUL-terminated,
    // `buf` has the length passed, and getpwnam_r writes only into `pwd`,
    // `buf` and `result`.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(PrivilegeError::NoSuchUser(name.into()));
    }
    Ok(Account {
        name: name.into(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

fn check(what: &'static str, rc: libc::c_long) -> Result<(), PrivilegeError> {
    if rc < 0 {
        Err(PrivilegeError::Call {
            what,
            source: std::io::Error::last_os_error(),
        })
    } else {
        Ok(())
    }
}

/// Highest capability number the kernel knows (CAP_LAST_CAP), read from /proc.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Drops to `user` (if given) and clears every capability. See the module doc.
pub fn drop_privileges(user: Option<&str>) -> Result<(), PrivilegeError> {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if let Some(name) = user {
        let acct = lookup_user(name)?;
        if uid != acct.uid {
            if uid != 0 {
                return Err(PrivilegeError::NotRoot {
                    user: name.into(),
                    uid,
                });
            }
            for cap in 0..=last_cap() {
                // SAFETY: prctl with integer arguments only. EINVAL for a
                // capability this kernel does not have is fine to ignore.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            }
            // SAFETY: setgroups with a count of 0 reads no memory.
            check(
                "setgroups",
                unsafe { libc::setgroups(0, std::ptr::null()) }.into(),
            )?;
            // SAFETY: integer arguments only.
            check(
                "setresgid",
                unsafe { libc::setresgid(acct.gid, acct.gid, acct.gid) }.into(),
            )?;
            // SAFETY: integer arguments only.
            check(
                "setresuid",
                unsafe { libc::setresuid(acct.uid, acct.uid, acct.uid) }.into(),
            )?;
        }
    }
    // SAFETY: prctl with integer arguments only.
    check(
        "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        }
        .into(),
    )?;
    clear_capsets()?;
    // SAFETY: prctl with integer arguments only.
    check(
        "prctl(PR_SET_NO_NEW_PRIVS)",
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into(),
    )?;
    Ok(())
}

/// `struct __user_cap_header_struct` from <linux/capability.h>.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` from <linux/capability.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// _LINUX_CAPABILITY_VERSION_3: 64-bit sets as two `CapData`.
const CAP_VERSION_3: u32 = 0x2008_0522;

fn clear_capsets() -> Result<(), PrivilegeError> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset(2) reads one header and, for version 3, two data
    // structs; both are locals with the kernel's layout (repr(C)).
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    check("capset", rc)
}

/// The effective capability mask of this process (`CapEff` in /proc/self/status).
pub fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exists_and_nonsense_does_not() {
        assert_eq!(lookup_user("root").unwrap().uid, 0);
        assert!(matches!(
            lookup_user("no such user\u{1}"),
            Err(PrivilegeError::NoSuchUser(_))
        ));
    }
}
