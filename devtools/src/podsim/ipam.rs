//! Pod IPs: every pod gets its own loopback address so processes of different pods can bind
//! the same containerPort. The pod network is a CIDR inside 127.0.0.0/8 (default
//! 127.0.0.0/16, used from 127.0.16.1 up: clear of 127.0.0.1 where the control plane listens
//! and of Debian's 127.0.1.1 hostname entry), so no pod address ever leaves loopback; a second
//! podsim (an integration test's) takes another /16. Addresses are handed out in order and
//! not reused until the range wraps, so a fresh pod never meets a dead pod's sockets. The
//! counter is persisted in the state dir so a restarted podsim continues from it.

use std::{collections::BTreeSet, net::Ipv4Addr, path::PathBuf};

/// The default pod network.
pub const DEFAULT_NETWORK: &str = "127.0.0.0/16";

/// A pod network: the addresses `first..=last` podsim may hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    first: u32,
    last: u32,
}

impl std::str::FromStr for Network {
    type Err = String;

    /// `a.b.c.d/len` within 127.0.0.0/8, prefix length 8..=30.
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or("expected a CIDR like 127.0.0.0/16")?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
        let len: u32 = len
            .parse()
            .map_err(|_| format!("bad prefix length {len:?}"))?;
        if !(8..=30).contains(&len) || ip.octets()[0] != 127 {
            return Err(format!(
                "{s}: the pod network must be a /8../30 inside 127.0.0.0/8"
            ));
        }
        let mask = u32::MAX << (32 - len);
        let net = u32::from(ip) & mask;
        let low_reserved = u32::from_be_bytes([127, 0, 16, 0]);
        Ok(Self {
            // Inside 127.0.0.0/20 live 127.0.0.1 and 127.0.1.1: start above them.
            first: if net < low_reserved {
                low_reserved.min(net | !mask)
            } else {
                net
            },
            last: net | !mask,
        })
    }
}

impl Default for Network {
    fn default() -> Self {
        DEFAULT_NETWORK.parse().unwrap_or(Self {
            first: u32::from_be_bytes([127, 0, 16, 0]),
            last: u32::from_be_bytes([127, 0, 255, 255]),
        })
    }
}

pub struct Ipam {
    first: u32,
    last: u32,
    next: u32,
    in_use: BTreeSet<Ipv4Addr>,
    file: Option<PathBuf>,
}

impl Ipam {
    /// Starts after the persisted counter in `file`, if any (and inside `network`).
    pub fn new(network: Network, file: Option<PathBuf>) -> Self {
        let Network { first, last } = network;
        let next = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|n| (first..=last).contains(n))
            .unwrap_or(first);
        Self {
            first,
            last,
            next,
            in_use: BTreeSet::new(),
            file,
        }
    }

    /// Records an address a pod already has (seen in the initial list).
    pub fn mark_used(&mut self, ip: &str) {
        if let Ok(ip) = ip.parse::<Ipv4Addr>() {
            self.in_use.insert(ip);
            let n = u32::from(ip);
            if (self.first..=self.last).contains(&n) && n >= self.next {
                self.next = n;
            }
        }
    }

    pub fn release(&mut self, ip: &str) {
        if let Ok(ip) = ip.parse::<Ipv4Addr>() {
            self.in_use.remove(&ip);
        }
    }

    /// The next free address (never x.y.z.0 or x.y.z.255, never 127.0.0.1). When every
    /// address is taken it reuses one rather than loop forever.
    pub fn allocate(&mut self) -> Ipv4Addr {
        let size = self.last - self.first + 1;
        for _ in 0..=size {
            self.next = if self.next >= self.last {
                self.first
            } else {
                self.next + 1
            };
            let ip = Ipv4Addr::from(self.next);
            let last_octet = ip.octets()[3];
            if last_octet == 0 || last_octet == 255 || self.in_use.contains(&ip) {
                continue;
            }
            self.in_use.insert(ip);
            if let Some(f) = &self.file {
                let _ = std::fs::write(f, ip.to_string());
            }
            return ip;
        }
        Ipv4Addr::from(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_unique_loopback_addresses() {
        let mut ipam = Ipam::new(Network::default(), None);
        let a = ipam.allocate();
        assert_eq!(a, Ipv4Addr::new(127, 0, 16, 1));
        ipam.mark_used("127.0.16.254");
        assert_eq!(ipam.allocate(), Ipv4Addr::new(127, 0, 17, 1));
        let mut seen = BTreeSet::new();
        for _ in 0..2000 {
            let ip = ipam.allocate();
            assert!(ip.is_loopback() && ip != Ipv4Addr::LOCALHOST);
            assert!(seen.insert(ip));
        }
    }

    #[test]
    fn wraps_and_skips_addresses_in_use() {
        let mut ipam = Ipam::new(Network::default(), None);
        ipam.mark_used("127.0.16.1");
        ipam.next = ipam.last - 2;
        assert_eq!(ipam.allocate(), Ipv4Addr::new(127, 0, 255, 254));
        assert_eq!(ipam.allocate(), Ipv4Addr::new(127, 0, 16, 2));
    }

    #[test]
    fn networks_stay_on_loopback() {
        let n: Network = "127.77.0.0/16".parse().unwrap();
        let mut ipam = Ipam::new(n, None);
        assert_eq!(ipam.allocate(), Ipv4Addr::new(127, 77, 0, 1));
        assert_eq!(
            "127.0.0.0/16".parse::<Network>().unwrap(),
            Network::default()
        );
        let small: Network = "127.5.5.0/30".parse().unwrap();
        let mut ipam = Ipam::new(small, None);
        let got: Vec<_> = (0..4).map(|_| ipam.allocate()).collect();
        assert_eq!(got[0], Ipv4Addr::new(127, 5, 5, 1));
        assert!(got.iter().all(|ip| ip.octets()[..3] == [127, 5, 5]));
        assert!("10.0.0.0/16".parse::<Network>().is_err());
        assert!("127.0.0.0/4".parse::<Network>().is_err());
        assert!("127.0.0.0".parse::<Network>().is_err());
    }

    #[test]
    fn persists_the_counter() {
        let f = std::env::temp_dir().join(format!("podsim-ipam-{}", std::process::id()));
        let mut ipam = Ipam::new(Network::default(), Some(f.clone()));
        ipam.allocate();
        let ip = ipam.allocate();
        assert_eq!(
            Ipam::new(Network::default(), Some(f.clone())).allocate(),
            Ipv4Addr::from(u32::from(ip) + 1)
        );
        let _ = std::fs::remove_file(f);
    }
}
