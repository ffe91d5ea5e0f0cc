//! The subset of Python's pickle format that `torch.save` writes (protocols 2 to 5): a small
//! stack machine that turns the opcodes into a `Value` tree. Nothing is executed: a global
//! (`GLOBAL`/`STACK_GLOBAL`) stays a name, and calling it (`REDUCE`, `NEWOBJ`) stays a `Call`
//! node that the caller interprets (`torch._utils._rebuild_tensor_v2`, `collections.OrderedDict`).
//! A global outside [`allowed_global`] (the names state dicts and training checkpoints use) is
//! refused, as PyTorch's `weights_only` loader refuses it.
//! Persistent ids (`BINPERSID`, how torch refers to tensor storages) are kept as `Persistent`.
//!
//! Memoised containers are stored by value: a container fetched again from the memo (`BINGET`)
//! is the copy taken when it was memoised. torch state dicts never share a container between two
//! places (tensors share storages, which are persistent ids), so this does not lose data there.
//!
//! A hostile pickle cannot exhaust memory or the stack: every value allocated or copied (memo,
//! `DUP`) is charged against a budget of 64 MiB plus the length of the file ([`Limits`]), and
//! values nest at most [`MAX_DEPTH`] deep, so the recursive walks, clones and drops of a `Value`
//! stay far inside any thread's stack.
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64, as little-endian two's-complement bytes (LONG1/LONG4).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Key/value pairs in insertion order (dicts and OrderedDicts).
    Dict(Vec<(Value, Value)>),
    /// A module-level name such as `torch._utils._rebuild_tensor_v2` or `torch.FloatStorage`.
    Global { module: String, name: String },
    /// `callable(*args)`, kept unevaluated; `state` is what a later BUILD set on the result.
    Call { callable: Box<Value>, args: Box<Value>, state: Option<Box<Value>> },
    /// A persistent id (torch: `('storage', storage_type, key, location, numel, ...)`).
    Persistent(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// `module.name` of a global.
    pub fn global_name(&self) -> Option<String> {
        match self {
            Value::Global { module, name } => Some(format!("{module}.{name}")),
            _ => None,
        }
    }
}

/// How deep values may nest (torch checkpoints nest less than 10 deep; Python's own pickler
/// fails near 1000, its recursion limit).
pub const MAX_DEPTH: u32 = 256;

/// Bounds on the memory one pickle may make the reader allocate.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of values allocated or copied, in all (a measure, not the allocator's count).
    pub budget: usize,
}

impl Limits {
    /// For a pickle inside a checkpoint file of `file_len` bytes: 64 MiB plus the file's length.
    /// A real checkpoint is mostly tensor data and its pickle needs far less (torchvision's
    /// ResNet-50: 1.7 MB for a 100 MB file; about 45 bytes per byte of pickle, memo copies
    /// included), while a pickle that is all opcodes (or inflates from a small zip) is stopped
    /// at a small multiple of what the file holds.
    pub fn for_file(file_len: usize) -> Limits {
        Limits { budget: (64 << 20) + file_len }
    }
}

/// The longest pickle read (a state dict of 100,000 tensors takes about 12 MB).
pub const MAX_PICKLE_BYTES: usize = 64 << 20;

/// What one value costs, for the budget: its own slot and the heap bytes it holds.
const VALUE_BYTES: usize = std::mem::size_of::<Value>();

/// How deep a value nests and what it and everything in it cost.
#[derive(Clone, Copy, Debug, Default)]
struct Size {
    depth: u32,
    bytes: usize,
}

impl Size {
    fn leaf(heap: usize) -> Size {
        Size { depth: 0, bytes: VALUE_BYTES + heap }
    }

    /// A container holding values of these sizes.
    fn container<'a>(items: impl IntoIterator<Item = &'a Size>) -> Size {
        let mut s = Size { depth: 0, bytes: VALUE_BYTES };
        for i in items {
            s.depth = s.depth.max(i.depth + 1);
            s.bytes = s.bytes.saturating_add(i.bytes);
        }
        s
    }

    /// This container with more values put in it.
    fn grow<'a>(&mut self, items: impl IntoIterator<Item = &'a Size>) {
        for i in items {
            self.depth = self.depth.max(i.depth + 1);
            self.bytes = self.bytes.saturating_add(i.bytes);
        }
    }
}

