//! GGUF files (v2/v3, little-endian): a memory-mapped reader that treats the
//! file as hostile, and a streaming writer.
//!
//! Layout: magic `GGUF`, u32 version, u64 tensor count, u64 metadata count,
//! the metadata (key string, u32 value type, value), the tensor infos (name,
//! u32 rank, u64 dims with ne\[0\] the contiguous one, u32 ggml type, u64
//! offset), padding to `general.alignment` (32 by default), then the tensor
//! data; each offset is relative to the data section and aligned.
//!
//! The reader checks every count, length and dimension against the bytes
//! that are really in the file before using it (strings, arrays, tensor
//! counts and ranks are bounded; products are overflow-checked; every
//! tensor's byte range lies inside the file and is aligned), allocates only
//! in proportion to bytes present, never panics, and names the file, the
//! field or tensor and what was expected in every error. Arrays are not
//! decoded at open (they are checked and kept as byte ranges).
//!
//! Type id 36 is the I2_S of the bitnet.cpp fork (2-bit codes plus a 32-byte
//! per-tensor tail holding the f32 scale), while upstream ggml retired 36
//! (IQ4_NL_4_4). The reader never guesses from the id: the dialect is given
//! explicitly ([`Dialect`]) or read from the metadata (`general.file_type` =
//! 40, the fork's MOSTLY_I2_S, or a fork-only architecture name), and a file
//! with id 36 and neither is refused.

use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub const MAGIC: [u8; 4] = *b"GGUF";
/// Default alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest string accepted (keys, tensor names, string values).
pub const MAX_STRING_BYTES: u64 = 1 << 20;
/// Longest tensor name accepted.
pub const MAX_NAME_BYTES: u64 = 256;
/// Most array elements accepted.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Most tensors / metadata entries accepted.
pub const MAX_TENSORS: u64 = 1 << 16;
pub const MAX_KV: u64 = 1 << 16;
/// Highest rank accepted (ggml's GGML_MAX_DIMS).
pub const MAX_DIMS: u32 = 4;
/// Largest accepted `general.alignment`.
pub const MAX_ALIGNMENT: u64 = 1 << 16;
/// `general.file_type` of the bitnet.cpp fork's I2_S models.
pub const FILE_TYPE_I2S: u64 = 40;
/// Architecture names only the bitnet.cpp fork uses.
pub const FORK_ARCHITECTURES: [&str; 2] = ["bitnet-b1.58", "bitnet-25"];

/// Which meaning of the colliding type id 36 a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// Upstream ggml / llama.cpp: id 36 is a retired type and is refused.
    Ggml,
    /// The bitnet.cpp fork: id 36 is I2_S.
    BitnetCpp,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Ggml => "ggml",
            Dialect::BitnetCpp => "bitnet-cpp",
        }
    }
}

/// The tensor types this reader and writer handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q8_0,
    Q6K,
    Tq1_0,
    Tq2_0,
    /// bitnet.cpp fork only (id 36 in its dialect).
    I2S,
}

