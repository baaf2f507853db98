//! Pareto fronts of loss vectors (every coordinate lower-is-better): constrained domination and
//! non-dominated sorting (Deb, Pratap, Agarwal and Meyarivan, "A Fast and Elitist Multiobjective
//! Genetic Algorithm: NSGA-II", IEEE TEC 2002), crowding distance, and hypervolume.
//!
//! Constraints follow Optuna's convention: a trial's constraint values are feasible when `<= 0`,
//! and its violation is the sum of the positive ones. Under constrained domination a feasible
//! point beats every infeasible one, two infeasible points compare by violation alone, and two
//! feasible ones by ordinary Pareto domination.

use std::cmp::Ordering;

/// The sum of the positive constraint values (0 for a feasible point); unknown (NaN) values add
/// nothing.
pub fn violation(constraints: &[f64]) -> f64 {
    constraints.iter().filter(|c| **c > 0.0).sum()
}

/// Whether `a` Pareto-dominates `b`: no worse in every coordinate, better in at least one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut better = false;
    for (x, y) in a.iter().zip(b) {
        if x > y || x.is_nan() {
            return false;
        }
        better |= x < y;
    }
    better
}

/// Deb's constrained domination: `a` (with violation `va`) dominates `b` (with `vb`).
pub fn constrained_dominates(a: &[f64], va: f64, b: &[f64], vb: f64) -> bool {
    match (va > 0.0, vb > 0.0) {
        (false, true) => true,
        (true, false) => false,
        (true, true) => va < vb,
        (false, false) => dominates(a, b),
    }
}

/// The front of every point under constrained domination, 0 for the first: feasible points by
/// fast non-dominated sorting, then infeasible ones, one front per distinct violation, smallest
/// first (as Optuna's `_fast_non_domination_rank` does).
pub fn fronts(losses: &[Vec<f64>], violations: &[f64]) -> Vec<usize> {
    let n = losses.len();
    let infeasible = |i: usize| violations.get(i).is_some_and(|v| *v > 0.0);
    let feasible: Vec<usize> = (0..n).filter(|&i| !infeasible(i)).collect();
    let mut rank = vec![0usize; n];
    // Deb's bookkeeping: how many points dominate each point, and whom each point dominates.
    let mut count = vec![0usize; feasible.len()];
    let mut beats: Vec<Vec<usize>> = vec![Vec::new(); feasible.len()];
    for a in 0..feasible.len() {
        for b in a + 1..feasible.len() {
            let (pa, pb) = (&losses[feasible[a]], &losses[feasible[b]]);
            if dominates(pa, pb) {
                beats[a].push(b);
                count[b] += 1;
            } else if dominates(pb, pa) {
                beats[b].push(a);
                count[a] += 1;
            }
        }
    }
    let mut current: Vec<usize> = (0..feasible.len()).filter(|&i| count[i] == 0).collect();
    let mut front = 0;
    let mut placed = 0;
    while !current.is_empty() {
        let mut next = Vec::new();
        for &a in &current {
            rank[feasible[a]] = front;
            placed += 1;
            for &b in &beats[a] {
                count[b] -= 1;
                if count[b] == 0 {
                    next.push(b);
                }
            }
        }
        current = next;
        front += 1;
    }
    debug_assert_eq!(placed, feasible.len());
    let mut bad: Vec<usize> = (0..n).filter(|&i| infeasible(i)).collect();
    bad.sort_by(|&a, &b| violations[a].total_cmp(&violations[b]));
    let mut last: Option<f64> = None;
    let mut k = front;
    for (j, &i) in bad.iter().enumerate() {
        if j > 0 && last != Some(violations[i]) {
            k += 1;
        }
        last = Some(violations[i]);
        rank[i] = k;
    }
    rank
}

/// Crowding distance of each point of one front (Deb et al. 2002): the sum over objectives of
/// the normalised gap between its two neighbours; the extremes of each objective get infinity.
pub fn crowding_distance(points: &[&[f64]]) -> Vec<f64> {
    let n = points.len();
    let mut dist = vec![0.0; n];
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    // One objective at a time: its values over the front.
    let columns = (0..points[0].len()).map(|k| points.iter().map(|p| p[k]).collect::<Vec<f64>>());
    for v in columns {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| v[a].total_cmp(&v[b]).then(a.cmp(&b)));
        let (lo, hi) = (v[order[0]], v[order[n - 1]]);
        dist[order[0]] = f64::INFINITY;
        dist[order[n - 1]] = f64::INFINITY;
        if hi > lo {
            for w in order.windows(3) {
                dist[w[1]] += (v[w[2]] - v[w[0]]) / (hi - lo);
            }
        }
    }
    dist
}

