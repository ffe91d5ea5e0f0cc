//! The subset of Python's pickle format that `torch.save` writes (protocols 2 to 5): a small
//! stack machine that turns the opcodes into a `Value` tree. Nothing is executed: a global
//! (`GLOBAL`/`STACK_GLOBAL`) stays a name, and calling it (`REDUCE`, `NEWOBJ`) stays a `Call`
//! node that the caller interprets (`torch._utils._rebuild_tensor_v2`, `collections.OrderedDict`).
//! Persistent ids (`BINPERSID`, how torch refers to tensor storages) are kept as `Persistent`.
//!
//! Memoised containers are stored by value: a container fetched again from the memo (`BINGET`)
//! is the copy taken when it was memoised. torch state dicts never share a container between two
//! places (tensors share storages, which are persistent ids), so this does not lose data there.
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

/// One stack slot: a value, or the MARK that opcodes like TUPLE and SETITEMS pop back to.
enum Slot {
    Mark,
    Value(Value),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
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

    fn push(&mut self, v: Value) {
        self.stack.push(Slot::Value(v));
    }

    fn pop(&mut self) -> Result<Value> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => bail!("pickle: unexpected MARK at byte {}", self.pos),
            None => bail!("pickle: stack underflow at byte {}", self.pos),
        }
    }

    fn top(&mut self) -> Result<&mut Value> {
        match self.stack.last_mut() {
            Some(Slot::Value(v)) => Ok(v),
            _ => bail!("pickle: no value on the stack at byte {}", self.pos),
        }
    }

    /// Pops everything above the last MARK (and the MARK), in push order.
    fn pop_to_mark(&mut self) -> Result<Vec<Value>> {
        let Some(mark) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            bail!("pickle: no MARK on the stack at byte {}", self.pos)
        };
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|s| match s {
                Slot::Value(v) => v,
                Slot::Mark => unreachable!("the last mark was found above"),
            })
            .collect())
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        let v = self.memo.get(&key).cloned().ok_or_else(|| anyhow!("pickle: memo key {key} not set"))?;
        self.push(v);
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<Value>) -> Result<()> {
        if pairs.len() % 2 != 0 {
            bail!("pickle: odd number of items in SETITEMS");
        }
        let target = self.top()?;
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

    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        match self.top()? {
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
                b'(' => self.stack.push(Slot::Mark),
                b')' => self.push(Value::Tuple(Vec::new())),
                b']' => self.push(Value::List(Vec::new())),
                b'}' => self.push(Value::Dict(Vec::new())),
                0x8f => self.push(Value::List(Vec::new())), // EMPTY_SET: kept as a list
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into()?);
                    self.push(Value::Int(v as i64))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64))
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4
                    let n = if op == 0x8a { self.u8()? as usize } else { self.u32()? as usize };
                    let bytes = self.take(n)?;
                    self.push(long_value(bytes));
                }
                b'I' => {
                    // INT (protocol 0): also spells True/False as 01/00
                    let line = self.line()?;
                    let v = match line.as_str() {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        s => Value::Int(s.parse().map_err(|_| anyhow!("pickle: bad INT `{s}`"))?),
                    };
                    self.push(v)
                }
                b'L' => {
                    let line = self.line()?;
                    let s = line.trim_end_matches('L');
                    self.push(Value::Int(s.parse().map_err(|_| anyhow!("pickle: bad LONG `{line}`"))?))
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into()?);
                    self.push(Value::Float(v))
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.push(Value::Str(s))
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.push(Value::Str(s))
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.push(Value::Str(s))
                }
                b'U' => {
                    // SHORT_BINSTRING (Python 2 str): text in torch's use
                    let n = self.u8()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.push(Value::Str(s))
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.push(Value::Str(s))
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))
                }
                0x8e => {
                    let n = self.u64()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))
                }
                b'c' => {
                    // GLOBAL: "module\nname\n"
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global { module, name })
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => self.push(Value::Global { module, name }),
                        _ => bail!("pickle: STACK_GLOBAL needs two strings (byte {at})"),
                    }
                }
                b't' => {
                    let items = self.pop_to_mark()?;
                    self.push(Value::Tuple(items))
                }
                0x85 => {
                    let a = self.pop()?;
                    self.push(Value::Tuple(vec![a]))
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.push(Value::Tuple(vec![a, b]))
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.push(Value::Tuple(vec![a, b, c]))
                }
                b'l' => {
                    let items = self.pop_to_mark()?;
                    self.push(Value::List(items))
                }
                b'd' => {
                    let items = self.pop_to_mark()?;
                    self.push(Value::Dict(Vec::new()));
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_to_mark()?;
                    self.append(items)?;
                }
                0x90 => {
                    // ADDITEMS (to a set, kept as a list)
                    let items = self.pop_to_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_to_mark()?;
                    self.set_items(items)?;
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
                b'R' | 0x81 => {
                    // REDUCE / NEWOBJ: callable(*args), kept unevaluated
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(Value::Call { callable: Box::new(callable), args: Box::new(args), state: None })
                }
                0x92 => {
                    // NEWOBJ_EX: cls, args, kwargs
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(Value::Call { callable: Box::new(callable), args: Box::new(args), state: None })
                }
                b'b' => {
                    // BUILD: set state on the object below
                    let new_state = self.pop()?;
                    match self.top()? {
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
                    let pid = self.pop()?;
                    self.push(Value::Persistent(Box::new(pid)))
                }
                b'P' => {
                    let pid = self.line()?;
                    self.push(Value::Persistent(Box::new(Value::Str(pid))))
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)
                }
                b'1' => {
                    self.pop_to_mark()?;
                }
                other => bail!("pickle: unsupported opcode 0x{other:02x} at byte {at}"),
            }
        }
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
    let mut m = Machine { data, pos: 0, stack: Vec::new(), memo: HashMap::new() };
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
    fn truncated_and_unknown_input_is_an_error() {
        assert!(read(b"\x80\x02X\x05\x00\x00\x00ab").unwrap_err().to_string().contains("truncated"));
        assert!(read(b"\x80\x02\xff").unwrap_err().to_string().contains("0xff"));
        assert!(read(b"\x80\x02t.").is_err());
    }
}