impl GgmlType {
    pub const ALL: [GgmlType; 8] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q6K,
        GgmlType::Tq1_0,
        GgmlType::Tq2_0,
        GgmlType::I2S,
    ];

    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q8_0 => 8,
            GgmlType::Q6K => 14,
            GgmlType::Tq1_0 => 34,
            GgmlType::Tq2_0 => 35,
            GgmlType::I2S => 36,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q6K => "Q6_K",
            GgmlType::Tq1_0 => "TQ1_0",
            GgmlType::Tq2_0 => "TQ2_0",
            GgmlType::I2S => "I2_S",
        }
    }

    /// Elements per block along ne\[0\] and bytes per block (I2_S: 128 weights in 32 bytes plus the tail).
    pub fn block(self) -> (u64, u64) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q6K => (256, 210),
            GgmlType::Tq1_0 => (256, 54),
            GgmlType::Tq2_0 => (256, 66),
            GgmlType::I2S => (128, 32),
        }
    }

    /// Bytes of a tensor with these dims, or why the dims do not fit the type.
    pub fn nbytes(self, dims: &[u64]) -> Result<u64, String> {
        let (block, bytes) = self.block();
        let ne0 = *dims
            .first()
            .ok_or("a tensor needs at least one dimension")?;
        if ne0 % block != 0 {
            return Err(format!(
                "ne[0] = {ne0} is not a multiple of the {} block of {block}",
                self.name()
            ));
        }
        let n = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| format!("dims {dims:?} overflow"))?;
        let body = (n / block)
            .checked_mul(bytes)
            .ok_or_else(|| format!("dims {dims:?} overflow"))?;
        Ok(if self == GgmlType::I2S {
            body + ternbench_kernels::formats::i2s::TAIL_BYTES as u64
        } else {
            body
        })
    }

    /// The type of an id under a dialect; `Err` says why the id is refused.
    fn from_id(id: u32, dialect: Option<(Dialect, String)>) -> Result<GgmlType, String> {
        if let Some(t) = GgmlType::ALL
            .into_iter()
            .find(|t| t.id() == id && *t != GgmlType::I2S)
        {
            return Ok(t);
        }
        if id == 36 {
            return match dialect {
                Some((Dialect::BitnetCpp, _)) => Ok(GgmlType::I2S),
                Some((Dialect::Ggml, why)) => Err(format!(
                    "type id 36 is retired in upstream ggml (IQ4_NL_4_4) and the dialect is ggml ({why}); expected F32, F16, Q4_0, Q8_0, Q6_K, TQ1_0 or TQ2_0, or --gguf-dialect bitnet-cpp for bitnet.cpp's I2_S"
                )),
                None => Err(format!(
                    "type id 36 is I2_S in the bitnet.cpp fork but a retired type in upstream ggml, and the metadata does not say which (general.file_type is not {FILE_TYPE_I2S} and the architecture is not one of {FORK_ARCHITECTURES:?}); pass --gguf-dialect bitnet-cpp or --gguf-dialect ggml"
                )),
            };
        }
        let known = match id {
            3 => "Q4_1",
            6 => "Q5_0",
            7 => "Q5_1",
            9 => "Q8_1",
            10 => "Q2_K",
            11 => "Q3_K",
            12 => "Q4_K",
            13 => "Q5_K",
            15 => "Q8_K",
            16..=23 => "an IQ type",
            24 => "I8",
            25 => "I16",
            26 => "I32",
            27 => "I64",
            28 => "F64",
            29 => "IQ1_M",
            30 => "BF16",
            39 => "MXFP4",
            _ => "unknown",
        };
        Err(format!(
            "type id {id} ({known}) is not supported; expected F32 (0), F16 (1), Q4_0 (2), Q8_0 (8), Q6_K (14), TQ1_0 (34), TQ2_0 (35) or I2_S (36, bitnet.cpp dialect)"
        ))
    }
}

/// A metadata value. Arrays are kept as a checked byte range and decoded on request.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// Read side: element type id, count and the bytes of the elements in the file.
    Array {
        elem: u32,
        count: u64,
        range: Range<usize>,
    },
    /// Write side: arrays of strings, f32 and i32 (a tokenizer's vocabulary).
    StrArray(Vec<String>),
    F32Array(Vec<f32>),
    I32Array(Vec<i32>),
}

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::Array { .. } | Value::StrArray(_) | Value::F32Array(_) | Value::I32Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// A non-negative integer of any integer type.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Str(s) => format!("\"{}\"", s.chars().take(60).collect::<String>()),
            Value::Array { elem, count, .. } => format!("an array of {count} (type {elem})"),
            other => format!("{other:?}"),
        }
    }
}

