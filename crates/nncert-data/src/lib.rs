//! nncert-data: MNIST (IDX, raw or gzip) and CIFAR-10 (binary format) loaders.
//! Images come out as float32 in [0, 1] (pixel / 255), channel-first.

use std::io::Read;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
}

/// Labelled images, all of one shape (`[C, H, W]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub shape: [usize; 3],
    /// `len · C·H·W` values in [0, 1], image after image.
    pub pixels: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }
    /// The first `n` examples (or all, if fewer).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            shape: self.shape,
            pixels: self.pixels[..n * self.image_len()].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.display().to_string(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    maybe_gunzip(bytes).map_err(io)
}

fn maybe_gunzip(bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out)?;
    Ok(out)
}

fn be_u32(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// Parses IDX image bytes (magic 0x803, u8 pixels) into `(count, rows, cols, pixels)`.
fn parse_idx_images(b: &[u8], name: &str) -> Result<(usize, usize, usize, Vec<f32>), DataError> {
    let bad = |msg: &str| DataError::Format {
        path: name.to_string(),
        msg: msg.to_string(),
    };
    if be_u32(b, 0) != Some(0x0803) {
        return Err(bad("not an IDX image file (magic 0x00000803)"));
    }
    let (n, r, c) = (
        be_u32(b, 4).unwrap_or(0),
        be_u32(b, 8).unwrap_or(0),
        be_u32(b, 12).unwrap_or(0),
    );
    let need = n
        .checked_mul(r)
        .and_then(|x| x.checked_mul(c))
        .ok_or_else(|| bad("header sizes overflow"))?;
    let data = b
        .get(16..16 + need)
        .ok_or_else(|| bad("file is shorter than its header says"))?;
    Ok((n, r, c, data.iter().map(|&p| p as f32 / 255.0).collect()))
}

fn parse_idx_labels(b: &[u8], name: &str) -> Result<Vec<u8>, DataError> {
    let bad = |msg: &str| DataError::Format {
        path: name.to_string(),
        msg: msg.to_string(),
    };
    if be_u32(b, 0) != Some(0x0801) {
        return Err(bad("not an IDX label file (magic 0x00000801)"));
    }
    let n = be_u32(b, 4).unwrap_or(0);
    Ok(b.get(8..8 + n)
        .ok_or_else(|| bad("file is shorter than its header says"))?
        .to_vec())
}

/// MNIST from IDX bytes (each raw or gzip-compressed).
pub fn mnist_from_bytes(images: Vec<u8>, labels: Vec<u8>) -> Result<Dataset, DataError> {
    let io = |source| DataError::Io {
        path: "<memory>".into(),
        source,
    };
    let (images, labels) = (
        maybe_gunzip(images).map_err(io)?,
        maybe_gunzip(labels).map_err(io)?,
    );
    let (n, r, c, pixels) = parse_idx_images(&images, "images")?;
    let labels = parse_idx_labels(&labels, "labels")?;
    if labels.len() != n {
        return Err(DataError::Format {
            path: "labels".into(),
            msg: format!("{} labels for {n} images", labels.len()),
        });
    }
    Ok(Dataset {
        shape: [1, r, c],
        pixels,
        labels,
    })
}

/// MNIST from a directory holding `{split}-images-idx3-ubyte[.gz]` and
/// `{split}-labels-idx1-ubyte[.gz]`, split = `t10k` (test) or `train`.
pub fn load_mnist(dir: &Path, split: &str) -> Result<Dataset, DataError> {
    let find = |stem: String| -> Result<std::path::PathBuf, DataError> {
        [dir.join(format!("{stem}.gz")), dir.join(&stem)]
            .into_iter()
            .find(|p| p.exists())
            .ok_or_else(|| DataError::Io {
                path: dir.join(&stem).display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file (raw or .gz)",
                ),
            })
    };
    let ip = find(format!("{split}-images-idx3-ubyte"))?;
    let lp = find(format!("{split}-labels-idx1-ubyte"))?;
    let (images, labels) = (read(&ip)?, read(&lp)?);
    let (n, r, c, pixels) = parse_idx_images(&images, &ip.display().to_string())?;
    let labels = parse_idx_labels(&labels, &lp.display().to_string())?;
    if labels.len() != n {
        return Err(DataError::Format {
            path: lp.display().to_string(),
            msg: format!("{} labels for {n} images", labels.len()),
        });
    }
    Ok(Dataset {
        shape: [1, r, c],
        pixels,
        labels,
    })
}

/// CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes
/// (1024 R, 1024 G, 1024 B, row-major). `path` is one batch file or a
/// directory of `*.bin` batches (read in name order).
pub fn load_cifar10(path: &Path) -> Result<Dataset, DataError> {
    let mut files = if path.is_dir() {
        let io = |source| DataError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut v: Vec<_> = std::fs::read_dir(path)
            .map_err(io)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "bin"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(DataError::Format {
            path: path.display().to_string(),
            msg: "no .bin batch files".into(),
        });
    }
    let mut ds = Dataset {
        shape: [3, 32, 32],
        pixels: Vec::new(),
        labels: Vec::new(),
    };
    for f in files.drain(..) {
        let b = read(&f)?;
        const REC: usize = 1 + 3072;
        if b.is_empty() || b.len() % REC != 0 {
            return Err(DataError::Format {
                path: f.display().to_string(),
                msg: format!("size {} is not a multiple of {REC}-byte records", b.len()),
            });
        }
        for rec in b.chunks_exact(REC) {
            if rec[0] > 9 {
                return Err(DataError::Format {
                    path: f.display().to_string(),
                    msg: format!("label {} out of range 0..9", rec[0]),
                });
            }
            ds.labels.push(rec[0]);
            ds.pixels.extend(rec[1..].iter().map(|&p| p as f32 / 255.0));
        }
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_images(n: usize, r: usize, c: usize, px: impl Fn(usize) -> u8) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 3];
        for d in [n, r, c] {
            v.extend((d as u32).to_be_bytes());
        }
        v.extend((0..n * r * c).map(px));
        v
    }

    #[test]
    fn mnist_idx_raw_and_gz() {
        use std::io::Write;
        let images = idx_images(2, 2, 3, |i| (i * 20) as u8);
        let labels = vec![0, 0, 8, 1, 0, 0, 0, 2, 7, 3];
        let ds = mnist_from_bytes(images.clone(), labels.clone()).unwrap();
        assert_eq!((ds.len(), ds.shape), (2, [1, 2, 3]));
        assert_eq!(ds.labels, vec![7, 3]);
        assert_eq!(ds.image(1)[0], 120.0 / 255.0);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&images).unwrap();
        assert_eq!(mnist_from_bytes(gz.finish().unwrap(), labels).unwrap(), ds);
    }

    #[test]
    fn mnist_rejects_truncated_and_mismatched() {
        let mut images = idx_images(2, 2, 2, |_| 1);
        images.truncate(20);
        assert!(mnist_from_bytes(images, vec![0, 0, 8, 1, 0, 0, 0, 2, 1, 1])
            .unwrap_err()
            .to_string()
            .contains("shorter"));
        let ok = idx_images(2, 2, 2, |_| 1);
        assert!(mnist_from_bytes(ok, vec![0, 0, 8, 1, 0, 0, 0, 1, 1])
            .unwrap_err()
            .to_string()
            .contains("1 labels for 2"));
    }

    #[test]
    fn cifar10_synthetic_batch() {
        let dir = std::env::temp_dir().join(format!("nncert-cifar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = Vec::new();
        for k in 0..3u8 {
            bytes.push(k * 3);
            bytes.extend((0..3072).map(|i| ((i / 1024) as u8) * 100 + k));
        }
        std::fs::write(dir.join("test_batch.bin"), &bytes).unwrap();
        let ds = load_cifar10(&dir).unwrap();
        assert_eq!(
            (ds.len(), ds.shape, ds.labels.clone()),
            (3, [3, 32, 32], vec![0, 3, 6])
        );
        // Channel-first: green plane of image 2 starts at 1024.
        assert_eq!(ds.image(2)[1024], 102.0 / 255.0);
        std::fs::write(dir.join("bad.bin"), &bytes[..100]).unwrap();
        assert!(load_cifar10(&dir.join("bad.bin")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shared_mnist_test_set() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist");
        let dir = std::env::var_os("NNCERT_SHARED")
            .map(|s| std::path::PathBuf::from(s).join("data/mnist"))
            .unwrap_or(dir);
        if !dir.is_dir() {
            eprintln!("SKIP: shared MNIST not found");
            return;
        }
        let ds = load_mnist(&dir, "t10k").unwrap();
        assert_eq!((ds.len(), ds.shape), (10_000, [1, 28, 28]));
        assert_eq!(&ds.labels[..5], &[7, 2, 1, 0, 4]);
    }
}
