//! JSON shapes of the public API shared by the server and the client.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One entity in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntitySummary {
    /// The entity's key.
    pub key: String,
    /// Its committed state.
    pub state: Value,
}

/// A page of entities of one type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityPage {
    /// The entities of this page.
    pub entities: Vec<EntitySummary>,
    /// Pass back to get the next page; `None` on the last page.
    #[serde(default)]
    pub continuation: Option<String>,
}
