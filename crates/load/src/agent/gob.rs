//! The subset of Go's `encoding/gob` that `net/rpc` needs to call go-lo's `Server.Run`:
//! struct types of booleans, integers and strings (`rpc.Request`, `rpc.Response`,
//! go-lo's empty `NullArg`), their type definitions, and skipping what else a peer may
//! send. No crate implements gob; the format is documented by Go's `encoding/gob`
//! package, whose example stream (a `Point{X: 22, Y: 33}`) is a test here.
//!
//! A gob stream is a sequence of messages, each `uint(length)` then `int(type id)` then
//! a value. A negative type id defines type `-id` (the value is a `wireType`) before the
//! first value of it; ids from 65 are the sender's own. A struct value is a sequence of
//! `uint(field number delta), field value`, ended by a 0 delta; fields with a zero value
//! are not sent. An unsigned integer under 128 is one byte; a larger one is the negated
//! count of its big-endian bytes, then those bytes. A signed integer `i` is sent as the
//! unsigned `i << 1` (`!i << 1 | 1` when negative). Strings are a length and the bytes.

use std::collections::HashMap;

/// Why a gob stream could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GobError {
    #[error("gob: the stream ended inside a message")]
    Truncated,
    #[error("gob: a value of type {0}, which was never defined")]
    UnknownType(i64),
    #[error("gob: type {0} is not a struct of booleans, numbers, strings and such structs")]
    Unsupported(i64),
    #[error("gob: field {0} is past the struct's fields")]
    BadField(u64),
    #[error("gob: a message of {0} bytes is too large")]
    TooLarge(u64),
}

/// The basic types' ids.
pub const BOOL: i64 = 1;
pub const INT: i64 = 2;
pub const UINT: i64 = 3;
pub const FLOAT: i64 = 4;
pub const BYTES: i64 = 5;
pub const STRING: i64 = 6;
/// The first id a sender gives its own types.
const FIRST_USER_TYPE: i64 = 65;
/// Largest message read.
pub const MAX_MESSAGE: u64 = 1 << 20;

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Str(String),
    /// A nested struct's fields, by name.
    Struct(Vec<(String, Val)>),
    /// A value read but not kept (floats, byte slices).
    Other,
}

impl Val {
    fn is_zero(&self) -> bool {
        matches!(self, Val::Bool(false) | Val::Int(0) | Val::Uint(0)) || matches!(self, Val::Str(s) if s.is_empty())
    }
}

/// A struct type to send: its Go name and its fields' names and basic type ids.
#[derive(Debug, Clone, Copy)]
pub struct StructDef {
    pub name: &'static str,
    pub fields: &'static [(&'static str, i64)],
}

