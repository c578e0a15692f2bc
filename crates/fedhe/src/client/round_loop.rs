//! The client loop: a sequence of rounds, each of some [`RoundKind`] that
//! says what this site contributes and what it makes of the round's sum.
//!
//! [`run_client_loop`] runs the plan's kinds one after another: the
//! vocabulary rounds when categories are discovered, the statistics round
//! (federated standardization), then the training rounds. [`Rounds`] numbers
//! the server rounds on from kind to kind, takes a round that closed while
//! this site was away as published (without building its vector), and
//! otherwise builds, contributes through the [`Exchange`] and hands the sum
//! back. A new kind of round (evaluation sums, a tree's histograms) is one
//! more [`RoundKind`], not another copy of the loop.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::data::{Dataset, MissingPolicy};
use crate::model::{Architecture, TrainConfig};
use crate::plan::RoundLayout;

use super::error::{LoopError, SiteError};
use super::exchange::{Exchange, RoundSum};
use super::final_round::FinalRound;
use super::report::{ClientEvent, ClientOutcome};
use super::statistics::StatisticsRound;
use super::training::TrainingRounds;
use super::vocabulary::VocabularyRounds;

/// Settings of the client loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Who this site is, for messages (its client id).
    pub site: String,
    /// Training rounds (after standardization).
    pub rounds: u64,
    /// Local training per round; `seed` is mixed with the round number.
    pub train: TrainConfig,
    /// The model every site trains.
    pub architecture: Architecture,
    /// Seed of the initial global model (the same at every site).
    pub init_seed: u64,
    /// How missing cells are filled (the plan's preprocessing).
    pub missing: MissingPolicy,
    /// Cell texts read as missing (recorded in the model file).
    pub missing_tokens: Vec<String>,
    /// The rounds before training.
    pub layout: RoundLayout,
    /// Categorical columns whose categories the vocabulary rounds discover,
    /// and the rounds' settings.
    pub discovered: Vec<String>,
    pub vocabulary: Option<crate::plan::Vocabulary>,
    /// DP-SGD for this site's rows.
    pub dp: Option<crate::privacy::DpSettings>,
    /// The site's DP secret and the plan's fingerprint (hex): each training
    /// round's secret DP seed derives from them. `None`: fresh seeds from
    /// the operating system.
    pub dp_secret: Option<(crate::privacy::SiteSecret, String)>,
    /// The plan's `[evaluation]`: validation sums in every training round
    /// and the evaluation round after the last.
    pub evaluation: Option<crate::plan::FedEvaluation>,
    /// The site's test rows for the federated test (`evaluation.test`).
    pub test: Option<Dataset>,
    /// The server optimizer's state from an earlier run, and where to save
    /// it after each training round.
    pub checkpoint: super::ServerCheckpoint,
    /// Gradient-boosted trees (the plan's `kind = "gbdt"`): the bins and
    /// tree rounds of [`run_gbdt_loop`] instead of training rounds.
    pub gbdt: Option<super::gbdt::GbdtLoop>,
}

/// One kind of round: what this site contributes to each of its rounds and
/// what it makes of each round's sum. A kind runs as many rounds as it
/// wants (one, two, hundreds), each of any length, and leaves an
/// [`Output`](Self::Output) for the kinds after it.
pub(crate) trait RoundKind: Sized {
    /// What the kind leaves once its rounds are done.
    type Output;

