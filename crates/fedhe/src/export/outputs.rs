//! The task's outputs from the raw outputs:
//!
//! - binary: `probabilities` `[N, 2]` (negative, positive class) from
//!   `Sigmoid`, and `label` `[N]`, the positive class where its
//!   probability is at least 0.5 (as `fedhe predict` decides);
//! - multi-class: `probabilities` `[N, classes]` from `Softmax`, and
//!   `label` `[N]`, the most probable class (the first of ties);
//! - regression: `prediction` `[N, 1]`, in the target's unit (the
//!   standardized output times the target's deviation plus its mean).
//!
//! Labels are the class names of the model file, through
//! `ai.onnx.ml.LabelEncoder`.

use super::ExportError;
use super::graph::{Dim, Graph, int, ints, strings};
use super::proto::tensor_proto::DataType;
use crate::data::Target;
use crate::model::TargetScaling;

/// Output names.
pub const LABEL: &str = "label";
pub const PROBABILITIES: &str = "probabilities";
pub const PREDICTION: &str = "prediction";

/// The output names of a task.
pub(super) fn names(target: &Target) -> Vec<&'static str> {
    match target {
        Target::Binary(_) | Target::Multiclass { .. } => vec![LABEL, PROBABILITIES],
        Target::Regression { .. } => vec![PREDICTION],
    }
}

/// Writes the task's outputs from `raw`; their names are claimed already.
pub(super) fn outputs(
    g: &mut Graph,
    raw: &str,
    target: &Target,
    scaling: Option<&TargetScaling>,
) -> Result<(), ExportError> {
    match target {
        Target::Binary(_) => {
            let positive = g.op("Sigmoid", &[raw], "p_positive", vec![]);
            let one = g.doubles("one", &[], &[1.0]);
            let negative = g.op("Sub", &[&one, &positive], "p_negative", vec![]);
            g.node_into(
                "Concat",
                "",
                &[&negative, &positive],
                PROBABILITIES,
                vec![int("axis", 1)],
            );
            let half = g.doubles("half", &[], &[0.5]);
            let decided = g.op("GreaterOrEqual", &[&positive, &half], "is_positive", vec![]);
            let index = g.op(
                "Cast",
                &[&decided],
                "class_index",
                vec![super::graph::cast_to(DataType::Int64)],
            );
            let flat = flatten_1d(g, &index);
            class_names(g, &flat, &target.classes());
            g.output(PROBABILITIES, DataType::Double, &[Dim::Rows, Dim::Fixed(2)]);
        }
        Target::Multiclass { classes, .. } => {
            g.node_into("Softmax", "", &[raw], PROBABILITIES, vec![int("axis", 1)]);
            let index = g.op(
                "ArgMax",
                &[PROBABILITIES],
                "class_index",
                vec![int("axis", 1), int("keepdims", 0)],
            );
            class_names(g, &index, classes);
            let c = classes.len() as i64;
            g.output(PROBABILITIES, DataType::Double, &[Dim::Rows, Dim::Fixed(c)]);
        }
        Target::Regression { .. } => {
            let t = scaling.ok_or_else(|| {
                ExportError::Shape("a regression model without target_scaling".into())
            })?;
            let std = g.doubles("target_std", &[], &[t.std]);
            let mean = g.doubles("target_mean", &[], &[t.mean]);
            let scaled = g.op("Mul", &[raw, &std], "target_scaled", vec![]);
            g.node_into("Add", "", &[&scaled, &mean], PREDICTION, vec![]);
            g.output(PREDICTION, DataType::Double, &[Dim::Rows, Dim::Fixed(1)]);
        }
    }
    Ok(())
}

/// `[N, 1]` to `[N]`.
fn flatten_1d(g: &mut Graph, x: &str) -> String {
    let shape = g.int64s("shape_rows", &[1], &[-1]);
    g.op("Reshape", &[x, &shape], "class_index_1d", vec![])
}

/// The `label` output: class names of the indices in `index` (`[N]`).
fn class_names(g: &mut Graph, index: &str, classes: &[String]) {
    g.node_into(
        "LabelEncoder",
        super::graph::ML,
        &[index],
        LABEL,
        vec![
            ints("keys_int64s", (0..classes.len() as i64).collect()),
            strings("values_strings", classes),
        ],
    );
    g.output(LABEL, DataType::String, &[Dim::Rows]);
}
