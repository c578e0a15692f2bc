//! Gradient-boosted trees: the raw columns, not standardized, into one
//! `ai.onnx.ml.TreeEnsembleRegressor`, as FedHE routes a row
//! ([`Tree::value`](crate::model::gbdt::Tree::value)):
//!
//! - a number goes in as it is; a numeric split is `BRANCH_LT` on its
//!   threshold (in double, `nodes_values_as_tensor`), and a missing cell
//!   (NaN) takes the split's default direction
//!   (`nodes_missing_value_tracks_true`);
//! - a category column becomes one column per distinct set of categories
//!   its splits send left: `ai.onnx.ml.LabelEncoder` gives the cell's code
//!   (a category's index; a value outside the list "(other)"; the missing
//!   tokens and the empty string a missing slot), `Gather` from a table its
//!   0 (in the set) / 1 (not) / NaN (missing) per set, and the split is
//!   `BRANCH_LT` 0.5 on that column.
//!
//! The ensemble's outputs are 32-bit floats (the operator's schema), which
//! would round the margins, so each tree writes the index of the leaf a row
//! reaches (one target per tree; small integers, exact in a float) and the
//! leaf values come from a double table (`Gather`); `ReduceSum` over the
//! iterations and `Add` of the base margins give the margins in double, as
//! FedHE computes. The outputs are then the other kinds' ([`super::outputs`]).

use super::ExportError;
use super::graph::{Graph, cast_to, double_tensor, floats, int, ints, string, strings};
use super::preprocess::{self, InputKind, OnnxInput};
use super::proto::AttributeProto;
use super::proto::tensor_proto::DataType;
use crate::data::{EncodedColumn, Encoder};
use crate::model::gbdt::{Ensemble, Node, Rule};

/// The threshold of a categorical split: its column is 0 for a category
/// going left, 1 for one going right.
const IN_SET: f64 = 0.5;
/// Most leaves of one tree: their indices are exact in a 32-bit float.
const MAX_LEAVES: usize = 1 << 24;