/// One stack slot: a value, or the MARK that opcodes like TUPLE and SETITEMS pop back to.
enum Slot {
    Mark,
    Value(Value, Size),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, (Value, Size)>,
    /// Bytes charged so far, and the most allowed.
    charged: usize,
    limits: Limits,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else { bail!("pickle truncated at byte {} (wanted {n} more bytes)", self.pos) };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else { bail!("pickle: unterminated line at byte {}", self.pos) };
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    /// Counts `bytes` more against the budget.
    fn charge(&mut self, bytes: usize) -> Result<()> {
        self.charged = self.charged.saturating_add(bytes);
        if self.charged > self.limits.budget {
            bail!(
                "pickle refused at byte {}: its values would take more than {} MiB (a memo or DUP bomb, or not a checkpoint)",
                self.pos,
                self.limits.budget >> 20
            );
        }
        Ok(())
    }

    fn check_depth(&self, size: &Size) -> Result<()> {
        if size.depth > MAX_DEPTH {
            bail!("pickle refused at byte {}: values nest more than {MAX_DEPTH} deep", self.pos);
        }
        Ok(())
    }

    /// Pushes a new value: a leaf whose heap holds `heap` bytes.
    fn push_leaf(&mut self, v: Value, heap: usize) -> Result<()> {
        let size = Size::leaf(heap);
        self.charge(size.bytes)?;
        self.stack.push(Slot::Value(v, size));
        Ok(())
    }

    fn push(&mut self, v: Value) -> Result<()> {
        self.push_leaf(v, 0)
    }

    /// Pushes a container made of values just popped (charged already): only its own slot and
    /// item buffer are new.
    fn push_container(&mut self, v: Value, items: &[Size]) -> Result<()> {
        let size = Size::container(items);
        self.check_depth(&size)?;
        self.charge(VALUE_BYTES * (1 + items.len()))?;
        self.stack.push(Slot::Value(v, size));
        Ok(())
    }

    /// Pushes a copy of a value (memo, DUP): all of it is new.
    fn push_copy(&mut self, v: Value, size: Size) -> Result<()> {
        self.charge(size.bytes)?;
        self.stack.push(Slot::Value(v, size));
        Ok(())
    }

    fn pop_sized(&mut self) -> Result<(Value, Size)> {
        match self.stack.pop() {
            Some(Slot::Value(v, s)) => Ok((v, s)),
            Some(Slot::Mark) => bail!("pickle: unexpected MARK at byte {}", self.pos),
            None => bail!("pickle: stack underflow at byte {}", self.pos),
        }
    }

    fn pop(&mut self) -> Result<Value> {
        Ok(self.pop_sized()?.0)
    }

    fn top(&mut self) -> Result<(&mut Value, &mut Size)> {
        match self.stack.last_mut() {
            Some(Slot::Value(v, s)) => Ok((v, s)),
            _ => bail!("pickle: no value on the stack at byte {}", self.pos),
        }
    }

