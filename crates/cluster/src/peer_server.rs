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