/// The hypervolume that `points` dominate, bounded by `reference` (the volume of the union of
/// the boxes between each point and the reference). Points not better than the reference in
/// every coordinate add nothing. Exact: a sweep in two dimensions, slicing along the last
/// coordinate above that (fine for the few hundred points and few objectives of a study).
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let inside: Vec<&[f64]> = points
        .iter()
        .map(Vec::as_slice)
        .filter(|p| p.len() == reference.len() && p.iter().zip(reference).all(|(x, r)| x < r))
        .collect();
    if inside.is_empty() || reference.is_empty() {
        return 0.0;
    }
    slice_volume(inside, reference, reference.len())
}

/// The hypervolume of `points` in their first `d` coordinates.
fn slice_volume(mut points: Vec<&[f64]>, reference: &[f64], d: usize) -> f64 {
    match d {
        1 => {
            let best = points.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
            (reference[0] - best).max(0.0)
        }
        2 => {
            points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
            let mut area = 0.0;
            let mut floor = reference[1];
            for p in points {
                if p[1] < floor {
                    area += (reference[0] - p[0]) * (floor - p[1]);
                    floor = p[1];
                }
            }
            area
        }
        _ => {
            let k = d - 1;
            points.sort_by(|a, b| a[k].total_cmp(&b[k]));
            let mut volume = 0.0;
            for i in 0..points.len() {
                let next = points.get(i + 1).map_or(reference[k], |p| p[k]);
                let depth = next - points[i][k];
                if depth > 0.0 {
                    volume += depth * slice_volume(points[..=i].to_vec(), reference, k);
                }
            }
            volume
        }
    }
}

/// Greedy hypervolume subset selection: `k` indices of `points`, each step adding the point
/// whose hypervolume contribution to those already chosen is largest (ties: the first). A
/// (1 - 1/e)-approximation (Guerreiro, Fonseca and Paquete, Evolutionary Computation 2016), as
/// Optuna's TPE uses to break ties within a front.
pub fn greedy_subset(points: &[Vec<f64>], k: usize, reference: &[f64]) -> Vec<usize> {
    let mut chosen: Vec<usize> = Vec::new();
    let mut chosen_points: Vec<Vec<f64>> = Vec::new();
    let mut base = 0.0;
    while chosen.len() < k.min(points.len()) {
        let mut best: Option<(f64, usize)> = None;
        for (i, p) in points.iter().enumerate() {
            if chosen.contains(&i) {
                continue;
            }
            chosen_points.push(p.clone());
            let gain = hypervolume(&chosen_points, reference) - base;
            chosen_points.pop();
            if best.is_none_or(|(g, _)| gain.total_cmp(&g) == Ordering::Greater) {
                best = Some((gain, i));
            }
        }
        let Some((gain, i)) = best else { break };
        base += gain;
        chosen.push(i);
        chosen_points.push(points[i].clone());
    }
    chosen
}

/// Optuna's reference point for subset selection: the worst point, pushed outwards by 10%
/// (`max(1.1 w, 0.9 w)` per coordinate, so that negative coordinates move outwards too), a zero
/// coordinate replaced by a tiny positive one.
pub fn reference_point(points: &[Vec<f64>]) -> Vec<f64> {
    let m = points.first().map_or(0, Vec::len);
    (0..m)
        .map(|k| {
            let worst = points
                .iter()
                .map(|p| p[k])
                .fold(f64::NEG_INFINITY, f64::max);
            let r = (1.1 * worst).max(0.9 * worst);
            if r == 0.0 {
                1e-12
            } else {
                r
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_points_do_not_dominate_each_other() {
        assert!(dominates(&[1.0, 2.0], &[1.0, 3.0]));
        assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]));
        assert!(!dominates(&[0.0, 3.0], &[1.0, 2.0]));
    }

    #[test]
    fn two_dimensional_hypervolume_is_the_union_of_boxes() {
        let pts = vec![
            vec![1.0, 3.0],
            vec![2.0, 2.0],
            vec![3.0, 1.0],
            vec![3.0, 3.0],
        ];
        // Boxes up to (4, 4): 3x1 + 2x1 + 1x1 stacked = 6.
        assert_eq!(hypervolume(&pts, &[4.0, 4.0]), 6.0);
        assert_eq!(hypervolume(&[vec![5.0, 0.0]], &[4.0, 4.0]), 0.0);
    }

    #[test]
    fn three_dimensional_hypervolume_by_slices() {
        let pts = vec![vec![0.0, 0.0, 1.0], vec![1.0, 1.0, 0.0]];
        // Box A: 2x2x1 = 4, box B: 1x1x2 = 2, overlap 1x1x1 = 1.
        assert!((hypervolume(&pts, &[2.0, 2.0, 2.0]) - 5.0).abs() < 1e-12);
    }
}
