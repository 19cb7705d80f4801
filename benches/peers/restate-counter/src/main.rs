//! A Restate virtual object `Counter` keyed like perdure's `counter` entity: `add` (exclusive,
//! adds a signed amount, answers the new value) and `get` (shared). Listens on the address given
//! as the first argument (default `127.0.0.1:9080`) for the Restate server to call.

use restate_sdk::prelude::*;

/// The state key holding the value.
const VALUE: &str = "value";

/// The counter object.
struct Counter;

#[object]
impl Counter {
    /// Adds `amount` and answers the new value.
    #[handler]
    async fn add(&self, ctx: ObjectContext<'_>, amount: i64) -> Result<i64, TerminalError> {
        let value = ctx.get::<i64>(VALUE).await?.unwrap_or(0) + amount;
        ctx.set(VALUE, value);
        Ok(value)
    }

    /// The current value (0 for a counter never added to); shared: runs beside `add`s.
    #[handler]
    async fn get(&self, ctx: SharedObjectContext<'_>) -> Result<i64, TerminalError> {
        Ok(ctx.get::<i64>(VALUE).await?.unwrap_or(0))
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9080".to_string());
    let addr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("restate-counter: {addr:?} is not HOST:PORT: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("restate-counter: serving the Counter object on {addr}");
    HttpServer::new(Endpoint::builder().bind(Counter).build())
        .listen_and_serve(addr)
        .await;
}
