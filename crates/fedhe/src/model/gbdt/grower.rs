//! One boosting run, level by level: a site's histogram of the open nodes
//! ([`Grower::local`]), and the splits from the global sum ([`Grower::take`]).

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::bins::{Cuts, MISSING};
use super::ensemble::{Ensemble, Node, Rule, Tree};
use super::sparse::SparseCells;
use super::split::{BinRule, NodeHist, Sums, best_split};
use super::{GbdtSettings, trees_per_iteration};
use crate::model::{Head, ModelError, sigmoid};

/// Gradients and hessians are integers in units of 2^-20.
pub const GRAD_SCALE: f64 = 1_048_576.0;
/// A regression gradient (on the standardized target) is clipped to ± this.
pub const GRAD_BOUND_REGRESSION: f64 = 64.0;

/// A node of a tree being grown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Building {
    /// Waiting for its histogram (sums known once it arrives for a root).
    Open(Option<Sums>),
    Leaf(f64),
    Split {
        feature: usize,
        rule: BinRule,
        default_left: bool,
        left: u32,
        right: u32,
    },
}

/// This level's histogram of one tree: `sent`'s own, and when it is the
/// smaller child of a split, its sibling's as `parent − sent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    sent: u32,
    sibling: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TreeState {
    nodes: Vec<Building>,
    columns: Vec<bool>,
    entries: Vec<Entry>,
    /// Histograms of the nodes split at the last level, for their children.
    kept: Vec<(u32, Vec<i64>)>,
}

/// One site's rows during a run: binned features, labels, margins, this
/// iteration's quantized gradients and every row's node.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteRows {
    rows: usize,
    features: usize,
    bins: Vec<u16>,
    y: Vec<f64>,
    margins: Vec<f64>,
    /// Per row and tree `(g, h)`; zero for rows outside this iteration's sample.
    grad: Vec<Sums>,
    /// Per row and tree: its node.
    pos: Vec<u32>,
    /// The cells the histogram build adds (`None`: every cell).
    cells: Option<SparseCells>,
}

impl SiteRows {
    /// The rows of raw matrix `x` (columns as the cuts') with labels `y`
    /// (0/1, class index, or the standardized value), at the grower's point.
    pub fn new(grower: &Grower, x: ArrayView2<f64>, y: &[f64]) -> Result<SiteRows, ModelError> {
        let features = grower.cuts.features.len();
        if x.ncols() != features || x.nrows() != y.len() {
            return Err(ModelError::Shape(format!(
                "{} rows × {} columns with {} labels; the bins have {features} columns",
                x.nrows(),
                x.ncols(),
                y.len()
            )));
        }
        let k = grower.k;
        let mut bins = Vec::with_capacity(x.nrows() * features);
        for r in x.rows() {
            bins.extend(r.iter().enumerate().map(|(f, &v)| grower.cuts.bin(f, v)));
        }
        let rows = x.nrows();
        let cells = SparseCells::new(rows, features, grower.node_len, |f, i| {
            2 * (grower.offsets[f] + grower.slot(f, bins[i * features + f]))
        });
        let mut site = SiteRows {
            rows,
            features,
            cells,
            bins,
            y: y.to_vec(),
            margins: vec![0.0; rows * k],
            grad: vec![Sums::default(); rows * k],
            pos: vec![0; rows * k],
        };
        for (j, nodes) in grower.built.iter().enumerate() {
            site.add_tree(nodes, j % k);
        }
        grower.begin_rows(&mut site);
        for i in 0..rows {
            for (t, tree) in grower.state.iter().enumerate() {
                site.pos[i * k + t] =
                    walk(&tree.nodes, &site.bins[i * features..(i + 1) * features]);
            }
        }
        Ok(site)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Current margins, rows × outputs (row-major).
    pub fn margins(&self) -> &[f64] {
        &self.margins
    }

    fn row_bins(&self, i: usize) -> &[u16] {
        &self.bins[i * self.features..(i + 1) * self.features]
    }

    /// Adds a finished tree's leaf values to output `out` of every row.
    fn add_tree(&mut self, nodes: &[Building], out: usize) {
        let k = self.margins.len() / self.rows.max(1);
        for i in 0..self.rows {
            let at = walk(nodes, self.row_bins(i)) as usize;
            if let Some(Building::Leaf(v)) = nodes.get(at) {
                self.margins[i * k + out] += v;
            }
        }
    }
}

/// The node a row's bins reach in a tree being grown.
fn walk(nodes: &[Building], bins: &[u16]) -> u32 {
    let mut at = 0u32;
    while let Some(Building::Split {
        feature,
        rule,
        default_left,
        left,
        right,
    }) = nodes.get(at as usize)
    {
        at = if goes_left(rule, *default_left, bins[*feature]) {
            *left
        } else {
            *right
        };
    }
    at
}

fn goes_left(rule: &BinRule, default_left: bool, bin: u16) -> bool {
    if bin == MISSING {
        default_left
    } else {
        rule.left(bin)
    }
}

/// splitmix64: the seeded sampling's hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash(seed: u64, a: u64, b: u64, c: u64) -> u64 {
    mix(mix(mix(mix(seed) ^ a) ^ b) ^ c)
}

