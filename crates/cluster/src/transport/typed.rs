//! Typed requests over the transport: a request type names its [`Kind`] and its reply type; a
//! [`Service`] answers one kind; [`Typed`] is the one adapter from a service to a [`Handler`]
//! (decode with [`perdure_types::codec`], call, encode, map failures to [`RemoteError`]);
//! [`Peers::rpc`] is the client side.

use super::{BoxFuture, Handler, Kind, Peers, RemoteError, TransportError};
use perdure_types::{codec, NodeId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// A request of one kind: the kind it travels as and the type of its answer.
pub trait Rpc: Serialize + DeserializeOwned + Send + 'static {
    /// The kind this request travels as.
    const KIND: Kind;
    /// What the service answers.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
}

/// The answer to a service's request.
pub type ReplyOf<S> = <<S as Service>::Request as Rpc>::Reply;

/// What a node serves to its peers for one kind of request.
pub trait Service: Send + Sync + 'static {
    /// The request it answers (which names the kind).
    type Request: Rpc;

    /// Answers one request from the authenticated peer `from`. An error travels back as is; a
    /// domain failure the caller acts on belongs in the reply type instead.
    fn call(
        &self,
        from: NodeId,
        request: Self::Request,
    ) -> impl Future<Output = Result<ReplyOf<Self>, RemoteError>> + Send;
}

/// A [`Service`] made of an async closure `(from, request) -> Result<reply, RemoteError>` (see
/// [`service_fn`]).
pub struct FnService<R, F> {
    f: F,
    _request: PhantomData<fn(R)>,
}

impl<R, F> std::fmt::Debug for FnService<R, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FnService<{}>", std::any::type_name::<R>())
    }
}

/// Makes a [`Service`] for requests `R` of an async closure. A closure that holds what holds the
/// node's partitions must hold it weakly (the partitions hold the table of services).
pub fn service_fn<R, F, Fut>(f: F) -> FnService<R, F>
where
    R: Rpc,
    F: Fn(NodeId, R) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Reply, RemoteError>> + Send,
{
    FnService {
        f,
        _request: PhantomData,
    }
}

impl<R, F, Fut> Service for FnService<R, F>
where
    R: Rpc,
    F: Fn(NodeId, R) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Reply, RemoteError>> + Send,
{
    type Request = R;

    fn call(
        &self,
        from: NodeId,
        request: R,
    ) -> impl Future<Output = Result<R::Reply, RemoteError>> + Send {
        (self.f)(from, request)
    }
}

/// A [`Service`] as a transport [`Handler`] of its kind.
pub struct Typed<S>(Arc<S>);

impl<S: Service> Typed<S> {
    /// Serves `service`.
    pub fn new(service: S) -> Self {
        Self(Arc::new(service))
    }
}

impl<S> std::fmt::Debug for Typed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<S>())
    }
}

impl<S: Service> Handler for Typed<S> {
    fn handle(
        &self,
        from: NodeId,
        _kind: u16,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let service = self.0.clone();
        Box::pin(async move {
            let kind = <S::Request as Rpc>::KIND;
            let request: S::Request = codec::decode(&body).map_err(|e| {
                RemoteError::handler(format!("undecodable {} request: {e}", kind.name()))
            })?;
            let reply = service.call(from, request).await?;
            codec::encode(&reply).map_err(|e| RemoteError::handler(e.to_string()))
        })
    }
}

impl Peers {
    /// Sends `request` to node `to` as its kind and waits for the typed answer, for at most
    /// `timeout` (or the configured `rpc_timeout`).
    pub async fn rpc<R: Rpc>(
        &self,
        to: NodeId,
        request: &R,
        timeout: Option<Duration>,
    ) -> Result<R::Reply, TransportError> {
        self.call(to, R::KIND.number(), request, timeout).await
    }
}