    /// Pops everything above the last MARK (and the MARK), in push order.
    fn pop_to_mark(&mut self) -> Result<(Vec<Value>, Vec<Size>)> {
        let Some(mark) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            bail!("pickle: no MARK on the stack at byte {}", self.pos)
        };
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|s| match s {
                Slot::Value(v, size) => (v, size),
                Slot::Mark => unreachable!("the last mark was found above"),
            })
            .unzip())
    }

    /// Puts values into the container on top of the stack, checking its new depth.
    fn grow_top(&mut self, sizes: &[Size]) -> Result<()> {
        let (_, size) = self.top()?;
        size.grow(sizes);
        let size = *size;
        self.check_depth(&size)?;
        // The container's item buffer grows by one slot per value.
        self.charge(VALUE_BYTES * sizes.len())
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let (v, size) = self.top()?;
        let (v, size) = (v.clone(), *size);
        self.charge(size.bytes)?;
        self.memo.insert(key, (v, size));
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        let (v, size) = self.memo.get(&key).ok_or_else(|| anyhow!("pickle: memo key {key} not set"))?;
        let (v, size) = (v.clone(), *size);
        self.push_copy(v, size)
    }

    fn set_items(&mut self, pairs: Vec<Value>, sizes: &[Size]) -> Result<()> {
        if pairs.len() % 2 != 0 {
            bail!("pickle: odd number of items in SETITEMS");
        }
        self.grow_top(sizes)?;
        let (target, _) = self.top()?;
        let dict = match target {
            Value::Dict(d) => d,
            // OrderedDict() and other dict subclasses: items go into the call's state.
            Value::Call { state, .. } => {
                let s = state.get_or_insert_with(|| Box::new(Value::Dict(Vec::new())));
                match s.as_mut() {
                    Value::Dict(d) => d,
                    _ => bail!("pickle: SETITEMS on an object with non-dict state"),
                }
            }
            other => bail!("pickle: SETITEMS on {}", kind_name(other)),
        };
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            dict.push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>, sizes: &[Size]) -> Result<()> {
        self.grow_top(sizes)?;
        match self.top()?.0 {
            Value::List(l) => {
                l.extend(items);
                Ok(())
            }
            other => bail!("pickle: APPEND on {}", kind_name(other)),
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        bail!("pickle protocol {p} is not supported");
                    }
                }
                0x95 => {
                    // FRAME: a length prefix only
                    self.u64()?;
                }
                b'.' => return self.pop(), // STOP
                b'(' => {
                    self.charge(VALUE_BYTES)?;
                    self.stack.push(Slot::Mark)
                }
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b'}' => self.push(Value::Dict(Vec::new()))?,
                0x8f => self.push(Value::List(Vec::new()))?, // EMPTY_SET: kept as a list
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into()?);
                    self.push(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64))?
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4
                    let n = if op == 0x8a { self.u8()? as usize } else { self.u32()? as usize };
                    let bytes = self.take(n)?;
                    self.push_leaf(long_value(bytes), n)?;
                }
                b'I' => {
                    // INT (protocol 0): also spells True/False as 01/00
                    let line = self.line()?;
                    let v = match line.as_str() {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        s => Value::Int(s.parse().map_err(|_| anyhow!("pickle: bad INT `{s}`"))?),
                    };
                    self.push(v)?
                }
                b'L' => {
                    let line = self.line()?;
                    let s = line.trim_end_matches('L');
                    self.push(Value::Int(s.parse().map_err(|_| anyhow!("pickle: bad LONG `{line}`"))?))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into()?);
                    self.push(Value::Float(v))?
                }
                // Text: BINUNICODE (X), SHORT_BINUNICODE, BINUNICODE8, and Python 2's
                // SHORT_BINSTRING (U) and BINSTRING (T), text in torch's use.
                b'X' | 0x8c | 0x8d | b'U' | b'T' => {
                    let n = match op {
                        0x8c | b'U' => self.u8()? as u64,
                        0x8d => self.u64()?,
                        _ => self.u32()? as u64,
                    };
                    let raw = self.take(usize::try_from(n).unwrap_or(usize::MAX))?;
                    let s = String::from_utf8_lossy(raw).into_owned();
                    let heap = s.len();
                    self.push_leaf(Value::Str(s), heap)?
                }
                // Bytes: SHORT_BINBYTES (C), BINBYTES (B), BINBYTES8.
                b'C' | b'B' | 0x8e => {
                    let n = match op {
                        b'C' => self.u8()? as u64,
                        b'B' => self.u32()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.take(usize::try_from(n).unwrap_or(usize::MAX))?.to_vec();
                    let heap = b.len();
                    self.push_leaf(Value::Bytes(b), heap)?
                }
                b'c' => {
                    // GLOBAL: "module\nname\n"
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push_global(module, name, at)?
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => self.push_global(module, name, at)?,
                        _ => bail!("pickle: STACK_GLOBAL needs two strings (byte {at})"),
                    }
                }
                b't' => {
                    let (items, sizes) = self.pop_to_mark()?;
                    self.push_container(Value::Tuple(items), &sizes)?
                }
                0x85 => {
                    let (a, sa) = self.pop_sized()?;
                    self.push_container(Value::Tuple(vec![a]), &[sa])?
                }
                0x86 => {
                    let (b, sb) = self.pop_sized()?;
                    let (a, sa) = self.pop_sized()?;
                    self.push_container(Value::Tuple(vec![a, b]), &[sa, sb])?
                }
                0x87 => {
                    let (c, sc) = self.pop_sized()?;
                    let (b, sb) = self.pop_sized()?;
                    let (a, sa) = self.pop_sized()?;
                    self.push_container(Value::Tuple(vec![a, b, c]), &[sa, sb, sc])?
                }
                b'l' => {
                    let (items, sizes) = self.pop_to_mark()?;
                    self.push_container(Value::List(items), &sizes)?
                }
                b'd' => {
                    let (items, sizes) = self.pop_to_mark()?;
                    self.push(Value::Dict(Vec::new()))?;
                    self.set_items(items, &sizes)?;
                }
                b'a' => {
                    let (v, size) = self.pop_sized()?;
                    self.append(vec![v], &[size])?;
                }
                // APPENDS, and ADDITEMS (to a set, kept as a list)
                b'e' | 0x90 => {
                    let (items, sizes) = self.pop_to_mark()?;
                    self.append(items, &sizes)?;
                }
                b's' => {
                    let (v, sv) = self.pop_sized()?;
                    let (k, sk) = self.pop_sized()?;
                    self.set_items(vec![k, v], &[sk, sv])?;
                }
                b'u' => {
                    let (items, sizes) = self.pop_to_mark()?;
                    self.set_items(items, &sizes)?;
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    // MEMOIZE: the next free index
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?;
                }
                b'p' => {
                    let k: u32 = self.line()?.parse().map_err(|_| anyhow!("pickle: bad PUT index"))?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?;
                }
                b'g' => {
                    let k: u32 = self.line()?.parse().map_err(|_| anyhow!("pickle: bad GET index"))?;
                    self.memo_get(k)?;
                }
                b'R' | 0x81 | 0x92 => {
                    // REDUCE / NEWOBJ: callable(*args); NEWOBJ_EX: cls, args, kwargs. Kept unevaluated.
                    if op == 0x92 {
                        self.pop()?;
                    }
                    let (args, sa) = self.pop_sized()?;
                    let (callable, sc) = self.pop_sized()?;
                    let call = Value::Call { callable: Box::new(callable), args: Box::new(args), state: None };
                    self.push_container(call, &[sa, sc])?
                }
                b'b' => {
                    // BUILD: set state on the object below
                    let (new_state, size) = self.pop_sized()?;
                    self.grow_top(&[size])?;
                    match self.top()?.0 {
                        Value::Call { state, .. } => match (state.as_deref_mut(), new_state) {
                            // Items already set (SETITEMS) stay; a dict state such as
                            // OrderedDict's `_metadata` attribute goes beside them.
                            (Some(Value::Dict(items)), Value::Dict(extra)) => items.extend(extra),
                            (_, s) => *state = Some(Box::new(s)),
                        },
                        // Attributes on a plain dict (a state dict's `_metadata`): not data.
                        Value::Dict(_) => {}
                        other => bail!("pickle: BUILD on {} (byte {at})", kind_name(other)),
                    }
                }
                b'Q' => {
                    let (pid, size) = self.pop_sized()?;
                    self.push_container(Value::Persistent(Box::new(pid)), &[size])?
                }
                b'P' => {
                    let pid = self.line()?;
                    let size = Size::leaf(pid.len());
                    self.charge(size.bytes)?;
                    self.push_container(Value::Persistent(Box::new(Value::Str(pid))), &[size])?
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let (v, size) = self.top()?;
                    let (v, size) = (v.clone(), *size);
                    self.push_copy(v, size)?
                }
                b'1' => {
                    self.pop_to_mark()?;
                }
                other => bail!("pickle: unsupported opcode 0x{other:02x} at byte {at}"),
            }
        }
    }

    /// Pushes a global's name, when it is one a checkpoint may use.
    fn push_global(&mut self, module: String, name: String, at: usize) -> Result<()> {
        if !allowed_global(&module, &name) {
            bail!(
                "pickle refused at byte {at}: it names `{module}.{name}`, which is not a tensor, container or plain-data \
                 type of a checkpoint (masklab never runs code from a checkpoint; save the state dict, or convert \
                 the file to safetensors)"
            );
        }
        let heap = module.len() + name.len();
        self.push_leaf(Value::Global { module, name }, heap)
    }
}

