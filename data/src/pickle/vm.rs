//! The pickle virtual machine.
//!
//! Objects live in an arena (`Vec<Node>`) and the stack and memo hold
//! indices into it, so mutations through one reference (`APPENDS` on a list
//! that was memoised, `BUILD` on an array under construction) are seen
//! through all others, as in Python. When `STOP` is reached the arena is
//! turned into an owned [`Value`] tree: nodes referenced once are moved,
//! nodes referenced several times are built once and cloned; a reference
//! back to a node still being built (a cycle) is an error.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{ErrorKind, Read};

use super::error::PickleError;
use super::numpy;
use super::value::{ArrayData, DType, Global, NdArray, Object, Value};

type H = usize;

/// Nesting deeper than this is rejected (real files nest 3–5 levels).
const MAX_DEPTH: usize = 200;
/// What decoding may hold in memory: this many bytes per byte of input read
/// so far, plus [`HELD_ALLOWANCE`]. A value costs at most a few dozen bytes
/// per opcode byte (a `None` in a list: its node, its stack slot, its output
/// value), so no honest file comes near; what does is a file that shares or
/// copies one value over and over (a list referenced a million times, a
/// `list(x)` call repeated, an array of zero-sized items with a huge shape),
/// which would otherwise take gigabytes from a few hundred bytes.
const HELD_PER_INPUT_BYTE: u64 = 128;
/// See [`HELD_PER_INPUT_BYTE`].
const HELD_ALLOWANCE: u64 = 256 << 20;
/// What one arena node costs (the node and its reference count).
const NODE_COST: u64 = (std::mem::size_of::<Node>() + std::mem::size_of::<u32>()) as u64;
/// Initial allocation cap for a length-prefixed read; the rest grows only as
/// bytes actually arrive, so a forged length cannot exhaust memory.
const READ_CHUNK: u64 = 1 << 20;
/// Strings/bytes at least this long are moved, not copied, when consumed by
/// a numpy or codecs constructor.
const TAKE_THRESHOLD: usize = 4096;

#[derive(Debug)]
enum ArrayStore {
    Typed(ArrayData),
    /// An object array: its elements are the items of this list node.
    Objects(H),
}

/// A numpy array under construction (boxed in [`Node`]).
#[derive(Debug)]
struct ArrayNode {
    dtype: DType,
    shape: Vec<usize>,
    fortran: bool,
    store: ArrayStore,
}

/// An instance of an unknown class (boxed in [`Node`]).
#[derive(Debug)]
struct ObjectNode {
    class: String,
    args: Vec<H>,
    state: Option<H>,
    items: Vec<H>,
    entries: Vec<(H, H)>,
}

#[derive(Debug)]
enum Node {
    Leaf(Value),
    List(Vec<H>),
    Tuple(Vec<H>),
    Set(Vec<H>),
    Dict(Vec<(H, H)>),
    Global(Box<Global>),
    DType(DType),
    /// `_reconstruct(ndarray, …)` waiting for its `BUILD`.
    PendingArray,
    Array(Box<ArrayNode>),
    Object(Box<ObjectNode>),
    /// Moved out while building the result tree.
    Taken,
    /// A large raw buffer moved into the array (or bytes) built from it.
    Consumed,
}

// Every opcode byte can add a node: keep them small (see `charge`).
const _: () = assert!(std::mem::size_of::<Node>() <= 32);

impl Node {
    fn kind(&self) -> String {
        match self {
            Node::Leaf(v) => v.type_name(),
            Node::List(_) => "list".into(),
            Node::Tuple(_) => "tuple".into(),
            Node::Set(_) => "set".into(),
            Node::Dict(_) => "dict".into(),
            Node::Global(g) => format!("global {}.{}", g.module, g.name),
            Node::DType(d) => format!("dtype {d}"),
            Node::PendingArray => "ndarray (unbuilt)".into(),
            Node::Array(a) => format!("ndarray {}", a.dtype),
            Node::Object(o) => format!("object {}", o.class),
            Node::Taken => "(moved)".into(),
            Node::Consumed => "(consumed raw buffer)".into(),
        }
    }
}

enum Called {
    New(Node),
    Existing(H),
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Mark,
    Obj(H),
}

fn op_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

pub(crate) struct Machine<R> {
    input: R,
    pos: u64,
    op_offset: u64,
    op: Option<u8>,
    nodes: Vec<Node>,
    /// How many containers hold each node (decides move vs clone).
    refs: Vec<u32>,
    stack: Vec<Slot>,
    memo: HashMap<u64, H>,
    /// Bytes of every copy made out of existing values while decoding
    /// (counted when made, kept or not: an over-estimate of what is held,
    /// never an under-estimate), and of the output tree (see
    /// [`Machine::charge`]); arena, stack and memo are counted from their
    /// lengths.
    copied: Cell<u64>,
}

type R<T> = Result<T, PickleError>;

impl<In: Read> Machine<In> {
    pub(crate) fn new(input: In) -> Self {
        Machine {
            input,
            pos: 0,
            op_offset: 0,
            op: None,
            nodes: Vec::new(),
            refs: Vec::new(),
            stack: Vec::new(),
            memo: HashMap::new(),
            copied: Cell::new(0),
        }
    }

    /// Counts `bytes` about to be allocated and refuses once what decoding
    /// holds passes its limit (see [`HELD_PER_INPUT_BYTE`]). Called before
    /// every copy whose size the current opcode's own bytes do not bound.
    fn charge(&self, bytes: usize) -> R<()> {
        self.copied
            .set(self.copied.get().saturating_add(bytes as u64));
        self.check_held()
    }

