import { createServer } from 'node:net';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../../test/vectors.js';
import { MAX_TIMER_MS, parseCount, parseMilliseconds, parsePort, parseSeconds } from './numbers.js';

describe('numeric options', () => {
  it('ports: 0..65535 only; an empty value is refused, not read as 0 (any port)', () => {
    expect(parsePort('0')).toBe(0);
    expect(parsePort('8443')).toBe(8443);
    for (const bad of ['', ' ', 'abc', '-1', '65536', '1.5', '1e9']) expect(() => parsePort(bad)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
  });

  it('counts: whole numbers from a minimum up to a maximum, digits only', () => {
    expect(parseCount('1', '--max-connections', 1, 1024)).toBe(1);
    expect(parseCount('1024', '--max-connections', 1, 1024)).toBe(1024);
    expect(parseCount('9007199254740991', '--max-arriving-body-bytes', 1)).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of ['', ' 5', '0', '1025', '+5', '-1', '1.5', '1e3', '0x10', 'Infinity', '99999999999999999']) {
      expect(() => parseCount(bad, '--max-connections', 1, 1024), bad).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    }
  });

  it('durations: from a minimum up to what a timer can wait (a longer one would fire at once)', () => {
    expect(parseMilliseconds('250', '--interval', 10)).toBe(250);
    expect(parseSeconds('3600', '--rotate-keys', 10)).toBe(3_600_000);
    for (const bad of ['', 'abc', '-1', '0', '5', '1e12', 'Infinity', 'NaN']) {
      expect(() => parseMilliseconds(bad, '--interval', 10)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
      expect(() => parseSeconds(bad, '--rotate-keys', 10)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    }
    expect(parseMilliseconds(String(MAX_TIMER_MS), '--interval', 10)).toBe(MAX_TIMER_MS);
    expect(() => parseMilliseconds(String(MAX_TIMER_MS + 1), '--interval', 10)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
  });

  it('a service on a port in use exits 2 with ERR_LISTEN naming the address, not ERR_INTERNAL', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', 'apps/cli/src/main.ts', 'relay', 'serve', '--port', String(port), '--gateway', 'http://127.0.0.1:1'], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`ERR_LISTEN: cannot listen on 127.0.0.1:${port}: the port is in use`);
    } finally {
      taken.close();
    }
  });
});
