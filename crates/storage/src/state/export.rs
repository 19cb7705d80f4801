//! The whole tree as pairs, for snapshots: exported to build one, replaced to install one. The
//! pairs are the raw keys and values of every table (the layout in `keys.rs`).

use super::PartitionState;
use crate::Result;

impl PartitionState {
    /// Every pair of the tree as sled's own shared buffers: mostly reference-count increments,
    /// no copies, so a snapshot holds the partition's applies for as short a time as possible
    /// (the snapshot is encoded from these buffers later, off the state machine).
    pub fn export_shared(&self) -> Result<Vec<(sled::IVec, sled::IVec)>> {
        self.tree
            .iter()
            .map(|kv| kv.map_err(|e| self.sled_err(e)))
            .collect()
    }

    /// Every key and value, owned (tests compare trees with it).
    #[cfg(test)]
    pub fn export(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree
            .iter()
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| self.sled_err(e))
            })
            .collect()
    }

    /// Replaces the whole tree with `pairs` in one atomic batch.
    pub fn replace(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for k in self.tree.iter().keys() {
            batch.remove(k.map_err(|e| self.sled_err(e))?);
        }
        for (k, v) in pairs {
            batch.insert(k.as_slice(), v.as_slice());
        }
        self.tree.apply_batch(batch).map_err(|e| self.sled_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{apply, e, state, t};
    use perdure_types::command::Op;

    #[test]
    fn export_and_replace_round_trip() {
        let (a, _d1) = state();
        apply(
            &a,
            1,
            vec![
                Op::SetState {
                    entity: e("x"),
                    state: b"s".to_vec(),
                },
                Op::Enqueue {
                    target: t("x"),
                    message: b"m".to_vec(),
                },
            ],
        );
        let (b, _d2) = state();
        apply(
            &b,
            1,
            vec![Op::SetState {
                entity: e("old"),
                state: b"gone".to_vec(),
            }],
        );
        b.replace(&a.export().unwrap()).unwrap();
        assert_eq!(b.export().unwrap(), a.export().unwrap());
        assert_eq!(b.entities().get(&e("old")).unwrap(), None);
    }
}