pub fn put_uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
        return;
    }
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push((-((8 - skip) as i8)) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

pub fn put_int(out: &mut Vec<u8>, i: i64) {
    let u = if i < 0 { (!(i as u64) << 1) | 1 } else { (i as u64) << 1 };
    put_uint(out, u);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Writes one field's value.
type FieldWriter<'a> = &'a dyn Fn(&mut Vec<u8>);

/// A decoded struct: its fields by name.
pub type Fields = Vec<(String, Val)>;

/// Writes struct fields `(number, writer)` that are present, with their deltas, and the end.
fn put_struct(out: &mut Vec<u8>, fields: &[(usize, FieldWriter<'_>)]) {
    let mut last: i64 = -1;
    for (n, write) in fields {
        put_uint(out, (*n as i64 - last) as u64);
        write(out);
        last = *n as i64;
    }
    out.push(0);
}

/// One gob stream's writer: remembers which types it defined.
#[derive(Debug, Default)]
pub struct Encoder {
    defined: HashMap<&'static str, i64>,
}

impl Encoder {
    /// Appends to `out` the messages for one value of `def` (its type's definition first,
    /// once per stream); `values` go with `def.fields`, in order.
    pub fn encode(&mut self, def: &StructDef, values: &[Val], out: &mut Vec<u8>) {
        let id = match self.defined.get(def.name) {
            Some(id) => *id,
            None => {
                let id = FIRST_USER_TYPE + self.defined.len() as i64;
                self.defined.insert(def.name, id);
                message(out, -id, &type_definition(def, id));
                id
            }
        };
        let mut value = Vec::new();
        let mut last: i64 = -1;
        // Only basic values are written; a zero one is left out, as gob does.
        for (n, v) in values.iter().enumerate().take(def.fields.len()) {
            if v.is_zero() || matches!(v, Val::Struct(_) | Val::Other) {
                continue;
            }
            put_uint(&mut value, (n as i64 - last) as u64);
            match v {
                Val::Bool(b) => put_uint(&mut value, u64::from(*b)),
                Val::Int(i) => put_int(&mut value, *i),
                Val::Uint(u) => put_uint(&mut value, *u),
                Val::Str(s) => put_str(&mut value, s),
                Val::Struct(_) | Val::Other => {}
            }
            last = n as i64;
        }
        value.push(0);
        message(out, id, &value);
    }
}

fn message(out: &mut Vec<u8>, type_id: i64, value: &[u8]) {
    let mut body = Vec::with_capacity(value.len() + 4);
    put_int(&mut body, type_id);
    body.extend_from_slice(value);
    put_uint(out, body.len() as u64);
    out.extend_from_slice(&body);
}

/// A `wireType{StructT: &structType{CommonType{Name, Id}, Field: []fieldType{…}}}`.
fn type_definition(def: &StructDef, id: i64) -> Vec<u8> {
    let common = |o: &mut Vec<u8>| {
        put_struct(o, &[(0, &|o: &mut Vec<u8>| put_str(o, def.name)), (1, &|o: &mut Vec<u8>| put_int(o, id))]);
    };
    let fields = |o: &mut Vec<u8>| {
        put_uint(o, def.fields.len() as u64);
        for (name, tid) in def.fields {
            put_struct(o, &[(0, &|o: &mut Vec<u8>| put_str(o, name)), (1, &|o: &mut Vec<u8>| put_int(o, *tid))]);
        }
    };
    let struct_type = |o: &mut Vec<u8>| {
        if def.fields.is_empty() {
            put_struct(o, &[(0, &common)]);
        } else {
            put_struct(o, &[(0, &common), (1, &fields)]);
        }
    };
    let mut wire = Vec::new();
    // wireType's third field, StructT.
    put_struct(&mut wire, &[(2, &struct_type)]);
    wire
}

/// Reads a message body.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, GobError> {
        let b = *self.buf.get(self.at).ok_or(GobError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn uint(&mut self) -> Result<u64, GobError> {
        let first = self.byte()?;
        if first < 128 {
            return Ok(u64::from(first));
        }
        let n = usize::from((first as i8).unsigned_abs());
        if n > 8 {
            return Err(GobError::Truncated);
        }
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 8) | u64::from(self.byte()?);
        }
        Ok(v)
    }

    fn int(&mut self) -> Result<i64, GobError> {
        let u = self.uint()?;
        Ok(if u & 1 == 1 { !(u >> 1) as i64 } else { (u >> 1) as i64 })
    }

    fn bytes(&mut self) -> Result<&[u8], GobError> {
        let n = self.uint()? as usize;
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or(GobError::Truncated)?;
        let b = &self.buf[self.at..end];
        self.at = end;
        Ok(b)
    }
}

/// One gob stream's reader: remembers the struct types the peer defined.
#[derive(Debug, Default)]
pub struct Decoder {
    types: HashMap<i64, Vec<(String, i64)>>,
}

impl Decoder {
    /// Reads one message body (without its length): `None` for a type definition, else the
    /// value's type id and fields by name (zero fields absent, as gob sends them).
    pub fn message(&mut self, body: &[u8]) -> Result<Option<(i64, Fields)>, GobError> {
        let mut r = Reader { buf: body, at: 0 };
        let id = r.int()?;
        if id < 0 {
            self.define(-id, &mut r)?;
            return Ok(None);
        }
        let fields = self.value_struct(id, &mut r)?;
        Ok(Some((id, fields)))
    }

    /// A `wireType`: only `StructT` is understood.
    fn define(&mut self, id: i64, r: &mut Reader<'_>) -> Result<(), GobError> {
        let mut fields = Vec::new();
        let mut field = -1i64;
        loop {
            let delta = r.uint()?;
            if delta == 0 {
                break;
            }
            field += delta as i64;
            if field != 2 {
                return Err(GobError::Unsupported(id));
            }
            // structType {CommonType, Field []fieldType}
            let mut st = -1i64;
            loop {
                let delta = r.uint()?;
                if delta == 0 {
                    break;
                }
                st += delta as i64;
                match st {
                    0 => skip_common_type(r)?,
                    1 => {
                        for _ in 0..r.uint()? {
                            fields.push(field_type(r)?);
                        }
                    }
                    _ => return Err(GobError::Unsupported(id)),
                }
            }
        }
        self.types.insert(id, fields);
        Ok(())
    }

    fn value_struct(&self, id: i64, r: &mut Reader<'_>) -> Result<Fields, GobError> {
        let def = self.types.get(&id).ok_or(GobError::UnknownType(id))?;
        let mut out = Vec::new();
        let mut field = -1i64;
        loop {
            let delta = r.uint()?;
            if delta == 0 {
                return Ok(out);
            }
            field += delta as i64;
            let (name, tid) = def.get(field as usize).ok_or(GobError::BadField(field as u64))?;
            let v = match *tid {
                BOOL => Val::Bool(r.uint()? != 0),
                INT => Val::Int(r.int()?),
                UINT => Val::Uint(r.uint()?),
                FLOAT => {
                    r.uint()?;
                    Val::Other
                }
                BYTES => {
                    r.bytes()?;
                    Val::Other
                }
                STRING => Val::Str(String::from_utf8_lossy(r.bytes()?).into_owned()),
                nested if self.types.contains_key(&nested) => Val::Struct(self.value_struct(nested, r)?),
                other => return Err(GobError::Unsupported(other)),
            };
            out.push((name.clone(), v));
        }
    }
}

fn skip_common_type(r: &mut Reader<'_>) -> Result<(), GobError> {
    let mut f = -1i64;
    loop {
        let delta = r.uint()?;
        if delta == 0 {
            return Ok(());
        }
        f += delta as i64;
        match f {
            0 => {
                r.bytes()?;
            }
            1 => {
                r.int()?;
            }
            _ => return Err(GobError::BadField(f as u64)),
        }
    }
}

fn field_type(r: &mut Reader<'_>) -> Result<(String, i64), GobError> {
    let (mut name, mut id) = (String::new(), 0);
    let mut f = -1i64;
    loop {
        let delta = r.uint()?;
        if delta == 0 {
            return Ok((name, id));
        }
        f += delta as i64;
        match f {
            0 => name = String::from_utf8_lossy(r.bytes()?).into_owned(),
            1 => id = r.int()?,
            _ => return Err(GobError::BadField(f as u64)),
        }
    }
}

/// Splits the first whole message off `buf`: its body, and how many bytes it took; `None`
/// if `buf` does not hold a whole one yet.
pub fn split_message(buf: &[u8]) -> Result<Option<(&[u8], usize)>, GobError> {
    let mut r = Reader { buf, at: 0 };
    let len = match r.uint() {
        Ok(len) => len,
        Err(GobError::Truncated) => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > MAX_MESSAGE {
        return Err(GobError::TooLarge(len));
    }
    let end = r.at + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((&buf[r.at..end], end)))
}

/// The field `name` of a decoded struct.
pub fn field<'a>(fields: &'a [(String, Val)], name: &str) -> Option<&'a Val> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// encoding/gob's package documentation: `Point{X: 22, Y: 33}` of
    /// `type Point struct{ X, Y int }`, as Go's encoder writes it.
    const POINT: [u8; 40] = [
        0x1f, 0xff, 0x81, 0x03, 0x01, 0x01, 0x05, 0x50, 0x6f, 0x69, 0x6e, 0x74, 0x01, 0xff, 0x82, 0x00, 0x01, 0x02,
        0x01, 0x01, 0x58, 0x01, 0x04, 0x00, 0x01, 0x01, 0x59, 0x01, 0x04, 0x00, 0x00, 0x00, 0x07, 0xff, 0x82, 0x01,
        0x2c, 0x01, 0x42, 0x00,
    ];

    #[test]
    fn go_documents_this_stream_and_it_is_what_we_write_and_read() {
        let point = StructDef { name: "Point", fields: &[("X", INT), ("Y", INT)] };
        let mut out = Vec::new();
        Encoder::default().encode(&point, &[Val::Int(22), Val::Int(33)], &mut out);
        assert_eq!(out, POINT);

        let mut dec = Decoder::default();
        let (body, used) = split_message(&POINT).unwrap().unwrap();
        assert_eq!(dec.message(body).unwrap(), None, "a type definition first");
        let (body, _) = split_message(&POINT[used..]).unwrap().unwrap();
        let (id, fields) = dec.message(body).unwrap().unwrap();
        assert_eq!(id, 65);
        assert_eq!(fields, vec![("X".to_string(), Val::Int(22)), ("Y".to_string(), Val::Int(33))]);
    }

    #[test]
    fn numbers_as_gob_writes_them() {
        let enc = |f: fn(&mut Vec<u8>, i64), v| {
            let mut o = Vec::new();
            f(&mut o, v);
            o
        };
        let uint = |o: &mut Vec<u8>, v: i64| put_uint(o, v as u64);
        // The package documentation's examples: 7 is 07, 256 is FE 01 00; -129 is FE 01 01.
        assert_eq!(enc(uint, 7), [0x07]);
        assert_eq!(enc(uint, 256), [0xfe, 0x01, 0x00]);
        assert_eq!(enc(put_int, -129), [0xfe, 0x01, 0x01]);
        for v in [0i64, 1, -1, 63, 64, -65, 1 << 40, i64::MIN, i64::MAX] {
            let bytes = enc(put_int, v);
            assert_eq!(Reader { buf: &bytes, at: 0 }.int().unwrap(), v, "{v}");
        }
    }

    #[test]
    fn a_second_value_of_a_type_is_not_defined_again_and_zero_fields_are_left_out() {
        let req = StructDef { name: "Request", fields: &[("ServiceMethod", STRING), ("Seq", UINT)] };
        let mut enc = Encoder::default();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        enc.encode(&req, &[Val::Str("Server.Run".into()), Val::Uint(0)], &mut first);
        enc.encode(&req, &[Val::Str("Server.Run".into()), Val::Uint(1)], &mut second);
        let mut dec = Decoder::default();
        let (def, used) = split_message(&first).unwrap().unwrap();
        assert_eq!(dec.message(def).unwrap(), None);
        let (v, _) = split_message(&first[used..]).unwrap().unwrap();
        let (_, fields) = dec.message(v).unwrap().unwrap();
        assert_eq!(fields, vec![("ServiceMethod".to_string(), Val::Str("Server.Run".into()))], "Seq 0 is not sent");
        let (v, used) = split_message(&second).unwrap().unwrap();
        assert_eq!(used, second.len(), "one message: the type is known");
        let (_, fields) = dec.message(v).unwrap().unwrap();
        assert_eq!(field(&fields, "Seq"), Some(&Val::Uint(1)));
    }

    #[test]
    fn an_empty_struct_and_bad_input() {
        let null = StructDef { name: "NullArg", fields: &[] };
        let mut out = Vec::new();
        Encoder::default().encode(&null, &[], &mut out);
        let mut dec = Decoder::default();
        let (def, used) = split_message(&out).unwrap().unwrap();
        dec.message(def).unwrap();
        let (v, _) = split_message(&out[used..]).unwrap().unwrap();
        assert_eq!(dec.message(v).unwrap(), Some((65, vec![])));

        assert_eq!(split_message(&[0x05, 0x01]).unwrap(), None, "not whole yet");
        assert_eq!(split_message(&[0xfc, 0x7f, 0xff, 0xff, 0xff]), Err(GobError::TooLarge(0x7fff_ffff)));
        assert_eq!(Decoder::default().message(&[0xff, 0x82, 0x01, 0x00]), Err(GobError::UnknownType(65)));
        assert_eq!(Decoder::default().message(&[0xff, 0x81, 0x01]), Err(GobError::Unsupported(65)), "an array type");
        assert_eq!(Decoder::default().message(&[0xff]), Err(GobError::Truncated));
        assert_eq!(Decoder::default().message(&[0x80]), Err(GobError::Truncated), "a count of 128 bytes");
    }
}
