import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createGatewayLogger, gatewayLogDestination } from './logger.js';

const dirs: string[] = [];
function tempFile(): string {
  const d = mkdtempSync(join(tmpdir(), 'custody-gwlog-'));
  dirs.push(d);
  return join(d, 'gateway.log');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const lines = (file: string): Record<string, unknown>[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('gatewayLogDestination', () => {
  it('holds a few lines back and writes them within the flush interval', async () => {
    const file = tempFile();
    const dest = gatewayLogDestination(file);
    const log = createGatewayLogger({ destination: dest });
    log.info({ event: 'receipt', receiptId: 'r-1' }, 'receipt issued');
    log.info({ event: 'receipt', receiptId: 'r-2' }, 'receipt issued');
    await new Promise((r) => setTimeout(r, 20));
    // Two short lines are below the 4 KiB batch: nothing written yet.
    expect(readFileSync(file, 'utf8')).toBe('');
    // The timer (250 ms) writes them with nothing more logged; polled, as a loaded machine may be late.
    await expect.poll(() => lines(file).map((l) => l.receiptId), { timeout: 3_000 }).toEqual(['r-1', 'r-2']);
    (dest as unknown as { end(): void }).end();
  });

  it('writes a full batch at once, in order, without waiting for the timer', async () => {
    const file = tempFile();
    const dest = gatewayLogDestination(file);
    const log = createGatewayLogger({ destination: dest });
    for (let i = 0; i < 200; i++) log.info({ event: 'receipt', receiptId: `r-${i}` }, 'receipt issued');
    await new Promise((r) => setTimeout(r, 50));
    const got = lines(file).map((l) => l.receiptId);
    expect(got.length).toBeGreaterThan(0);
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => `r-${i}`));
    (dest as unknown as { end(): void }).end();
  });

  it('loses nothing when the process exits right after logging', () => {
    const file = tempFile();
    // A child that logs through this module and exits at once, before any timer or batch could write.
    const script = `
      import { createGatewayLogger, gatewayLogDestination } from ${JSON.stringify(new URL('./logger.ts', import.meta.url).href)};
      const log = createGatewayLogger({ destination: gatewayLogDestination(process.argv[1]) });
      for (let i = 0; i < 3; i++) log.info({ n: i }, 'line');
      process.exit(0);`;
    execFileSync(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script, file]);
    expect(lines(file).map((l) => l.n)).toEqual([0, 1, 2]);
  });
});
