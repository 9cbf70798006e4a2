import { describe, expect, it } from 'vitest';
import { Jid } from '../src/index.js';

describe('Jid', () => {
  it('parses and prepares full, bare and domain JIDs', () => {
    const full = Jid.parse('Juliet@Example.COM/Balcony');
    expect(full?.toString()).toBe('juliet@example.com/Balcony');
    expect(full?.bare).toBe('juliet@example.com');
    expect(full?.isBare).toBe(false);
    expect(Jid.parse('example.com')?.toString()).toBe('example.com');
    expect(Jid.parse('romeo@example.net.')?.toString()).toBe('romeo@example.net');
    expect(Jid.parse('juliet@example.com/a/b')?.resource).toBe('a/b');
  });

  it.each([[''], ['@example.com'], ['a@'], ['a@b/'], ["o'neil@example.com"], ['a b@example.com'], [`${'x'.repeat(1024)}@example.com`]])(
    'rejects %j',
    (text) => {
      expect(Jid.parse(text)).toBeUndefined();
    },
  );

  it('compares prepared forms', () => {
    const a = Jid.parse('ROMEO@example.net/orchard');
    const b = Jid.parse('romeo@EXAMPLE.net/orchard');
    expect(a && b && a.equals(b)).toBe(true);
    expect(a?.toBare().toString()).toBe('romeo@example.net');
    expect(a?.toBare().withResource('x').toString()).toBe('romeo@example.net/x');
  });
});
