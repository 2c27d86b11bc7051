//! An S3 server over a directory (`s3s` + `s3s-fs`) on `127.0.0.1:0`, for
//! tests of the media stage's `s3://` store: real SigV4 requests against a real
//! server, no cloud account.
//!
//! Behind the `s3` feature, which only the daemon's dev-dependency enables, so
//! none of it reaches the release binary.

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The one bucket and the one key pair a [`S3Server`] accepts.
#[derive(Clone)]
pub struct S3Account {
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for S3Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Account")
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .finish()
    }
}

/// A running S3 server; dropping it stops accepting connections.
pub struct S3Server {
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl S3Server {
    /// Serves the objects of `account.bucket` from `root/<bucket>` (created
    /// here), to requests signed with `account`'s keys.
    pub async fn start(root: &Path, account: &S3Account) -> std::io::Result<S3Server> {
        std::fs::create_dir_all(root.join(&account.bucket))?;
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|error| std::io::Error::other(format!("{error:?}")))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            account.access_key.as_str(),
            account.secret_key.as_str(),
        ));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Ok(S3Server { addr, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the `aws_endpoint` a client is given.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.server.abort();
    }
}