/// Declares one input per raw column of `encoder` and returns them, with
/// the name of the margins `[N, outputs]` (logits, or the standardized
/// value) of `ensemble`.
pub(super) fn margins(
    g: &mut Graph,
    encoder: &Encoder,
    ensemble: &Ensemble,
) -> Result<(Vec<OnnxInput>, String), ExportError> {
    let columns = &encoder.columns;
    if columns.len() != ensemble.features() {
        return Err(ExportError::Shape(format!(
            "the trees read {} columns, the preprocessing has {}",
            ensemble.features(),
            columns.len()
        )));
    }
    let k = ensemble.outputs.max(1);
    if ensemble.trees.is_empty()
        || !ensemble.trees.len().is_multiple_of(k)
        || ensemble.base.len() != k
    {
        return Err(ExportError::Shape(format!(
            "{} trees and {} base margins for {k} outputs",
            ensemble.trees.len(),
            ensemble.base.len()
        )));
    }
    let sets = category_sets(ensemble, columns)?;
    let mut declared = Vec::with_capacity(columns.len());
    let mut parts = Vec::new();
    // Per raw column: its (first) column in the trees' input.
    let mut first = Vec::with_capacity(columns.len());
    let mut width = 0usize;
    for (f, c) in columns.iter().enumerate() {
        first.push(width);
        match c {
            EncodedColumn::Numeric { name, .. } => {
                declared.push(preprocess::declare(g, name, InputKind::Number)?);
                parts.push(name.clone());
                width += 1;
            }
            EncodedColumn::Categorical {
                name, categories, ..
            } => {
                declared.push(preprocess::declare(g, name, InputKind::Category)?);
                if !sets[f].is_empty() {
                    parts.push(membership(g, name, categories, &sets[f], encoder));
                    width += sets[f].len();
                }
            }
        }
    }
    if parts.is_empty() {
        return Err(ExportError::Shape(
            "no numeric column and no categorical split: nothing for the trees to read".into(),
        ));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let x = g.op("Concat", &refs, "tree_input", vec![int("axis", 1)]);
    let column = |f: usize, rule: &Rule| match rule {
        Rule::Below { .. } => first[f],
        // category_sets holds every set of the trees: never the fallback.
        Rule::In { categories } => {
            first[f] + sets[f].iter().position(|s| s == categories).unwrap_or(0)
        }
    };
    let (attributes, table) = ensemble_attributes(ensemble, &column)?;
    let leaves = g.ml_op("TreeEnsembleRegressor", &[&x], "tree_leaf", attributes);
    Ok((declared, sum_leaves(g, &leaves, ensemble, &table)))
}

/// Per raw column the distinct category sets its splits send left, in
/// order of appearance (none for a numeric column); a rule that does not
/// fit its column's kind is an error naming the tree and node.
fn category_sets(
    ensemble: &Ensemble,
    columns: &[EncodedColumn],
) -> Result<Vec<Vec<Vec<u32>>>, ExportError> {
    let mut sets: Vec<Vec<Vec<u32>>> = vec![Vec::new(); columns.len()];
    for (t, tree) in ensemble.trees.iter().enumerate() {
        for (i, node) in tree.nodes.iter().enumerate() {
            let Node::Split { feature, rule, .. } = node else {
                continue;
            };
            let f = *feature as usize;
            let bad = |what: &str| {
                let name = columns.get(f).map_or("?", |c| match c {
                    EncodedColumn::Numeric { name, .. }
                    | EncodedColumn::Categorical { name, .. } => name.as_str(),
                });
                ExportError::Shape(format!(
                    "tree {t}, node {i}: {what} on column {f} ({name:?})"
                ))
            };
            match (columns.get(f), rule) {
                (Some(EncodedColumn::Numeric { .. }), Rule::Below { .. }) => {}
                (
                    Some(EncodedColumn::Categorical { categories, .. }),
                    Rule::In { categories: set },
                ) => {
                    let k = categories.len();
                    if ensemble.categories.get(f).copied().flatten() != Some(k as u32) {
                        return Err(bad("a category count unlike the preprocessing's"));
                    }
                    if !sets[f].contains(set) {
                        sets[f].push(set.clone());
                    }
                }
                (Some(EncodedColumn::Numeric { .. }), Rule::In { .. }) => {
                    return Err(bad("a category set"));
                }
                (Some(EncodedColumn::Categorical { .. }), Rule::Below { .. }) => {
                    return Err(bad("a threshold"));
                }
                (None, _) => return Err(bad("a split")),
            }
        }
    }
    Ok(sets)
}

/// `[N, sets]` doubles of categorical column `name`: per set 0 when the
/// cell's category is in it, 1 when not, NaN when the cell is missing.
fn membership(
    g: &mut Graph,
    name: &str,
    categories: &[String],
    sets: &[Vec<u32>],
    encoder: &Encoder,
) -> String {
    let k = categories.len();
    // Codes: 0..k the categories, k "(other)", k + 1 missing.
    let (keys, values) = preprocess::slots(categories, &encoder.missing_tokens, k + 1);
    let code = g.ml_op(
        "LabelEncoder",
        &[name],
        &format!("{name}/code"),
        vec![
            strings("keys_strings", &keys),
            ints("values_int64s", values),
            int("default_int64", k as i64),
        ],
    );
    let m = sets.len();
    let mut table = Vec::with_capacity((k + 2) * m);
    for c in 0..=k as u32 {
        table.extend(sets.iter().map(|s| {
            if s.binary_search(&c).is_ok() {
                0.0
            } else {
                1.0
            }
        }));
    }
    table.extend(std::iter::repeat_n(f64::NAN, m));
    let table = g.doubles(&format!("{name}/sets"), &[(k + 2) as i64, m as i64], &table);
    let gathered = g.op(
        "Gather",
        &[&table, &code],
        &format!("{name}/in_sets_3d"),
        vec![int("axis", 0)],
    );
    let shape = g.int64s(&format!("{name}/sets_shape"), &[2], &[-1, m as i64]);
    g.op(
        "Reshape",
        &[&gathered, &shape],
        &format!("{name}/in_sets"),
        vec![],
    )
}

/// The leaf values of all trees in order, and each tree's first index
/// among them.
struct Leaves {
    values: Vec<f64>,
    offsets: Vec<i64>,
}

/// The attributes of the `TreeEnsembleRegressor` (tree `t` writes the
/// index of its leaf to target `t`), the leaf values of all trees in
/// order, and each tree's first index among them. `column` is the input
/// column a split reads.
fn ensemble_attributes(
    ensemble: &Ensemble,
    column: &dyn Fn(usize, &Rule) -> usize,
) -> Result<(Vec<AttributeProto>, Leaves), ExportError> {
    let (mut tree_ids, mut node_ids, mut features) = (Vec::new(), Vec::new(), Vec::new());
    let (mut modes, mut thresholds) = (Vec::new(), Vec::new());
    let (mut trues, mut falses, mut missing_true) = (Vec::new(), Vec::new(), Vec::new());
    let (mut target_trees, mut target_nodes, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    let (mut leaf_values, mut offsets) = (Vec::new(), Vec::new());
    for (t, tree) in ensemble.trees.iter().enumerate() {
        offsets.push(leaf_values.len() as i64);
        let mut leaves = 0usize;
        for (i, node) in tree.nodes.iter().enumerate() {
            tree_ids.push(t as i64);
            node_ids.push(i as i64);
            match node {
                Node::Leaf { value } => {
                    if leaves == MAX_LEAVES {
                        return Err(ExportError::Shape(format!(
                            "tree {t} has more than {MAX_LEAVES} leaves"
                        )));
                    }
                    features.push(0);
                    modes.push("LEAF".to_string());
                    thresholds.push(0.0);
                    trues.push(0);
                    falses.push(0);
                    missing_true.push(0);
                    target_trees.push(t as i64);
                    target_nodes.push(i as i64);
                    // Below 2^24: exact in a float.
                    weights.push(leaves as f32);
                    leaf_values.push(*value);
                    leaves += 1;
                }
                Node::Split {
                    feature,
                    rule,
                    default_left,
                    left,
                    right,
                } => {
                    features.push(column(*feature as usize, rule) as i64);
                    modes.push("BRANCH_LT".to_string());
                    thresholds.push(match rule {
                        Rule::Below { threshold } => *threshold,
                        Rule::In { .. } => IN_SET,
                    });
                    trues.push(i64::from(*left));
                    falses.push(i64::from(*right));
                    missing_true.push(i64::from(*default_left));
                }
            }
        }
    }
    let targets: Vec<i64> = target_trees.clone();
    let attributes = vec![
        ints("nodes_treeids", tree_ids),
        ints("nodes_nodeids", node_ids),
        ints("nodes_featureids", features),
        strings("nodes_modes", &modes),
        double_tensor("nodes_values_as_tensor", thresholds),
        ints("nodes_truenodeids", trues),
        ints("nodes_falsenodeids", falses),
        ints("nodes_missing_value_tracks_true", missing_true),
        ints("target_treeids", target_trees),
        ints("target_nodeids", target_nodes),
        ints("target_ids", targets),
        floats("target_weights", weights),
        int("n_targets", ensemble.trees.len() as i64),
        string("aggregate_function", "SUM"),
        string("post_transform", "NONE"),
    ];
    let leaves = Leaves {
        values: leaf_values,
        offsets,
    };
    Ok((attributes, leaves))
}

/// The margins `[N, outputs]` from the leaf indices `[N, trees]`: base
/// plus, per output, the values of its trees' leaves.
fn sum_leaves(g: &mut Graph, leaves: &str, ensemble: &Ensemble, table: &Leaves) -> String {
    let (leaf_values, offsets) = (&table.values, &table.offsets);
    let trees = ensemble.trees.len() as i64;
    let k = ensemble.outputs.max(1) as i64;
    let local = g.op(
        "Cast",
        &[leaves],
        "tree_leaf_local",
        vec![cast_to(DataType::Int64)],
    );
    let offsets = g.int64s("tree_leaf_offsets", &[trees], offsets);
    let index = g.op("Add", &[&local, &offsets], "tree_leaf_index", vec![]);
    let values = g.doubles("leaf_values", &[leaf_values.len() as i64], leaf_values);
    let value = g.op(
        "Gather",
        &[&values, &index],
        "tree_value",
        vec![int("axis", 0)],
    );
    // Tree t·K + o belongs to output o: [N, iterations, K].
    let shape = g.int64s("tree_value_shape", &[3], &[-1, trees / k, k]);
    let by_output = g.op("Reshape", &[&value, &shape], "tree_value_3d", vec![]);
    let axes = g.int64s("iterations_axis", &[1], &[1]);
    let sum = g.op(
        "ReduceSum",
        &[&by_output, &axes],
        "tree_sum",
        vec![int("keepdims", 0)],
    );
    let base = g.doubles("base_margin", &[k], &ensemble.base);
    g.op("Add", &[&sum, &base], "margin", vec![])
}