/// The globals a pickled state dict or training checkpoint may name: tensor rebuilders, storage
/// and dtype classes, containers and plain data types (the names of PyTorch's `weights_only`
/// allow-list, plus numpy scalars and argparse namespaces that training scripts store beside
/// the weights). Each stays a name; none is ever called.
pub fn allowed_global(module: &str, name: &str) -> bool {
    match module {
        "torch._utils" => name.starts_with("_rebuild_"),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch" => {
            name.ends_with("Storage")
                || matches!(
                    name,
                    "Size" | "device" | "dtype" | "Tensor" | "strided" | "sparse_coo" | "float16" | "float32" | "float64"
                        | "bfloat16" | "half" | "float" | "double" | "int8" | "int16" | "int32" | "int64" | "uint8"
                        | "bool" | "long" | "int" | "short" | "complex64" | "complex128"
                )
        }
        "torch.nn.parameter" => name == "Parameter",
        "torch.serialization" => name == "_get_layout",
        "collections" => matches!(name, "OrderedDict" | "defaultdict" | "Counter"),
        "builtins" | "__builtin__" => matches!(
            name,
            "set" | "frozenset" | "slice" | "bytearray" | "complex" | "list" | "dict" | "tuple" | "int" | "float" | "str"
                | "bytes" | "bool"
        ),
        "_codecs" => name == "encode",
        "numpy.core.multiarray" | "numpy._core.multiarray" => matches!(name, "scalar" | "_reconstruct"),
        "numpy" => matches!(name, "dtype" | "ndarray"),
        "argparse" => name == "Namespace",
        _ => false,
    }
}

