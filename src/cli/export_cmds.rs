//! `fedhe export`: a model file to ONNX.

use std::path::{Path, PathBuf};

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

/// The same file, whatever the path spelling; a path that does not exist
/// yet is compared through its folder.
fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| {
        std::fs::canonicalize(p).ok().or_else(|| {
            let parent = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            Some(std::fs::canonicalize(parent).ok()?.join(p.file_name()?))
        })
    };
    matches!((canonical(a), canonical(b)), (Some(x), Some(y)) if x == y)
}

pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    if same_file(&a.onnx, &a.model) {
        anyhow::bail!(
            "{} is the model file: writing the ONNX model there would overwrite it; choose another --onnx",
            a.onnx.display()
        );
    }
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
