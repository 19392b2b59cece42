//! VNN-LIB parser for the VNN-COMP subset: `declare-const` of `X_i`/`Y_i`
//! (Real), `assert` over `<=`, `>=`, `and`, `or`, linear terms (`+`, `-`,
//! `*` by a constant), numbers in any decimal or scientific form, `;` comments.

use crate::property::{Case, InputBox, InputSet, LinearConstraint, OutputDnf, Property};
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("{file}:{line}:{col}: {msg}")]
    Syntax {
        file: String,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{file}: {msg}")]
    Semantic { file: String, msg: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Largest number of disjuncts the conjunction of asserts may expand to.
const MAX_TERMS: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Pos {
    line: usize,
    col: usize,
}

#[derive(Debug)]
enum SExpr {
    Atom(String, Pos),
    List(Vec<SExpr>, Pos),
}

impl SExpr {
    fn pos(&self) -> Pos {
        match self {
            SExpr::Atom(_, p) | SExpr::List(_, p) => *p,
        }
    }
}

struct Parser<'a> {
    file: &'a str,
}

impl Parser<'_> {
    fn err<T>(&self, pos: Pos, msg: impl Into<String>) -> Result<T, SpecError> {
        Err(SpecError::Syntax {
            file: self.file.to_string(),
            line: pos.line,
            col: pos.col,
            msg: msg.into(),
        })
    }

    /// Tokenises and builds the list of top-level s-expressions.
    fn sexprs(&self, text: &str) -> Result<Vec<SExpr>, SpecError> {
        let mut stack: Vec<(Vec<SExpr>, Pos)> = vec![(Vec::new(), Pos { line: 1, col: 1 })];
        let mut chars = text.chars().peekable();
        let (mut line, mut col) = (1, 1);
        while let Some(c) = chars.next() {
            let pos = Pos { line, col };
            let step = |line: &mut usize, col: &mut usize, ch: char| {
                if ch == '\n' {
                    *line += 1;
                    *col = 1;
                } else {
                    *col += 1;
                }
            };
            step(&mut line, &mut col, c);
            match c {
                ';' => {
                    while let Some(&n) = chars.peek() {
                        if n == '\n' {
                            break;
                        }
                        chars.next();
                        col += 1;
                    }
                }
                '(' => stack.push((Vec::new(), pos)),
                ')' => {
                    if stack.len() == 1 {
                        return self.err(pos, "unexpected `)`");
                    }
                    let (items, start) = stack.pop().expect("non-empty");
                    stack
                        .last_mut()
                        .expect("root")
                        .0
                        .push(SExpr::List(items, start));
                }
                c if c.is_whitespace() => {}
                c => {
                    let mut atom = c.to_string();
                    while let Some(&n) = chars.peek() {
                        if n.is_whitespace() || n == '(' || n == ')' || n == ';' {
                            break;
                        }
                        atom.push(n);
                        chars.next();
                        col += 1;
                    }
                    stack
                        .last_mut()
                        .expect("root")
                        .0
                        .push(SExpr::Atom(atom, pos));
                }
            }
        }
        if stack.len() > 1 {
            let open = stack.last().expect("open").1;
            return self.err(open, "`(` is never closed");
        }
        Ok(stack.pop().expect("root").0)
    }
}

/// A variable of the specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Var {
    X(usize),
    Y(usize),
}

/// `Σ coeff·var + constant`.
#[derive(Clone, Debug, Default)]
struct LinExpr {
    coeffs: BTreeMap<Var, f64>,
    constant: f64,
}

impl LinExpr {
    fn add(mut self, other: &LinExpr, sign: f64) -> LinExpr {
        for (v, c) in &other.coeffs {
            *self.coeffs.entry(*v).or_insert(0.0) += sign * c;
        }
        self.constant += sign * other.constant;
        self
    }
    fn scale(mut self, k: f64) -> LinExpr {
        self.coeffs.values_mut().for_each(|c| *c *= k);
        self.constant *= k;
        self
    }
}

/// `expr ≤ 0`.
type Atom = LinExpr;
/// OR of AND of atoms.
type Dnf = Vec<Vec<Atom>>;

fn parse_var(s: &str) -> Option<Var> {
    let (kind, idx) = s.split_once('_')?;
    let i: usize = idx.parse().ok()?;
    match kind {
        "X" => Some(Var::X(i)),
        "Y" => Some(Var::Y(i)),
        _ => None,
    }
}

fn parse_number(s: &str) -> Option<f64> {
    let looks_numeric = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'));
    s.parse::<f64>()
        .ok()
        .filter(|v| looks_numeric && v.is_finite())
}

struct Interp<'a> {
    p: Parser<'a>,
    declared: BTreeMap<Var, Pos>,
}

