//! The multilayer perceptron: 1–3 ReLU hidden layers and the task's output
//! layer, initialized from a seed so that every site of a federation starts
//! from the same model.

use super::head::Head;
use super::network::Network;
use super::{Architecture, ModelError};

/// Most hidden layers.
pub const MAX_HIDDEN_LAYERS: usize = 3;
/// Most units in one hidden layer.
pub const MAX_HIDDEN_UNITS: usize = 4096;

/// Checks a hidden-layer list: 1–3 layers of 1–4096 units.
pub fn check_hidden(hidden: &[usize]) -> Result<(), String> {
    if hidden.is_empty() || hidden.len() > MAX_HIDDEN_LAYERS {
        return Err(format!(
            "an MLP has 1 to {MAX_HIDDEN_LAYERS} hidden layers, got {}",
            hidden.len()
        ));
    }
    if let Some(h) = hidden.iter().find(|&&h| h == 0 || h > MAX_HIDDEN_UNITS) {
        return Err(format!(
            "a hidden layer has 1 to {MAX_HIDDEN_UNITS} units, got {h}"
        ));
    }
    Ok(())
}

/// An MLP over `features` inputs with these hidden sizes and the task's head.
pub fn build(
    features: usize,
    hidden: &[usize],
    head: Head,
    seed: u64,
) -> Result<Network, ModelError> {
    check_hidden(hidden).map_err(ModelError::Setting)?;
    if features == 0 {
        return Err(ModelError::Setting(
            "a model needs at least one feature".into(),
        ));
    }
    let mut sizes = vec![features];
    sizes.extend_from_slice(hidden);
    sizes.push(head.outputs());
    Ok(Network::seeded(
        Architecture::Mlp {
            hidden: hidden.to_vec(),
        },
        sizes,
        head,
        seed,
    ))
}