/// Bytes of one fixed-size scalar of a value type (None for strings and arrays).
fn scalar_size(t: u32) -> Option<u64> {
    match t {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// One tensor of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ne\[0\] (contiguous) first, as in the file.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset relative to the data section.
    pub offset: u64,
    /// Absolute byte range in the file.
    pub range: Range<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct GgufError {
    pub file: String,
    pub message: String,
}

/// An open, validated GGUF file.
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    pub version: u32,
    pub alignment: u64,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    by_name: BTreeMap<String, usize>,
    /// The dialect in force and where it came from (flag or metadata); None when neither said.
    pub dialect: Option<(Dialect, String)>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "{} needs {n} bytes at offset {} but the file ends after {} more",
                what(),
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], String> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, max: u64, what: &dyn Fn() -> String) -> Result<&'a str, String> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        if len > max {
            return Err(format!(
                "{} has length {len}; expected at most {max} bytes",
                what()
            ));
        }
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|e| format!("{} is not valid UTF-8: {e}", what()))
    }

    /// Reads a value of type `t` (arrays are checked and skipped).
    fn value(&mut self, t: u32, what: &dyn Fn() -> String) -> Result<Value, String> {
        Ok(match t {
            0 => Value::U8(self.array::<1>(what)?[0]),
            1 => Value::I8(self.array::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("{} is a bool of byte {b}; expected 0 or 1", what())),
            },
            8 => Value::Str(self.string(MAX_STRING_BYTES, what)?.to_string()),
            9 => {
                let elem = self.u32(&|| format!("the element type of {}", what()))?;
                let count = self.u64(&|| format!("the element count of {}", what()))?;
                if count > MAX_ARRAY_LEN {
                    return Err(format!(
                        "{} claims {count} elements; expected at most {MAX_ARRAY_LEN}",
                        what()
                    ));
                }
                let start = self.pos;
                match (elem, scalar_size(elem)) {
                    (_, Some(size)) => {
                        self.take(count * size, &|| {
                            format!("{} ({count} elements of {size} bytes)", what())
                        })?;
                    }
                    (8, None) => {
                        // Each string needs at least its 8-byte length: refuse counts the file cannot hold.
                        if count > self.remaining() / 8 {
                            return Err(format!(
                                "{} claims {count} strings but only {} bytes remain",
                                what(),
                                self.remaining()
                            ));
                        }
                        for i in 0..count {
                            self.string(MAX_STRING_BYTES, &|| {
                                format!("element {i} of {}", what())
                            })?;
                        }
                    }
                    (9, None) => {
                        return Err(format!(
                            "{} is an array of arrays; expected an array of scalars or strings",
                            what()
                        ))
                    }
                    _ => {
                        return Err(format!(
                            "{} has element type {elem}; expected a value type 0..=12",
                            what()
                        ))
                    }
                }
                Value::Array {
                    elem,
                    count,
                    range: start..self.pos,
                }
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            _ => return Err(format!("{} has value type {t}; expected 0..=12", what())),
        })
    }
}

