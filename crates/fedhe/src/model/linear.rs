//! The linear model of every task: logistic regression (binary), softmax
//! regression (multi-class) or linear regression — a network without a
//! hidden layer, starting from zero.

use super::head::Head;
use super::network::Network;
use super::{Architecture, ModelError};

/// A linear model over `features` inputs with the task's head.
pub fn build(features: usize, head: Head) -> Result<Network, ModelError> {
    if features == 0 {
        return Err(ModelError::Setting(
            "a model needs at least one feature".into(),
        ));
    }
    Ok(Network::zeros(
        Architecture::Linear,
        vec![features, head.outputs()],
        head,
    ))
}
