//! `split`, `train`, `predict`.
#[derive(Debug, clap::Args)]
pub struct SplitArgs {}
#[derive(Debug, clap::Args)]
pub struct TrainArgs {}
#[derive(Debug, clap::Args)]
pub struct PredictArgs {}
pub fn split(_a: SplitArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
pub fn train(_a: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
pub fn predict(_a: PredictArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