impl GgufFile {
    /// Opens and validates `path`; `dialect` overrides what the metadata says about type id 36.
    pub fn open(path: &Path, dialect: Option<Dialect>) -> Result<GgufFile, GgufError> {
        let err = |message: String| GgufError {
            file: path.display().to_string(),
            message,
        };
        let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        // SAFETY: a read-only private mapping; if the file is changed underneath,
        // values may change but every slice stays inside the mapping's fixed length.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| err(format!("cannot map: {e}")))?;
        let parsed = parse(&map, dialect).map_err(err)?;
        let by_name = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            version: parsed.version,
            alignment: parsed.alignment,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            by_name,
            dialect: parsed.dialect,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn err(&self, message: String) -> GgufError {
        GgufError {
            file: self.path.display().to_string(),
            message,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor (its range was checked at open).
    pub fn data(&self, t: &TensorInfo) -> &[u8] {
        &self.map[t.range.clone()]
    }

    /// The strings of an array value.
    pub fn string_array(&self, key: &str) -> Result<Vec<String>, GgufError> {
        match self.get(key) {
            Some(Value::Array {
                elem: 8,
                count,
                range,
            }) => {
                let mut c = Cursor {
                    bytes: &self.map[..range.end],
                    pos: range.start,
                };
                let mut out = Vec::with_capacity(*count as usize);
                for i in 0..*count {
                    out.push(
                        c.string(MAX_STRING_BYTES, &|| format!("{key}[{i}]"))
                            .map_err(|m| self.err(m))?
                            .to_string(),
                    );
                }
                Ok(out)
            }
            Some(v) => Err(self.err(format!(
                "field '{key}' is {}; expected an array of strings",
                v.describe()
            ))),
            None => Err(self.err(format!("field '{key}' is missing"))),
        }
    }
}

struct Parsed {
    version: u32,
    alignment: u64,
    metadata: BTreeMap<String, Value>,
    tensors: Vec<TensorInfo>,
    dialect: Option<(Dialect, String)>,
}

fn parse(bytes: &[u8], explicit: Option<Dialect>) -> Result<Parsed, String> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic: [u8; 4] = c.array(&|| "the magic".to_string())?;
    if magic != MAGIC {
        return Err(format!(
            "magic is {magic:02x?}; expected \"GGUF\" (47 47 55 46): not a GGUF file"
        ));
    }
    let version_bytes: [u8; 4] = c.array(&|| "the version".to_string())?;
    let version = u32::from_le_bytes(version_bytes);
    if !(2..=3).contains(&version) {
        if (2..=3).contains(&u32::from_be_bytes(version_bytes)) {
            return Err("the file is big-endian GGUF; expected a little-endian file".to_string());
        }
        return Err(format!(
            "version {version}; expected 2 or 3 (version 1 files are not supported)"
        ));
    }
    let n_tensors = c.u64(&|| "the tensor count".to_string())?;
    let n_kv = c.u64(&|| "the metadata count".to_string())?;
    // A tensor info takes at least 8 + 4 + 8 + 4 + 8 bytes, a key-value pair at least 8 + 4 + 1.
    if n_tensors > MAX_TENSORS || n_tensors > c.remaining() / 32 {
        return Err(format!(
            "tensor count {n_tensors}; expected at most {} ({} bytes remain, the limit is {MAX_TENSORS})",
            (c.remaining() / 32).min(MAX_TENSORS),
            c.remaining()
        ));
    }
    if n_kv > MAX_KV || n_kv > c.remaining() / 13 {
        return Err(format!(
            "metadata count {n_kv}; expected at most {} ({} bytes remain, the limit is {MAX_KV})",
            (c.remaining() / 13).min(MAX_KV),
            c.remaining()
        ));
    }
    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = c
            .string(MAX_STRING_BYTES, &|| {
                format!("the key of metadata entry {i}")
            })?
            .to_string();
        let t = c.u32(&|| format!("the value type of field '{key}'"))?;
        let value = c.value(t, &|| format!("field '{key}'"))?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(format!("field '{key}' appears twice; expected unique keys"));
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => a,
            _ => {
                return Err(format!(
                    "field 'general.alignment' = {}; expected a power of two up to {MAX_ALIGNMENT}",
                    v.describe()
                ))
            }
        },
    };
    let meta_dialect =
        if metadata.get("general.file_type").and_then(Value::as_u64) == Some(FILE_TYPE_I2S) {
            Some((
                Dialect::BitnetCpp,
                format!("general.file_type = {FILE_TYPE_I2S}"),
            ))
        } else {
            match metadata.get("general.architecture").and_then(Value::as_str) {
                Some(a) if FORK_ARCHITECTURES.contains(&a) => Some((
                    Dialect::BitnetCpp,
                    format!("general.architecture = \"{a}\""),
                )),
                _ => None,
            }
        };
    let dialect = explicit
        .map(|d| (d, format!("--gguf-dialect {}", d.name())))
        .or(meta_dialect);
    let mut infos = Vec::with_capacity(n_tensors as usize);
    let mut names = std::collections::BTreeSet::new();
    for i in 0..n_tensors {
        let name = c
            .string(MAX_NAME_BYTES, &|| format!("the name of tensor {i}"))?
            .to_string();
        let rank = c.u32(&|| format!("the rank of tensor '{name}'"))?;
        if rank == 0 || rank > MAX_DIMS {
            return Err(format!(
                "tensor '{name}': rank {rank}; expected 1..={MAX_DIMS}"
            ));
        }
        let mut dims = Vec::with_capacity(rank as usize);
        for d in 0..rank {
            let v = c.u64(&|| format!("dimension {d} of tensor '{name}'"))?;
            if v == 0 || v > i64::MAX as u64 {
                return Err(format!(
                    "tensor '{name}': dimension {d} = {v}; expected 1..=2^63-1"
                ));
            }
            dims.push(v);
        }
        let id = c.u32(&|| format!("the type of tensor '{name}'"))?;
        let ty =
            GgmlType::from_id(id, dialect.clone()).map_err(|m| format!("tensor '{name}': {m}"))?;
        let offset = c.u64(&|| format!("the offset of tensor '{name}'"))?;
        if !names.insert(name.clone()) {
            return Err(format!(
                "tensor '{name}' appears twice; expected unique names"
            ));
        }
        infos.push((name, dims, ty, offset));
    }
    let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
    let file_len = bytes.len() as u64;
    let data_len = file_len.saturating_sub(data_start);
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, dims, ty, offset) in infos {
        let nbytes = ty
            .nbytes(&dims)
            .map_err(|m| format!("tensor '{name}' ({}): {m}", ty.name()))?;
        if offset % alignment != 0 {
            return Err(format!(
                "tensor '{name}': offset {offset} is not a multiple of the alignment {alignment}"
            ));
        }
        let end = offset.checked_add(nbytes);
        if end.is_none_or(|e| e > data_len) {
            return Err(format!(
                "tensor '{name}' ({} {dims:?}, {nbytes} bytes at data offset {offset}) lies past the end of the file ({data_len} data bytes from offset {data_start})",
                ty.name()
            ));
        }
        let start = (data_start + offset) as usize;
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset,
            range: start..start + nbytes as usize,
        });
    }
    Ok(Parsed {
        version,
        alignment,
        metadata,
        tensors,
        dialect,
    })
}

