//! Classification metrics from logits: top-1, top-5, mAP (one-vs-rest average precision,
//! averaged over classes), per-class precision and recall, and the confusion matrix.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassMetrics {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub average_precision: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub samples: usize,
    pub top1: f64,
    pub top5: f64,
    pub map: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Rank of the true class (0 = top) with ties counted pessimistically.
fn rank(row: &[f32], label: usize) -> usize {
    row.iter().filter(|&&v| v >= row[label]).count() - 1
}

/// Average precision of scores against binary relevance (the area under the precision-recall
/// curve as sklearn's `average_precision_score` computes it: sum over positives of the
/// precision at their rank, ties broken by putting negatives first, i.e. pessimistically).
pub fn average_precision(scores: &[f32], relevant: &[bool]) -> f64 {
    let positives = relevant.iter().filter(|&&r| r).count();
    if positives == 0 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .total_cmp(&scores[a])
            .then(relevant[a].cmp(&relevant[b]))
    });
    let (mut hits, mut sum) = (0usize, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if relevant[i] {
            hits += 1;
            sum += hits as f64 / (k + 1) as f64;
        }
    }
    sum / positives as f64
}

/// Metrics of `logits` (`[n, classes]` row-major) against `labels`.
pub fn compute(logits: &[f32], labels: &[usize], names: &[String]) -> Metrics {
    let c = names.len();
    let n = labels.len();
    let rows: Vec<&[f32]> = logits.chunks(c).collect();
    let mut confusion = vec![vec![0usize; c]; c];
    let (mut top1, mut top5) = (0usize, 0usize);
    for (row, &y) in rows.iter().zip(labels) {
        confusion[y][argmax(row)] += 1;
        let r = rank(row, y);
        top1 += usize::from(r == 0);
        top5 += usize::from(r < 5);
    }
    let per_class: Vec<ClassMetrics> = (0..c)
        .map(|k| {
            let tp = confusion[k][k] as f64;
            let predicted: usize = (0..c).map(|t| confusion[t][k]).sum();
            let support: usize = confusion[k].iter().sum();
            let scores: Vec<f32> = rows.iter().map(|r| r[k]).collect();
            let relevant: Vec<bool> = labels.iter().map(|&y| y == k).collect();
            ClassMetrics {
                label: names[k].clone(),
                precision: if predicted > 0 {
                    tp / predicted as f64
                } else {
                    0.0
                },
                recall: if support > 0 {
                    tp / support as f64
                } else {
                    0.0
                },
                average_precision: average_precision(&scores, &relevant),
                support,
            }
        })
        .collect();
    let present: Vec<&ClassMetrics> = per_class.iter().filter(|m| m.support > 0).collect();
    let map =
        present.iter().map(|m| m.average_precision).sum::<f64>() / present.len().max(1) as f64;
    let pct = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    Metrics {
        samples: n,
        top1: pct(top1),
        top5: pct(top5),
        map: 100.0 * map,
        per_class,
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_precision_matches_hand_computation() {
        // ranking: 0.9 (+), 0.8 (-), 0.7 (+), 0.1 (-): AP = (1/1 + 2/3) / 2
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]);
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(average_precision(&[0.5, 0.5], &[false, false]), 0.0);
    }

    #[test]
    fn top_k_precision_recall_and_confusion() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // rows: predicted a (true a), predicted b (true a), predicted c (true c)
        let logits = [3.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0, 5.0];
        let m = compute(&logits, &[0, 0, 2], &names);
        assert!((m.top1 - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.top5, 100.0);
        assert_eq!(
            m.confusion,
            vec![vec![1, 1, 0], vec![0, 0, 0], vec![0, 0, 1]]
        );
        assert_eq!(m.per_class[0].recall, 0.5);
        assert_eq!(m.per_class[0].precision, 1.0);
        assert_eq!(m.per_class[1].precision, 0.0);
        assert_eq!(m.per_class[2].recall, 1.0);
    }
}
