import { describe, expect, it } from 'vitest';
import { shareConnections } from '../src/fds.js';

describe('shareConnections: fitting connection limits into the open-file budget', () => {
  it('keeps explicit limits whole when they fit, as Redis keeps maxclients (mini-redis: 10 000 beside HTTP under ulimit -n 20000)', () => {
    expect(shareConnections([10_000, 0], 19_947)).toEqual([10_000, 9_947]);
    expect(shareConnections([100, 200], 19_947)).toEqual([100, 200]);
    expect(shareConnections([0, 0], 1000)).toEqual([500, 500]);
  });

  it('shares max-min fair when they do not fit (Redis lowers maxclients): small requests whole, the rest split', () => {
    expect(shareConnections([10_000, 0], 960)).toEqual([480, 480]);
    expect(shareConnections([10, 10_000, 0], 960)).toEqual([10, 475, 475]);
    expect(shareConnections([10_000, 10_000], 5000)).toEqual([2500, 2500]);
  });

  it('leaves a binding without a limit at least 1024 before honouring explicit limits in full', () => {
    // 10 000 + 1024 > 10 500: not enough for both, so max-min fair.
    expect(shareConnections([10_000, 0], 10_500)).toEqual([5250, 5250]);
    expect(shareConnections([9_000, 0], 10_500)).toEqual([9_000, 1_500]);
  });

  it('gives every binding at least one, even with no budget at all', () => {
    expect(shareConnections([5, 0], 0)).toEqual([1, 1]);
  });
});
