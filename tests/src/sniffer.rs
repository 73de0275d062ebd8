//! A packet sniffer on the lab's net side: every frame that reaches the test hosts' namespace,
//! so an attack test can prove that nothing left the node.
//!
//! An `AF_PACKET` socket created inside the net namespace sees every frame of that namespace
//! (its veth, where everything from the node arrives). A thread reads until the sniffer is
//! dropped; frames are kept in memory (capped) for the assertions.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::netlab::{NetLab, NetLabError};

/// Frames kept at most (a test sends few).
const MAX_FRAMES: usize = 100_000;
/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// A running capture of the lab's net namespace.
#[derive(Debug)]
pub struct Sniffer {
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// One frame, read as an Ethernet frame carrying IPv4 or IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The raw bytes.
    pub bytes: Vec<u8>,
}

impl Sniffer {
    /// Starts capturing in `lab`'s net namespace.
    pub fn start(lab: &NetLab) -> Result<Sniffer, NetLabError> {
        let made = lab.in_net(|| {
            let socket = Socket::new(
                Domain::PACKET,
                Type::RAW,
                Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
            )?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            Ok::<Socket, std::io::Error>(socket)
        })?;
        let socket = made.map_err(|source| NetLabError::Socket {
            ns: lab.net_ns().to_owned(),
            source,
        })?;
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (frames, stop) = (frames.clone(), stop.clone());
            std::thread::spawn(move || read_until(&socket, &frames, &stop))
        };
        Ok(Sniffer {
            frames,
            stop,
            thread: Some(thread),
        })
    }

    /// Every frame seen so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|b| Frame { bytes: b.clone() })
            .collect()
    }

    /// Frames whose bytes contain `needle` anywhere (a payload marker).
    pub fn carrying(&self, needle: &[u8]) -> Vec<Frame> {
        self.frames()
            .into_iter()
            .filter(|f| f.bytes.windows(needle.len()).any(|w| w == needle))
            .collect()
    }

    /// Frames whose IP destination is `ip`.
    pub fn to(&self, ip: IpAddr) -> Vec<Frame> {
        self.frames()
            .into_iter()
            .filter(|f| f.destination() == Some(ip))
            .collect()
    }

    /// Frames of IP protocol (or IPv6 first next header) `proto`, e.g. 2 for IGMP.
    pub fn protocol(&self, proto: u8) -> Vec<Frame> {
        self.frames()
            .into_iter()
            .filter(|f| f.protocol() == Some(proto))
            .collect()
    }
}

impl Frame {
    /// The IP destination, for IPv4 and IPv6 frames.
    pub fn destination(&self) -> Option<IpAddr> {
        let ip = self.bytes.get(14..)?;
        match self.ethertype()? {
            0x0800 => {
                let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
                Some(IpAddr::from(d))
            }
            0x86dd => {
                let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
                Some(IpAddr::from(d))
            }
            _ => None,
        }
    }

    /// The IPv4 protocol or the IPv6 next header.
    pub fn protocol(&self) -> Option<u8> {
        let ip = self.bytes.get(14..)?;
        match self.ethertype()? {
            0x0800 => ip.get(9).copied(),
            0x86dd => ip.get(6).copied(),
            _ => None,
        }
    }

    fn ethertype(&self) -> Option<u16> {
        let t = self.bytes.get(12..14)?;
        Some(u16::from_be_bytes([t[0], t[1]]))
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_until(socket: &Socket, frames: &Mutex<Vec<Vec<u8>>>, stop: &AtomicBool) {
    use std::io::Read;
    let mut socket = socket;
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        match socket.read(&mut buf) {
            Ok(n) => {
                let mut kept = frames.lock().unwrap_or_else(PoisonError::into_inner);
                if kept.len() < MAX_FRAMES {
                    kept.push(buf[..n].to_vec());
                }
            }
            Err(_) => continue,
        }
    }
}
