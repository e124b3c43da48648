// A REST request becomes the message a gRPC handler would have decoded: encoded and decoded
// with the method's own (de)serializers, so every field the proto has is there with its
// default, exactly as the edge's schemas expect. Whatever the encoding would have changed
// silently (a string where a number goes, -1 for a uint32, a field the message lacks) is an
// INVALID_ARGUMENT naming the field instead.
import type * as grpc from '@grpc/grpc-js';
import { InvalidArgumentError } from '../../shared/errors.js';

type Method = Pick<grpc.MethodDefinition<unknown, unknown>, 'requestSerialize' | 'requestDeserialize'>;

export function protoRequest(method: Method, request: Record<string, unknown>): unknown {
  let decoded: unknown;
  try {
    decoded = method.requestDeserialize(method.requestSerialize(request));
  } catch (err) {
    throw new InvalidArgumentError(`the request does not fit the API's message: ${(err as Error).message}`);
  }
  const problems: string[] = [];
  compare(request, decoded, '', problems);
  if (problems.length > 0) throw new InvalidArgumentError(problems.join('; '));
  return decoded;
}

function shown(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return JSON.stringify(value);
}

function compare(sent: unknown, got: unknown, path: string, problems: string[]): void {
  if (sent === undefined) return;
  const at = path || 'the request';
  if (Buffer.isBuffer(sent) || sent instanceof Uint8Array) return;
  if (Array.isArray(sent)) {
    if (!Array.isArray(got)) return void problems.push(`${at}: expected ${shown(got)}, got a list`);
    sent.forEach((item, i) => compare(item, got[i], `${path}[${i}]`, problems));
    return;
  }
  if (sent !== null && typeof sent === 'object') {
    if (got === null || typeof got !== 'object' || Array.isArray(got)) return void problems.push(`${at}: expected ${typeof got === 'string' ? 'a string' : typeof got === 'number' ? 'a number' : shown(got)}, got an object`);
    for (const [key, value] of Object.entries(sent)) {
      const child = path ? `${path}.${key}` : key;
      if (value === undefined) continue;
      if (!(key in got)) problems.push(`${child}: no such field`);
      else compare(value, (got as Record<string, unknown>)[key], child, problems);
    }
    return;
  }
  if (sent === got) return;
  if (typeof got === 'number' && typeof sent === 'number') return void problems.push(`${at}: ${sent} is out of range (or not a whole number) for this field`);
  const expected = typeof got === 'number' ? 'a number' : typeof got === 'boolean' ? 'true or false' : typeof got === 'string' ? 'a string' : 'an object';
  problems.push(`${at}: expected ${expected}, got ${shown(sent)}`);
}
