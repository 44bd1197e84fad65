//! The hyper service of one client connection: each request goes to the
//! pipeline with what the connection knows.

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

/// What hyper calls for each request of one client connection.
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
