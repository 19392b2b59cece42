//! One VNN-LIB case by ReLU branch and bound: its unsafe terms (a
//! disjunction of conjunctions of output constraints) taken as Algorithm 1
//! of target-label-guided-verification.md takes labels.

use crate::attack::{pgd, PgdConfig};
use crate::bab::{prove_row, BabConfig, RowProblem};
use crate::{Models, Outcome, Result};
use nncert_bounds::{lower_bounds, propagate, BoundConfig, Method, Region};
use nncert_spec::{Case, LinearConstraint, Property};

/// One case, its unsafe terms taken as Algorithm 1 takes labels: a term is
/// excluded once one of its constraints `c·y ≤ d` is shown impossible by
/// CROWN, then α-CROWN on the whole box; the terms left are taken most
/// dangerous first (lowest bound), each on its constraint whose bound came
/// closest. PGD runs on every open term before branch and bound on any, so
/// a counterexample in a later term is not left waiting behind a hard proof.
pub fn prove_case(
    m: &Models,
    p: &Property,
    case: &Case,
    cfg: &BoundConfig,
    (seed, workers): (u64, usize),
) -> Result<Outcome> {
    let region = Region::of(&case.input, cfg.soundness);
    let open = open_constraints(m, &region, cfg, case)?;
    let pgd_cfg = PgdConfig {
        seed,
        ..PgdConfig::default()
    };
    for c in &open {
        if let Some(ce) = pgd(m, p, &case.input, &c.coeffs, c.rhs, &pgd_cfg, cfg.deadline)? {
            return Ok(Outcome::Counterexample(ce));
        }
    }
    // β-CROWN: slopes and split multipliers optimised per subdomain.
    let bab = BabConfig {
        workers,
        ..BabConfig::new(BoundConfig {
            method: Method::AlphaCrown,
            ..*cfg
        })
    };
    let mut undecided = false;
    for c in &open {
        let row = RowProblem {
            property: p,
            region: &region,
            set: &case.input,
            spec: &c.coeffs,
            rhs: c.rhs,
        };
        match prove_row(m, &row, &bab)?.0 {
            Outcome::Proved => {}
            Outcome::Unknown | Outcome::Unconfirmed => undecided = true,
            decided => return Ok(decided),
        }
    }
    Ok(if undecided {
        Outcome::Unknown
    } else {
        Outcome::Proved
    })
}

/// Per unsafe term that neither CROWN nor α-CROWN excludes, its constraint
/// whose bound came closest to excluding it; lowest bound first.
fn open_constraints<'c>(
    m: &Models,
    region: &Region,
    cfg: &BoundConfig,
    case: &'c Case,
) -> Result<Vec<&'c LinearConstraint>> {
    let nb = propagate(m.bounded, region, cfg)?;
    let alpha = BoundConfig {
        method: Method::AlphaCrown,
        alpha_stop_above: None,
        ..*cfg
    };
    let mut open = Vec::new();
    for term in &case.unsafe_output.terms {
        let spec: Vec<f64> = term.iter().flat_map(|c| c.coeffs.clone()).collect();
        let mut best = (f64::NEG_INFINITY, 0);
        for method_cfg in [cfg, &alpha] {
            let lb = lower_bounds(m.bounded, &nb, region, method_cfg, &spec, term.len())?;
            for (k, (c, l)) in term.iter().zip(&lb).enumerate() {
                if l - c.rhs > best.0 {
                    best = (l - c.rhs, k);
                }
            }
            if best.0 > 0.0 {
                break;
            }
        }
        if best.0 <= 0.0 {
            open.push((best.0, &term[best.1]));
        }
    }
    open.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(open.into_iter().map(|(_, c)| c).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nncert_bounds::Soundness;
    use nncert_exec::all_engines;
    use nncert_spec::{InputBox, InputSet, OutputDnf};

    /// Terms that a bound excludes are dropped, a term with one impossible
    /// constraint among possible ones included; the rest come lowest bound
    /// first, each as its constraint whose bound came closest.
    #[test]
    fn open_terms_are_ordered_most_dangerous_first() {
        let g = nncert_model::testing::random_relu_mlp(&[3, 8, 8, 2], 7);
        let engines = all_engines(&g).unwrap();
        let m = Models {
            executed: &g,
            bounded: &g,
            engines: &engines,
        };
        let c = |coeffs: [f64; 2], rhs: f64| LinearConstraint {
            coeffs: coeffs.to_vec(),
            rhs,
        };
        let input = InputSet::Box(InputBox {
            lo: vec![-1.0; 3],
            hi: vec![1.0; 3],
        });
        let y0 = nncert_model::reference_forward(&g, &[0.0; 3]).unwrap()[0];
        // y0 ≤ y0(0) holds at the centre: open, but far less so than y0 ≤ 1e3.
        let near = c([1.0, 0.0], y0);
        let everywhere = c([0.0, 1.0], 1e3);
        let impossible = c([1.0, 0.0], -1e3);
        let case = Case {
            input,
            unsafe_output: OutputDnf {
                terms: vec![
                    vec![near.clone()],
                    vec![impossible.clone()],
                    vec![everywhere.clone(), impossible],
                    vec![everywhere.clone()],
                ],
            },
        };
        let cfg = BoundConfig::new(Method::Crown, Soundness::Float32);
        let region = Region::of(&case.input, cfg.soundness);
        let open = open_constraints(&m, &region, &cfg, &case).unwrap();
        assert_eq!(open, vec![&everywhere, &near]);
    }
}
