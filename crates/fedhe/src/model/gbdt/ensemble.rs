//! The trained trees: splits, default directions and leaf values only. No
//! per-node hessian sums or row counts are kept (they enable model
//! inversion, the TimberStrike attack; docs/privacy.md).

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Which rows of a split go left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// Numeric: values below `threshold`.
    Below { threshold: f64 },
    /// Categorical: these category codes (the column's category count
    /// stands for "(other)"), sorted.
    In { categories: Vec<u32> },
}

/// One node of a tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Node {
    Leaf {
        value: f64,
    },
    Split {
        feature: u32,
        rule: Rule,
        /// Where a missing cell goes.
        default_left: bool,
        left: u32,
        right: u32,
    },
}

/// One tree; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The leaf value for raw row `row`.
    pub fn value(&self, row: &[f64], categories: &[Option<u32>]) -> f64 {
        let mut at = 0usize;
        // A tree has fewer nodes than this; a malformed file cannot loop.
        for _ in 0..=self.nodes.len() {
            match self.nodes.get(at) {
                Some(Node::Leaf { value }) => return *value,
                Some(Node::Split {
                    feature,
                    rule,
                    default_left,
                    left,
                    right,
                }) => {
                    let f = *feature as usize;
                    let v = row.get(f).copied().unwrap_or(f64::NAN);
                    let go_left = if v.is_nan() {
                        *default_left
                    } else {
                        match rule {
                            Rule::Below { threshold } => v < *threshold,
                            Rule::In { categories: set } => {
                                let k = categories.get(f).copied().flatten().unwrap_or(0);
                                let code = if v < 0.0 { k } else { (v as u32).min(k) };
                                set.binary_search(&code).is_ok()
                            }
                        }
                    };
                    at = if go_left { *left } else { *right } as usize;
                }
                None => return 0.0,
            }
        }
        0.0
    }

    /// Node indices in range, children after their parent, leaf values finite.
    fn check(&self, features: usize) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("a tree without nodes".into());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            match n {
                Node::Leaf { value } if !value.is_finite() => {
                    return Err(format!("leaf {i} is not finite"));
                }
                Node::Split {
                    feature,
                    rule,
                    left,
                    right,
                    ..
                } => {
                    let len = self.nodes.len() as u32;
                    if *feature as usize >= features
                        || *left as usize <= i
                        || *right as usize <= i
                        || *left >= len
                        || *right >= len
                    {
                        return Err(format!("split {i} names a node or feature out of range"));
                    }
                    if let Rule::Below { threshold } = rule
                        && !threshold.is_finite()
                    {
                        return Err(format!("split {i}'s threshold is not finite"));
                    }
                }
                Node::Leaf { .. } => {}
            }
        }
        Ok(())
    }
}

/// A boosted ensemble: margins are `base + Σ trees`; with K outputs, tree
/// `t·K + k` belongs to output `k`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    /// Outputs (classes of a multi-class task, else 1).
    pub outputs: usize,
    /// The margin before any tree, per output.
    pub base: Vec<f64>,
    /// Per raw feature: its category count (categorical), or none (numeric).
    pub categories: Vec<Option<u32>>,
    pub trees: Vec<Tree>,
    /// Per raw feature: the total gain of its splits (gain importance).
    pub gain: Vec<f64>,
}

impl Ensemble {
    /// Raw features the trees read.
    pub fn features(&self) -> usize {
        self.categories.len()
    }

    /// Boosting iterations.
    pub fn iterations(&self) -> usize {
        self.trees.len() / self.outputs.max(1)
    }

    /// The margins (logits, or the standardized value) of raw row `row`.
    pub fn margins_into(&self, row: &[f64], out: &mut [f64]) {
        out.copy_from_slice(&self.base[..out.len()]);
        let k = self.outputs.max(1);
        for (t, tree) in self.trees.iter().enumerate() {
            if let Some(o) = out.get_mut(t % k) {
                *o += tree.value(row, &self.categories);
            }
        }
    }

    /// The margins of raw rows `x` (rows × outputs).
    pub fn margins(&self, x: ArrayView2<f64>) -> Array2<f64> {
        let mut out = Array2::zeros((x.nrows(), self.outputs));
        let mut row = vec![0.0; x.ncols()];
        for (i, r) in x.rows().into_iter().enumerate() {
            for (d, v) in row.iter_mut().zip(r.iter()) {
                *d = *v;
            }
            if let Some(o) = out.row_mut(i).as_slice_mut() {
                self.margins_into(&row, o);
            }
        }
        out
    }

    /// Predictions for raw rows `x` under `head`: the probability of class
    /// 1, the class probabilities, or the value (in the target's unit with
    /// `target_scaling`). What `fedhe predict` and the federated test read.
    pub fn predictions(
        &self,
        head: crate::model::Head,
        target_scaling: Option<&crate::model::TargetScaling>,
        x: ArrayView2<f64>,
    ) -> Array2<f64> {
        let mut z = self.margins(x);
        let mut out = vec![0.0; head.outputs()];
        for mut row in z.rows_mut() {
            if let Some(r) = row.as_slice_mut() {
                head.predict_into(r, &mut out);
                r.copy_from_slice(&out);
            }
        }
        if let Some(t) = target_scaling {
            z.mapv_inplace(|v| t.unscale(v));
        }
        z
    }

    /// Gain importance per raw feature: each feature's share of the total
    /// gain of all splits (sums to 1; all zero without any split).
    pub fn importance(&self) -> Vec<f64> {
        let total: f64 = self.gain.iter().sum();
        self.gain
            .iter()
            .map(|g| if total > 0.0 { g / total } else { 0.0 })
            .collect()
    }

    /// Shapes agree, indices are in range, numbers finite.
    pub fn check(&self, features: usize, outputs: usize) -> Result<(), String> {
        if self.features() != features || self.gain.len() != features {
            return Err(format!(
                "the trees read {} features, the file names {features}",
                self.features()
            ));
        }
        if self.outputs != outputs || self.base.len() != outputs {
            return Err(format!(
                "the trees have {} outputs, the task {outputs}",
                self.outputs
            ));
        }
        if self.trees.is_empty() || !self.trees.len().is_multiple_of(outputs) {
            return Err(format!(
                "{} trees for {outputs} outputs per iteration",
                self.trees.len()
            ));
        }
        if !self.base.iter().chain(&self.gain).all(|v| v.is_finite()) {
            return Err("base margins or gains are not finite".into());
        }
        for (i, t) in self.trees.iter().enumerate() {
            t.check(features).map_err(|e| format!("tree {i}: {e}"))?;
        }
        Ok(())
    }
}