fn long_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(bytes);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(bytes.to_vec())
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) | Value::BigInt(_) => "an int",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Global { .. } => "a global",
        Value::Call { .. } => "an object",
        Value::Persistent(_) => "a persistent id",
    }
}

/// Reads one pickle from the start of `data`; returns the value and the bytes it used.
pub fn read(data: &[u8]) -> Result<(Value, usize)> {
    read_with(data, Limits::for_file(data.len()))
}

/// [`read`] within explicit limits.
pub fn read_with(data: &[u8], limits: Limits) -> Result<(Value, usize)> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), memo: HashMap::new(), charged: 0, limits };
    let v = m.run()?;
    Ok((v, m.pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_protocol_2_containers_ints_and_globals() {
        // pickle.dumps({'a': [1, -2, 300, 70000], 'b': (True, None, 1.5), 'c': 'x'}, protocol=2)
        let bytes: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00eX\x01\x00\x00\x00bq\x03\x88N\x47\x3f\xf8\x00\x00\x00\x00\x00\x00\x87q\x04X\x01\x00\x00\x00cq\x05X\x01\x00\x00\x00xq\x06u.";
        let (v, used) = read(bytes).unwrap();
        assert_eq!(used, bytes.len());
        let Value::Dict(items) = v else { panic!("not a dict") };
        assert_eq!(items[0].0, Value::Str("a".into()));
        assert_eq!(items[0].1, Value::List(vec![Value::Int(1), Value::Int(-2), Value::Int(300), Value::Int(70000)]));
        assert_eq!(items[1].1, Value::Tuple(vec![Value::Bool(true), Value::None, Value::Float(1.5)]));
        assert_eq!(items[2].1, Value::Str("x".into()));
    }

    #[test]
    fn long1_memo_reduce_and_persistent_ids() {
        // The legacy torch magic number 0x1950a86a20f9469cfc6c as LONG1 (10 bytes).
        let (v, _) = read(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.").unwrap();
        assert_eq!(v, Value::BigInt(vec![0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]));
        let (v, _) = read(b"\x80\x02\x8a\x02\xe9\x03.").unwrap();
        assert_eq!(v, Value::Int(1001));
        let (v, _) = read(b"\x80\x02\x8a\x01\xff.").unwrap();
        assert_eq!(v, Value::Int(-1));
        // collections.OrderedDict() with a persistent id and a key fetched again from the memo.
        let bytes: &[u8] = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00kq\x02X\x01\x00\x00\x00sQsh\x02K\x05s.";
        let (v, _) = read(bytes).unwrap();
        let Value::Call { callable, state, .. } = v else { panic!("not a call") };
        assert_eq!(callable.global_name().as_deref(), Some("collections.OrderedDict"));
        assert_eq!(
            state.as_deref(),
            Some(&Value::Dict(vec![
                (Value::Str("k".into()), Value::Persistent(Box::new(Value::Str("s".into())))),
                (Value::Str("k".into()), Value::Int(5)),
            ]))
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        let nested = |levels: usize, op: u8| {
            let mut p = vec![0x80, 2, b'N'];
            p.extend(std::iter::repeat(op).take(levels));
            p.push(b'.');
            p
        };
        assert!(read(&nested(MAX_DEPTH as usize, 0x85)).is_ok());
        let err = read(&nested(MAX_DEPTH as usize + 1, 0x85)).unwrap_err().to_string();
        assert!(err.contains("nest more than 256"), "{err}");
        // Lists nested by APPEND, dicts by SETITEM, objects by BUILD: each level counts.
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat(b']').take(300));
        p.extend(std::iter::repeat(b'a').take(299));
        p.push(b'.');
        assert!(read(&p).unwrap_err().to_string().contains("nest"));
        let mut p = vec![0x80, 2, b'}'];
        for _ in 0..300 {
            p.extend(b"K\x01}");
        }
        p.extend(std::iter::repeat(b's').take(300));
        p.push(b'.');
        assert!(read(&p).unwrap_err().to_string().contains("nest"));
    }

    #[test]
    fn copies_and_opcode_runs_beyond_the_budget_are_refused() {
        // Each step memoises a list of two copies of the previous one: 2^40 items if copied.
        let mut p = b"\x80\x02]q\x00".to_vec();
        for _ in 0..40 {
            p.extend(b"(h\x00h\x00lq\x00");
        }
        p.push(b'.');
        let err = read(&p).unwrap_err().to_string();
        assert!(err.contains("MiB"), "{err}");
        // DUP of a growing list.
        let mut p = b"\x80\x02]".to_vec();
        for _ in 0..40 {
            p.extend(b"2a");
        }
        p.push(b'.');
        assert!(read(&p).unwrap_err().to_string().contains("MiB"));
        // A small budget stops a long run of single-byte opcodes.
        let mut p = vec![0x80, 2];
        p.resize(100_000, b'N');
        p.push(b'.');
        let err = read_with(&p, Limits { budget: 1 << 20 }).unwrap_err().to_string();
        assert!(err.contains("1 MiB"), "{err}");
    }

    #[test]
    fn globals_outside_the_allow_list_are_refused() {
        for (module, name) in [("os", "system"), ("builtins", "exec"), ("torch", "load"), ("torch._utils", "os"), ("numpy", "load")] {
            let mut p = b"\x80\x02c".to_vec();
            p.extend(format!("{module}\n{name}\nX\x02\x00\x00\x00lsR.").as_bytes());
            let err = read(&p).unwrap_err().to_string();
            assert!(err.contains(&format!("`{module}.{name}`")), "{err}");
            // STACK_GLOBAL too.
            let mut p = b"\x80\x04".to_vec();
            for s in [module, name] {
                p.push(0x8c);
                p.push(s.len() as u8);
                p.extend(s.as_bytes());
            }
            p.extend(b"\x93.");
            assert!(read(&p).unwrap_err().to_string().contains("refused"));
        }
        let (v, _) = read(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n.").unwrap();
        assert_eq!(v.global_name().as_deref(), Some("torch._utils._rebuild_tensor_v2"));
    }

    #[test]
    fn truncated_and_unknown_input_is_an_error() {
        assert!(read(b"\x80\x02X\x05\x00\x00\x00ab").unwrap_err().to_string().contains("truncated"));
        assert!(read(b"\x80\x02\xff").unwrap_err().to_string().contains("0xff"));
        assert!(read(b"\x80\x02t.").is_err());
    }
}