/// A tensor to write: its name, dims (ne\[0\] first) and type.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::Str(s) => put_string(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::StrArray(a) => {
            out.extend_from_slice(&8u32.to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for s in a {
                put_string(out, s);
            }
        }
        Value::F32Array(a) => {
            out.extend_from_slice(&6u32.to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            a.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        Value::I32Array(a) => {
            out.extend_from_slice(&5u32.to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            a.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        Value::Array { .. } => {
            return Err(std::io::Error::other(
                "a read-side array cannot be written; decode it first",
            ))
        }
    }
    Ok(())
}

/// The header bytes (through the padding before the data) and each tensor's data offset.
pub fn header_bytes(
    metadata: &[(String, Value)],
    tensors: &[TensorSpec],
    alignment: u64,
) -> Result<(Vec<u8>, Vec<u64>), String> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_string(&mut out, k);
        out.extend_from_slice(&v.type_id().to_le_bytes());
        put_value(&mut out, v).map_err(|e| format!("field '{k}': {e}"))?;
    }
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut offset = 0u64;
    for t in tensors {
        let nbytes =
            t.ty.nbytes(&t.dims)
                .map_err(|m| format!("tensor '{}' ({}): {m}", t.name, t.ty.name()))?;
        put_string(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.id().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + nbytes).div_ceil(alignment) * alignment;
    }
    let padded = (out.len() as u64).div_ceil(alignment) * alignment;
    out.resize(padded as usize, 0);
    Ok((out, offsets))
}

