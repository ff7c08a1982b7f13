//! Ports for the processes a test starts, which bind them a moment after the test picks them.
//!
//! A port picked by binding port 0 comes from the kernel's ephemeral range (32768–60999 by
//! default), the range every outgoing connection also takes its local port from: between the pick
//! and the child's bind, a connection of another test running in parallel can take it (seen in CI:
//! a replica exiting with "Address already in use"). Ports are therefore picked below that range,
//! where nothing is handed out by the kernel, each one once per test process, and checked free.

use std::{
    net::{SocketAddr, TcpListener},
    sync::atomic::{AtomicU16, Ordering},
};

/// The range ports are picked from: above the suite's fixed defaults (7101–7106, 8443, 8444),
/// below the ephemeral range.
const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

/// A loopback port free right now that no other pick of this test process returns again.
pub fn free_port() -> u16 {
    // Each test process starts at its own place, so that two test binaries run at once (or one
    // run just after another, whose ports may linger) rarely walk the same ports.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        FIRST + (std::process::id() % u32::from(LAST - FIRST)) as u16,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in FIRST..LAST {
        let port = NEXT
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(if p + 1 >= LAST { FIRST } else { p + 1 })
            })
            .unwrap_or(FIRST);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {LAST}");
}

/// [`free_port`] on the loopback address.
pub fn free_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}
