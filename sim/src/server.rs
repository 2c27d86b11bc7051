//! The simulator's HTTP server: the route table and the serve task.
//!
//! Owns which path reaches which handler and graceful shutdown of the listener.
//! It does not implement any endpoint: `oauth`, `ws` and `rest` (everything under
//! `/v2`, merged here with its own gate) do. Every connection is accepted through
//! `link`, and each request carries its connection's [`LinkHandle`] so `ws` can
//! turn a socket dark.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::link::{self, LinkHandle};
use super::state::Inner;
use super::{oauth, rest, ws};

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/oauth/token", post(oauth::token))
        .route("/ws", get(ws::upgrade))
        .merge(rest::router(Arc::clone(&inner)))
        .fallback(not_found)
        .with_state(inner)
}

/// Zoom's REST error shape, so a client probing an unimplemented route sees the
/// kind of body it will parse in production.
pub(super) async fn not_found() -> Response {
    let body = json!({ "code": 404, "message": "No such endpoint in the Zoom simulator." });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// Serves until `inner.cancel` fires. Upgraded sockets are not HTTP connections
/// any more, so the serve task does not wait for them; `Simulator::shutdown`
/// waits on `inner.tracker` for those.
pub(super) fn spawn(listener: TcpListener, inner: Arc<Inner>) -> JoinHandle<()> {
    let cancel = inner.cancel.clone();
    let app = router(inner).into_make_service_with_connect_info::<LinkHandle>();
    tokio::spawn(async move {
        let served = axum::serve(link::Listener::new(listener), app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "zoom simulator server stopped with an error");
        }
    })
}
