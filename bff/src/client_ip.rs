//! Which client a request comes from, for rate limits and logs.
//!
//! The socket peer is the client, unless the peer is a trusted proxy: then the
//! `X-Forwarded-For` chain is read from the right, skipping trusted proxies, and the first
//! untrusted address is the client. Addresses left of it were written by the client and
//! prove nothing, so a client cannot pick its own rate-limit key.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use poem::Request;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client address given the socket peer and the `X-Forwarded-For` values.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            match parse_hop(hop) {
                Some(ip) => {
                    client = canonical(ip);
                    if !self.trusts(client) {
                        return client;
                    }
                }
                // A garbled entry: nothing left of it can be trusted; the last trusted
                // hop that wrote it is the best answer.
                None => return client,
            }
        }
        client
    }

    /// The client of `req` (its peer when the peer is not a TCP socket address).
    pub fn client_of(&self, req: &Request) -> Option<IpAddr> {
        let peer = req.remote_addr().as_socket_addr()?.ip();
        let values: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Some(self.client(peer, &values))
    }
}

/// One `X-Forwarded-For` entry: an address, as proxies write it: bare (`192.0.2.1`,
/// `2001:db8::1`), with a port (`192.0.2.1:4711`, `[2001:db8::1]:443`) or in brackets
/// (`[2001:db8::1]`). Anything else (names, `unknown`, obfuscated identifiers) is `None`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = hop.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(
            proxies().client(ip("203.0.113.9"), &["1.2.3.4"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        let p = proxies();
        assert_eq!(
            p.client(ip("10.0.0.1"), &["6.6.6.6, 198.51.100.7, 10.0.0.2"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            p.client(ip("10.0.0.1"), &["6.6.6.6", "198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(p.client(ip("10.0.0.1"), &[]), ip("10.0.0.1"));
        assert_eq!(
            p.client(ip("::ffff:10.0.0.1"), &["198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forwarded_entries_with_ports_or_brackets_are_parsed() {
        let p = proxies();
        for (entry, client) in [
            ("198.51.100.7:4711", "198.51.100.7"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("10.0.0.3:80, 198.51.100.8:1", "198.51.100.8"),
        ] {
            assert_eq!(p.client(ip("10.0.0.1"), &[entry]), ip(client), "{entry}");
        }
        // Still not trusted blindly: a trusted proxy with a port is skipped like one
        // without, and garbage stops the walk at the last trusted hop.
        assert_eq!(
            p.client(ip("10.0.0.1"), &["198.51.100.9, [::ffff:10.0.0.4]:8080"]),
            ip("198.51.100.9")
        );
        for garbage in [
            "unknown",
            "example.com:80",
            "[198.51.100.7]",
            "1.2.3.4:99999",
        ] {
            assert_eq!(
                p.client(ip("10.0.0.1"), &[garbage]),
                ip("10.0.0.1"),
                "{garbage}"
            );
        }
    }
}
