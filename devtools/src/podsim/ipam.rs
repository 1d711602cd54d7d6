//! Pod IPs: every pod gets its own loopback address so processes of different pods can bind
//! the same containerPort. Addresses start at 127.0.16.1 (clear of 127.0.0.1 where the
//! control plane listens and of Debian's 127.0.1.1 hostname entry), are handed out in order
//! and not reused until the range wraps, so a fresh pod never meets a dead pod's sockets.
//! The counter is persisted in the state dir so a restarted podsim continues from it.

use std::{collections::BTreeSet, net::Ipv4Addr, path::PathBuf};

const FIRST: u32 = u32::from_be_bytes([127, 0, 16, 0]);
const LAST: u32 = u32::from_be_bytes([127, 0, 255, 255]);

pub struct Ipam {
    next: u32,
    in_use: BTreeSet<Ipv4Addr>,
    file: Option<PathBuf>,
}

impl Ipam {
    /// Starts after the persisted counter in `file`, if any.
    pub fn new(file: Option<PathBuf>) -> Self {
        let next = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .map_or(FIRST, u32::from);
        Self {
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
            if (FIRST..=LAST).contains(&n) && n >= self.next {
                self.next = n;
            }
        }
    }

    pub fn release(&mut self, ip: &str) {
        if let Ok(ip) = ip.parse::<Ipv4Addr>() {
            self.in_use.remove(&ip);
        }
    }

    /// The next free address (never x.y.z.0 or x.y.z.255, never 127.0.0.1).
    pub fn allocate(&mut self) -> Ipv4Addr {
        loop {
            self.next = if self.next >= LAST {
                FIRST
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_unique_loopback_addresses() {
        let mut ipam = Ipam::new(None);
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
        let mut ipam = Ipam::new(None);
        ipam.mark_used("127.0.16.1");
        ipam.next = LAST - 2;
        assert_eq!(ipam.allocate(), Ipv4Addr::new(127, 0, 255, 254));
        assert_eq!(ipam.allocate(), Ipv4Addr::new(127, 0, 16, 2));
    }

    #[test]
    fn persists_the_counter() {
        let f = std::env::temp_dir().join(format!("podsim-ipam-{}", std::process::id()));
        let mut ipam = Ipam::new(Some(f.clone()));
        ipam.allocate();
        let ip = ipam.allocate();
        assert_eq!(
            Ipam::new(Some(f.clone())).allocate(),
            Ipv4Addr::from(u32::from(ip) + 1)
        );
        let _ = std::fs::remove_file(f);
    }
}
