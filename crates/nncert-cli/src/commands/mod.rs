pub mod bounds;
pub mod certify;
pub mod demo;
pub mod fp_attack;
pub mod info;
pub mod run;
pub mod train;
pub mod verify;
pub mod vnncomp;

/// The index of the largest value (the first of equals).
pub(crate) fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |b, (i, &x)| if x > v[b] { i } else { b })
}

/// Percentage of rows of `logits` (`classes` each) whose argmax is the label.
pub(crate) fn accuracy(logits: &[f64], labels: &[u8], classes: usize) -> f64 {
    let correct = logits
        .chunks(classes)
        .zip(labels)
        .filter(|(y, &l)| argmax(y) == l as usize)
        .count();
    100.0 * correct as f64 / labels.len() as f64
}