/// One boosting run: every tree, level by level. Every site holds the same
/// grower (it changes only by [`take`](Self::take) on the global sums);
/// serde keeps it across a restart (a site's rows are rebuilt with
/// [`SiteRows::new`], which replays the finished trees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grower {
    settings: GbdtSettings,
    head: Head,
    cuts: Cuts,
    k: usize,
    /// Slot offset of each feature in a node's histogram.
    offsets: Vec<usize>,
    /// A node histogram's values: 2 per slot.
    node_len: usize,
    iteration: usize,
    level: usize,
    state: Vec<TreeState>,
    trees: Vec<Tree>,
    /// The finished trees as grown (to replay a site's margins).
    built: Vec<Vec<Building>>,
    /// Gain per feature of the finished iterations.
    gain: Vec<f64>,
    /// Gain per feature of the iteration under way (added to `gain` when
    /// it finishes, dropped when it restarts).
    pending_gain: Vec<f64>,
}

impl Grower {
    pub fn new(settings: GbdtSettings, head: Head, cuts: Cuts) -> Result<Grower, ModelError> {
        settings.validate()?;
        let features = cuts.features.len();
        if features == 0 {
            return Err(ModelError::Setting(
                "gradient-boosted trees need at least one feature".into(),
            ));
        }
        let mut offsets = Vec::with_capacity(features);
        let mut slots = 0;
        for f in 0..features {
            offsets.push(slots);
            slots += cuts.width(f) + 1;
        }
        let mut g = Grower {
            k: trees_per_iteration(head),
            settings,
            head,
            cuts,
            offsets,
            node_len: 2 * slots,
            iteration: 0,
            level: 0,
            state: Vec::new(),
            trees: Vec::new(),
            built: Vec::new(),
            gain: vec![0.0; features],
            pending_gain: vec![0.0; features],
        };
        g.state = (0..g.k).map(|t| g.fresh_tree(t)).collect();
        Ok(g)
    }

    /// A node histogram's length for these slot widths (bins + missing per feature).
    pub fn node_len(widths: &[usize]) -> usize {
        2 * widths.iter().sum::<usize>()
    }

    /// Histograms sent per tree at `level`: the root, then one per pair of children.
    fn capacity(level: usize) -> usize {
        if level == 0 { 1 } else { 1 << (level - 1) }
    }

    /// The vector length of a level's round (fixed by the settings, the
    /// task and the slot widths, as [`BinPlan::slot_widths`](super::BinPlan::slot_widths) gives them).
    pub fn level_len(head: Head, widths: &[usize], level: usize) -> usize {
        trees_per_iteration(head) * Self::capacity(level) * Self::node_len(widths)
    }

    /// The longest round of a run.
    pub fn max_round_len(settings: &GbdtSettings, head: Head, widths: &[usize]) -> usize {
        Self::level_len(head, widths, settings.depth.saturating_sub(1))
    }

    /// Histogram rounds of a run: `depth` per iteration.
    pub fn rounds(settings: &GbdtSettings) -> u64 {
        (settings.trees * settings.depth) as u64
    }

