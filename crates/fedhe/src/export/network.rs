//! The model part of the graph: per layer `MatMul` with the weights
//! (inputs × outputs, as the flat parameter vector stores them) and `Add`
//! of the biases, `Relu` between layers — a linear model is one layer.

use super::ExportError;
use super::graph::Graph;

/// The raw outputs (logits or the standardized value), `[N, sizes.last]`,
/// of the layers `sizes` (inputs, hidden…, outputs) with parameters
/// `params`, applied to `input`.
pub(super) fn layers(
    g: &mut Graph,
    input: &str,
    sizes: &[usize],
    params: &[f64],
) -> Result<String, ExportError> {
    let expected: usize = sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
    if params.len() != expected {
        return Err(ExportError::Shape(format!(
            "{} parameters for layers {sizes:?}, which have {expected}",
            params.len()
        )));
    }
    let layers = sizes.len() - 1;
    let mut at = input.to_string();
    let mut off = 0;
    for (l, w) in sizes.windows(2).enumerate() {
        let (i, o) = (w[0], w[1]);
        let weights = g.doubles(
            &format!("layer{l}/weights"),
            &[i as i64, o as i64],
            &params[off..off + i * o],
        );
        off += i * o;
        let bias = g.doubles(
            &format!("layer{l}/bias"),
            &[o as i64],
            &params[off..off + o],
        );
        off += o;
        let product = g.op(
            "MatMul",
            &[&at, &weights],
            &format!("layer{l}/matmul"),
            vec![],
        );
        at = g.op(
            "Add",
            &[&product, &bias],
            &format!("layer{l}/output"),
            vec![],
        );
        if l + 1 < layers {
            at = g.op("Relu", &[&at], &format!("layer{l}/relu"), vec![]);
        }
    }
    Ok(at)
}
