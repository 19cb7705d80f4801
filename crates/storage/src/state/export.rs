//! The whole tree as pairs, for snapshots: exported to build one, replaced to install one. The
//! pairs are the raw keys and values of every table (the layout in `keys.rs`).

use super::{PartitionState, TreeSnapshot};
use crate::Result;

impl PartitionState {
    /// A consistent, pinned snapshot of the whole tree, taken at once (no copy): the pairs are
    /// read from it later, off the state machine, while applies go on.
    pub fn export_snapshot(&self) -> Result<TreeSnapshot> {
        self.tree.snapshot()
    }

    /// Every key and value, owned (tests compare trees with it).
    #[cfg(test)]
    pub fn export(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree.snapshot()?.pairs()
    }

    /// Replaces the whole tree with `pairs` in one atomic write. Blocking.
    pub fn replace(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.tree.write(|table| {
            table.clear()?;
            for (k, v) in pairs {
                table.insert(k, v)?;
            }
            Ok(())
        })
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
