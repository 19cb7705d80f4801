//! Routing straight to partition leaders: the table learned from `GET /cluster` (each
//! partition's leader, every member), refreshed when stale, and the base URL a request for an
//! entity or an instance goes to.

use super::*;

/// Where each partition's leader answers, as the cluster last said.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// Per partition, the leader's base URL (`None`: unknown, use the base URL).
    leaders: Vec<Option<Url>>,
    /// When the table was last fetched.
    fetched: Option<std::time::Instant>,
    /// Set when a request failed in a way a stale table could explain.
    stale: bool,
    /// Every member's base URL, as last learned: where to ask when the base URL's node is down.
    members: Vec<Url>,
}

/// Least time between two fetches of the routing table.
pub(crate) const ROUTES_MIN_AGE: Duration = Duration::from_millis(250);

impl Client {
    pub(crate) fn routed_base(&self, name: &str, key: &str) -> Option<Url> {
        let id = perdure_types::EntityId::new(name, key).ok()?;
        self.leader_of(&perdure_types::Target::Entity(id))
    }

    /// The base URL of the node leading `target`'s partition, when routing is on and the table
    /// knows it (entities and orchestration instances share the pinned partition function).
    pub(crate) fn leader_of(&self, target: &perdure_types::Target) -> Option<Url> {
        if !self.routing {
            return None;
        }
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let n = routes.leaders.len() as u32;
        if n == 0 {
            return None;
        }
        routes.leaders[target.partition(n) as usize].clone()
    }

    /// Fetches the routing table if it was never fetched, or is stale and old enough.
    pub(crate) async fn ensure_routes(&self) {
        if !self.routing {
            return;
        }
        // Claim the refresh (single flight): others go on with the table they have.
        let sources = {
            let mut r = self.routes.write().unwrap_or_else(|p| p.into_inner());
            let due = match r.fetched {
                None => true,
                Some(t) => r.stale && t.elapsed() >= ROUTES_MIN_AGE,
            };
            if !due {
                return;
            }
            r.fetched = Some(std::time::Instant::now());
            r.stale = false;
            let mut sources = vec![self.base.clone()];
            sources.extend(r.members.iter().filter(|m| **m != self.base).cloned());
            sources
        };
        // Ask the base URL's node, then the other members it named before (it may be the one
        // that died); a failed fetch keeps the table as it was.
        for source in sources {
            if let Some((leaders, members)) = self.fetch_routes(&source).await {
                tracing::debug!(partitions = leaders.len(), %source, "routing table fetched");
                let mut r = self.routes.write().unwrap_or_else(|p| p.into_inner());
                r.leaders = leaders;
                r.members = members;
                return;
            }
        }
        // nothing answered: try again soon
        self.mark_routes_stale();
    }

    /// The URL of `GET /cluster` on the node at `base`, keeping `base`'s path.
    pub(crate) fn cluster_url(base: &Url) -> Url {
        let mut url = base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("cluster");
        }
        url
    }

    /// Each partition's leader URL and the members' URLs from `GET /cluster` on `source` (no
    /// leaders for a single node: requests then go to the base URL); `None` when it does not
    /// answer with a cluster description.
    pub(crate) async fn fetch_routes(&self, source: &Url) -> Option<(Vec<Option<Url>>, Vec<Url>)> {
        let v: Value = self
            .http
            .get(Self::cluster_url(source))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let members: std::collections::HashMap<u64, Url> = v["members"]
            .as_array()?
            .iter()
            .filter_map(|m| {
                let addr = m["http_addr"].as_str().filter(|a| !a.is_empty())?;
                let addr: std::net::SocketAddr = addr.parse().ok()?;
                if addr.ip().is_unspecified() {
                    return None; // 0.0.0.0 is where it listens, not where to reach it
                }
                let url = Url::parse(&format!("{}://{addr}/", self.base.scheme())).ok()?;
                Some((m["node_id"].as_u64()?, url))
            })
            .collect();
        if members.len() < 2 {
            return Some((Vec::new(), Vec::new()));
        }
        let leaders = v["partitions"]
            .as_array()?
            .iter()
            .map(|p| p["leader"].as_u64().and_then(|l| members.get(&l).cloned()))
            .collect();
        Some((leaders, members.into_values().collect()))
    }

    pub(crate) fn mark_routes_stale(&self) {
        if self.routing {
            self.routes.write().unwrap_or_else(|p| p.into_inner()).stale = true;
        }
    }
}
