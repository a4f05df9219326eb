//! IP prefixes (`envoy.config.core.v3.CidrRange`), shared by RBAC (gRFC A41) and
//! filter-chain matching (gRFC A36).

use std::fmt;
use std::net::IpAddr;

/// An IP prefix (`envoy.config.core.v3.CidrRange`), stored with its host bits cleared.
///
/// ```
/// use mesh_client::config::Cidr;
/// let net = Cidr::new("10.1.2.3".parse().unwrap(), 8).unwrap();
/// assert!(net.contains("10.200.0.1".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!(Cidr::new("::1".parse().unwrap(), 129).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// A prefix length beyond the address family's width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixTooLong {
    /// The given length.
    pub prefix_len: u32,
    /// The family's width (32 or 128).
    pub max: u8,
}

impl fmt::Display for PrefixTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prefix_len {} exceeds {}", self.prefix_len, self.max)
    }
}

impl std::error::Error for PrefixTooLong {}

impl Cidr {
    /// The prefix `addr/prefix_len`; host bits of `addr` are cleared. An IPv4-mapped IPv6
    /// address stays IPv6 (it is the control plane's choice of family).
    pub fn new(addr: IpAddr, prefix_len: u32) -> Result<Self, PrefixTooLong> {
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let len = u8::try_from(prefix_len)
            .ok()
            .filter(|l| *l <= max)
            .ok_or(PrefixTooLong { prefix_len, max })?;
        Ok(Cidr {
            addr: mask(addr, len),
            prefix_len: len,
        })
    }

    /// The range of `addr` with `prefix_len` leading bits, the length clamped to 32 (IPv4)
    /// or 128 (IPv6), as gRFC A36 asks for filter-chain prefixes.
    pub fn clamped(addr: IpAddr, prefix_len: u32) -> Self {
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let len = u8::try_from(prefix_len).unwrap_or(u8::MAX).min(max);
        Cidr {
            addr: mask(addr, len),
            prefix_len: len,
        }
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is inside the prefix. An IPv4-mapped IPv6 `ip` (what a dual-stack socket
    /// reports for an IPv4 peer) is compared as IPv4; other families never match.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix_len) == self.addr
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// `ip` with all but the first `len` bits cleared (`len` within the family's width).
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}
