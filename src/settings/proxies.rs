//! The reverse proxies pglab trusts: addresses or blocks of them.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// An address or a block of addresses in `web.trusted_proxies`
/// (`10.0.0.7`, `10.0.0.0/24`, `fd00::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AddressBlock {
    addr: IpAddr,
    prefix: u8,
}

impl AddressBlock {
    /// Whether `ip` is in the block (an IPv4 address written as IPv6,
    /// `::ffff:10.0.0.7`, counts as the IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `bits` bits of `a` and `b` are the same.
fn same_prefix(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix);
    shift >= 128 || a >> shift == b >> shift
}

impl TryFrom<String> for AddressBlock {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = || {
            format!("{text:?} is not an address or a block of addresses (10.0.0.7, 10.0.0.0/24, fd00::/64)")
        };
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(bad)?,
        };
        if prefix == 0 {
            return Err(format!(
                "{text:?} would trust what every client says in X-Forwarded-For: list the proxies' addresses"
            ));
        }
        Ok(Self { addr, prefix })
    }
}

impl From<AddressBlock> for String {
    fn from(b: AddressBlock) -> String {
        let bits = if b.addr.is_ipv4() { 32 } else { 128 };
        if b.prefix == bits {
            b.addr.to_string()
        } else {
            format!("{}/{}", b.addr, b.prefix)
        }
    }
}

impl From<IpAddr> for AddressBlock {
    fn from(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        Self {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }
}

impl From<[u8; 4]> for AddressBlock {
    fn from(octets: [u8; 4]) -> Self {
        IpAddr::from(octets).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(s: &str) -> Result<AddressBlock, String> {
        AddressBlock::try_from(s.to_string())
    }

    #[test]
    fn addresses_and_blocks() {
        let one = block("10.0.0.7").expect("address");
        assert!(one.contains([10, 0, 0, 7].into()));
        assert!(!one.contains([10, 0, 0, 8].into()));
        assert!(one.contains("::ffff:10.0.0.7".parse().expect("ip")));
        let net = block("172.28.0.0/24").expect("block");
        assert!(net.contains([172, 28, 0, 200].into()));
        assert!(!net.contains([172, 28, 1, 1].into()));
        let v6 = block("fd00:1::/64").expect("block");
        assert!(v6.contains("fd00:1::99".parse().expect("ip")));
        assert!(!v6.contains("fd00:2::1".parse().expect("ip")));
        assert!(!v6.contains([10, 0, 0, 7].into()));
        assert_eq!(String::from(net), "172.28.0.0/24");
        assert_eq!(String::from(one), "10.0.0.7");
        for bad in [
            "10.0.0.0/33",
            "example.org",
            "10.0.0.0/x",
            "0.0.0.0/0",
            "::/0",
        ] {
            assert!(block(bad).is_err(), "{bad}");
        }
    }
}
