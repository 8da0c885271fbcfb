//! Cosine similarity and rank-based neighbourhood agreement between embedding batches.

/// Only the first this-many items of a batch are compared: pairs grow quadratically, and a few
/// hundred items (tens of thousands of pairs) already pin the rank correlation down.
const MAX_BATCH: usize = 256;

/// Cosine similarity computed in f64; None on length mismatch, a zero norm or non-finite input.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return None;
    }
    let c = dot / (na.sqrt() * nb.sqrt());
    // Rounding can land a hair outside [-1, 1]; NaN/inf inputs surface here as non-finite.
    c.is_finite().then_some(c.clamp(-1.0, 1.0))
}

/// Agreement of two models' embeddings of the same batch of inputs: the Spearman correlation
/// of their within-batch pairwise cosine similarities, floored at 0.
///
/// Vectors from different models live in unrelated spaces (often of different dimensions), so
/// they are never compared directly; only each model's view of which inputs are close is.
///
/// None when the batch sizes differ, there are fewer than 3 items, a vector is zero or
/// non-finite, dimensions vary within one side, or either similarity list is constant.
pub fn neighbourhood(a: &[Vec<f32>], b: &[Vec<f32>]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let n = a.len().min(MAX_BATCH);
    let sa = pairwise(&a[..n])?;
    let sb = pairwise(&b[..n])?;
    // Anti-correlated structure is as useless as unrelated structure for agreement.
    spearman(&sa, &sb).map(|rho| rho.max(0.0))
}

/// Cosine of every pair i < j, in a fixed order so both sides line up.
fn pairwise(items: &[Vec<f32>]) -> Option<Vec<f64>> {
    let units = items.iter().map(|v| unit(v)).collect::<Option<Vec<_>>>()?;
    let dim = units.first().map_or(0, Vec::len);
    if units.iter().any(|u| u.len() != dim) {
        return None;
    }
    let mut out = Vec::with_capacity(units.len() * units.len().saturating_sub(1) / 2);
    for (i, u) in units.iter().enumerate() {
        for v in &units[i + 1..] {
            let dot: f64 = u.iter().zip(v).map(|(x, y)| x * y).sum();
            out.push(dot.clamp(-1.0, 1.0));
        }
    }
    Some(out)
}

/// The vector scaled to unit length in f64, so each pair costs one dot product.
fn unit(v: &[f32]) -> Option<Vec<f64>> {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    Some(v.iter().map(|&x| f64::from(x) / norm).collect())
}

