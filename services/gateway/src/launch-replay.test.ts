// `custody gateway serve --replay-store ...`: the launcher opens the named anti-replay store,
// says in its summary whether replicas share it, answers through it, and closes it on exit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { launchGateway, runConfidentialRequest } from './launch.js';
import { createGatewayLogger } from './observability/logger.js';
import { SqliteReplayStore } from './pipeline/replay-guard.js';

const dir = mkdtempSync(join(tmpdir(), 'custody-launch-replay-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const quiet = () => createGatewayLogger({ destination: { write: () => undefined } });

describe('launchGateway replayStore', () => {
  it('defaults to memory and says replicas need a shared store', async () => {
    const g = await launchGateway({ port: 0, logger: quiet() });
    try {
      expect(g.gateway.replay.kind).toBe('memory');
      expect(g.summary.join('\n')).toMatch(/anti-replay +memory \(this process only; replicas need --replay-store/);
    } finally {
      await g.close();
    }
  });

  it('opens sqlite:PATH, records requests in the file, and closes it with the gateway', async () => {
    const path = join(dir, 'replay.db');
    const g = await launchGateway({ port: 0, logger: quiet(), replayStore: `sqlite:${path}` });
    const store = g.gateway.replay as SqliteReplayStore;
    try {
      expect(store).toBeInstanceOf(SqliteReplayStore);
      expect(g.summary.join('\n')).toContain('anti-replay  shared sqlite store');
      // An encapsulated request goes through the store (the demo flow sends two: models, chat).
      await runConfidentialRequest({ url: g.url, jwks: g.jwks, apiKey: g.apiKey!, allowSimulated: true }, 'hello');
      expect(store.count()).toBe(2);
    } finally {
      await g.close();
    }
    expect(() => store.commit(new Uint8Array(32))).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_REPLAY_STORE' }) as Error);
  });

  it('refuses an unknown location with ERR_GATEWAY_CONFIG before starting', async () => {
    await expect(launchGateway({ port: 0, logger: quiet(), replayStore: 'redis://localhost' })).rejects.toMatchObject({ code: 'ERR_GATEWAY_CONFIG' });
  });
});
