//! The sd_notify protocol: one datagram of `KEY=value` lines to the unix socket
//! named by `$NOTIFY_SOCKET` (a path, or an abstract name written `@name`), and
//! the watchdog interval systemd asks for in `$WATCHDOG_USEC`.
//!
//! Owns the socket and the environment parsing only; what to say and when is
//! decided by the callers in `service/` and `app`. Without `$NOTIFY_SOCKET`
//! (not started by systemd with `Type=notify`) every call is a no-op.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

/// A handle on the notify socket; clone freely. Sending never blocks and never
/// fails the caller: a lost notification is logged at debug level, because
/// systemd treats a missing READY or WATCHDOG as the failure it is anyway.
#[derive(Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("enabled", &self.target.is_some())
            .finish()
    }
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// From `$NOTIFY_SOCKET`; disabled when it is unset or empty. An address
    /// that cannot be used is logged once and the notifier is disabled: the
    /// daemon runs on, and systemd times out its start, which names the cause.
    pub fn from_env() -> Notifier {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::disabled();
        };
        let name = name.to_string_lossy().into_owned();
        if name.is_empty() {
            return Notifier::disabled();
        }
        match Notifier::connect(&name) {
            Ok(notifier) => notifier,
            Err(e) => {
                tracing::error!(notify_socket = %name, error = %e, "cannot use NOTIFY_SOCKET; systemd will not hear that the daemon is ready");
                Notifier::disabled()
            }
        }
    }

    /// A notifier for the socket `name`: a file system path, or `@name` for
    /// an abstract socket (Linux).
    pub fn connect(name: &str) -> io::Result<Notifier> {
        let addr = if let Some(abstract_name) = name.strip_prefix('@') {
            abstract_addr(abstract_name.as_bytes())?
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor an abstract name (@…)",
            ));
        };
        let socket = UnixDatagram::unbound()?;
        // A full socket buffer must never stall a task: drop the message instead.
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            target: Some(Arc::new(Target { socket, addr })),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=value` assignments) as one datagram.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(e) = target.socket.send_to_addr(state.as_bytes(), &target.addr) {
            tracing::debug!(error = %e, "sd_notify message not sent");
        }
    }

    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }

    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }

    pub fn stopping(&self, status: &str) {
        self.notify(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

/// A newline would end the STATUS assignment and start another.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// The watchdog interval systemd expects pings within, from `$WATCHDOG_USEC`,
/// if it is meant for this process (`$WATCHDOG_PID` unset or our pid).
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok()?;
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(&usec, pid.as_deref(), std::process::id())
}

fn parse_watchdog(usec: &str, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    match usec.trim().parse::<u64>() {
        Ok(usec) if usec > 0 => Some(Duration::from_micros(usec)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::connect(path.to_str().unwrap()).unwrap();
        notifier.ready("connected;\n0 pending");
        notifier.watchdog();
        notifier.stopping("stopping");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=connected; 0 pending");
        assert_eq!(receive(&listener), "WATCHDOG=1");
        assert_eq!(receive(&listener), "STOPPING=1\nSTATUS=stopping");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_datagrams_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("zcc-relay-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier::connect(&format!("@{name}")).unwrap();
        notifier.status("reconnecting in 4s");
        assert_eq!(receive(&listener), "STATUS=reconnecting in 4s");
    }

    #[test]
    fn disabled_and_unusable_addresses() {
        let notifier = Notifier::disabled();
        assert!(!notifier.is_enabled());
        notifier.ready("nothing happens");
        assert!(Notifier::connect("relative/path").is_err());
        // No listener: the send fails quietly, the caller goes on.
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent");
        let notifier = Notifier::connect(absent.to_str().unwrap()).unwrap();
        notifier.watchdog();
    }

    #[test]
    fn watchdog_interval_is_for_this_process_only() {
        let check = |usec: &str, pid: Option<&str>, expected: Option<u64>| {
            assert_eq!(
                parse_watchdog(usec, pid, 42),
                expected.map(Duration::from_micros),
                "WATCHDOG_USEC={usec} WATCHDOG_PID={pid:?}"
            );
        };
        check("30000000", None, Some(30_000_000));
        check("200000", Some("42"), Some(200_000));
        check("200000", Some("41"), None);
        check("200000", Some("x"), None);
        check("0", None, None);
        check("soon", None, None);
    }
}