    /// Another round of this kind, or its output. Asked before every round.
    fn next(self, ctx: &RoundCtx<'_>) -> Next<Self>;

    /// The length of the next round's vector (to read a sum published while
    /// this site was away).
    fn len(&self) -> usize;

    /// This site's vector for the next round (the expensive part: local
    /// training), only when the round is still open.
    fn build(&mut self, ctx: &mut RoundCtx<'_>) -> Result<Vec<f64>, LoopError>;

    /// The next round's sum, after this site built and contributed.
    fn take(&mut self, sum: RoundSum, ctx: &mut RoundCtx<'_>) -> Result<(), LoopError>;

    /// The next round's sum when the round had closed before this site
    /// built anything (it resumed, or joined late); by default as
    /// [`take`](Self::take).
    fn take_published(&mut self, sum: RoundSum, ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
        self.take(sum, ctx)
    }
}

/// What a [`RoundKind`] does next.
pub(crate) enum Next<K: RoundKind> {
    /// One more round.
    Round(K),
    /// No more rounds: the kind's result.
    Done(K::Output),
}

/// What a round kind may use while it works: the progress events and the
/// cancel flag.
pub(crate) struct RoundCtx<'a> {
    on_event: &'a mut dyn FnMut(&ClientEvent),
    pub cancel: &'a AtomicBool,
}

impl RoundCtx<'_> {
    pub(crate) fn emit(&mut self, event: &ClientEvent) {
        (self.on_event)(event);
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Drives round kinds over an exchange, numbering the server rounds on
/// from 1.
pub(crate) struct Rounds<'a> {
    exchange: &'a mut dyn Exchange,
    ctx: RoundCtx<'a>,
    next: u64,
    /// The round this site builds or takes, while it does.
    working: Option<u64>,
}

impl<'a> Rounds<'a> {
    pub(crate) fn new(
        exchange: &'a mut dyn Exchange,
        on_event: &'a mut dyn FnMut(&ClientEvent),
        cancel: &'a AtomicBool,
    ) -> Self {
        Rounds {
            exchange,
            ctx: RoundCtx { on_event, cancel },
            next: 1,
            working: None,
        }
    }

    /// The server round the next kind starts at.
    pub(crate) fn next_round(&self) -> u64 {
        self.next
    }

    /// The largest magnitude a contributed value may have (see
    /// [`Exchange::value_bound`]).
    pub(crate) fn value_bound(&self) -> Option<f64> {
        self.exchange.value_bound()
    }

    /// Limb size for limb-encoded vectors over this exchange.
    pub(crate) fn limb_bits(&self) -> i32 {
        self.exchange.limb_bits()
    }

    /// Runs `kind`'s rounds and returns its output.
    pub(crate) fn run<K: RoundKind>(&mut self, mut kind: K) -> Result<K::Output, LoopError> {
        loop {
            kind = match kind.next(&self.ctx) {
                Next::Round(k) => k,
                Next::Done(output) => return Ok(output),
            };
            let round = self.next;
            self.next += 1;
            if let Some(sum) = self.exchange.published(round, kind.len())? {
                kind.take_published(sum, &mut self.ctx)?;
                continue;
            }
            self.working = Some(round);
            let values = kind.build(&mut self.ctx)?;
            let sum = self.exchange.contribute(round, &values, self.ctx.cancel)?;
            kind.take(sum, &mut self.ctx)?;
            self.working = None;
        }
    }

    /// Tells the exchange this site leaves the round it is at (the one it
    /// was building, or the next), because of `why`.
    pub(crate) fn leave(&mut self, why: &LoopError) {
        let round = self.working.unwrap_or(self.next);
        self.exchange.leave(round, &why.to_string());
    }
}

/// Runs the plan's rounds: the vocabulary rounds (with discovered columns),
/// the statistics round and `cfg.rounds` training rounds.
pub fn run_client_loop(
    exchange: &mut dyn Exchange,
    train: &Dataset,
    validation: Option<&Dataset>,
    cfg: &LoopConfig,
    on_event: &mut dyn FnMut(&ClientEvent),
    cancel: &AtomicBool,
) -> Result<ClientOutcome, LoopError> {
    if train.rows() == 0 {
        return Err(SiteError::EmptyTrainingSet.into());
    }
    let mut rounds = Rounds::new(exchange, on_event, cancel);
    let out = run_kinds(&mut rounds, train, validation, cfg);
    // A site that fails mid-federation says so: the others go on without
    // it, as with a dropout, instead of waiting for it until a deadline.
    if let Err(e) = &out
        && e.leaves_federation()
    {
        rounds.leave(e);
    }
    out
}

/// The site's rows after the rounds before training: the vocabulary
/// rounds (with discovered columns) and the statistics round.
struct Before {
    site: Dataset,
    held: Option<Dataset>,
    test: Option<Dataset>,
    prepared: super::statistics::Prepared,
}

/// The rounds every kind of model starts with, over `rounds`.
fn run_before(
    rounds: &mut Rounds<'_>,
    train: &Dataset,
    validation: Option<&Dataset>,
    cfg: &LoopConfig,
) -> Result<Before, LoopError> {
    // Discovered categories first: every site maps its values to them.
    let mut site = train.clone();
    let mut held = validation.cloned();
    let mut test = cfg.test.clone();
    if let Some(v) = cfg.vocabulary
        && !cfg.discovered.is_empty()
    {
        let agreed = rounds.run(VocabularyRounds::new(&site, &cfg.discovered, v)?)?;
        super::vocabulary::apply(&mut site, &agreed);
        for d in held.iter_mut().chain(test.iter_mut()) {
            super::vocabulary::apply(d, &agreed);
        }
    }
    check_layout(
        "statistics",
        rounds.next_round(),
        cfg.layout.statistics_round(),
    )?;
    let statistics = StatisticsRound::new(&site, cfg, rounds.limb_bits())?;
    let prepared = rounds.run(statistics)?;
    Ok(Before {
        site,
        held,
        test,
        prepared,
    })
}

/// The plan's kinds, one after another, over `rounds`.
fn run_kinds(
    rounds: &mut Rounds<'_>,
    train: &Dataset,
    validation: Option<&Dataset>,
    cfg: &LoopConfig,
) -> Result<ClientOutcome, LoopError> {
    let Before {
        site,
        held,
        test,
        prepared,
    } = run_before(rounds, train, validation, cfg)?;
    check_layout(
        "first training",
        rounds.next_round(),
        cfg.layout.training_round(1),
    )?;
    let bound = rounds.value_bound();
    let limb_bits = rounds.limb_bits();
    let outcome = rounds.run(TrainingRounds::new(
        &site,
        held.as_ref(),
        prepared,
        cfg,
        bound,
        limb_bits,
    )?)?;
    let Some(plan) = cfg.evaluation else {
        if test.is_some() {
            return Err(SiteError::NoTestRound.into());
        }
        return Ok(outcome);
    };
    if outcome.cancelled {
        return Ok(outcome);
    }
    check_layout(
        "evaluation",
        rounds.next_round(),
        cfg.layout.training_round(cfg.rounds + 1),
    )?;
    let eval = super::fedeval::EvalSums {
        head: outcome.model.head(),
        plan,
        limb_bits,
        bound,
    };
    let rows = |d: &Dataset| (d.x.clone(), d.y.to_vec());
    rounds.run(FinalRound::new(
        outcome,
        eval,
        held.as_ref().map(rows),
        test.as_ref().map(rows),
    )?)
}

/// Runs a gradient-boosted trees plan's rounds (`cfg.gbdt`): the
/// vocabulary rounds (with discovered columns), the statistics round, the
/// bins round, the trees' level rounds and, with `[evaluation]`, the
/// evaluation round of the finished trees on the site's held-out rows
/// `validation` and test rows (`cfg.test`). Every site ends with the same
/// trees and the same pooled figures.
pub fn run_gbdt_loop(
    exchange: &mut dyn Exchange,
    train: &Dataset,
    validation: Option<&Dataset>,
    cfg: &LoopConfig,
    on_event: &mut dyn FnMut(&ClientEvent),
    cancel: &AtomicBool,
) -> Result<super::gbdt::GbdtOutcome, LoopError> {
    if train.rows() == 0 {
        return Err(SiteError::EmptyTrainingSet.into());
    }
    let mut records = Vec::new();
    let mut keep = |e: &ClientEvent| {
        if let ClientEvent::Tree(r) = e {
            records.push(r.clone());
        }
        on_event(e);
    };
    let mut rounds = Rounds::new(exchange, &mut keep, cancel);
    let out = run_gbdt_kinds(&mut rounds, train, validation, cfg);
    if let Err(e) = &out
        && e.leaves_federation()
    {
        rounds.leave(e);
    }
    let (ensemble, prepared, federated) = out?;
    Ok(super::gbdt::GbdtOutcome {
        ensemble,
        encoder: prepared.encoder,
        scaler: prepared.scaler,
        target_scaling: prepared.target_scaling,
        global_rows: prepared.global_rows,
        trees: records,
        federated,
    })
}

/// The trees, the preprocessing, and with `[evaluation]` the pooled
/// figures of the trees.
type GbdtKinds = (
    crate::model::gbdt::Ensemble,
    super::statistics::Prepared,
    Option<crate::model::FederatedFigures>,
);

fn run_gbdt_kinds(
    rounds: &mut Rounds<'_>,
    train: &Dataset,
    validation: Option<&Dataset>,
    cfg: &LoopConfig,
) -> Result<GbdtKinds, LoopError> {
    let Some(g) = &cfg.gbdt else {
        return Err(SiteError::LayoutMismatch {
            what: "bins",
            ran: rounds.next_round(),
            layout: 0,
        }
        .into());
    };
    // Test rows without a test round: refused before any round, not after
    // the trees.
    if cfg.test.is_some() && !cfg.evaluation.is_some_and(|e| e.test) {
        return Err(SiteError::NoTestRound.into());
    }
    let before = run_before(rounds, train, validation, cfg)?;
    check_layout("bins", rounds.next_round(), cfg.layout.bins_round())?;
    let limb_bits = rounds.limb_bits();
    let bins = super::gbdt::BinsRound::new(&before.site, &before.prepared.stats, g, limb_bits)?;
    let cuts = rounds.run(bins)?;
    let first = cfg.layout.tree_round(g.settings.depth as u32, 1, 0);
    check_layout("first tree", rounds.next_round(), first)?;
    let p = &before.prepared;
    let trees =
        super::gbdt::TreeRounds::new(&before.site, cuts, g, p.target_scaling.as_ref(), limb_bits)?;
    let ensemble = rounds.run(trees)?;
    let Some(plan) = cfg.evaluation else {
        return Ok((ensemble, before.prepared, None));
    };
    // The last of the trees' rounds (empty ones included, when a tree
    // closed early); the evaluation round is the layout's.
    let last_tree = rounds.next_round().saturating_sub(1);
    let evaluation = cfg.layout.evaluation_round().unwrap_or(0);
    check_layout("evaluation", rounds.next_round(), evaluation)?;
    let eval = super::fedeval::EvalSums {
        head: g.head,
        plan,
        limb_bits,
        bound: rounds.value_bound(),
    };
    let rows = |d: &Dataset| (d.x.clone(), d.y.to_vec());
    let kind = super::gbdt_eval::TreeEvaluation::new(
        (&ensemble, p.target_scaling.as_ref()),
        eval,
        (
            before.held.as_ref().map(rows),
            before.test.as_ref().map(rows),
        ),
        last_tree,
    )?;
    let figures = rounds.run(kind)?;
    Ok((ensemble, before.prepared, Some(figures)))
}

/// The kinds number rounds on from 1; the layout the aggregator and the
/// plan use must agree.
fn check_layout(what: &'static str, ran: u64, layout: u64) -> Result<(), LoopError> {
    if ran == layout {
        Ok(())
    } else {
        Err(SiteError::LayoutMismatch { what, ran, layout }.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ExchangeCost;

    /// Three identical sites in memory; rounds up to `closed` were published
    /// before this site came.
    struct Triple {
        closed: u64,
        seen: Vec<(u64, usize, bool)>,
    }

    impl Exchange for Triple {
        fn contribute(
            &mut self,
            round: u64,
            values: &[f64],
            _cancel: &AtomicBool,
        ) -> Result<RoundSum, LoopError> {
            self.seen.push((round, values.len(), true));
            Ok(sum(values.iter().map(|v| 3.0 * v).collect()))
        }

        fn published(&mut self, round: u64, len: usize) -> Result<Option<RoundSum>, LoopError> {
            if round > self.closed {
                return Ok(None);
            }
            self.seen.push((round, len, false));
            Ok(Some(sum(vec![1.0; len])))
        }
    }

    fn sum(values: Vec<f64>) -> RoundSum {
        RoundSum {
            values,
            contributors: 3,
            contributed: true,
            counted: Vec::new(),
            cost: ExchangeCost::default(),
            masked: false,
        }
    }

    /// A kind of `n` rounds whose round `i` carries `i` values (as a
    /// tree's histogram rounds would), leaving the first value of each sum.
    struct Growing {
        n: usize,
        got: Vec<f64>,
    }

    impl RoundKind for Growing {
        type Output = Vec<f64>;

        fn next(self, _ctx: &RoundCtx<'_>) -> Next<Self> {
            if self.got.len() == self.n {
                Next::Done(self.got)
            } else {
                Next::Round(self)
            }
        }

        fn len(&self) -> usize {
            self.got.len() + 1
        }

        fn build(&mut self, _ctx: &mut RoundCtx<'_>) -> Result<Vec<f64>, LoopError> {
            Ok(vec![2.0; self.len()])
        }

        fn take(&mut self, sum: RoundSum, _ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
            self.got.push(sum.values[0]);
            Ok(())
        }
    }

    #[test]
    fn kinds_run_on_from_each_other_and_take_published_rounds() {
        let mut ex = Triple {
            closed: 2,
            seen: Vec::new(),
        };
        let cancel = AtomicBool::new(false);
        let mut events = |_: &ClientEvent| {};
        let mut rounds = Rounds::new(&mut ex, &mut events, &cancel);
        let first = rounds
            .run(Growing {
                n: 3,
                got: Vec::new(),
            })
            .unwrap();
        assert_eq!(first, vec![1.0, 1.0, 6.0]);
        assert_eq!(rounds.next_round(), 4);
        let second = rounds
            .run(Growing {
                n: 1,
                got: Vec::new(),
            })
            .unwrap();
        assert_eq!(second, vec![6.0]);
        assert_eq!(
            ex.seen,
            vec![(1, 1, false), (2, 2, false), (3, 3, true), (4, 1, true)]
        );
    }
}
