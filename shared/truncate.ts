// Bounds on text that came from a caller, so that an error message, a log line or an audit
// entry never carries an input whole: a 3.5 MB field echoed into an error cannot even cross
// gRPC's 4 MiB message limit, and stored ten times it drowns the audit trail.

/** Error messages quote a caller's value at most this long (UTF-8 bytes). */
export const QUOTE_MAX_BYTES = 200;

/**
 * `text` cut to at most `maxBytes` UTF-8 bytes, marker included, on a character boundary;
 * the marker says how much was cut. Text that fits is returned as it is.
 */
export function truncate(text: string, maxBytes: number): string {
  // Most text is short: only measure bytes when the characters alone could overflow.
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text) <= maxBytes) return text;
  const bytes = Buffer.from(text);
  const marker = (cut: number) => `… [${cut} bytes cut]`;
  let keep = Math.max(0, maxBytes - Buffer.byteLength(marker(bytes.length)));
  while (keep > 0 && (bytes[keep]! & 0xc0) === 0x80) keep--; // not inside a character
  return bytes.subarray(0, keep).toString('utf8') + marker(bytes.length - keep);
}

/** A caller's value as an error message quotes it: in double quotes, cut to QUOTE_MAX_BYTES. */
export function quoted(text: string): string {
  return `"${truncate(text, QUOTE_MAX_BYTES)}"`;
}