    /// The histogram rounds taken so far.
    pub fn round(&self) -> u64 {
        (self.iteration * self.settings.depth + self.level) as u64
    }

    /// Boosting iterations finished.
    pub fn iterations_done(&self) -> usize {
        self.iteration
    }

    pub fn cuts(&self) -> &Cuts {
        &self.cuts
    }

    pub fn settings(&self) -> &GbdtSettings {
        &self.settings
    }

    /// The next round's vector length (None: the run is done).
    pub fn round_len(&self) -> Option<usize> {
        (self.iteration < self.settings.trees)
            .then(|| self.k * Self::capacity(self.level) * self.node_len)
    }

    fn fresh_tree(&self, t: usize) -> TreeState {
        let f = self.cuts.features.len();
        let columns = if self.settings.colsample >= 1.0 {
            vec![true; f]
        } else {
            let n = ((self.settings.colsample * f as f64).round() as usize).clamp(1, f);
            let mut order: Vec<usize> = (0..f).collect();
            let (s, it) = (self.settings.seed, self.iteration as u64);
            order.sort_by_key(|&j| (hash(s ^ 0xC015, it, t as u64, j as u64), j));
            let mut cols = vec![false; f];
            for &j in &order[..n] {
                cols[j] = true;
            }
            cols
        };
        TreeState {
            nodes: vec![Building::Open(None)],
            columns,
            entries: vec![Entry {
                sent: 0,
                sibling: None,
            }],
            kept: Vec::new(),
        }
    }

    /// This iteration's sample and quantized gradients of a site's rows.
    fn begin_rows(&self, site: &mut SiteRows) {
        let k = self.k;
        let (s, it) = (&self.settings, self.iteration as u64);
        let threshold = (s.subsample * u64::MAX as f64) as u64;
        let mut g = vec![0.0; k];
        let mut h = vec![0.0; k];
        for i in 0..site.rows {
            let sampled = s.subsample >= 1.0 || hash(s.seed, it, i as u64, 0x5A3) < threshold;
            let m = &site.margins[i * k..(i + 1) * k];
            gradients(self.head, m, site.y[i], &mut g, &mut h);
            for t in 0..k {
                site.grad[i * k + t] = if sampled {
                    Sums {
                        g: (g[t] * GRAD_SCALE).round() as i64,
                        h: (h[t] * GRAD_SCALE).round() as i64,
                    }
                } else {
                    Sums::default()
                };
                site.pos[i * k + t] = 0;
            }
        }
    }

    /// The histogram slot of bin `b` of feature `f` (its missing slot last).
    fn slot(&self, f: usize, b: u16) -> usize {
        if b == MISSING {
            self.cuts.width(f)
        } else {
            b as usize
        }
    }

    /// This site's histogram for the next round: per tree and entry the
    /// sums of the rows at the node, per feature × bin (then missing), zero-padded.
    pub fn local(&self, site: &SiteRows) -> Vec<i64> {
        let Some(len) = self.round_len() else {
            return Vec::new();
        };
        let mut out = vec![0i64; len];
        let cap = Self::capacity(self.level);
        // Per tree: node → the offset of its histogram in `out`.
        let slot_of: Vec<Vec<usize>> = self
            .state
            .iter()
            .enumerate()
            .map(|(t, st)| {
                let mut m = vec![usize::MAX; st.nodes.len()];
                for (e, entry) in st.entries.iter().enumerate() {
                    m[entry.sent as usize] = (t * cap + e) * self.node_len;
                }
                m
            })
            .collect();
        // Per histogram of `out`: the sums of its rows.
        let mut totals = vec![Sums::default(); len / self.node_len.max(1)];
        let k = self.k;
        for i in 0..site.rows {
            for (t, slots) in slot_of.iter().enumerate() {
                let node = site.pos[i * k + t] as usize;
                let base = slots.get(node).copied().unwrap_or(usize::MAX);
                let gh = site.grad[i * k + t];
                if base == usize::MAX || gh == Sums::default() {
                    continue;
                }
                let hist = &mut out[base..base + self.node_len];
                match &site.cells {
                    Some(cells) => {
                        let n = &mut totals[base / self.node_len];
                        *n = n.add(gh);
                        cells.add_row(i, gh, hist);
                    }
                    None => self.add_every_cell(site.row_bins(i), gh, hist),
                }
            }
        }
        if let Some(cells) = &site.cells {
            for (hist, total) in out.chunks_mut(self.node_len.max(1)).zip(totals) {
                cells.fill_defaults(total, hist);
            }
        }
        out
    }

