//! Stream subscriptions (`/subscriptions`): create or replace, list, read with progress, dead
//! letters, pause, resume, delete. Answers are the node's JSON, as it answers them (see
//! `docs/api/openapi.yaml`).

use crate::retry::Kind;
use crate::{decode, success, Client, Error};
use reqwest::Method;
use serde_json::Value;

impl Client {
    /// Creates or replaces subscription `name` with definition `spec` (JSON, as
    /// `PUT /subscriptions/{name}` takes it); answers the subscription and whether it was
    /// created.
    pub async fn put_subscription(&self, name: &str, spec: &Value) -> Result<(Value, bool), Error> {
        let url = self.url(&["subscriptions", name]);
        let r = self
            .send(Kind::Idempotent, || {
                self.request(Method::PUT, &url).json(spec)
            })
            .await?;
        let created = r.status == reqwest::StatusCode::CREATED;
        Ok((decode(&success(r)?)?, created))
    }

    /// Every subscription (`{"subscriptions": [...]}`).
    pub async fn list_subscriptions(&self) -> Result<Value, Error> {
        self.subscription_request(Method::GET, &[], &[]).await
    }

    /// Subscription `name` with its progress per source partition.
    pub async fn subscription(&self, name: &str) -> Result<Value, Error> {
        self.subscription_request(Method::GET, &[name], &[]).await
    }

    /// At most `limit` (server default 100, at most 1000) dead letters of subscription `name`
    /// (`{"dead_letters": [...]}`).
    pub async fn subscription_dead_letters(
        &self,
        name: &str,
        limit: Option<u32>,
    ) -> Result<Value, Error> {
        let q: Vec<(&str, String)> = limit
            .map(|l| ("limit", l.to_string()))
            .into_iter()
            .collect();
        self.subscription_request(Method::GET, &[name, "dead-letters"], &q)
            .await
    }

    /// Pauses (`paused`) or resumes subscription `name`; answers it.
    pub async fn pause_subscription(&self, name: &str, paused: bool) -> Result<Value, Error> {
        let what = if paused { "pause" } else { "resume" };
        self.subscription_request(Method::POST, &[name, what], &[])
            .await
    }

    /// Deletes subscription `name`.
    pub async fn delete_subscription(&self, name: &str) -> Result<(), Error> {
        let url = self.url(&["subscriptions", name]);
        let r = self
            .send(Kind::Idempotent, || self.request(Method::DELETE, &url))
            .await?;
        success(r).map(drop)
    }

    async fn subscription_request(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, Error> {
        let mut all = vec!["subscriptions"];
        all.extend_from_slice(segments);
        let url = self.url(&all);
        let r = self
            .send(Kind::Idempotent, || {
                self.request(method.clone(), &url).query(query)
            })
            .await?;
        decode(&success(r)?)
    }
}
