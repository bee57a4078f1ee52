//! The address a sign-in came from, when the token service sits behind
//! reverse proxies (an Ingress, a load balancer): the TCP peer is then the
//! proxy, shared by every user, and throttling by it would lock everyone out
//! at once. Only proxies the operator names (`--trusted-proxies`) are
//! believed, and only for the hops they added:
//!
//! ```text
//!  X-Forwarded-For: spoofed, 203.0.113.7, 10.0.0.5      peer 10.0.0.9 (trusted)
//!                             ▲ right-most untrusted hop: the client the trusted proxies saw
//! ```
//!
//! Read from the right, every hop a trusted proxy wrote is skipped; the first
//! address not in the trusted ranges is the client. What a client writes
//! itself sits to the left of that and is never read. A peer that is not a
//! trusted proxy is the client, whatever its headers say.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client's address: the peer, or behind trusted proxies the right-most
/// `X-Forwarded-For` hop they did not add themselves.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        // A hop that is no address: the proxies in front wrote nonsense;
        // believe nothing further left of it.
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        if !is_trusted(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn nets(text: &[&str]) -> Vec<IpNet> {
        text.iter().map(|t| t.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let found = client_address(ip("198.51.100.1"), &headers(&["203.0.113.7"]), &nets(&["10.0.0.0/8"]));
        assert_eq!(found, ip("198.51.100.1"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        let forwarded = headers(&["1.2.3.4, 203.0.113.7", "10.0.0.5"]);
        assert_eq!(
            client_address(ip("10.0.0.9"), &forwarded, &trusted),
            ip("203.0.113.7"),
            "1.2.3.4 is the client's own claim"
        );
        let v6 = headers(&["2001:db8::7, fd00::1"]);
        assert_eq!(client_address(ip("fd00::2"), &v6, &trusted), ip("2001:db8::7"));
    }

    #[test]
    fn without_a_usable_hop_the_nearest_trusted_address_stands() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_address(ip("10.0.0.9"), &HeaderMap::new(), &trusted), ip("10.0.0.9"));
        assert_eq!(
            client_address(ip("10.0.0.9"), &headers(&["garbage, 10.0.0.5"]), &trusted),
            ip("10.0.0.5")
        );
    }
}
