//! The entity client RPCs (`SignalEntity`, `GetEntity`, `QueryEntities`,
//! `CleanEntityStorage`) over the entities facade: entity ids are `@name@key` here.

use super::*;

impl ClientApi {
    /// `SignalEntity`: the request id is the signal's idempotency key; a `scheduledTime` later
    /// than now delays the operation (durable at once, run when due).
    pub async fn signal_entity(
        &self,
        r: proto::SignalEntityRequest,
    ) -> Result<proto::SignalEntityResponse, Status> {
        let entity = entity_id(&r.instance_id)?;
        let req = SignalRequest {
            entity,
            operation: r.name,
            input: json("the input", r.input)?,
            idempotency_key: Some(r.request_id).filter(|k| !k.is_empty()),
        };
        match r.scheduled_time.as_ref().map(millis) {
            // a timer of the entity's partition: runs when due
            Some(due) => self.entities.signal_at(req, due).await,
            None => self.entities.signal(req).await,
        }
        .map_err(|e| from_runtime(&e))?;
        Ok(proto::SignalEntityResponse {})
    }

    /// `GetEntity`: `exists = false` for an entity without state (or of a type this node does
    /// not know); the state only with `includeState`. perdure does not track the last-modified
    /// time, the backlog or the lock holder here: they are left empty.
    pub async fn get_entity(
        &self,
        r: proto::GetEntityRequest,
    ) -> Result<proto::GetEntityResponse, Status> {
        let entity = entity_id(&r.instance_id)?;
        let state = match self.entities.get(&entity).await {
            Ok(s) => s,
            Err(e) if is(&e, "unknown_entity_type") => None,
            Err(e) => return Err(from_runtime(&e)),
        };
        Ok(match state {
            None => proto::GetEntityResponse {
                exists: false,
                entity: None,
            },
            Some(v) => proto::GetEntityResponse {
                exists: true,
                entity: Some(proto::EntityMetadata {
                    instance_id: entity.canonical(),
                    serialized_state: r.include_state.then(|| v.to_string()),
                    ..Default::default()
                }),
            },
        })
    }
}

impl ClientApi {
    /// `QueryEntities`: entities whose id starts with `instanceIdStartsWith` (`@name@key...`;
    /// without a complete name, every entity type registered in Rust whose name starts with
    /// what is given), `pageSize` at a time (default 100, at most 1,000), a continuation token
    /// `TYPE_INDEX|LIST_TOKEN`. perdure keeps no last-modified time, so the time filters select
    /// everything; entities without state do not exist in perdure (nothing is transient).
    pub async fn query_entities(
        &self,
        r: proto::QueryEntitiesRequest,
    ) -> Result<proto::QueryEntitiesResponse, Status> {
        let q = r.query.unwrap_or_default();
        let prefix = text(q.instance_id_starts_with).unwrap_or_default();
        let page = q
            .page_size
            .filter(|n| *n > 0)
            .map_or(100, |n| n as usize)
            .min(perdure_runtime::entities::MAX_PAGE);
        let rest = prefix.strip_prefix('@').unwrap_or(&prefix);
        if !prefix.is_empty() && !prefix.starts_with('@') {
            return Err(Status::invalid_argument(format!(
                "instanceIdStartsWith {prefix:?}: entity ids start with '@' (@name@key)"
            )));
        }
        let (types, key_prefix): (Vec<String>, &str) = match rest.split_once('@') {
            Some((name, key)) => (vec![name.to_ascii_lowercase()], key),
            None => {
                let start = rest.to_ascii_lowercase();
                let mut names: Vec<String> = self
                    .entities
                    .registry()
                    .names()
                    .into_iter()
                    .filter(|n| n.starts_with(&start))
                    .map(String::from)
                    .collect();
                names.sort();
                (names, "")
            }
        };
        let token = text(q.continuation_token).unwrap_or_default();
        let (mut ti, mut cont): (usize, Option<String>) = match token.split_once('|') {
            None if token.is_empty() => (0, None),
            Some((i, c)) => (
                i.parse().map_err(|_| {
                    Status::invalid_argument(format!("invalid continuation token {token:?}"))
                })?,
                Some(c.to_string()).filter(|c| !c.is_empty()),
            ),
            None => {
                return Err(Status::invalid_argument(format!(
                    "invalid continuation token {token:?}"
                )))
            }
        };
        let mut entities = Vec::new();
        while ti < types.len() && entities.len() < page {
            let got = self
                .entities
                .list(&types[ti], cont.as_deref(), page - entities.len())
                .await
                .map_err(|e| from_runtime(&e))?;
            for e in got
                .entities
                .into_iter()
                .filter(|e| e.key.starts_with(key_prefix))
            {
                entities.push(proto::EntityMetadata {
                    instance_id: format!("@{}@{}", types[ti], e.key),
                    serialized_state: q.include_state.then(|| e.state.to_string()),
                    ..Default::default()
                });
            }
            match got.continuation {
                Some(c) => cont = Some(c),
                None => {
                    ti += 1;
                    cont = None;
                }
            }
        }
        let continuation_token =
            (ti < types.len()).then(|| format!("{ti}|{}", cont.unwrap_or_default()));
        Ok(proto::QueryEntitiesResponse {
            entities,
            continuation_token,
        })
    }
}

impl ClientApi {
    /// `CleanEntityStorage`: perdure keeps no entity without state (deleting the state deletes
    /// the entity), so none is removed; with `releaseOrphanedLocks`, every critical section
    /// holding an entity whose orchestration no longer runs that execution (purged, replaced,
    /// finished) is released. One pass over every partition (up to 10,000 locks each).
    pub async fn clean_entity_storage(
        &self,
        r: proto::CleanEntityStorageRequest,
    ) -> Result<proto::CleanEntityStorageResponse, Status> {
        let mut released = 0;
        if r.release_orphaned_locks {
            for p in 0..self.entities.partition_count() {
                let locks = self
                    .entities
                    .locks(p, 10_000)
                    .await
                    .map_err(|e| from_runtime(&e))?;
                for (entity, holder) in locks {
                    let orphaned = match self
                        .orchestrations
                        .status(holder.instance.as_str(), false)
                        .await
                    {
                        Ok(s) => {
                            s.record.status.is_terminal()
                                || s.record.execution_id != holder.execution_id
                        }
                        Err(e) if is(&e, "instance_not_found") => true,
                        Err(e) => return Err(from_runtime(&e)),
                    };
                    if !orphaned {
                        continue;
                    }
                    let Ok(id) = EntityId::from_canonical(&entity) else {
                        continue;
                    };
                    self.entities
                        .release_lock(&id, &holder)
                        .await
                        .map_err(|e| from_runtime(&e))?;
                    released += 1;
                }
            }
        }
        Ok(proto::CleanEntityStorageResponse {
            continuation_token: None,
            empty_entities_removed: 0,
            orphaned_locks_released: released,
        })
    }
}

/// `@name@key` as an entity id (`INVALID_ARGUMENT` otherwise).
fn entity_id(s: &str) -> Result<EntityId, Status> {
    EntityId::from_canonical(s).map_err(|e| {
        Status::invalid_argument(format!("invalid entity id {s:?} (expected @name@key): {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_ids_are_name_and_key() {
        assert_eq!(entity_id("@Counter@k").unwrap().canonical(), "@counter@k");
        assert_eq!(
            entity_id("counter/k").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
