//! The VNN-COMP result contract: first line sat/unsat/timeout/unknown/error;
//! for sat, the witness `((X_0 v) … (Y_0 v))`.

use std::fmt::Write as _;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub enum VnnResult {
    /// A counterexample: the input point and the output it produces.
    Sat {
        x: Vec<f64>,
        y: Vec<f64>,
    },
    Unsat,
    Timeout,
    Unknown,
    Error,
}

impl VnnResult {
    pub fn keyword(&self) -> &'static str {
        match self {
            VnnResult::Sat { .. } => "sat",
            VnnResult::Unsat => "unsat",
            VnnResult::Timeout => "timeout",
            VnnResult::Unknown => "unknown",
            VnnResult::Error => "error",
        }
    }

    /// The file contents VNN-COMP expects. Values print with Rust's shortest
    /// round-trip form, so a float32 witness is reproduced exactly.
    pub fn render(&self) -> String {
        let mut s = format!("{}\n", self.keyword());
        if let VnnResult::Sat { x, y } = self {
            let pairs: Vec<String> = x
                .iter()
                .enumerate()
                .map(|(i, v)| format!("(X_{i} {v:e})"))
                .chain(y.iter().enumerate().map(|(i, v)| format!("(Y_{i} {v:e})")))
                .collect();
            let _ = writeln!(s, "({})", pairs.join("\n "));
        }
        s
    }
}

/// Writes `text` to `path` via a temporary file in the same directory and a
/// rename, so readers never see a partial result.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sat_witness_format() {
        let r = VnnResult::Sat {
            x: vec![0.5, -1.25e-8],
            y: vec![3.0],
        };
        let text = r.render();
        assert_eq!(text, "sat\n((X_0 5e-1)\n (X_1 -1.25e-8)\n (Y_0 3e0))\n");
        assert_eq!(VnnResult::Unsat.render(), "unsat\n");
    }

    #[test]
    fn atomic_write_replaces_file() {
        let p = std::env::temp_dir().join(format!("nncert-vnn-{}.txt", std::process::id()));
        write_atomically(&p, "unknown\n").unwrap();
        write_atomically(&p, "unsat\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "unsat\n");
        std::fs::remove_file(&p).unwrap();
    }
}
