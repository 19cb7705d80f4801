//! [`Services`]: the table of what a node serves its peers, one [`Service`] per [`Kind`].
//!
//! The table is built first and then handed, complete, to [`super::serve`]: no request is
//! accepted while services are still being added, and none is added afterwards. A request of a
//! kind that is not in the table (or of a number that names no kind) is answered
//! [`RemoteErrorCode::NotFound`](super::RemoteErrorCode::NotFound).

use super::typed::{Rpc, Service, Typed};
use super::{BoxFuture, Handler, Kind, Peers, RemoteError};
use perdure_types::NodeId;
use std::collections::HashMap;
use std::sync::Arc;

/// A service was added for a kind the table already serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a service for request kind {0} is registered already")]
pub struct DuplicateService(pub Kind);

/// The services of one node, by kind.
#[derive(Default)]
pub struct Services {
    table: HashMap<Kind, Arc<dyn Handler>>,
    /// This node's outgoing connections: told when a peer connects in, so a connection to it
    /// that is backing off retries at once.
    peers: Option<Peers>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("kinds", &self.kinds())
            .finish_non_exhaustive()
    }
}

impl Services {
    /// An empty table; `peers`, if given, retry a peer at once when it connects in.
    pub fn new(peers: Option<Peers>) -> Self {
        Self {
            table: HashMap::new(),
            peers,
        }
    }

    /// Serves the requests of `service`'s kind with it.
    pub fn add<S: Service>(&mut self, service: S) -> Result<(), DuplicateService> {
        let kind = <S::Request as Rpc>::KIND;
        if self.table.contains_key(&kind) {
            return Err(DuplicateService(kind));
        }
        self.table.insert(kind, Arc::new(Typed::new(service)));
        Ok(())
    }

    /// The kinds served, in number order.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut kinds: Vec<Kind> = self.table.keys().copied().collect();
        kinds.sort();
        kinds
    }
}

impl Handler for Services {
    fn peer_connected(&self, from: NodeId) {
        if let Some(peers) = &self.peers {
            peers.retry_now(from);
        }
    }

    fn handle(
        &self,
        from: NodeId,
        kind: u16,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        match Kind::try_from(kind).ok().and_then(|k| self.table.get(&k)) {
            Some(h) => h.handle(from, kind, body),
            None => Box::pin(async move { Err(RemoteError::unknown_kind(kind)) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::RemoteErrorCode;
    use perdure_types::codec;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Ping(u32);

    impl Rpc for Ping {
        const KIND: Kind = Kind::Elect;
        type Reply = u32;
    }

    struct Double;

    impl Service for Double {
        type Request = Ping;

        async fn call(&self, _from: NodeId, request: Ping) -> Result<u32, RemoteError> {
            Ok(request.0 * 2)
        }
    }

    #[tokio::test]
    async fn a_request_reaches_the_service_of_its_kind_typed() {
        let mut services = Services::new(None);
        services.add(Double).unwrap();
        let body = codec::encode(&Ping(21)).unwrap();
        let answer = services.handle(1, 5, body).await.unwrap();
        assert_eq!(codec::decode::<u32>(&answer).unwrap(), 42);
    }

    #[tokio::test]
    async fn a_closure_serves_as_well() {
        let mut services = Services::new(None);
        services
            .add(crate::transport::service_fn(|from, Ping(n)| async move {
                Ok(n + from as u32)
            }))
            .unwrap();
        let answer = services
            .handle(2, 5, codec::encode(&Ping(40)).unwrap())
            .await;
        assert_eq!(codec::decode::<u32>(&answer.unwrap()).unwrap(), 42);
    }

    #[tokio::test]
    async fn kinds_not_served_and_unknown_numbers_answer_not_found() {
        let mut services = Services::new(None);
        services.add(Double).unwrap();
        for number in [Kind::Raft.number(), 999] {
            let e = services.handle(1, number, Vec::new()).await.unwrap_err();
            assert_eq!(e.code, RemoteErrorCode::NotFound);
            assert!(e.message.contains(&number.to_string()), "{}", e.message);
        }
    }

    #[tokio::test]
    async fn an_undecodable_request_is_a_handler_error_and_a_kind_is_served_once() {
        let mut services = Services::new(None);
        services.add(Double).unwrap();
        assert_eq!(services.add(Double), Err(DuplicateService(Kind::Elect)));
        let e = services.handle(1, 5, vec![1, 0xff]).await.unwrap_err();
        assert_eq!(e.code, RemoteErrorCode::Handler);
        assert!(e.message.contains("elect"), "{}", e.message);
    }
}