/// Writes a GGUF v3 file, asking `data(i)` for tensor i's bytes one tensor at a
/// time (so a model larger than memory can be written); each must have the
/// size its dims and type imply.
pub fn write(
    out: &mut impl Write,
    metadata: &[(String, Value)],
    tensors: &[TensorSpec],
    alignment: u64,
    mut data: impl FnMut(usize) -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<()> {
    let (header, _) = header_bytes(metadata, tensors, alignment).map_err(anyhow::Error::msg)?;
    out.write_all(&header)?;
    for (i, t) in tensors.iter().enumerate() {
        let bytes = data(i)?;
        let want = t.ty.nbytes(&t.dims).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            bytes.len() as u64 == want,
            "tensor '{}': {} bytes produced, {} {:?} needs {want}",
            t.name,
            bytes.len(),
            t.ty.name(),
            t.dims
        );
        out.write_all(&bytes)?;
        let pad = (want.div_ceil(alignment) * alignment - want) as usize;
        out.write_all(&vec![0u8; pad])?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ternbench-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn tiny_file(ty: GgmlType, meta: Vec<(String, Value)>) -> Vec<u8> {
        let tensors = vec![
            TensorSpec {
                name: "a".into(),
                dims: vec![256, 2],
                ty,
            },
            TensorSpec {
                name: "b".into(),
                dims: vec![3],
                ty: GgmlType::F32,
            },
        ];
        let mut out = Vec::new();
        write(&mut out, &meta, &tensors, 32, |i| {
            Ok(vec![
                if i == 0 { 0x55 } else { 0 };
                tensors[i].ty.nbytes(&tensors[i].dims).unwrap() as usize
            ])
        })
        .unwrap();
        out
    }

    fn open_bytes(name: &str, bytes: &[u8], dialect: Option<Dialect>) -> Result<GgufFile, String> {
        let path = temp(name);
        std::fs::write(&path, bytes).unwrap();
        GgufFile::open(&path, dialect).map_err(|e| e.to_string())
    }

    #[test]
    fn golden_header_bytes() {
        // One u32 field and one F32 tensor of 2 elements, alignment 32.
        let (h, offsets) = header_bytes(
            &[("k".into(), Value::U32(7))],
            &[TensorSpec {
                name: "t".into(),
                dims: vec![2],
                ty: GgmlType::F32,
            }],
            32,
        )
        .unwrap();
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        let want = concat!(
            "47475546",         // magic
            "03000000",         // version 3
            "0100000000000000", // 1 tensor
            "0100000000000000", // 1 field
            "0100000000000000",
            "6b",       // key "k"
            "04000000", // u32
            "07000000", // 7
            "0100000000000000",
            "74",               // name "t"
            "01000000",         // rank 1
            "0200000000000000", // ne[0] = 2
            "00000000",         // F32
            "0000000000000000", // offset 0
        );
        // 74 bytes of header, padded with zeros to 96.
        assert_eq!(&hex[..want.len()], want);
        assert_eq!(h.len(), 96);
        assert!(h[74..].iter().all(|&b| b == 0));
        assert_eq!(offsets, vec![0]);
    }

    #[test]
    fn round_trip_metadata_and_tensors() {
        let meta = vec![
            ("general.architecture".into(), Value::Str("bitnet".into())),
            ("x.u64".into(), Value::U64(1 << 40)),
            ("x.f32".into(), Value::F32(0.5)),
            ("x.bool".into(), Value::Bool(true)),
            (
                "x.strs".into(),
                Value::StrArray(vec!["a".into(), "".into(), "héllo".into()]),
            ),
            ("x.i32s".into(), Value::I32Array(vec![-1, 2])),
        ];
        let bytes = tiny_file(GgmlType::Tq2_0, meta);
        let f = open_bytes("rt.gguf", &bytes, None).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.get("x.u64").and_then(Value::as_u64), Some(1 << 40));
        assert_eq!(f.get("x.f32").and_then(Value::as_f64), Some(0.5));
        assert_eq!(f.string_array("x.strs").unwrap(), vec!["a", "", "héllo"]);
        assert!(f.string_array("x.i32s").is_err());
        let a = f.tensor("a").unwrap();
        assert_eq!((a.ty, a.dims.clone()), (GgmlType::Tq2_0, vec![256, 2]));
        assert_eq!(f.data(a).len(), 132);
        assert!(f.data(a).iter().all(|&b| b == 0x55));
        let b = f.tensor("b").unwrap();
        assert_eq!(b.offset, 160);
        assert_eq!(b.range.start % 32, 0);
    }

    #[test]
    fn type_36_needs_a_dialect() {
        let bytes = tiny_file(GgmlType::I2S, vec![]);
        let e = open_bytes("i2s-none.gguf", &bytes, None).err().unwrap();
        assert!(
            e.contains("tensor 'a': type id 36") && e.contains("--gguf-dialect"),
            "{e}"
        );
        let e = open_bytes("i2s-ggml.gguf", &bytes, Some(Dialect::Ggml))
            .err()
            .unwrap();
        assert!(e.contains("retired in upstream ggml"), "{e}");
        let f = open_bytes("i2s-flag.gguf", &bytes, Some(Dialect::BitnetCpp)).unwrap();
        assert_eq!(f.tensor("a").unwrap().ty, GgmlType::I2S);
        assert_eq!(f.data(f.tensor("a").unwrap()).len(), 2 * 64 + 32);
        let bytes = tiny_file(
            GgmlType::I2S,
            vec![("general.file_type".into(), Value::U32(40))],
        );
        let f = open_bytes("i2s-meta.gguf", &bytes, None).unwrap();
        assert_eq!(f.dialect.unwrap().1, "general.file_type = 40");
        // The flag wins over the metadata.
        assert!(open_bytes("i2s-meta2.gguf", &bytes, Some(Dialect::Ggml)).is_err());
    }

    /// Byte offset of the first tensor info of `tiny_file(.., no metadata)`.
    const INFO_AT: usize = 24;

    #[test]
    fn hostile_files_give_named_errors() {
        let good = tiny_file(GgmlType::F16, vec![]);
        assert!(open_bytes("good.gguf", &good, None).is_ok());
        let patch = |at: usize, with: &[u8]| {
            let mut b = good.clone();
            b[at..at + with.len()].copy_from_slice(with);
            b
        };
        // Tensor "a": name length u64 at 24, "a" at 32, rank at 33, dims at 37 and 45, type at 53, offset at 57.
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "the magic needs 4 bytes"),
            ("magic", patch(0, b"GGUG"), "not a GGUF file"),
            ("version", patch(4, &1u32.to_le_bytes()), "version 1"),
            ("big-endian", patch(4, &3u32.to_be_bytes()), "big-endian"),
            ("tensors", patch(8, &u64::MAX.to_le_bytes()), "tensor count"),
            ("kvs", patch(16, &(1u64 << 40).to_le_bytes()), "metadata count"),
            ("name-len", patch(INFO_AT, &u64::MAX.to_le_bytes()), "the name of tensor 0 has length"),
            ("rank", patch(INFO_AT + 9, &9u32.to_le_bytes()), "rank 9; expected 1..=4"),
            ("zero-dim", patch(INFO_AT + 13, &0u64.to_le_bytes()), "dimension 0 = 0"),
            ("huge-dim", patch(INFO_AT + 21, &(i64::MAX as u64).to_le_bytes()), "overflow"),
            ("too-big", patch(INFO_AT + 13, &100_000u64.to_le_bytes()), "lies past the end"),
            ("type", patch(INFO_AT + 29, &12u32.to_le_bytes()), "type id 12 (Q4_K) is not supported"),
            ("q6k-ne0", {
                let mut b = patch(INFO_AT + 29, &14u32.to_le_bytes());
                b[INFO_AT + 13..INFO_AT + 21].copy_from_slice(&100u64.to_le_bytes());
                b
            }, "ne[0] = 100 is not a multiple of the Q6_K block of 256"),
            ("type-99", patch(INFO_AT + 29, &99u32.to_le_bytes()), "type id 99 (unknown)"),
            ("offset", patch(INFO_AT + 33, &(1u64 << 40).to_le_bytes()), "tensor 'a' (F16 [256, 2], 1024 bytes at data offset 1099511627776) lies past the end"),
            ("misaligned", patch(INFO_AT + 33, &4u64.to_le_bytes()), "not a multiple of the alignment"),
            ("truncated", good[..good.len() - 21].to_vec(), "tensor 'b' (F32 [3], 12 bytes at data offset 1024) lies past the end"),
            ("truncated-infos", good[..90].to_vec(), "the offset of tensor 'b' needs 8 bytes at offset 90 but the file ends"),
            ("truncated-counts", good[..40].to_vec(), "tensor count 2"),
        ];
        for (name, bytes, want) in cases {
            let e = open_bytes(name, &bytes, None)
                .err()
                .unwrap_or_else(|| panic!("{name}: opened"));
            assert!(e.contains(want), "{name}: {e}");
            assert!(
                e.contains(name),
                "{name}: error does not name the file: {e}"
            );
        }
        let tq = tiny_file(GgmlType::Tq2_0, vec![]);
        let mut b = tq.clone();
        b[INFO_AT + 13..INFO_AT + 21].copy_from_slice(&255u64.to_le_bytes());
        let e = open_bytes("tq-block.gguf", &b, None).err().unwrap();
        assert!(
            e.contains("ne[0] = 255 is not a multiple of the TQ2_0 block of 256"),
            "{e}"
        );
    }

    #[test]
    fn hostile_metadata_gives_named_errors() {
        let with = |meta: Vec<(String, Value)>| tiny_file(GgmlType::F32, meta);
        let e = open_bytes(
            "align.gguf",
            &with(vec![("general.alignment".into(), Value::U32(3))]),
            None,
        )
        .err()
        .unwrap();
        assert!(
            e.contains("'general.alignment' = U32(3); expected a power of two"),
            "{e}"
        );
        // An array claiming 2^24 strings in a small file.
        let mut b = with(vec![("k".into(), Value::StrArray(vec!["x".into()]))]);
        // key "k" at 24 (8 + 1), type at 33, elem type at 37, count at 41.
        b[41..49].copy_from_slice(&(1u64 << 24).to_le_bytes());
        let e = open_bytes("strs.gguf", &b, None).err().unwrap();
        assert!(e.contains("field 'k' claims 16777216 strings"), "{e}");
        b[41..49].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = open_bytes("strs2.gguf", &b, None).err().unwrap();
        assert!(e.contains("expected at most 16777216"), "{e}");
        b[41..49].copy_from_slice(&1u64.to_le_bytes());
        b[37..41].copy_from_slice(&9u32.to_le_bytes());
        let e = open_bytes("nested.gguf", &b, None).err().unwrap();
        assert!(e.contains("array of arrays"), "{e}");
        let mut b = with(vec![("k".into(), Value::Bool(true))]);
        b[37] = 7;
        let e = open_bytes("bool.gguf", &b, None).err().unwrap();
        assert!(e.contains("field 'k' is a bool of byte 7"), "{e}");
        b[33..37].copy_from_slice(&13u32.to_le_bytes());
        let e = open_bytes("vtype.gguf", &b, None).err().unwrap();
        assert!(e.contains("field 'k' has value type 13"), "{e}");
        let mut b = with(vec![("k".into(), Value::Str("ab".into()))]);
        b[45] = 0xff;
        let e = open_bytes("utf8.gguf", &b, None).err().unwrap();
        assert!(e.contains("field 'k' is not valid UTF-8"), "{e}");
        let b = with(vec![("k".into(), Value::U8(1)), ("k".into(), Value::U8(2))]);
        let e = open_bytes("dup.gguf", &b, None).err().unwrap();
        assert!(e.contains("field 'k' appears twice"), "{e}");
    }
}
