//! Bounded fuzzing inside the test suite: arbitrary and mutated VNN-LIB text
//! yields a property or an error, never a panic. (Longer runs: fuzz/.)

use nncert_spec::parse_vnnlib;
use proptest::prelude::*;

const SEED: &str = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(assert (>= X_0 -1e-2))\n(assert (<= X_0 0.5))\n(assert (or (and (>= Y_0 Y_1)) (and (<= (+ Y_0 (* 2 Y_1)) 3))))\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(s in "[()XY_0-9a-z<=>+*. \n;-]{0,200}") {
        let _ = parse_vnnlib(&s, "fuzz");
    }

    #[test]
    fn mutated_valid_spec_never_panics(pos in 0usize..SEED.len(), len in 0usize..20, insert in "[()XY_0-9<=>e. -]{0,6}") {
        let mut s = SEED.to_string();
        let end = (pos + len).min(s.len());
        s.replace_range(pos..end, &insert);
        if let Ok(p) = parse_vnnlib(&s, "fuzz") {
            prop_assert!(p.num_inputs > 0 && p.num_outputs > 0);
        }
    }
}