    /// Adds one row's every cell to a node's histogram.
    fn add_every_cell(&self, bins: &[u16], gh: Sums, hist: &mut [i64]) {
        for (f, &b) in bins.iter().enumerate() {
            let j = 2 * (self.offsets[f] + self.slot(f, b));
            hist[j] += gh.g;
            hist[j + 1] += gh.h;
        }
    }

    /// Takes the round's global sum: the best split of every open node of
    /// the level (leaves where none), the site's rows moved on; after the
    /// last level the trees are finished and the site's margins updated.
    pub fn take(&mut self, global: &[i64], site: &mut SiteRows) -> Result<(), ModelError> {
        let Some(len) = self.round_len() else {
            return Err(ModelError::Shape("the boosting run is already done".into()));
        };
        if global.len() != len {
            return Err(ModelError::Shape(format!(
                "a histogram round of {} values; this level has {len}",
                global.len()
            )));
        }
        let last = self.level + 1 == self.settings.depth;
        let cap = Self::capacity(self.level);
        let mut split_now: Vec<Vec<u32>> = Vec::with_capacity(self.k);
        for t in 0..self.k {
            let hists = self.level_hists(
                t,
                &global[t * cap * self.node_len..(t + 1) * cap * self.node_len],
            );
            split_now.push(self.split_level(t, hists, last));
        }
        self.move_rows(site, &split_now);
        self.level += 1;
        if last {
            self.finish_iteration(site);
        }
        Ok(())
    }

    /// Every histogram of tree `t`'s level: sent ones from the sum, siblings by subtraction.
    fn level_hists(&mut self, t: usize, global: &[i64]) -> Vec<(u32, Vec<i64>)> {
        let st = &mut self.state[t];
        let kept = std::mem::take(&mut st.kept);
        let mut out = Vec::new();
        for (e, entry) in st.entries.iter().enumerate() {
            let own = global[e * self.node_len..(e + 1) * self.node_len].to_vec();
            if let Some((sib, parent)) = entry.sibling
                && let Some((_, p)) = kept.iter().find(|(n, _)| *n == parent)
            {
                let other: Vec<i64> = p.iter().zip(&own).map(|(a, b)| a - b).collect();
                out.push((sib, other));
            }
            out.push((entry.sent, own));
        }
        out.sort_by_key(|(n, _)| *n);
        out
    }

    /// Splits (or closes) tree `t`'s open nodes of this level; returns the nodes split.
    fn split_level(&mut self, t: usize, hists: Vec<(u32, Vec<i64>)>, last: bool) -> Vec<u32> {
        let mut split = Vec::new();
        let mut entries = Vec::new();
        let mut kept = Vec::new();
        for (node, values) in hists {
            let hist = NodeHist {
                values: &values,
                offsets: &self.offsets,
            };
            let st = &self.state[t];
            let total = match st.nodes[node as usize] {
                Building::Open(Some(s)) => s,
                _ => hist.total(&self.cuts),
            };
            let found = best_split(&hist, total, &self.cuts, &st.columns, &self.settings);
            let st = &mut self.state[t];
            let Some(f) = found else {
                st.nodes[node as usize] = Building::Leaf(total.leaf(&self.settings));
                continue;
            };
            if let Some(g) = self.pending_gain.get_mut(f.feature) {
                *g += f.gain;
            }
            let (l, r) = (st.nodes.len() as u32, st.nodes.len() as u32 + 1);
            let child = |s: Sums| {
                if last {
                    Building::Leaf(s.leaf(&self.settings))
                } else {
                    Building::Open(Some(s))
                }
            };
            st.nodes.push(child(f.left));
            st.nodes.push(child(f.right));
            st.nodes[node as usize] = Building::Split {
                feature: f.feature,
                rule: f.rule,
                default_left: f.default_left,
                left: l,
                right: r,
            };
            if !last {
                // The smaller child by hessian (ties: the left) is sent.
                let (sent, sib) = if f.left.h <= f.right.h {
                    (l, r)
                } else {
                    (r, l)
                };
                entries.push(Entry {
                    sent,
                    sibling: Some((sib, node)),
                });
                kept.push((node, values));
            }
            split.push(node);
        }
        let st = &mut self.state[t];
        st.entries = entries;
        st.kept = kept;
        split
    }

