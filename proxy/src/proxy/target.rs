//! Where a message goes: a transport and an address. Only UDP exists today; the type is here so
//! that the core never assumes it (the Via it writes names the target's transport).

use std::fmt;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    #[default]
    Udp,
}

impl Transport {
    /// The name in a Via's sent-protocol (`SIP/2.0/UDP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
        }
    }

    /// The name in Kamailio's socket notation (`udp:127.0.0.1:5060`).
    pub fn socket_name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
        }
    }
}

/// A peer siplb sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl Target {
    pub fn udp(addr: SocketAddr) -> Target {
        Target {
            transport: Transport::Udp,
            addr,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.socket_name(), self.addr)
    }
}

/// One datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub dst: Target,
    pub data: Vec<u8>,
}