    fn check_held(&self) -> R<()> {
        let held = (self.nodes.len() as u64)
            .saturating_mul(NODE_COST)
            .saturating_add((self.stack.len() * std::mem::size_of::<Slot>()) as u64)
            .saturating_add((self.memo.len() * 2 * std::mem::size_of::<(u64, H)>()) as u64)
            .saturating_add(self.copied.get());
        let limit = HELD_PER_INPUT_BYTE
            .saturating_mul(self.pos)
            .saturating_add(HELD_ALLOWANCE);
        if held > limit {
            return self.err(format!(
                "decoding {} bytes of pickle would take more than {} MiB of memory \
                 (values shared, copied or sized far beyond the file's own bytes: \
                 a damaged or hostile file?)",
                self.pos,
                limit >> 20
            ));
        }
        Ok(())
    }

    fn err<T>(&self, message: impl Into<String>) -> R<T> {
        Err(PickleError {
            offset: self.op_offset,
            opcode: self.op.map(op_name),
            message: message.into(),
        })
    }

    // ---- input ----------------------------------------------------------

    fn read_exact(&mut self, buf: &mut [u8]) -> R<()> {
        match self.input.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => self.err(format!(
                "truncated input: needed {} more bytes after byte {}",
                buf.len(),
                self.pos
            )),
            Err(e) => self.err(format!("read error: {e}")),
        }
    }

    fn read_array<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut buf = [0u8; N];
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn read_u8(&mut self) -> R<u8> {
        Ok(self.read_array::<1>()?[0])
    }

    fn read_bytes(&mut self, len: u64) -> R<Vec<u8>> {
        let mut buf = Vec::with_capacity(len.min(READ_CHUNK) as usize);
        match (&mut self.input).take(len).read_to_end(&mut buf) {
            Ok(n) if n as u64 == len => {
                self.pos += len;
                Ok(buf)
            }
            Ok(n) => self.err(format!(
                "truncated input: a {len}-byte value ends after {n} bytes"
            )),
            Err(e) => self.err(format!("read error: {e}")),
        }
    }

    /// A `\n`-terminated line (protocol 0 arguments), without the newline.
    fn read_line(&mut self) -> R<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let b = self.read_u8()?;
            if b == b'\n' {
                return Ok(line);
            }
            line.push(b);
        }
    }

    fn read_line_str(&mut self) -> R<String> {
        let line = self.read_line()?;
        match String::from_utf8(line) {
            Ok(s) => Ok(s.strip_suffix('\r').unwrap_or(&s).to_string()),
            Err(_) => self.err("argument line is not valid text"),
        }
    }

    fn read_len(&mut self, bytes: usize) -> R<u64> {
        Ok(match bytes {
            1 => u64::from(self.read_u8()?),
            4 => u64::from(u32::from_le_bytes(self.read_array::<4>()?)),
            _ => u64::from_le_bytes(self.read_array::<8>()?),
        })
    }

    // ---- arena and stack ------------------------------------------------

    fn alloc(&mut self, node: Node) -> H {
        self.nodes.push(node);
        self.refs.push(0);
        self.nodes.len() - 1
    }

    fn push_node(&mut self, node: Node) {
        let h = self.alloc(node);
        self.stack.push(Slot::Obj(h));
    }

    fn push_value(&mut self, v: Value) {
        self.push_node(Node::Leaf(v));
    }

    fn hold(&mut self, h: H) -> H {
        self.refs[h] = self.refs[h].saturating_add(1);
        h
    }

    fn pop(&mut self) -> R<H> {
        match self.stack.pop() {
            Some(Slot::Obj(h)) => Ok(h),
            Some(Slot::Mark) => self.err("expected an object on the stack but found a MARK"),
            None => self.err("stack underflow"),
        }
    }

    fn top(&self) -> R<H> {
        match self.stack.last() {
            Some(Slot::Obj(h)) => Ok(*h),
            Some(Slot::Mark) => self.err("expected an object on the stack but found a MARK"),
            None => self.err("stack underflow"),
        }
    }

    fn pop_mark(&mut self) -> R<Vec<H>> {
        let Some(mark) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return self.err("no MARK on the stack");
        };
        let items = self
            .stack
            .drain(mark + 1..)
            .filter_map(|s| match s {
                Slot::Obj(h) => Some(h),
                Slot::Mark => None,
            })
            .collect();
        self.stack.truncate(mark);
        Ok(items)
    }

    fn memo_get(&mut self, key: u64) -> R<()> {
        match self.memo.get(&key) {
            Some(&h) => {
                self.stack.push(Slot::Obj(h));
                Ok(())
            }
            None => self.err(format!("memo key {key} was never stored")),
        }
    }

    fn memo_put(&mut self, key: u64) -> R<()> {
        let h = self.top()?;
        self.memo.insert(key, h);
        Ok(())
    }

    // ---- views of nodes -------------------------------------------------

    fn leaf(&self, h: H) -> Option<&Value> {
        match &self.nodes[h] {
            Node::Leaf(v) => Some(v),
            _ => None,
        }
    }

    fn str_of(&self, h: H, what: &str) -> R<String> {
        match self.leaf(h) {
            Some(Value::Str(s)) => {
                self.charge(s.len())?;
                Ok(s.clone())
            }
            _ => self.err(format!(
                "{what} must be a str, got {}",
                self.nodes[h].kind()
            )),
        }
    }

    fn int_of(&self, h: H, what: &str) -> R<i64> {
        match self.leaf(h) {
            Some(Value::Int(i)) => Ok(*i),
            Some(Value::Bool(b)) => Ok(i64::from(*b)),
            _ => self.err(format!(
                "{what} must be an int, got {}",
                self.nodes[h].kind()
            )),
        }
    }

    fn seq_of(&self, h: H, what: &str) -> R<Vec<H>> {
        match &self.nodes[h] {
            Node::Tuple(v) | Node::List(v) => {
                self.charge(std::mem::size_of_val(v.as_slice()))?;
                Ok(v.clone())
            }
            other => self.err(format!("{what} must be a tuple, got {}", other.kind())),
        }
    }

    /// Raw bytes from a `bytes` value or a latin-1 `str` (Python 2 data).
    fn raw_bytes_of(&self, h: H, what: &str) -> R<Vec<u8>> {
        match self.leaf(h) {
            Some(Value::Bytes(b)) => {
                self.charge(b.len())?;
                Ok(b.clone())
            }
            Some(Value::Str(s)) => {
                self.charge(s.len())?;
                match latin1_encode(s) {
                    Some(b) => Ok(b),
                    None => self.err(format!(
                        "{what} is a str with characters above U+00FF, not latin-1 bytes"
                    )),
                }
            }
            _ => self.err(format!(
                "{what} must be bytes or str, got {}",
                self.nodes[h].kind()
            )),
        }
    }

    /// Like [`Self::raw_bytes_of`] but moves a large buffer out of the arena
    /// instead of copying it: raw array data is used exactly once, and
    /// keeping it would double the memory needed for a feature file.
    fn take_raw_bytes(&mut self, h: H, what: &str) -> R<Vec<u8>> {
        let large = match self.leaf(h) {
            Some(Value::Bytes(b)) => b.len() >= TAKE_THRESHOLD,
            Some(Value::Str(s)) => s.len() >= TAKE_THRESHOLD,
            _ => false,
        };
        if !large {
            return self.raw_bytes_of(h, what);
        }
        match std::mem::replace(&mut self.nodes[h], Node::Consumed) {
            Node::Leaf(Value::Bytes(b)) => Ok(b),
            Node::Leaf(Value::Str(s)) => match latin1_encode(&s) {
                Some(b) => Ok(b),
                None => self.err(format!(
                    "{what} is a str with characters above U+00FF, not latin-1 bytes"
                )),
            },
            other => {
                self.nodes[h] = other;
                self.raw_bytes_of(h, what)
            }
        }
    }

    /// A str argument, moved out of the arena when large (see
    /// [`Self::take_raw_bytes`]).
    fn take_str(&mut self, h: H, what: &str) -> R<String> {
        match self.leaf(h) {
            Some(Value::Str(s)) if s.len() >= TAKE_THRESHOLD => {
                match std::mem::replace(&mut self.nodes[h], Node::Consumed) {
                    Node::Leaf(Value::Str(s)) => Ok(s),
                    other => {
                        self.nodes[h] = other;
                        self.str_of(h, what)
                    }
                }
            }
            _ => self.str_of(h, what),
        }
    }

    fn dtype_of(&self, h: H, what: &str) -> R<DType> {
        match &self.nodes[h] {
            Node::DType(d) => Ok(d.clone()),
            Node::Leaf(Value::Str(s)) => DType::parse(s).or_else(|e| self.err(e)),
            other => self.err(format!(
                "{what} must be a numpy dtype, got {}",
                other.kind()
            )),
        }
    }

    fn shape_of(&self, h: H) -> R<Vec<usize>> {
        let dims = match &self.nodes[h] {
            Node::Tuple(v) | Node::List(v) => {
                // The handles and the shape built from them.
                self.charge(2 * std::mem::size_of_val(v.as_slice()))?;
                v.clone()
            }
            Node::Leaf(Value::Int(_)) => vec![h],
            other => return self.err(format!("array shape must be a tuple, got {}", other.kind())),
        };
        dims.iter()
            .map(|&d| {
                let n = self.int_of(d, "array dimension")?;
                usize::try_from(n).or_else(|_| self.err(format!("negative array dimension {n}")))
            })
            .collect()
    }

    // ---- the loop -------------------------------------------------------

    pub(crate) fn run(mut self) -> R<Value> {
        loop {
            self.op_offset = self.pos;
            self.op = None;
            let mut byte = [0u8; 1];
            let op = match self.input.read_exact(&mut byte) {
                Ok(()) => {
                    self.pos += 1;
                    byte[0]
                }
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    return self.err("truncated input: end of data before the STOP opcode");
                }
                // A directory, a device that fails: say so, not "truncated".
                Err(e) => return self.err(format!("read error: {e}")),
            };
            self.op = Some(op);
            if op == b'.' {
                let root = self.pop()?;
                self.hold(root);
                let mut cache = HashMap::new();
                self.op = None;
                self.op_offset = self.pos;
                return self.materialize(root, 0, &mut cache);
            }
            self.step(op)?;
            self.check_held()?;
        }
    }

    fn step(&mut self, op: u8) -> R<()> {
        match op {
            // -- protocol/framing
            0x80 => {
                let proto = self.read_u8()?;
                if proto > 5 {
                    return self.err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                self.read_array::<8>()?;
            }
            // -- stack manipulation
            b'(' => self.stack.push(Slot::Mark),
            b'0' => match self.stack.pop() {
                Some(_) => {}
                None => return self.err("stack underflow"),
            },
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let h = self.top()?;
                self.stack.push(Slot::Obj(h));
            }
            // -- memo
            b'p' => {
                let line = self.read_line_str()?;
                let key = line
                    .trim()
                    .parse()
                    .or_else(|_| self.err(format!("bad memo key {line:?}")))?;
                self.memo_put(key)?;
            }
            b'q' => {
                let key = self.read_len(1)?;
                self.memo_put(key)?;
            }
            b'r' => {
                let key = self.read_len(4)?;
                self.memo_put(key)?;
            }
            0x94 => {
                let key = self.memo.len() as u64;
                self.memo_put(key)?;
            }
            b'g' => {
                let line = self.read_line_str()?;
                let key = line
                    .trim()
                    .parse()
                    .or_else(|_| self.err(format!("bad memo key {line:?}")))?;
                self.memo_get(key)?;
            }
            b'h' => {
                let key = self.read_len(1)?;
                self.memo_get(key)?;
            }
            b'j' => {
                let key = self.read_len(4)?;
                self.memo_get(key)?;
            }
            // -- constants and numbers
            b'N' => self.push_value(Value::None),
            0x88 => self.push_value(Value::Bool(true)),
            0x89 => self.push_value(Value::Bool(false)),
            b'I' => {
                let line = self.read_line_str()?;
                let v = match line.as_str() {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => Value::Int(
                        s.trim()
                            .parse()
                            .or_else(|_| self.err(format!("bad INT argument {s:?}")))?,
                    ),
                };
                self.push_value(v);
            }
            b'L' => {
                let line = self.read_line_str()?;
                let s = line.trim().trim_end_matches('L');
                let v: i64 = s
                    .parse()
                    .or_else(|_| self.err(format!("LONG argument {s:?} is not an i64")))?;
                self.push_value(Value::Int(v));
            }
            b'J' => {
                let v = i32::from_le_bytes(self.read_array::<4>()?);
                self.push_value(Value::Int(i64::from(v)));
            }
            b'K' => {
                let v = self.read_u8()?;
                self.push_value(Value::Int(i64::from(v)));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.read_array::<2>()?);
                self.push_value(Value::Int(i64::from(v)));
            }
            0x8a | 0x8b => {
                let n = self.read_len(if op == 0x8a { 1 } else { 4 })?;
                let bytes = self.read_bytes(n)?;
                self.push_value(long_value(bytes));
            }
            b'F' => {
                let line = self.read_line_str()?;
                let v: f64 = line
                    .trim()
                    .parse()
                    .or_else(|_| self.err(format!("bad FLOAT argument {line:?}")))?;
                self.push_value(Value::Float(v));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.read_array::<8>()?);
                self.push_value(Value::Float(v));
            }
            // -- strings and bytes
            b'S' => {
                let line = self.read_line()?;
                let bytes = match unquote_python_string(&line) {
                    Ok(b) => b,
                    Err(e) => return self.err(format!("bad STRING argument: {e}")),
                };
                self.push_value(Value::Str(latin1_decode(&bytes)));
            }
            b'T' | b'U' => {
                let n = if op == b'T' {
                    let n = i32::from_le_bytes(self.read_array::<4>()?);
                    u64::try_from(n).or_else(|_| self.err(format!("negative length {n}")))?
                } else {
                    self.read_len(1)?
                };
                let bytes = self.read_bytes(n)?;
                self.push_value(Value::Str(latin1_decode(&bytes)));
            }
            b'V' => {
                let line = self.read_line()?;
                match raw_unicode_escape(&line) {
                    Ok(s) => self.push_value(Value::Str(s)),
                    Err(e) => return self.err(format!("bad UNICODE argument: {e}")),
                }
            }
            b'X' | 0x8c | 0x8d => {
                let n = self.read_len(match op {
                    b'X' => 4,
                    0x8c => 1,
                    _ => 8,
                })?;
                let bytes = self.read_bytes(n)?;
                let s = match String::from_utf8(bytes) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                self.push_value(Value::Str(s));
            }
            b'B' | b'C' | 0x8e | 0x96 => {
                let n = self.read_len(match op {
                    b'B' => 4,
                    b'C' => 1,
                    _ => 8,
                })?;
                let bytes = self.read_bytes(n)?;
                self.push_value(Value::Bytes(bytes));
            }
            0x98 => {
                self.top()?;
            }
            // -- containers
            b')' => self.push_node(Node::Tuple(Vec::new())),
            b']' => self.push_node(Node::List(Vec::new())),
            b'}' => self.push_node(Node::Dict(Vec::new())),
            0x8f => self.push_node(Node::Set(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.new_container(Node::Tuple, items);
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.new_container(Node::Tuple, items);
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.new_container(Node::List, items);
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.new_container(Node::Set, items);
            }
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                for &(k, v) in &pairs {
                    self.hold(k);
                    self.hold(v);
                }
                self.push_node(Node::Dict(pairs));
            }
            b'a' => {
                let item = self.pop()?;
                self.extend(vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend(items)?;
            }
            0x90 => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                for &h in &items {
                    self.hold(h);
                }
                match &mut self.nodes[target] {
                    Node::Set(v) => v.extend(items),
                    other => {
                        let kind = other.kind();
                        return self.err(format!("ADDITEMS needs a set, got {kind}"));
                    }
                }
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![(k, v)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.set_items(pairs)?;
            }
            // -- classes and calls
            b'c' => {
                let module = self.read_line_str()?;
                let name = self.read_line_str()?;
                self.push_node(Node::Global(Box::new(Global { module, name })));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let name = self.str_of(name, "STACK_GLOBAL name")?;
                let module = self.str_of(module, "STACK_GLOBAL module")?;
                self.push_node(Node::Global(Box::new(Global { module, name })));
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let args = self.seq_of(args, "REDUCE arguments")?;
                let h = self.call(callable, args)?;
                self.stack.push(Slot::Obj(h));
            }
            0x81 => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = self.seq_of(args, "NEWOBJ arguments")?;
                let h = self.call(cls, args)?;
                self.stack.push(Slot::Obj(h));
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = self.seq_of(args, "NEWOBJ_EX arguments")?;
                let h = self.call(cls, args)?;
                self.stack.push(Slot::Obj(h));
            }
            b'i' => {
                let module = self.read_line_str()?;
                let name = self.read_line_str()?;
                let args = self.pop_mark()?;
                let cls = self.alloc(Node::Global(Box::new(Global { module, name })));
                let h = self.call(cls, args)?;
                self.stack.push(Slot::Obj(h));
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return self.err("OBJ needs a class after the MARK");
                }
                let cls = items.remove(0);
                let h = self.call(cls, items)?;
                self.stack.push(Slot::Obj(h));
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(target, state)?;
            }
            b'P' | b'Q' => return self.err("persistent ids are not supported"),
            0x82..=0x84 => return self.err("the copyreg extension registry is not supported"),
            0x97 => return self.err("out-of-band buffers are not supported"),
            _ => return self.err(format!("unknown opcode 0x{op:02x}")),
        }
        Ok(())
    }

    fn new_container(&mut self, make: fn(Vec<H>) -> Node, items: Vec<H>) {
        for &h in &items {
            self.hold(h);
        }
        self.push_node(make(items));
    }

    fn pairs(&self, items: Vec<H>) -> R<Vec<(H, H)>> {
        if !items.len().is_multiple_of(2) {
            return self.err(format!(
                "odd number of items ({}) for key/value pairs",
                items.len()
            ));
        }
        Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
    }

    fn extend(&mut self, items: Vec<H>) -> R<()> {
        let target = self.top()?;
        for &h in &items {
            self.hold(h);
        }
        match &mut self.nodes[target] {
            Node::List(v) => v.extend(items),
            Node::Object(o) => o.items.extend(items),
            other => {
                let kind = other.kind();
                return self.err(format!("cannot append to {kind}"));
            }
        }
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<(H, H)>) -> R<()> {
        let target = self.top()?;
        for &(k, v) in &pairs {
            self.hold(k);
            self.hold(v);
        }
        match &mut self.nodes[target] {
            Node::Dict(v) => v.extend(pairs),
            Node::Object(o) => o.entries.extend(pairs),
            other => {
                let kind = other.kind();
                return self.err(format!("cannot set items on {kind}"));
            }
        }
        Ok(())
    }

    /// Calls (or instantiates) `callable` with `args`, for the known
    /// constructors; anything else becomes an inert object record.
    fn call(&mut self, callable: H, args: Vec<H>) -> R<H> {
        let node = self.call_node(callable, args)?;
        Ok(match node {
            Called::New(node) => self.alloc(node),
            Called::Existing(h) => h,
        })
    }

    fn call_node(&mut self, callable: H, args: Vec<H>) -> R<Called> {
        let (module, name) = match &self.nodes[callable] {
            Node::Global(g) => {
                // The names, and an object's class built from them.
                self.charge(2 * (g.module.len() + g.name.len()))?;
                (g.module.clone(), g.name.clone())
            }
            other => {
                return self.err(format!("cannot call {}", other.kind()));
            }
        };
        let is_numpy = |m: &str, subs: &[&str]| {
            subs.iter().any(|s| {
                m == format!("numpy.core.{s}") || m == format!("numpy._core.{s}") || m == "numpy"
            })
        };
        let builtins = module == "__builtin__" || module == "builtins";
        let arg = |i: usize| args.get(i).copied();
        match (module.as_str(), name.as_str()) {
            (m, "_reconstruct") if is_numpy(m, &["multiarray"]) => {
                Ok(Called::New(Node::PendingArray))
            }
            (m, "dtype") if m == "numpy" || is_numpy(m, &["multiarray", "_multiarray_umath"]) => {
                let Some(descr) = arg(0) else {
                    return self.err("numpy.dtype needs a type description");
                };
                let descr = self.str_of(descr, "numpy.dtype argument")?;
                DType::parse(&descr)
                    .map(|d| Called::New(Node::DType(d)))
                    .or_else(|e| self.err(e))
            }
            (m, "scalar") if is_numpy(m, &["multiarray"]) => {
                let (Some(dt), Some(raw)) = (arg(0), arg(1)) else {
                    return self.err("numpy scalar needs (dtype, data)");
                };
                let dtype = self.dtype_of(dt, "numpy scalar dtype")?;
                if dtype.is_object() {
                    // scalar(dtype('O'), obj) is obj itself.
                    return Ok(Called::Existing(raw));
                }
                let raw = self.raw_bytes_of(raw, "numpy scalar data")?;
                numpy::scalar(&dtype, &raw)
                    .map(|v| Called::New(Node::Leaf(v)))
                    .or_else(|e| self.err(e))
            }
            (m, "_frombuffer") if is_numpy(m, &["numeric"]) => {
                let (Some(buf), Some(dt), Some(shape)) = (arg(0), arg(1), arg(2)) else {
                    return self.err("numpy _frombuffer needs (buffer, dtype, shape, order)");
                };
                let raw = self.take_raw_bytes(buf, "numpy buffer")?;
                let dtype = self.dtype_of(dt, "numpy _frombuffer dtype")?;
                let shape = self.shape_of(shape)?;
                let fortran = match arg(3) {
                    Some(o) => self.str_of(o, "array order")? == "F",
                    None => false,
                };
                self.typed_array(dtype, shape, fortran, &raw)
                    .map(Called::New)
            }
            ("_codecs", "encode") => {
                let Some(text) = arg(0) else {
                    return self.err("_codecs.encode needs a str");
                };
                let text = self.take_str(text, "_codecs.encode argument")?;
                let encoding = match arg(1) {
                    Some(e) => self.str_of(e, "_codecs.encode encoding")?,
                    None => "utf-8".into(),
                };
                self.encode(&text, &encoding)
                    .map(|b| Called::New(Node::Leaf(Value::Bytes(b))))
            }
            ("collections", "OrderedDict") | (_, "dict") if builtins || module == "collections" => {
                let mut pairs = Vec::new();
                if let Some(items) = arg(0) {
                    for pair in self.seq_of(items, "dict items")? {
                        let kv = self.seq_of(pair, "dict item")?;
                        if kv.len() != 2 {
                            return self.err("dict item must be a (key, value) pair");
                        }
                        pairs.push((self.hold(kv[0]), self.hold(kv[1])));
                    }
                }
                Ok(Called::New(Node::Dict(pairs)))
            }
            (_, "set" | "frozenset" | "list" | "tuple") if builtins => {
                let items = match arg(0) {
                    Some(h) => match &self.nodes[h] {
                        Node::List(v) | Node::Tuple(v) | Node::Set(v) => {
                            self.charge(std::mem::size_of_val(v.as_slice()))?;
                            v.clone()
                        }
                        other => {
                            return self.err(format!("cannot build {name} from {}", other.kind()));
                        }
                    },
                    None => Vec::new(),
                };
                for &h in &items {
                    self.hold(h);
                }
                Ok(Called::New(match name.as_str() {
                    "list" => Node::List(items),
                    "tuple" => Node::Tuple(items),
                    _ => Node::Set(items),
                }))
            }
            (_, "bytes" | "bytearray") if builtins => {
                let bytes = match (arg(0), arg(1)) {
                    (None, _) => Vec::new(),
                    (Some(s), Some(enc)) => {
                        let s = self.str_of(s, "bytes argument")?;
                        let enc = self.str_of(enc, "bytes encoding")?;
                        self.encode(&s, &enc)?
                    }
                    (Some(h), None) => match &self.nodes[h] {
                        Node::Leaf(Value::Bytes(b)) => {
                            self.charge(b.len())?;
                            b.clone()
                        }
                        Node::List(v) | Node::Tuple(v) => {
                            self.charge(v.len())?;
                            v.iter()
                                .map(|&x| {
                                    let i = self.int_of(x, "byte")?;
                                    u8::try_from(i).or_else(|_| self.err(format!("byte value {i}")))
                                })
                                .collect::<R<Vec<u8>>>()?
                        }
                        other => {
                            return self.err(format!("cannot build bytes from {}", other.kind()));
                        }
                    },
                };
                Ok(Called::New(Node::Leaf(Value::Bytes(bytes))))
            }
            ("copy_reg" | "copyreg", "_reconstructor") => {
                let class = match arg(0).map(|h| &self.nodes[h]) {
                    Some(Node::Global(g)) => format!("{}.{}", g.module, g.name),
                    _ => "copy_reg._reconstructor".into(),
                };
                let rest: Vec<H> = args.iter().skip(1).map(|&h| self.hold(h)).collect();
                Ok(Called::New(Node::Object(Box::new(ObjectNode {
                    class,
                    args: rest,
                    state: None,
                    items: Vec::new(),
                    entries: Vec::new(),
                }))))
            }
            _ => {
                let args: Vec<H> = args.iter().map(|&h| self.hold(h)).collect();
                Ok(Called::New(Node::Object(Box::new(ObjectNode {
                    class: format!("{module}.{name}"),
                    args,
                    state: None,
                    items: Vec::new(),
                    entries: Vec::new(),
                }))))
            }
        }
    }

    fn encode(&self, text: &str, encoding: &str) -> R<Vec<u8>> {
        self.charge(text.len())?;
        match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1" => match latin1_encode(text) {
                Some(b) => Ok(b),
                None => self.err("text has characters outside latin-1"),
            },
            "utf-8" | "utf8" => Ok(text.as_bytes().to_vec()),
            "ascii" if text.is_ascii() => Ok(text.as_bytes().to_vec()),
            other => self.err(format!("unsupported text encoding {other:?}")),
        }
    }

    fn typed_array(&self, dtype: DType, shape: Vec<usize>, fortran: bool, raw: &[u8]) -> R<Node> {
        let count = numpy::element_count(&shape).or_else(|e| self.err(e))?;
        // Zero-sized items (`S0`) decode to `count` values from no bytes.
        // (Data of the wrong length is `decode`'s error to report.)
        if count.checked_mul(dtype.itemsize) == Some(raw.len()) {
            self.charge(numpy::decoded_size(&dtype, count))?;
        }
        let data = numpy::decode(&dtype, count, raw)
            .or_else(|e| self.err(format!("array of shape {shape:?}: {e}")))?;
        Ok(Node::Array(Box::new(ArrayNode {
            dtype,
            shape,
            fortran,
            store: ArrayStore::Typed(data),
        })))
    }

    fn build(&mut self, target: H, state: H) -> R<()> {
        match &self.nodes[target] {
            Node::PendingArray => {
                let fields = self.seq_of(state, "ndarray state")?;
                // (version, shape, dtype, is_fortran, rawdata); very old
                // numpy omitted the version.
                let fields = match fields.len() {
                    5 => &fields[1..],
                    4 => &fields[..],
                    n => return self.err(format!("ndarray state has {n} fields, expected 5")),
                };
                let shape = self.shape_of(fields[0])?;
                let dtype = self.dtype_of(fields[1], "ndarray dtype")?;
                let fortran = self.int_of(fields[2], "ndarray is_fortran flag")? != 0;
                let data = fields[3];
                let node = if dtype.is_object() {
                    let count = numpy::element_count(&shape).or_else(|e| self.err(e))?;
                    let n = match &self.nodes[data] {
                        Node::List(v) => v.len(),
                        other => {
                            return self.err(format!(
                                "object array data must be a list, got {}",
                                other.kind()
                            ));
                        }
                    };
                    if n != count {
                        return self.err(format!(
                            "object array of shape {shape:?} has {n} elements, expected {count}"
                        ));
                    }
                    self.hold(data);
                    Node::Array(Box::new(ArrayNode {
                        dtype,
                        shape,
                        fortran,
                        store: ArrayStore::Objects(data),
                    }))
                } else {
                    let raw = self.take_raw_bytes(data, "ndarray data")?;
                    self.typed_array(dtype, shape, fortran, &raw)?
                };
                self.nodes[target] = node;
            }
            Node::DType(d) => {
                let mut d = d.clone();
                if let Some(Node::Tuple(fields)) = self.nodes.get(state) {
                    if let Some(Value::Str(order)) = fields.get(1).and_then(|&h| self.leaf(h))
                        && let Some(c) = order.chars().next()
                    {
                        d.byte_order = c;
                    }
                    if let Some(Value::Int(size)) = fields.get(5).and_then(|&h| self.leaf(h))
                        && *size > 0
                    {
                        d.itemsize = usize::try_from(*size).unwrap_or(d.itemsize);
                    }
                }
                self.nodes[target] = Node::DType(d);
            }
            Node::Object(_) => {
                self.hold(state);
                if let Node::Object(o) = &mut self.nodes[target] {
                    o.state = Some(state);
                }
            }
            // Instance attributes of dict/list/set subclasses (e.g. an
            // OrderedDict's) carry no data we use.
            Node::Dict(_) | Node::List(_) | Node::Set(_) => {}
            Node::Leaf(Value::Bytes(_)) if matches!(self.leaf(state), Some(Value::None)) => {}
            other => return self.err(format!("cannot BUILD {}", other.kind())),
        }
        Ok(())
    }

    // ---- result tree ----------------------------------------------------

    fn materialize(
        &mut self,
        h: H,
        depth: usize,
        cache: &mut HashMap<H, (Value, usize)>,
    ) -> R<Value> {
        if depth > MAX_DEPTH {
            return self.err(format!("structure nested deeper than {MAX_DEPTH} levels"));
        }
        if let Some((v, size)) = cache.get(&h) {
            // A shared value is cloned whole each time it is referenced.
            self.charge(*size)?;
            return Ok(v.clone());
        }
        let before = self.copied.get();
        self.charge(std::mem::size_of::<Value>())?;
        let node = std::mem::replace(&mut self.nodes[h], Node::Taken);
        let rec = |m: &mut Self, hs: Vec<H>, cache: &mut _| {
            hs.into_iter()
                .map(|c| m.materialize(c, depth + 1, cache))
                .collect::<R<Vec<Value>>>()
        };
        let value = match node {
            Node::Leaf(v) => v,
            Node::List(v) => Value::List(rec(self, v, cache)?),
            Node::Tuple(v) => Value::Tuple(rec(self, v, cache)?),
            Node::Set(v) => Value::Set(distinct(rec(self, v, cache)?)),
            Node::Dict(pairs) => {
                let mut out: Vec<(Value, Value)> = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let k = self.materialize(k, depth + 1, cache)?;
                    let v = self.materialize(v, depth + 1, cache)?;
                    out.push((k, v));
                }
                Value::Dict(collapse_keys(out))
            }
            Node::Global(g) => Value::Global(g),
            Node::DType(d) => Value::DType(d),
            Node::PendingArray => {
                return self.err("numpy array was created but never given its state (BUILD)");
            }
            Node::Array(a) => {
                let ArrayNode {
                    dtype,
                    shape,
                    fortran,
                    store,
                } = *a;
                let data = match store {
                    ArrayStore::Typed(d) => d,
                    ArrayStore::Objects(list) => match self.materialize(list, depth + 1, cache)? {
                        Value::List(v) => ArrayData::Object(v),
                        other => {
                            return self
                                .err(format!("object array data became {}", other.type_name()));
                        }
                    },
                };
                Value::NdArray(Box::new(NdArray {
                    dtype,
                    shape,
                    data,
                    fortran_order: fortran,
                }))
            }
            Node::Object(o) => {
                let ObjectNode {
                    class,
                    args,
                    state,
                    items,
                    entries,
                } = *o;
                let args = rec(self, args, cache)?;
                let state = match state {
                    Some(s) => Some(self.materialize(s, depth + 1, cache)?),
                    None => None,
                };
                let items = rec(self, items, cache)?;
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    out.push((
                        self.materialize(k, depth + 1, cache)?,
                        self.materialize(v, depth + 1, cache)?,
                    ));
                }
                Value::Object(Box::new(Object {
                    class,
                    args,
                    state,
                    items,
                    entries: out,
                }))
            }
            Node::Taken => {
                return self.err("recursive structure (a value contains itself)");
            }
            Node::Consumed => {
                return self.err(
                    "a large raw buffer is referenced again after numpy consumed it (unsupported)",
                );
            }
        };
        self.charge(payload_bytes(&value))?;
        if self.refs[h] > 1 {
            let size = usize::try_from(self.copied.get() - before).unwrap_or(usize::MAX);
            // The copy kept for the other references.
            self.charge(size)?;
            cache.insert(h, (value.clone(), size));
        }
        Ok(value)
    }
}

