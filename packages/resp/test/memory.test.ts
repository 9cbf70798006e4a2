import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { ARGUMENT_OVERHEAD, RequestParser } from '../src/parser.js';

// The query buffer limits count each pending argument at ARGUMENT_OVERHEAD bytes beyond its own
// bytes. Measure what an argument really costs on the heap, through the parser, so the figure
// cannot silently fall behind V8.

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('what a pending argument costs', () => {
  it(`is at most ARGUMENT_OVERHEAD (${ARGUMENT_OVERHEAD} bytes) on the heap, and the parser counts at least that`, () => {
    const count = 500_000;
    const parser = new RequestParser();
    gc();
    const before = process.memoryUsage().heapUsed;
    parser.push(Buffer.from(`*${count + 2}\r\n$3\r\nDEL\r\n`));
    const piece = Buffer.from('$1\r\na\r\n'.repeat(10_000));
    for (let i = 0; i < count / 10_000; i++) {
      parser.push(piece);
      expect(parser.next()).toBeUndefined();
    }
    gc();
    const perArgument = (process.memoryUsage().heapUsed - before) / count;
    // On Node 20 this measures about 108 bytes: a Buffer view and its array slot.
    expect(perArgument).toBeGreaterThan(50);
    expect(perArgument).toBeLessThanOrEqual(ARGUMENT_OVERHEAD);
    // What the limits count: every argument's bytes (7 on the wire) plus its objects.
    expect(parser.cost).toBeGreaterThanOrEqual(count * (7 + ARGUMENT_OVERHEAD));
    parser.discard();
    expect(parser.cost).toBe(0);
  });
});
