//! A memory-mapped reader of safetensors files that treats the file as
//! hostile: every length, offset and shape in the header is checked against
//! the file before anything is read, nothing is allocated because the file
//! says so, and every error names the file, the tensor or field, and what
//! was expected.
//!
//! Layout: an 8-byte little-endian header length N, N bytes of JSON
//! (`{"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...}`
//! plus an optional `__metadata__` map), then the tensor data; offsets are
//! relative to the end of the header.

use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Largest header accepted (real headers are kilobytes to a few megabytes).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;
/// Largest rank accepted.
pub const MAX_RANK: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    U8,
    I8,
}

impl Dtype {
    fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "U8" => Dtype::U8,
            "I8" => Dtype::I8,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::U8 | Dtype::I8 => 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range in the file.
    pub range: std::ops::Range<usize>,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct SafetensorsError {
    pub file: String,
    pub message: String,
}

pub struct SafeTensors {
    path: PathBuf,
    map: Mmap,
    tensors: BTreeMap<String, TensorInfo>,
}

impl SafeTensors {
    /// Opens and validates `path`; tensor data is read lazily from the mapping.
    pub fn open(path: &Path) -> Result<SafeTensors, SafetensorsError> {
        let err = |message: String| SafetensorsError {
            file: path.display().to_string(),
            message,
        };
        let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        // SAFETY: the mapping is read-only and private to this process; the
        // file may change underneath (which would corrupt values, not memory
        // safety for the byte slices we read, as the mapping's length is fixed).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| err(format!("cannot map: {e}")))?;
        let tensors = parse_header(&map).map_err(err)?;
        Ok(SafeTensors {
            path: path.to_path_buf(),
            map,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    fn err(&self, message: String) -> SafetensorsError {
        SafetensorsError {
            file: self.path.display().to_string(),
            message,
        }
    }

    /// The tensor `name`, checked to have `shape`.
    pub fn get(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<(&TensorInfo, &[u8]), SafetensorsError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| self.err(format!("tensor '{name}' is missing")))?;
        if info.shape != shape {
            return Err(self.err(format!(
                "tensor '{name}' has shape {:?}, expected {shape:?}",
                info.shape
            )));
        }
        Ok((info, &self.map[info.range.clone()]))
    }

    /// A floating-point tensor (F32, F16 or BF16) as f32 values.
    pub fn f32_values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, SafetensorsError> {
        let (info, bytes) = self.get(name, shape)?;
        let values: Vec<f32> = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(self.err(format!(
                    "tensor '{name}' has dtype {other:?}, expected F32, F16 or BF16"
                )));
            }
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.err(format!(
                "tensor '{name}' holds a non-finite value at index {i}"
            )));
        }
        Ok(values)
    }
}