/// Heap bytes a value holds besides its children (which are values of their
/// own), for [`Machine::charge`].
fn payload_bytes(v: &Value) -> usize {
    match v {
        Value::BigInt(b) | Value::Bytes(b) => b.len(),
        Value::Str(s) => s.len(),
        Value::NdArray(a) => {
            std::mem::size_of::<NdArray>()
                + std::mem::size_of_val(a.shape.as_slice())
                + numpy::data_bytes(&a.data)
        }
        Value::Global(g) => std::mem::size_of::<Global>() + g.module.len() + g.name.len(),
        Value::Object(o) => std::mem::size_of::<Object>() + o.class.len(),
        _ => 0,
    }
}

/// A dict key or set element as Python compares it: `True == 1 == 1.0`,
/// `0.0 == -0.0`, an integral float equals the int of its value however
/// large, `None == None`, tuples equal element by element; a NaN equals
/// nothing (two NaN keys stay two entries, as two NaN objects do in
/// Python). Borrows the value: finding duplicates copies nothing.
#[derive(PartialEq, Eq, Hash)]
enum Key<'a> {
    None,
    Int(i64),
    /// An integer beyond `i64`: minimal little-endian two's complement.
    Big(Vec<u8>),
    /// A float that is not an integer (nor a NaN): its bits.
    Float(u64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Tuple(Vec<Key<'a>>),
}

/// `v` as a [`Key`]; `None` for values that equal nothing else here (NaN,
/// lists, arrays, objects…), which are never collapsed.
fn key(v: &Value) -> Option<Key<'_>> {
    Some(match v {
        Value::None => Key::None,
        Value::Bool(b) => Key::Int(i64::from(*b)),
        Value::Int(i) => Key::Int(*i),
        Value::BigInt(b) => integer_key(b.clone()),
        Value::Float(f) if f.is_nan() => return None,
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 => integral_float_key(*f),
        Value::Float(f) => Key::Float(f.to_bits()),
        Value::Str(s) => Key::Str(s),
        Value::Bytes(b) => Key::Bytes(b),
        Value::Tuple(items) => Key::Tuple(items.iter().map(key).collect::<Option<_>>()?),
        _ => return None,
    })
}

