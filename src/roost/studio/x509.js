// Just enough DER to read, before an upload, what a person needs to hear about a certificate: its subject's
// Common Name and whether it is a CA (basicConstraints CA:TRUE). Roost checks everything again on upload; a file
// this reader does not understand gives null and the preview falls back to the thumbprint.

const OID_COMMON_NAME = "2.5.4.3";
const OID_BASIC_CONSTRAINTS = "2.5.29.19";

/** One TLV at `offset`: {tag, start (of the value), end}. */
function tlv(bytes, offset) {
  const tag = bytes[offset];
  let length = bytes[offset + 1];
  let start = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw new Error("unsupported DER length");
    length = 0;
    for (let i = 0; i < count; i += 1) length = length * 256 + bytes[start + i];
    start += count;
  }
  const end = start + length;
  if (tag === undefined || end > bytes.length) throw new Error("truncated DER");
  return { tag, start, end };
}

/** The TLVs directly inside a constructed value. */
function children(bytes, node) {
  const out = [];
  for (let at = node.start; at < node.end; ) {
    const child = tlv(bytes, at);
    out.push(child);
    at = child.end;
  }
  return out;
}

function oid(bytes, node) {
  const first = bytes[node.start];
  const parts = [Math.floor(first / 40), first % 40];
  let value = 0;
  for (let i = node.start + 1; i < node.end; i += 1) {
    value = value * 128 + (bytes[i] & 0x7f);
    if (!(bytes[i] & 0x80)) {
      parts.push(value);
      value = 0;
    }
  }
  return parts.join(".");
}

function commonName(bytes, name) {
  for (const rdn of children(bytes, name)) {
    for (const pair of children(bytes, rdn)) {
      const [type, value] = children(bytes, pair);
      if (type && value && oid(bytes, type) === OID_COMMON_NAME) {
        return new TextDecoder().decode(bytes.subarray(value.start, value.end));
      }
    }
  }
  return null;
}

function isCa(bytes, extensions) {
  for (const extension of children(bytes, children(bytes, extensions)[0])) {
    const parts = children(bytes, extension);
    if (oid(bytes, parts[0]) !== OID_BASIC_CONSTRAINTS) continue;
    const value = parts[parts.length - 1]; // OCTET STRING holding BasicConstraints ::= SEQUENCE {cA BOOLEAN, ...}
    const inner = children(bytes, tlv(bytes, value.start));
    return inner.length > 0 && inner[0].tag === 0x01 && bytes[inner[0].start] !== 0;
  }
  return false;
}

/** {commonName, ca} of a DER certificate, or null when it cannot be read here. */
export function describeCertificate(bytes) {
  try {
    const certificate = tlv(bytes, 0);
    const tbs = children(bytes, certificate)[0];
    const fields = children(bytes, tbs);
    const offset = fields[0].tag === 0xa0 ? 1 : 0; // [0] version
    const subject = fields[offset + 4];
    const extensions = fields.slice(offset + 6).find((f) => f.tag === 0xa3);
    return { commonName: commonName(bytes, subject), ca: extensions ? isCa(bytes, extensions) : false };
  } catch {
    return null;
  }
}