fn parse_header(bytes: &[u8]) -> Result<BTreeMap<String, TensorInfo>, String> {
    if bytes.len() < 8 {
        return Err(format!(
            "{} bytes is too short for a safetensors file (8-byte header length expected)",
            bytes.len()
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let available = bytes.len() as u64 - 8;
    if n > MAX_HEADER_BYTES || n > available {
        return Err(format!(
            "header length {n} is larger than the file ({available} bytes after the length) or the {MAX_HEADER_BYTES}-byte limit"
        ));
    }
    let header = &bytes[8..8 + n as usize];
    let data_start = 8 + n as usize;
    let data_len = bytes.len() - data_start;
    let json: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("header is not valid JSON: {e}"))?;
    let object = json
        .as_object()
        .ok_or_else(|| "header is not a JSON object".to_string())?;
    let mut tensors = BTreeMap::new();
    for (name, entry) in object {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| {
            entry
                .get(key)
                .ok_or_else(|| format!("tensor '{name}': field '{key}' is missing"))
        };
        let dtype_str = field("dtype")?
            .as_str()
            .ok_or_else(|| format!("tensor '{name}': dtype is not a string"))?;
        let dtype = Dtype::parse(dtype_str).ok_or_else(|| {
            format!("tensor '{name}': dtype '{dtype_str}' is not one of F32, F16, BF16, U8, I8")
        })?;
        let shape_json = field("shape")?
            .as_array()
            .ok_or_else(|| format!("tensor '{name}': shape is not an array"))?;
        if shape_json.len() > MAX_RANK {
            return Err(format!(
                "tensor '{name}': rank {} exceeds {MAX_RANK}",
                shape_json.len()
            ));
        }
        let mut shape = Vec::with_capacity(shape_json.len());
        for d in shape_json {
            let d = d
                .as_u64()
                .filter(|&d| d <= u32::MAX as u64)
                .ok_or_else(|| {
                    format!("tensor '{name}': dimension {d} is not an integer in 0..=2^32-1")
                })?;
            shape.push(d as usize);
        }
        let bytes_needed = shape
            .iter()
            .try_fold(dtype.size(), |acc: usize, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor '{name}': shape {shape:?} overflows"))?;
        let offsets = field("data_offsets")?
            .as_array()
            .filter(|a| a.len() == 2)
            .ok_or_else(|| format!("tensor '{name}': data_offsets is not [begin, end]"))?;
        let (begin, end) = match (offsets[0].as_u64(), offsets[1].as_u64()) {
            (Some(b), Some(e)) => (b, e),
            _ => {
                return Err(format!(
                    "tensor '{name}': data_offsets are not non-negative integers"
                ))
            }
        };
        if begin > end || end > data_len as u64 {
            return Err(format!(
                "tensor '{name}': data [{begin}, {end}) lies outside the {data_len} data bytes of the file"
            ));
        }
        if end - begin != bytes_needed as u64 {
            return Err(format!(
                "tensor '{name}': {} data bytes, but dtype {dtype_str} and shape {shape:?} need {bytes_needed}",
                end - begin
            ));
        }
        tensors.insert(
            name.clone(),
            TensorInfo {
                dtype,
                shape,
                range: data_start + begin as usize..data_start + end as usize,
            },
        );
    }
    Ok(tensors)
}

/// Writes a safetensors file (used by tests to build fixtures and hostile files).
pub fn write(path: &Path, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, dtype, shape, data) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()]}),
        );
        offset += data.len();
    }
    let header = serde_json::to_vec(&serde_json::Value::Object(header))?;
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ternbench-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn round_trip_and_dtypes() {
        let path = temp("ok.safetensors");
        let bf16: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        write(
            &path,
            &[
                ("a", "BF16", vec![2], bf16),
                ("b", "U8", vec![1, 3], vec![1, 2, 3]),
            ],
        )
        .unwrap();
        let st = SafeTensors::open(&path).unwrap();
        assert_eq!(st.f32_values("a", &[2]).unwrap(), vec![1.5, -2.0]);
        assert_eq!(st.get("b", &[1, 3]).unwrap().1, &[1, 2, 3]);
        let e = st.get("b", &[3]).unwrap_err().to_string();
        assert!(
            e.contains("tensor 'b' has shape [1, 3], expected [3]"),
            "{e}"
        );
        assert!(st
            .get("c", &[1])
            .unwrap_err()
            .to_string()
            .contains("'c' is missing"));
        assert!(st
            .f32_values("b", &[1, 3])
            .unwrap_err()
            .to_string()
            .contains("expected F32, F16 or BF16"));
    }

    fn open_bytes(name: &str, bytes: &[u8]) -> String {
        let path = temp(name);
        std::fs::write(&path, bytes).unwrap();
        match SafeTensors::open(&path) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    fn with_header(json: &str, data: usize) -> Vec<u8> {
        let mut v = (json.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(json.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data));
        v
    }

    #[test]
    fn hostile_files_give_named_errors() {
        let cases: &[(&str, Vec<u8>, &str)] = &[
            ("short", vec![1, 2, 3], "too short"),
            (
                "huge-header",
                u64::MAX.to_le_bytes().to_vec(),
                "header length",
            ),
            ("not-json", with_header("{nope", 0), "not valid JSON"),
            ("not-object", with_header("[1]", 0), "not a JSON object"),
            (
                "past-end",
                with_header(
                    r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                    8,
                ),
                "outside the 8 data bytes",
            ),
            (
                "size-mismatch",
                with_header(
                    r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
                    16,
                ),
                "need 12",
            ),
            (
                "bad-dtype",
                with_header(
                    r#"{"w":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}"#,
                    1,
                ),
                "dtype 'Q9'",
            ),
            (
                "overflow",
                with_header(
                    r#"{"w":{"dtype":"F32","shape":[4294967295,4294967295,4294967295],"data_offsets":[0,1]}}"#,
                    1,
                ),
                "overflows",
            ),
            (
                "huge-dim",
                with_header(
                    r#"{"w":{"dtype":"U8","shape":[99999999999],"data_offsets":[0,1]}}"#,
                    1,
                ),
                "not an integer in",
            ),
            (
                "no-offsets",
                with_header(r#"{"w":{"dtype":"U8","shape":[1]}}"#, 1),
                "'data_offsets' is missing",
            ),
            (
                "reversed",
                with_header(
                    r#"{"w":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}"#,
                    1,
                ),
                "outside",
            ),
            (
                "deep",
                with_header(&format!("{}{}", "[".repeat(10000), "]".repeat(10000)), 0),
                "not valid JSON",
            ),
        ];
        for (name, bytes, want) in cases {
            let e = open_bytes(name, bytes);
            assert!(e.contains(want), "{name}: {e}");
            assert!(
                e.contains(name),
                "{name}: error does not name the file: {e}"
            );
        }
    }

    #[test]
    fn non_finite_values_are_refused() {
        let path = temp("nan.safetensors");
        write(
            &path,
            &[(
                "w",
                "F32",
                vec![2],
                [1.0f32, f32::NAN]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            )],
        )
        .unwrap();
        let e = SafeTensors::open(&path)
            .unwrap()
            .f32_values("w", &[2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-finite value at index 1"), "{e}");
    }
}