/// The key of an integer given as little-endian two's complement bytes
/// (any length, redundant sign bytes allowed).
fn integer_key(mut bytes: Vec<u8>) -> Key<'static> {
    while let [.., below, top] = bytes[..] {
        let redundant = (top == 0 && below & 0x80 == 0) || (top == 0xff && below & 0x80 != 0);
        if !redundant {
            break;
        }
        bytes.pop();
    }
    match small_integer(&bytes) {
        Some(i) => Key::Int(i),
        None => Key::Big(bytes),
    }
}

/// The key of a finite float with no fractional part: the integer it
/// equals, exactly (`2.0**70 == 2**70` in Python).
fn integral_float_key(f: f64) -> Key<'static> {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if (-TWO_63..TWO_63).contains(&f) {
        return Key::Int(f as i64);
    }
    // |f| ≥ 2⁶³: a normal float, its value mantissa · 2^(exponent − 52)
    // with an exponent ≥ 63.
    let bits = f.to_bits();
    let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
    let shift = ((bits >> 52) & 0x7ff) as usize - 1075;
    let mut magnitude = vec![0u8; shift / 8 + 9];
    let wide = u128::from(mantissa) << (shift % 8);
    for (i, byte) in wide.to_le_bytes().iter().take(9).enumerate() {
        magnitude[shift / 8 + i] = *byte;
    }
    if f < 0.0 {
        // Two's complement: invert and add one.
        let mut carry = true;
        for byte in &mut magnitude {
            let (sum, over) = (!*byte).overflowing_add(u8::from(carry));
            *byte = sum;
            carry = over;
        }
    }
    integer_key(magnitude)
}

