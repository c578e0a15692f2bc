//! `fedhe export`: a model file to ONNX.

use std::path::PathBuf;

use fedhe::export::{InputKind, write_onnx};
use fedhe::model::ModelFile;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Model file written by `train`, `simulate`, a federation or the app.
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write the ONNX model (replaced if it exists; never the model file).
    #[arg(long)]
    pub onnx: PathBuf,
}

pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    fedhe::fsutil::check_outputs(&[("--onnx", &a.onnx)], &[("--model", &a.model)])?;
    fedhe::fsutil::check_output_folder("--onnx", &a.onnx)?;
    let model = ModelFile::load(&a.model)?;
    let export = write_onnx(&model, &a.onnx)?;
    let numbers = export
        .inputs
        .iter()
        .filter(|i| i.kind == InputKind::Number)
        .count();
    let categories = export.inputs.len() - numbers;
    println!(
        "exported {} ({}) to {}: {} bytes, {} nodes",
        a.model.display(),
        model.architecture.describe(model.head()),
        a.onnx.display(),
        export.bytes.len(),
        export.nodes
    );
    println!(
        "inputs: {} columns, [N, 1] each ({numbers} numbers as double, NaN when missing; {categories} categories as string)",
        export.inputs.len()
    );
    let names: Vec<String> = export.inputs.iter().map(|i| i.name.clone()).collect();
    println!("  {}", fedhe::data::shorten(&names.join(", "), 300));
    println!("outputs: {}", export.outputs.join(", "));
    Ok(())
}
