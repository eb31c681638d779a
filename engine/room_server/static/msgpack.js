// A small msgpack decoder (the subset the engine sends: maps, arrays, strings, bin, numbers, nil, booleans).
"use strict";
function msgpackDecode(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const text = new TextDecoder();
  function take(n) { const out = bytes.subarray(pos, pos + n); pos += n; return out; }
  function str(n) { return text.decode(take(n)); }
  function bin(n) { return take(n).slice(); }  // a copy with its own aligned buffer
  function array(n) { const out = []; for (let i = 0; i < n; i++) out.push(value()); return out; }
  function map(n) { const out = {}; for (let i = 0; i < n; i++) { const k = value(); out[k] = value(); } return out; }
  function u(n) { const v = n === 1 ? view.getUint8(pos) : n === 2 ? view.getUint16(pos) : n === 4 ? view.getUint32(pos)
    : Number(view.getBigUint64(pos)); pos += n; return v; }
  function i(n) { const v = n === 1 ? view.getInt8(pos) : n === 2 ? view.getInt16(pos) : n === 4 ? view.getInt32(pos)
    : Number(view.getBigInt64(pos)); pos += n; return v; }
  function value() {
    const b = bytes[pos++];
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return map(b & 0x0f);
    if ((b & 0xf0) === 0x90) return array(b & 0x0f);
    if ((b & 0xe0) === 0xa0) return str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(u(1));
      case 0xc5: return bin(u(2));
      case 0xc6: return bin(u(4));
      case 0xca: { const v = view.getFloat32(pos); pos += 4; return v; }
      case 0xcb: { const v = view.getFloat64(pos); pos += 8; return v; }
      case 0xcc: return u(1);
      case 0xcd: return u(2);
      case 0xce: return u(4);
      case 0xcf: return u(8);
      case 0xd0: return i(1);
      case 0xd1: return i(2);
      case 0xd2: return i(4);
      case 0xd3: return i(8);
      case 0xd9: return str(u(1));
      case 0xda: return str(u(2));
      case 0xdb: return str(u(4));
      case 0xdc: return array(u(2));
      case 0xdd: return array(u(4));
      case 0xde: return map(u(2));
      case 0xdf: return map(u(4));
    }
    throw new Error("msgpack: unsupported type byte 0x" + b.toString(16));
  }
  return value();
}

// float32 little-endian bytes (a msgpack bin) -> Float32Array
function float32s(bin) {
  const view = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  const out = new Float32Array(bin.byteLength / 4);
  for (let k = 0; k < out.length; k++) out[k] = view.getFloat32(4 * k, true);
  return out;
}