/// A dict's entries with keys Python holds equal collapsed: the first
/// key is kept with the last value, in first-insertion order.
fn collapse_keys(mut pairs: Vec<(Value, Value)>) -> Vec<(Value, Value)> {
    let first: Vec<usize> = {
        let mut seen: HashMap<Key<'_>, usize> = HashMap::new();
        let mut first = Vec::with_capacity(pairs.len());
        for (i, (k, _)) in pairs.iter().enumerate() {
            first.push(key(k).map_or(i, |k| *seen.entry(k).or_insert(i)));
        }
        first
    };
    if first.iter().enumerate().all(|(i, &f)| i == f) {
        return pairs;
    }
    for i in 0..pairs.len() {
        if first[i] != i {
            let value = std::mem::replace(&mut pairs[i].1, Value::None);
            pairs[first[i]].1 = value;
        }
    }
    pairs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| first[*i] == *i)
        .map(|(_, pair)| pair)
        .collect()
}

/// A set's elements with those Python holds equal collapsed to the first.
fn distinct(items: Vec<Value>) -> Vec<Value> {
    let keep: Vec<bool> = {
        let mut seen = std::collections::HashSet::new();
        items
            .iter()
            .map(|v| key(v).is_none_or(|k| seen.insert(k)))
            .collect()
    };
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(v, keep)| keep.then_some(v))
        .collect()
}

