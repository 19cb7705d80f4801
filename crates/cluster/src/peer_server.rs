//! [`PeerServer`]: what a node serves its peers, built first, then run.
//!
//! The listener is bound when the node opens (so a wrong `cluster.listen_addr` fails the start),
//! but no peer is accepted until [`PeerServer::serve`]: by then the [`Services`] table is
//! complete (Raft, the cluster services, and whatever the layers above added), and it never
//! changes afterwards. Peers that connect meanwhile wait in the listen backlog.

use crate::transport::{self, Kind, Rpc, Service, Services, TransportConfig};
use crate::Error;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Where a node's peer server is in its life.
enum State {
    /// Single-node mode: no peers, nothing to serve; services added are dropped.
    Single,
    /// Bound, not accepting: services may be added.
    Building {
        listener: TcpListener,
        services: Services,
    },
    /// Accepting: the table is fixed.
    Serving,
}

/// The peer side of one node: its listener and its table of services.
pub(crate) struct PeerServer {
    /// This node's identity on the transport.
    config: Arc<TransportConfig>,
    /// Single node, building the table (listener bound, not accepting), or serving.
    state: Mutex<State>,
}

impl std::fmt::Debug for PeerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*self.lock() {
            State::Single => "single node".to_string(),
            State::Building { services, .. } => format!("building {:?}", services.kinds()),
            State::Serving => "serving".to_string(),
        };
        f.debug_struct("PeerServer").field("state", &state).finish()
    }
}

impl PeerServer {
    /// A peer server on `listener` (`None` in single-node mode) that starts with `services`.
    pub(crate) fn new(
        config: Arc<TransportConfig>,
        listener: Option<TcpListener>,
        services: Services,
    ) -> Self {
        let state = match listener {
            None => State::Single,
            Some(listener) => State::Building { listener, services },
        };
        Self {
            config,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `service` to the table; refused once the node serves its peers, or if its kind is
    /// served already. In single-node mode it is dropped (there are no peers to serve).
    pub(crate) fn add<S: Service>(&self, service: S) -> Result<(), Error> {
        match &mut *self.lock() {
            State::Single => Ok(()),
            State::Building { services, .. } => Ok(services.add(service)?),
            State::Serving => Err(Error::ServingAlready(<S::Request as Rpc>::KIND)),
        }
    }

    /// The kinds served or to be served (none in single-node mode or once serving).
    pub(crate) fn kinds(&self) -> Vec<Kind> {
        match &*self.lock() {
            State::Building { services, .. } => services.kinds(),
            _ => Vec::new(),
        }
    }

    /// Starts accepting peers with the table as it is now; the task runs until aborted. `None`
    /// in single-node mode, or if it serves already.
    pub(crate) fn serve(&self) -> Option<JoinHandle<()>> {
        let (listener, services) = {
            let mut state = self.lock();
            match std::mem::replace(&mut *state, State::Serving) {
                State::Building { listener, services } => (listener, services),
                other => {
                    *state = other;
                    return None;
                }
            }
        };
        let config = self.config.clone();
        Some(tokio::spawn(async move {
            let addr = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            tracing::info!(%addr, kinds = ?services.kinds(), "listening for peers");
            let served =
                transport::serve(listener, config, Arc::new(services), std::future::pending())
                    .await;
            if let Err(e) = served {
                tracing::error!(%addr, error = %e, "peer listener failed");
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::RemoteError;
    use perdure_types::NodeId;
    use serde::{Deserialize, Serialize};
    use std::time::Duration;

    #[derive(Serialize, Deserialize)]
    struct Hello;

    impl Rpc for Hello {
        const KIND: Kind = Kind::Forward;
        type Reply = ();
    }

    struct Answer;

    impl Service for Answer {
        type Request = Hello;

        async fn call(&self, _from: NodeId, _: Hello) -> Result<(), RemoteError> {
            Ok(())
        }
    }

    fn config_of(node_id: NodeId) -> Arc<TransportConfig> {
        Arc::new(TransportConfig {
            cluster_id: "c".into(),
            node_id,
            partitions: 4,
            secret: "s".into(),
            tls: None,
            rpc_timeout: Duration::from_secs(1),
            stats: Default::default(),
        })
    }

    fn config() -> Arc<TransportConfig> {
        config_of(1)
    }

    #[tokio::test]
    async fn a_peer_connecting_while_services_are_added_is_answered_once_serving() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = PeerServer::new(config(), Some(listener), Services::new(None));
        let peers = crate::transport::Peers::new(config_of(2));
        peers.set_address(1, addr);
        let asked =
            tokio::spawn(async move { peers.rpc(1, &Hello, Some(Duration::from_secs(10))).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!asked.is_finished(), "nothing is accepted before serve");
        server.add(Answer).unwrap();
        let task = server.serve().unwrap();
        asked
            .await
            .unwrap()
            .expect("the service added before serving answers");
        task.abort();
    }

    #[tokio::test]
    async fn services_are_added_before_serving_and_refused_after() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = PeerServer::new(config(), Some(listener), Services::new(None));
        server.add(Answer).unwrap();
        assert_eq!(server.kinds(), [Kind::Forward]);
        assert!(matches!(
            server.add(Answer),
            Err(Error::DuplicateService(d)) if d.0 == Kind::Forward
        ));
        let task = server.serve().expect("serves once");
        assert!(server.serve().is_none(), "a second serve does nothing");
        assert!(matches!(
            server.add(Answer),
            Err(Error::ServingAlready(Kind::Forward))
        ));
        task.abort();
    }

    #[tokio::test]
    async fn a_single_node_takes_services_and_serves_nothing() {
        let server = PeerServer::new(config(), None, Services::new(None));
        server.add(Answer).unwrap();
        assert!(server.serve().is_none());
        server.add(Answer).unwrap();
    }
}
