//! A site's binned cells as the histogram build reads them: per row only
//! the cells outside their feature's most common slot (on a table like a9a,
//! about one cell in eight), as flat indices into a node's histogram. The
//! most common slot's sums follow exactly from the node's totals: every row
//! at a node sits in exactly one slot of every feature, so that slot holds
//! the node's total less the other slots any of the site's rows occupies.
//! Integer sums, so the histogram is the same, value for value, as adding
//! every cell.

use super::split::Sums;

/// The cells of a site's rows outside their feature's default slot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SparseCells {
    /// Per row (from `starts[i]` to `starts[i + 1]`): the flat index of the
    /// `g` value of each cell outside its default slot (`h` follows it).
    cells: Vec<u32>,
    starts: Vec<usize>,
    /// Per feature: its default slot's flat index, and the flat indices of
    /// the other slots these rows occupy.
    defaults: Vec<(u32, Vec<u32>)>,
}

impl SparseCells {
    /// The cells of `rows` rows of `features` columns, `flat(f, i)` the
    /// flat index of row `i`'s cell of feature `f` in a histogram of
    /// `node_len` values. `None` if a node's histogram is too long for `u32`
    /// indices (the plain build is then used).
    pub(crate) fn new(
        rows: usize,
        features: usize,
        node_len: usize,
        flat: impl Fn(usize, usize) -> usize,
    ) -> Option<SparseCells> {
        u32::try_from(node_len).ok()?;
        // Rows per slot (a slot is a pair of values: g, h).
        let mut count = vec![0u32; node_len / 2 + 1];
        let mut feature_of = vec![usize::MAX; node_len / 2 + 1];
        for i in 0..rows {
            for f in 0..features {
                let s = flat(f, i) / 2;
                let c = count.get_mut(s)?;
                *c = c.saturating_add(1);
                feature_of[s] = f;
            }
        }
        // Per feature its slots, in order; the default is the most common
        // (ties: the lowest).
        let mut slots: Vec<Vec<usize>> = vec![Vec::new(); features];
        for (s, &f) in feature_of.iter().enumerate() {
            if let Some(list) = slots.get_mut(f) {
                list.push(s);
            }
        }
        let mut default_slot = vec![usize::MAX; features];
        let mut defaults = Vec::with_capacity(features);
        for (f, list) in slots.iter().enumerate() {
            let best = list
                .iter()
                .copied()
                .max_by_key(|&s| (count[s], std::cmp::Reverse(s)))
                .unwrap_or(usize::MAX);
            default_slot[f] = best;
            let others = list
                .iter()
                .filter(|&&s| s != best)
                .map(|&s| (2 * s) as u32)
                .collect();
            // A feature no row has (no rows at all) has no default.
            defaults.push(((2 * best.min(node_len / 2)) as u32, others));
        }
        let mut cells = Vec::new();
        let mut starts = Vec::with_capacity(rows + 1);
        starts.push(0);
        for i in 0..rows {
            for (f, &d) in default_slot.iter().enumerate() {
                let at = flat(f, i);
                if at / 2 != d {
                    cells.push(at as u32);
                }
            }
            starts.push(cells.len());
        }
        Some(SparseCells {
            cells,
            starts,
            defaults,
        })
    }

    /// Adds row `i`'s cells outside their default slots to `hist`.
    #[inline]
    pub(crate) fn add_row(&self, i: usize, gh: Sums, hist: &mut [i64]) {
        for &c in &self.cells[self.starts[i]..self.starts[i + 1]] {
            let c = c as usize;
            hist[c] += gh.g;
            hist[c + 1] += gh.h;
        }
    }

    /// Fills every feature's default slot of a node's `hist` (built with
    /// [`add_row`](Self::add_row)) from the node's `total`.
    pub(crate) fn fill_defaults(&self, total: Sums, hist: &mut [i64]) {
        if self.starts.len() <= 1 {
            // No rows: nothing was added, and nothing is to fill.
            return;
        }
        for (d, others) in &self.defaults {
            let (mut g, mut h) = (total.g, total.h);
            for &o in others {
                let o = o as usize;
                g -= hist[o];
                h -= hist[o + 1];
            }
            let d = *d as usize;
            hist[d] = g;
            hist[d + 1] = h;
        }
    }
}