    /// Moves every row at a node split this level to its child.
    fn move_rows(&self, site: &mut SiteRows, split_now: &[Vec<u32>]) {
        let k = self.k;
        for i in 0..site.rows {
            for (t, split) in split_now.iter().enumerate() {
                let node = site.pos[i * k + t];
                if split.binary_search(&node).is_err() {
                    continue;
                }
                if let Building::Split {
                    feature,
                    rule,
                    default_left,
                    left,
                    right,
                } = &self.state[t].nodes[node as usize]
                {
                    let b = site.bins[i * site.features + feature];
                    site.pos[i * k + t] = if goes_left(rule, *default_left, b) {
                        *left
                    } else {
                        *right
                    };
                }
            }
        }
    }

    /// The iteration's trees are done: margins updated, the next begun.
    fn finish_iteration(&mut self, site: &mut SiteRows) {
        let k = self.k;
        for t in 0..k {
            let tree = self.to_tree(&self.state[t].nodes);
            let values: Vec<f64> = self.state[t]
                .nodes
                .iter()
                .map(|n| if let Building::Leaf(v) = n { *v } else { 0.0 })
                .collect();
            for i in 0..site.rows {
                let node = site.pos[i * k + t] as usize;
                site.margins[i * k + t] += values.get(node).copied().unwrap_or(0.0);
            }
            self.trees.push(tree);
            self.built.push(self.state[t].nodes.clone());
        }
        for (g, p) in self.gain.iter_mut().zip(&mut self.pending_gain) {
            *g += std::mem::take(p);
        }
        self.iteration += 1;
        self.level = 0;
        self.state = (0..k).map(|t| self.fresh_tree(t)).collect();
        if self.iteration < self.settings.trees {
            self.begin_rows(site);
        }
    }

    /// Closes the iteration under way at the levels taken so far: every
    /// open node becomes a leaf from the sums the last split gave it (so
    /// its trees are those of depth `level`), and the next iteration
    /// begins. For a federation whose summed sites changed mid-tree: no
    /// tree mixes levels summed over different sites, and no histogram is
    /// asked again of other sites (growing the iteration again from its
    /// roots would send the same root histograms twice, and their
    /// difference would be the site that left). At the roots it does
    /// nothing (the level's sum is the iteration's first).
    pub fn close_iteration(&mut self, site: &mut SiteRows) {
        if self.level == 0 || self.round_len().is_none() {
            return;
        }
        let settings = self.settings;
        for st in &mut self.state {
            for node in &mut st.nodes {
                if let Building::Open(Some(s)) = node {
                    *node = Building::Leaf(s.leaf(&settings));
                }
            }
        }
        self.finish_iteration(site);
    }

    /// Levels taken in the iteration under way.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Whether the iteration under way is at its roots (no level taken).
    pub fn at_roots(&self) -> bool {
        self.level == 0
    }

    fn to_tree(&self, nodes: &[Building]) -> Tree {
        let nodes = nodes
            .iter()
            .map(|n| match n {
                Building::Split {
                    feature,
                    rule,
                    default_left,
                    left,
                    right,
                } => Node::Split {
                    feature: *feature as u32,
                    rule: self.rule(*feature, rule),
                    default_left: *default_left,
                    left: *left,
                    right: *right,
                },
                Building::Leaf(v) => Node::Leaf { value: *v },
                Building::Open(_) => Node::Leaf { value: 0.0 },
            })
            .collect();
        Tree { nodes }
    }

