//! What one client connection's requests are served with: the app and
//! what the connection knows. For HTTP/1 it is hyper's service; HTTP/2 and
//! HTTP/3 streams take it to the stream loop (`stream::serve`). Either way
//! the request reaches `pipeline::handle` as a `Request<ClientBody>`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;

use crate::http::body::client::ClientBody;
use crate::http::body::Body;
use crate::pipeline::{self, App, ConnInfo};

/// What each request of one client connection is served with.
#[derive(Clone)]
pub struct Handler {
    pub app: Arc<App>,
    pub conn: Arc<ConnInfo>,
}

impl Service<Request<Incoming>> for Handler {
    type Response = Response<Body>;
    type Error = Infallible;
    // Boxed: hyper keeps the request's future inside the connection, so
    // unboxed its size would be held by every idle keep-alive connection.
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let (app, conn) = (self.app.clone(), self.conn.clone());
        let req = req.map(ClientBody::Http1);
        Box::pin(async move { Ok(pipeline::handle(app, conn, req).await) })
    }
}