impl Interp<'_> {
    fn term(&self, e: &SExpr) -> Result<LinExpr, SpecError> {
        match e {
            SExpr::Atom(a, pos) => {
                if let Some(v) = parse_number(a) {
                    return Ok(LinExpr {
                        coeffs: BTreeMap::new(),
                        constant: v,
                    });
                }
                match parse_var(a) {
                    Some(v) if self.declared.contains_key(&v) => Ok(LinExpr {
                        coeffs: BTreeMap::from([(v, 1.0)]),
                        constant: 0.0,
                    }),
                    Some(_) => self
                        .p
                        .err(*pos, format!("`{a}` is used before its declare-const")),
                    None => self.p.err(
                        *pos,
                        format!("expected a number or a variable X_i / Y_i, found `{a}`"),
                    ),
                }
            }
            SExpr::List(items, pos) => {
                let (head, args) = self.head(items, *pos)?;
                let ts: Vec<LinExpr> = args
                    .iter()
                    .map(|a| self.term(a))
                    .collect::<Result<_, _>>()?;
                match (head, ts.len()) {
                    ("+", 1..) => Ok(ts.iter().fold(LinExpr::default(), |acc, t| acc.add(t, 1.0))),
                    ("-", 1) => Ok(ts[0].clone().scale(-1.0)),
                    ("-", 2..) => Ok(ts[1..].iter().fold(ts[0].clone(), |acc, t| acc.add(t, -1.0))),
                    ("*", 2) => match (ts[0].coeffs.is_empty(), ts[1].coeffs.is_empty()) {
                        (true, _) => Ok(ts[1].clone().scale(ts[0].constant)),
                        (_, true) => Ok(ts[0].clone().scale(ts[1].constant)),
                        _ => self.p.err(*pos, "only products with a constant are linear"),
                    },
                    _ => self.p.err(*pos, format!("expected a linear term (+, -, * by a constant), found `{head}` with {} arguments", ts.len())),
                }
            }
        }
    }

    fn head<'e>(&self, items: &'e [SExpr], pos: Pos) -> Result<(&'e str, &'e [SExpr]), SpecError> {
        match items.first() {
            Some(SExpr::Atom(h, _)) => Ok((h.as_str(), &items[1..])),
            _ => self.p.err(pos, "expected an operator after `(`"),
        }
    }

    fn formula(&self, e: &SExpr) -> Result<Dnf, SpecError> {
        let SExpr::List(items, pos) = e else {
            return self.p.err(
                e.pos(),
                "expected a formula `(<= a b)`, `(>= a b)`, `(and …)` or `(or …)`",
            );
        };
        let (head, args) = self.head(items, *pos)?;
        match head {
            "<=" | ">=" if args.len() == 2 => {
                let (a, b) = (self.term(&args[0])?, self.term(&args[1])?);
                let atom = if head == "<=" {
                    a.add(&b, -1.0)
                } else {
                    b.add(&a, -1.0)
                };
                Ok(vec![vec![atom]])
            }
            "and" => {
                let mut acc: Dnf = vec![vec![]];
                for a in args {
                    acc = self.conjoin(acc, self.formula(a)?, a.pos())?;
                }
                Ok(acc)
            }
            "or" if !args.is_empty() => {
                let mut acc = Vec::new();
                for a in args {
                    acc.extend(self.formula(a)?);
                }
                Ok(acc)
            }
            "<" | ">" => self.p.err(
                *pos,
                "strict comparisons are not part of VNN-LIB; use <= or >=",
            ),
            _ => self.p.err(
                *pos,
                format!(
                    "expected <=, >=, and, or; found `{head}` with {} arguments",
                    args.len()
                ),
            ),
        }
    }

    fn conjoin(&self, a: Dnf, b: Dnf, pos: Pos) -> Result<Dnf, SpecError> {
        if a.len().saturating_mul(b.len()) > MAX_TERMS {
            return self.p.err(
                pos,
                format!("the formula expands to more than {MAX_TERMS} disjuncts"),
            );
        }
        // Appending to each term in place keeps long chains of single-bound asserts linear.
        if let [single] = &b[..] {
            let mut a = a;
            for t in &mut a {
                t.extend(single.iter().cloned());
            }
            return Ok(a);
        }
        Ok(a.iter()
            .flat_map(|x| b.iter().map(move |y| x.iter().chain(y).cloned().collect()))
            .collect())
    }

    fn declare(&mut self, args: &[SExpr], pos: Pos) -> Result<(), SpecError> {
        match args {
            [SExpr::Atom(name, npos), SExpr::Atom(ty, tpos)] => {
                let v = parse_var(name).map_or_else(
                    || {
                        self.p.err(
                            *npos,
                            format!("variables must be named X_i or Y_i, found `{name}`"),
                        )
                    },
                    Ok,
                )?;
                if ty != "Real" {
                    return self
                        .p
                        .err(*tpos, format!("expected type Real, found `{ty}`"));
                }
                if self.declared.insert(v, *npos).is_some() {
                    return self.p.err(*npos, format!("`{name}` is declared twice"));
                }
                Ok(())
            }
            _ => self.p.err(pos, "expected (declare-const NAME Real)"),
        }
    }
}