/// Spearman rank correlation (ties get their average rank).
///
/// None on length mismatch, fewer than 2 values, non-finite values, or a constant side.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    // Ranks are half-integers, so a constant side gives exactly zero spread.
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    // Identical rankings are exactly 1, not 1 minus rounding, so x vs x scores a clean 1.
    if rx == ry {
        return Some(1.0);
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// 1-based ranks; a run of equal values shares the mean of the positions it spans.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && v[order[end]] == v[order[start]] {
            end += 1;
        }
        // Sorted positions start..end hold ranks start+1 ..= end; their mean:
        let shared = (start + 1 + end) as f64 / 2.0;
        for &k in &order[start..end] {
            out[k] = shared;
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: f64, y: f64) -> bool {
        (x - y).abs() < 1e-9
    }

    /// Unit vectors at the given angles (degrees), in a plane of a `dim`-dimensional space.
    fn at_angles(degrees: &[f64], dim: usize) -> Vec<Vec<f32>> {
        degrees
            .iter()
            .map(|d| {
                let mut v = vec![0.0f32; dim];
                v[0] = d.to_radians().cos() as f32;
                v[dim - 1] = d.to_radians().sin() as f32;
                v
            })
            .collect()
    }

    #[test]
    fn cosine_cases() {
        assert!(close(cosine(&[1.0, 0.0], &[0.0, 1.0]).unwrap_or(f64::NAN), 0.0));
        assert!(close(cosine(&[1.0, 2.0], &[2.0, 4.0]).unwrap_or(f64::NAN), 1.0));
        assert!(close(cosine(&[1.0, 0.0], &[-3.0, 0.0]).unwrap_or(f64::NAN), -1.0));
        // (1,1)·(1,0) = 1 over √2·1.
        assert!(close(cosine(&[1.0, 1.0], &[1.0, 0.0]).unwrap_or(f64::NAN), 1.0 / 2f64.sqrt()));
        assert_eq!(cosine(&[1.0, 0.0], &[1.0]), None);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), None);
        assert_eq!(cosine(&[], &[]), None);
        assert_eq!(cosine(&[f32::NAN, 1.0], &[1.0, 1.0]), None);
        assert_eq!(cosine(&[f32::INFINITY, 1.0], &[1.0, 1.0]), None);
    }

    #[test]
    fn spearman_cases() {
        // No ties: d = (−1, 1, −1, 1, 0), Σd² = 4, ρ = 1 − 6·4/(5·24) = 0.8.
        assert!(close(spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap_or(f64::NAN), 0.8));
        // Monotone but non-linear is still 1; reversed is −1.
        assert_eq!(spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 4.0, 9.0, 16.0]), Some(1.0));
        assert!(close(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap_or(f64::NAN), -1.0));
        // Ties: y ranks (1, 2, 3.5, 5, 3.5); centred x = (−2, −1, 0, 1, 2), y = (−2, −1, .5, 2, .5);
        // Σxy = 4 + 1 + 0 + 2 + 1 = 8, Σx² = 10, Σy² = 9.5, ρ = 8/√95.
        let rho = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap_or(f64::NAN);
        assert!(close(rho, 8.0 / 95f64.sqrt()));
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        assert_eq!(spearman(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn same_structure_in_different_spaces_agrees() {
        // Pair angles 10, 30, 70, 20, 60, 40 vs 5, 20, 50, 15, 45, 30: same ordering, so ρ = 1,
        // although the dimensions (2 vs 5) and every raw similarity differ.
        let a = at_angles(&[0.0, 10.0, 30.0, 70.0], 2);
        let b = at_angles(&[0.0, 5.0, 20.0, 50.0], 5);
        assert!(close(neighbourhood(&a, &b).unwrap_or(f64::NAN), 1.0));
        assert_eq!(neighbourhood(&a, &a), Some(1.0));
    }

    #[test]
    fn partial_and_reversed_structure() {
        // a: pairs (01, 02, 12) at 10°, 30°, 20° → similarity ranks (3, 1, 2).
        // b: 20°, 30°, 10° → ranks (2, 1, 3). Centred: (1, −1, 0), (0, −1, 1): ρ = 1/√(2·2) = 0.5.
        let a = at_angles(&[0.0, 10.0, 30.0], 3);
        let b = at_angles(&[0.0, 20.0, 30.0], 4);
        assert!(close(neighbourhood(&a, &b).unwrap_or(f64::NAN), 0.5));
        // c: 30°, 10°, 20° → ranks (1, 3, 2), the exact reverse of a: ρ = −1, floored to 0.
        let c = at_angles(&[0.0, 30.0, 10.0], 2);
        assert_eq!(neighbourhood(&a, &c), Some(0.0));
    }

    #[test]
    fn cannot_judge() {
        let three = at_angles(&[0.0, 10.0, 30.0], 2);
        let four = at_angles(&[0.0, 10.0, 30.0, 70.0], 2);
        assert_eq!(neighbourhood(&three, &four), None);
        assert_eq!(neighbourhood(&three[..2], &three[..2]), None);
        assert_eq!(neighbourhood(&[], &[]), None);
        // All items identical: the similarity list is constant.
        let same = vec![vec![1.0f32, 2.0]; 3];
        assert_eq!(neighbourhood(&same, &three), None);
        let with_zero = vec![vec![1.0f32, 0.0], vec![0.0, 0.0], vec![0.0, 1.0]];
        assert_eq!(neighbourhood(&with_zero, &three), None);
        let ragged = vec![vec![1.0f32, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 1.0]];
        assert_eq!(neighbourhood(&ragged, &three), None);
    }
}
