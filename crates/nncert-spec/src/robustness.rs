//! Local-robustness properties: every input in a ball keeps the label.

use crate::property::{Case, InputSet, LinearConstraint, Norm, NormBall, OutputDnf, Property};

/// Unsafe region "y_target ≥ y_label": `y_label − y_target ≤ 0`.
fn beats(label: usize, target: usize, num_classes: usize) -> LinearConstraint {
    let mut coeffs = vec![0.0; num_classes];
    coeffs[label] = 1.0;
    coeffs[target] = -1.0;
    LinearConstraint { coeffs, rhs: 0.0 }
}

fn ball(x0: &[f64], eps: f64, norm: Norm, domain: (f64, f64)) -> InputSet {
    InputSet::Ball(NormBall {
        center: x0.to_vec(),
        eps,
        norm,
        domain,
    })
}

/// Robustness against every other label at once: unsafe if any label reaches `label`'s logit.
pub fn robustness_property(
    x0: &[f64],
    label: usize,
    num_classes: usize,
    eps: f64,
    norm: Norm,
    domain: (f64, f64),
) -> Property {
    let terms = (0..num_classes)
        .filter(|&t| t != label)
        .map(|t| vec![beats(label, t, num_classes)])
        .collect();
    Property {
        num_inputs: x0.len(),
        num_outputs: num_classes,
        cases: vec![Case {
            input: ball(x0, eps, norm, domain),
            unsafe_output: OutputDnf { terms },
        }],
    }
}

/// One property per target label (target-label-guided verification).
pub fn robustness_property_per_target(
    x0: &[f64],
    label: usize,
    num_classes: usize,
    eps: f64,
    norm: Norm,
    domain: (f64, f64),
) -> Vec<(usize, Property)> {
    (0..num_classes)
        .filter(|&t| t != label)
        .map(|t| {
            let case = Case {
                input: ball(x0, eps, norm, domain),
                unsafe_output: OutputDnf {
                    terms: vec![vec![beats(label, t, num_classes)]],
                },
            };
            (
                t,
                Property {
                    num_inputs: x0.len(),
                    num_outputs: num_classes,
                    cases: vec![case],
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_targets_equals_union_of_per_target() {
        let x0 = vec![0.5, 0.2, 0.9];
        let all = robustness_property(&x0, 1, 4, 0.1, Norm::Linf, (0.0, 1.0));
        let per = robustness_property_per_target(&x0, 1, 4, 0.1, Norm::Linf, (0.0, 1.0));
        assert_eq!(per.len(), 3);
        for y in [
            [0.0, 1.0, 0.5, 0.2],
            [2.0, 1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 1.0],
        ] {
            let any = per.iter().any(|(_, p)| p.is_counterexample(&x0, &y));
            assert_eq!(all.is_counterexample(&x0, &y), any);
        }
        // Ties count as unsafe (≤), the conservative reading.
        assert!(all.is_counterexample(&x0, &[0.0, 1.0, 1.0, 0.0]));
    }

    #[test]
    fn ball_is_clipped_to_domain() {
        let p = robustness_property(&[0.05, 0.99], 0, 2, 0.1, Norm::Linf, (0.0, 1.0));
        let b = p.cases[0].input.bounding_box();
        assert_eq!(b.lo, vec![0.0, 0.89]);
        assert!((b.hi[0] - 0.15).abs() < 1e-12 && b.hi[1] == 1.0);
        let l2 = robustness_property(&[0.5, 0.5], 0, 2, 0.1, Norm::L2, (0.0, 1.0));
        assert!(l2.cases[0].input.contains(&[0.55, 0.55]));
        assert!(!l2.cases[0].input.contains(&[0.58, 0.58]));
    }
}