/// Parses VNN-LIB text. `file` names the source in error messages.
pub fn parse_vnnlib(text: &str, file: &str) -> Result<Property, SpecError> {
    let mut it = Interp {
        p: Parser { file },
        declared: BTreeMap::new(),
    };
    let mut dnf: Dnf = vec![vec![]];
    for e in it.p.sexprs(text)? {
        let SExpr::List(items, pos) = &e else {
            return it.p.err(
                e.pos(),
                "expected `(declare-const …)` or `(assert …)` at top level",
            );
        };
        let (head, args) = it.head(items, *pos)?;
        match (head, args) {
            ("declare-const", _) => it.declare(args, *pos)?,
            ("assert", [f]) => {
                let d = it.formula(f)?;
                dnf = it.conjoin(dnf, d, *pos)?;
            }
            _ => {
                return it.p.err(
                    *pos,
                    format!("expected declare-const or assert with one formula, found `{head}`"),
                )
            }
        }
    }
    build_property(&it.declared, dnf, file)
}

/// Reads and parses a `.vnnlib` file (gzip-compressed files are accepted too).
pub fn read_vnnlib(path: &Path) -> Result<Property, SpecError> {
    let io = |source| SpecError::Io {
        path: path.display().to_string(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        nncert_model::io::gunzip(&bytes).map_err(io)?
    } else {
        bytes
    };
    let text = String::from_utf8(bytes).map_err(|_| SpecError::Semantic {
        file: path.display().to_string(),
        msg: "not UTF-8 text".into(),
    })?;
    parse_vnnlib(&text, &path.display().to_string())
}

fn count_of(declared: &BTreeMap<Var, Pos>, x: bool, file: &str) -> Result<usize, SpecError> {
    let idx: Vec<usize> = declared
        .keys()
        .filter_map(|v| match (v, x) {
            (Var::X(i), true) | (Var::Y(i), false) => Some(*i),
            _ => None,
        })
        .collect();
    let n = idx.len();
    if idx.iter().enumerate().any(|(k, &i)| k != i) {
        let name = if x { "X" } else { "Y" };
        return Err(SpecError::Semantic {
            file: file.into(),
            msg: format!("{name} variables must be numbered 0..{n} without gaps"),
        });
    }
    Ok(n)
}

/// Splits each conjunction into input bounds (a box) and output constraints,
/// merging disjuncts over the same box.
fn build_property(
    declared: &BTreeMap<Var, Pos>,
    dnf: Dnf,
    file: &str,
) -> Result<Property, SpecError> {
    let sem = |msg: String| SpecError::Semantic {
        file: file.into(),
        msg,
    };
    let (nx, ny) = (
        count_of(declared, true, file)?,
        count_of(declared, false, file)?,
    );
    if nx == 0 || ny == 0 {
        return Err(sem(
            "the specification declares no X or no Y variables".into()
        ));
    }
    let mut cases: Vec<Case> = Vec::new();
    for conj in dnf {
        let mut lo = vec![f64::NEG_INFINITY; nx];
        let mut hi = vec![f64::INFINITY; nx];
        let mut outputs = Vec::new();
        for atom in conj {
            let has_x = atom
                .coeffs
                .iter()
                .any(|(v, c)| matches!(v, Var::X(_)) && *c != 0.0);
            let has_y = atom
                .coeffs
                .iter()
                .any(|(v, c)| matches!(v, Var::Y(_)) && *c != 0.0);
            let nonzero: Vec<(&Var, &f64)> =
                atom.coeffs.iter().filter(|(_, c)| **c != 0.0).collect();
            match (has_x, has_y) {
                (true, true) => {
                    return Err(sem(
                        "a constraint mixes input (X) and output (Y) variables".into()
                    ))
                }
                (true, false) => {
                    let [(Var::X(i), &a)] = nonzero[..] else {
                        return Err(sem(
                            "input constraints must bound one X variable at a time".into()
                        ));
                    };
                    // a·x + k ≤ 0
                    let bound = -atom.constant / a;
                    if a > 0.0 {
                        hi[*i] = hi[*i].min(bound)
                    } else {
                        lo[*i] = lo[*i].max(bound)
                    }
                }
                (false, true) => {
                    let mut coeffs = vec![0.0; ny];
                    for (v, c) in nonzero {
                        if let Var::Y(i) = v {
                            coeffs[*i] = *c;
                        }
                    }
                    outputs.push(LinearConstraint {
                        coeffs,
                        rhs: -atom.constant,
                    });
                }
                (false, false) if atom.constant <= 0.0 => {}
                (false, false) => {
                    outputs.clear();
                    lo.clear();
                    break;
                } // a false constant constraint: drop this disjunct
            }
        }
        if lo.is_empty() {
            continue;
        }
        if let Some(i) = (0..nx).find(|&i| !lo[i].is_finite() || !hi[i].is_finite()) {
            return Err(sem(format!(
                "X_{i} needs both a lower and an upper bound in every disjunct"
            )));
        }
        if lo.iter().zip(&hi).any(|(l, h)| l > h) {
            continue; // empty box: no counterexample can come from it
        }
        let input = InputSet::Box(InputBox { lo, hi });
        match cases.iter_mut().find(|c| c.input == input) {
            Some(c) => c.unsafe_output.terms.push(outputs),
            None => cases.push(Case {
                input,
                unsafe_output: OutputDnf {
                    terms: vec![outputs],
                },
            }),
        }
    }
    Ok(Property {
        num_inputs: nx,
        num_outputs: ny,
        cases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROBUST: &str = "; a robustness property\n(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(declare-const Y_2 Real)\n(assert (<= X_0 0.6))\n(assert (>= X_0 4e-1))\n(assert (<= X_1 +1.))\n(assert (>= X_1 -.5E0))\n(assert (or (and (>= Y_1 Y_0)) (and (<= (- Y_0 Y_2) 0))))\n";

    #[test]
    fn parses_box_and_output_dnf() {
        let p = parse_vnnlib(ROBUST, "t").unwrap();
        assert_eq!((p.num_inputs, p.num_outputs, p.cases.len()), (2, 3, 1));
        let InputSet::Box(b) = &p.cases[0].input else {
            panic!()
        };
        assert_eq!(
            (b.lo.clone(), b.hi.clone()),
            (vec![0.4, -0.5], vec![0.6, 1.0])
        );
        let d = &p.cases[0].unsafe_output;
        assert_eq!(d.terms.len(), 2);
        assert_eq!(
            d.terms[0][0],
            LinearConstraint {
                coeffs: vec![1.0, -1.0, 0.0],
                rhs: 0.0
            }
        );
        assert!(p.is_counterexample(&[0.5, 0.0], &[1.0, 2.0, 0.0]));
        assert!(!p.is_counterexample(&[0.5, 0.0], &[3.0, 2.0, 0.0]));
        assert!(!p.is_counterexample(&[0.7, 0.0], &[1.0, 2.0, 0.0]));
    }

    #[test]
    fn or_of_input_boxes_becomes_cases() {
        let text = "(declare-const X_0 Real)(declare-const Y_0 Real)\n(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 -1)) (and (>= X_0 2) (<= X_0 3) (>= Y_0 5))))";
        let p = parse_vnnlib(text, "t").unwrap();
        assert_eq!(p.cases.len(), 2);
        assert!(p.is_counterexample(&[2.5], &[6.0]));
        assert!(!p.is_counterexample(&[0.5], &[6.0]));
    }

    #[test]
    fn errors_carry_line_and_column() {
        let cases = [
            ("(declare-const X_0 Real)\n(assert (<= X_0 abc))", "2:17"),
            ("(declare-const X_0 Real)\n(assert (<= X_0 1)", "2:1"),
            ("(declare-const Z Real)", "1:16"),
            ("(declare-const X_0 Real)\n  (assert (< X_0 1))", "2:11"),
            ("(assert (<= X_0 1))", "1:13"),
            (")", "1:1"),
        ];
        for (text, at) in cases {
            let e = parse_vnnlib(text, "f.vnnlib").unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("f.vnnlib:{at}:")),
                "{text:?} gave {e}"
            );
        }
    }

    #[test]
    fn semantic_errors() {
        let missing = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 1))(assert (<= Y_0 0))";
        assert!(parse_vnnlib(missing, "f")
            .unwrap_err()
            .to_string()
            .contains("lower and an upper"));
        let mixed = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 Y_0))";
        assert!(parse_vnnlib(mixed, "f")
            .unwrap_err()
            .to_string()
            .contains("mixes"));
        let gap = "(declare-const X_1 Real)(declare-const Y_0 Real)";
        assert!(parse_vnnlib(gap, "f")
            .unwrap_err()
            .to_string()
            .contains("without gaps"));
    }
}
