//! A real `nats-server` with JetStream for the nats sink's tests and benchmark:
//! no fake, since JetStream's PubAck, dedup window and stream errors are the
//! contract under test. [`NatsServer`] starts the binary that `.ci/run`
//! installs (Debian's `nats-server` package) on a free loopback port with
//! its own store directory (`-js -sd DIR -p PORT -a 127.0.0.1`), and kills it
//! when dropped. It can be stopped and started again on the same port and
//! store (a server restart under a publishing daemon). A free port is the
//! OS's pick, released for the server, so another process can take it in
//! between: `start` then tries another port; `restart`, which must keep its
//! port, fails saying so rather than report a server that is not its own.
//!
//! Deliberately not here: a NATS client. Whoever reads the stream back brings
//! its own (the daemon's tests use `async-nats`), so this crate stays free of it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary: `$NATS_SERVER` or `nats-server` on `PATH`.
pub fn binary() -> PathBuf {
    std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// The installed server's version line (`nats-server: v2.9.10`), or why not.
pub fn version() -> io::Result<String> {
    let output = Command::new(binary()).arg("--version").output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Options beyond JetStream on loopback.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    /// Require this user and password (`--user`, `--pass`).
    pub user_password: Option<(String, String)>,
    /// Require this token (`--auth`).
    pub token: Option<String>,
    /// `max_payload` in bytes, through a config file (default: the server's 1 MiB).
    pub max_payload: Option<u32>,
}

/// One running `nats-server`.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    options: NatsOptions,
    log: PathBuf,
}

impl NatsServer {
    /// Starts a JetStream server storing under `store` (created if missing),
    /// and waits until it takes connections.
    pub fn start(store: &Path) -> io::Result<NatsServer> {
        NatsServer::start_with(store, NatsOptions::default())
    }

    pub fn start_with(store: &Path, options: NatsOptions) -> io::Result<NatsServer> {
        std::fs::create_dir_all(store)?;
        let mut server = NatsServer {
            child: None,
            port: 0,
            store: store.to_path_buf(),
            log: store.join("nats-server.log"),
            options,
        };
        // The free port is the OS's pick, released for the server: another
        // process can bind it in between. Then the server exits saying so,
        // and another port is tried.
        let mut attempts = 0;
        loop {
            server.port = free_port()?;
            match server.spawn() {
                Err(error) if error.to_string().contains(IN_USE) && attempts < 5 => attempts += 1,
                done => return done.map(|()| server),
            }
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's own log (`-l`), for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (a clean shutdown that flushes the store) and waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut command = Command::new(binary());
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(&self.store)
            .arg("-l")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((user, password)) = &self.options.user_password {
            command.args(["--user", user, "--pass", password]);
        }
        if let Some(token) = &self.options.token {
            command.args(["--auth", token]);
        }
        if let Some(max_payload) = self.options.max_payload {
            let config = self.store.join("nats-server.conf");
            std::fs::write(&config, format!("max_payload: {max_payload}\n"))?;
            command.arg("-c").arg(config);
        }
        // The log is appended to across restarts: only this run's part counts.
        let logged = std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
        let child = command.spawn()?;
        self.child = Some(child);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        // This run's lines (the whole log if the server started it anew).
        let this_run = |log: String| match log.get(logged..) {
            Some(run) => run.to_owned(),
            None => log,
        };
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(io::Error::other(format!(
                    "nats-server exited with {status}: {}",
                    this_run(self.log())
                )));
            }
            // Ready by its own word, not by a connect that another process
            // on the same port could answer.
            if this_run(self.log()).contains(READY)
                && TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "nats-server did not listen on {address} within 20 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the server logs once it takes connections.
const READY: &str = "Server is ready";
/// What it logs, and exits on, when its port is taken.
const IN_USE: &str = "address already in use";

/// A port nothing listens on now (the OS's pick, released for the server).
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}