    fn rule(&self, feature: usize, rule: &BinRule) -> Rule {
        match (rule, &self.cuts.features[feature]) {
            (BinRule::Upto(t), super::FeatureCuts::Numeric { cuts }) => Rule::Below {
                threshold: cuts.get(*t as usize).copied().unwrap_or(f64::MAX),
            },
            (BinRule::Set(s), _) => Rule::In {
                categories: s.iter().map(|&b| u32::from(b)).collect(),
            },
            (BinRule::Upto(t), _) => Rule::In {
                categories: (0..=u32::from(*t)).collect(),
            },
        }
    }

    /// The ensemble: splits, default directions and leaf values.
    pub fn finish(self) -> Ensemble {
        let categories = self
            .cuts
            .features
            .iter()
            .map(|f| match f {
                super::FeatureCuts::Categorical { categories } => Some(*categories as u32),
                super::FeatureCuts::Numeric { .. } => None,
            })
            .collect();
        Ensemble {
            outputs: self.k,
            base: vec![0.0; self.k],
            categories,
            trees: self.trees,
            gain: self.gain,
        }
    }
}

/// The loss's gradients and hessians of one row's margins (XGBoost's:
/// softmax's hessian is `2p(1−p)`).
fn gradients(head: Head, m: &[f64], y: f64, g: &mut [f64], h: &mut [f64]) {
    const MIN_H: f64 = 1e-16;
    match head {
        Head::Logistic => {
            let p = sigmoid(m[0]);
            g[0] = p - y;
            h[0] = (p * (1.0 - p)).max(MIN_H);
        }
        Head::Squared => {
            g[0] = (m[0] - y).clamp(-GRAD_BOUND_REGRESSION, GRAD_BOUND_REGRESSION);
            h[0] = 1.0;
        }
        Head::Softmax { .. } => {
            let max = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for (gi, &z) in g.iter_mut().zip(m) {
                *gi = (z - max).exp();
                sum += *gi;
            }
            for (c, (gi, hi)) in g.iter_mut().zip(h.iter_mut()).enumerate() {
                let p = *gi / sum;
                *gi = p - f64::from(u8::from(c == y as usize));
                *hi = (2.0 * p * (1.0 - p)).max(MIN_H);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gbdt::FeatureCuts;

    /// The sparse histogram build gives every level's histogram value for
    /// value as adding every cell: numeric, categorical and missing cells,
    /// three classes (three trees per iteration), a row sample.
    #[test]
    fn sparse_cells_build_the_histograms_of_every_cell() {
        let cuts = Cuts {
            bins: 8,
            features: vec![
                FeatureCuts::Numeric { cuts: vec![0.5] },
                FeatureCuts::Categorical { categories: 3 },
                FeatureCuts::Numeric {
                    cuts: (1..8).map(f64::from).collect(),
                },
            ],
        };
        let settings = GbdtSettings {
            trees: 3,
            depth: 3,
            bins: 8,
            subsample: 0.8,
            min_child_weight: 0.0,
            ..GbdtSettings::default()
        };
        let rows = 300;
        let x = ndarray::Array2::from_shape_fn((rows, 3), |(i, f)| {
            let v = (i * 7 + f * 13) % 11;
            match f {
                0 => f64::from(u8::from(v < 2)),
                1 if v == 5 => f64::NAN,
                1 => (v % 4) as f64,
                _ if v == 3 => f64::NAN,
                _ => v as f64 * 0.8,
            }
        });
        let y: Vec<f64> = (0..rows).map(|i| ((i * 5) % 3) as f64).collect();
        let mut g = Grower::new(settings, Head::Softmax { classes: 3 }, cuts).unwrap();
        let mut sparse = SiteRows::new(&g, x.view(), &y).unwrap();
        assert!(sparse.cells.is_some());
        let mut every = sparse.clone();
        every.cells = None;
        let mut levels = 0;
        while g.round_len().is_some() {
            let a = g.local(&sparse);
            assert_eq!(a, g.local(&every), "level {levels}");
            assert!(a.iter().any(|&v| v != 0));
            g.take(&a, &mut sparse).unwrap();
            levels += 1;
            // The every-cell rows follow the same splits.
            every.pos.clone_from(&sparse.pos);
            every.grad.clone_from(&sparse.grad);
        }
        assert_eq!(levels, 9);
    }
}
