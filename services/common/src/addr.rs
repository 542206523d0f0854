//! The address a replica reports as "who served this": `ADVERTISE_ADDR`, else its first non-loopback IPv4.

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;

/// Environment variable that overrides interface discovery.
pub const ADVERTISE_ADDR_ENV: &str = "ADVERTISE_ADDR";

/// What a replica reports when it cannot tell its own address. The seed panicked here; a
/// replica that serves with a vague label is more useful than one that does not start.
pub const UNKNOWN: &str = "unknown";

/// Errors of interface discovery.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// `getifaddrs(3)` itself failed (no netlink socket, out of memory, ...).
    #[error("listing network interfaces failed: {0}")]
    Interfaces(#[source] io::Error),
}

/// The address to report: `ADVERTISE_ADDR` if set and non-empty, else the first non-loopback
/// IPv4 address of an interface that is up, else [`UNKNOWN`] (logged, never fatal).
pub fn advertised_addr() -> String {
    let from_env = std::env::var(ADVERTISE_ADDR_ENV).ok();
    resolve(from_env.as_deref(), first_non_loopback_ipv4)
}

/// The decision of [`advertised_addr`], with its inputs injected so it can be tested.
pub fn resolve(
    from_env: Option<&str>,
    discover: impl FnOnce() -> Result<Option<Ipv4Addr>, AddrError>,
) -> String {
    if let Some(value) = from_env.map(str::trim).filter(|v| !v.is_empty()) {
        return value.to_owned();
    }
    match discover() {
        Ok(Some(ip)) => ip.to_string(),
        Ok(None) => {
            tracing::warn!("no non-loopback IPv4 address found; reporting {UNKNOWN:?}");
            UNKNOWN.to_owned()
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot list interfaces; reporting {UNKNOWN:?}");
            UNKNOWN.to_owned()
        }
    }
}

/// The first IPv4 address, in interface order, of an interface that is up and is not loopback,
/// link-local or unspecified.
///
/// Uses `getifaddrs(3)`: glibc answers it over netlink, so it works in a static binary in a
/// `FROM scratch` container with no `/proc` access and no route to anywhere (unlike the
/// "connect a UDP socket and read its local address" trick, which needs a default route).
pub fn first_non_loopback_ipv4() -> Result<Option<Ipv4Addr>, AddrError> {
    Ok(interface_ipv4s()?
        .into_iter()
        .map(|(_, ip)| ip)
        .find(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified()))
}

/// Every (interface name, IPv4 address) of an interface that is up, in the kernel's order.
pub fn interface_ipv4s() -> Result<Vec<(String, Ipv4Addr)>, AddrError> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocated, or fails and writes nothing.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(AddrError::Interfaces(io::Error::last_os_error()));
    }
    let mut found = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, freed only below.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        let up = entry.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
        if !up || entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to at least a sockaddr header.
        let family = unsafe { (*entry.ifa_addr).sa_family };
        if i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: the family says this is a sockaddr_in.
        let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        let name = if entry.ifa_name.is_null() {
            String::new()
        } else {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            unsafe { CStr::from_ptr(entry.ifa_name) }
                .to_string_lossy()
                .into_owned()
        };
        found.push((name, ip));
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once; no reference outlives it.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_wins_then_discovery_then_unknown() {
        let ip = Ipv4Addr::new(10, 0, 1, 7);
        assert_eq!(resolve(Some(" 10.9.9.9 "), || Ok(Some(ip))), "10.9.9.9");
        assert_eq!(resolve(Some(""), || Ok(Some(ip))), "10.0.1.7");
        assert_eq!(resolve(None, || Ok(None)), UNKNOWN);
        let failed = || Err(AddrError::Interfaces(io::Error::other("boom")));
        assert_eq!(resolve(None, failed), UNKNOWN);
    }

    #[test]
    fn getifaddrs_sees_loopback() {
        // Every Linux network namespace has `lo` up with 127.0.0.1, so this proves the
        // list is walked and decoded in the right byte order.
        let all = interface_ipv4s().expect("getifaddrs");
        assert!(
            all.iter().any(|(_, ip)| *ip == Ipv4Addr::LOCALHOST),
            "{all:?}"
        );
        if let Some(ip) = first_non_loopback_ipv4().unwrap() {
            assert!(!ip.is_loopback());
        }
    }
}
