//! A node of your own: perdure as a library, with your entity types, orchestrators and
//! activities registered beside the built-in ones. Configured like `perdure serve` (defaults,
//! `PERDURE_*` environment variables; `PERDURE_CONFIG` names a TOML file).
//!
//! It registers an entity type `inventory` (stock per item: `reserve`, `restock`, `get`) and an
//! orchestration `PlaceOrder` that reserves the items of an order on their inventory entities,
//! charges the order in an activity, and undoes the reservations when the charge fails:
//!
//! ```text
//! cargo run -p perdure-example-custom-node
//! curl -X POST 'localhost:7071/runtime/webhooks/durabletask/entities/inventory/apple?op=restock' -d 10
//! curl -X POST localhost:7071/runtime/webhooks/durabletask/orchestrators/PlaceOrder \
//!      -d '{"items": {"apple": 3}, "card": "4242"}'
//! ```

use perdure_runtime::entity::{Context, EntityType, OperationError};
use perdure_runtime::orchestrations::model::{
    ActivityContext, ActivityError, OrchestrationContext, OrchestrationError,
};
use perdure_runtime::{OrchestrationRegistry, Registries, Registry};
use perdure_types::EntityId;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Stock of one item: `restock n`, `reserve n` (fails when short), `get`.
struct Inventory;

impl EntityType for Inventory {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn operations(&self) -> &'static [&'static str] {
        &["restock", "reserve", "get"]
    }

    fn execute(&self, ctx: &mut Context<'_>) -> Result<Option<Value>, OperationError> {
        let stock: i64 = ctx.state_or_default()?;
        match ctx.operation() {
            "restock" => {
                let n: i64 = ctx.input_as()?;
                ctx.set_state(&(stock + n))?;
                Ok(None)
            }
            "reserve" => {
                let n: i64 = ctx.input_as()?;
                if n > stock {
                    return Err(OperationError::Failed(format!(
                        "only {stock} in stock, {n} asked for"
                    )));
                }
                ctx.set_state(&(stock - n))?;
                Ok(Some(json!(stock - n)))
            }
            _ => Ok(Some(json!(stock))),
        }
    }
}

#[derive(Deserialize)]
struct Order {
    items: BTreeMap<String, i64>,
    card: String,
}

/// Reserves every item (entity calls), charges the card (an activity, retried by the runtime's
/// at-least-once delivery), and gives the stock back when the charge fails.
async fn place_order(ctx: OrchestrationContext) -> Result<Value, OrchestrationError> {
    let order: Order = ctx.input()?;
    let mut reserved = Vec::new();
    for (item, n) in &order.items {
        let entity = EntityId::new("inventory", item)
            .map_err(|e| OrchestrationError::new("BadOrder", e.to_string()))?;
        if let Err(e) = ctx.call_entity(&entity, "reserve", n).await {
            undo(&ctx, &reserved)?;
            return Ok(json!({"status": "rejected", "reason": e.to_string()}));
        }
        reserved.push((entity, *n));
    }
    ctx.set_custom_status("charging")?;
    match ctx.call_activity("Charge", &order.card).await {
        Ok(receipt) => Ok(json!({"status": "placed", "receipt": receipt})),
        Err(e) => {
            undo(&ctx, &reserved)?;
            Ok(json!({"status": "refunded", "reason": e.to_string()}))
        }
    }
}

fn undo(
    ctx: &OrchestrationContext,
    reserved: &[(EntityId, i64)],
) -> Result<(), OrchestrationError> {
    for (entity, n) in reserved {
        ctx.signal_entity(entity, "restock", n)?;
    }
    Ok(())
}

/// A stand-in payment call: cards starting with 0 are declined.
async fn charge(ctx: ActivityContext, card: Value) -> Result<Value, ActivityError> {
    let card = card.as_str().unwrap_or_default();
    if card.starts_with('0') {
        return Err(ActivityError::non_retriable("Declined", "card declined"));
    }
    Ok(json!(format!(
        "receipt-{}-{}",
        ctx.instance_id(),
        ctx.task_id()
    )))
}

/// Everything this node runs: the built-in entity types and samples, plus ours.
fn registries() -> Registries {
    Registries {
        entities: Registry::builtin().with(Inventory),
        orchestrations: OrchestrationRegistry::new()
            .orchestrator("PlaceOrder", place_order)
            .activity("Charge", charge),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let file = std::env::var_os("PERDURE_CONFIG").map(std::path::PathBuf::from);
    let config = perdure_node::config::load(file.as_deref(), std::env::vars(), Vec::new())?;
    let listener = tokio::net::TcpListener::bind(&config.http_addr).await?;
    perdure_node::run_with(
        config,
        listener,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
        registries(),
    )
    .await?;
    Ok(())
}