fn long_value(bytes: Vec<u8>) -> Value {
    match small_integer(&bytes) {
        Some(i) => Value::Int(i),
        None => Value::BigInt(bytes),
    }
}

/// Little-endian two's complement bytes as an `i64`, where there are at
/// most 8 of them (none: 0).
fn small_integer(bytes: &[u8]) -> Option<i64> {
    let Some(&top) = bytes.last() else {
        return Some(0);
    };
    if bytes.len() > 8 {
        return None;
    }
    let mut buf = [if top & 0x80 != 0 { 0xff } else { 0 }; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Some(i64::from_le_bytes(buf))
}

pub(crate) fn latin1_decode(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

pub(crate) fn latin1_encode(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// Decodes the argument of protocol-0 `STRING`: a Python 2 `repr` of a byte
/// string, quotes included.
fn unquote_python_string(line: &[u8]) -> Result<Vec<u8>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let body = match line {
        [q, body @ .., q2] if (*q == b'\'' || *q == b'"') && q == q2 && line.len() >= 2 => body,
        _ => return Err("string is not quoted".into()),
    };
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = body.get(i) else {
            return Err("trailing backslash".into());
        };
        i += 1;
        match e {
            b'\\' | b'\'' | b'"' => out.push(e),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\n' => {}
            b'x' => {
                let hex = body
                    .get(i..i + 2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("bad \\x escape")?;
                out.push(hex);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Decodes Python's `raw-unicode-escape` (protocol-0 `UNICODE`).
fn raw_unicode_escape(line: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b == b'\\' && matches!(line.get(i + 1), Some(b'u' | b'U')) {
            let n = if line[i + 1] == b'u' { 4 } else { 8 };
            let c = line
                .get(i + 2..i + 2 + n)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or("bad \\u escape")?;
            out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
            i += 2 + n;
        } else {
            out.push(char::from(b));
            i += 1;
        }
    }
    Ok(out)
}
