// Stopping a broker (startBroker's close(), which `custody broker serve` calls on SIGTERM and
// SIGINT) drains it: new connections are refused at once, a key release already in flight is
// answered, and the stores close after it.
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { SimAttester } from '@custody/attester-service';
import type { AuditEvent } from './audit/types.js';
import { attestWith, releaseWith, simPolicy, startHandshakeBroker } from './testing/handshake.js';

const GOOD = 'a1'.repeat(48);

describe('startBroker close()', () => {
  it('lets a key release in flight finish while refusing new connections', async () => {
    const b = await startHandshakeBroker({ policy: simPolicy([GOOD]) });
    try {
      const material = randomBytes(32);
      await b.admin.importKey({ name: 'dk', type: 'aes-256', material, releasePolicy: 'true' });
      const a = await attestWith(b.workload, 'acme', new SimAttester({ measurements: { measurement: GOOD } }));
      // Held at its audit write, after the key was wrapped and before the answer.
      let letGo!: () => void;
      const held = new Promise<void>((r) => (letGo = r));
      let reached!: () => void;
      const atAudit = new Promise<void>((r) => (reached = r));
      b.ledger.beforeAppend = async (e: AuditEvent) => {
        if (e.action === 'key.release' && e.verdict === 'allow') {
          reached();
          await held;
        }
      };
      const inflight = releaseWith(b.workload, 'acme', a, 'dk');
      await atAudit;

      let closed = false;
      const closing = b.started.close().then(() => void (closed = true));
      expect(await connectOutcome(b.started.port)).toBe('ECONNREFUSED');
      expect(closed).toBe(false);
      letGo();
      const { released, material: got } = await inflight;
      expect(released.key).toMatchObject({ name: 'dk' });
      expect(Buffer.from(got).equals(material)).toBe(true);
      await closing;
      expect(b.ledger.events.filter((e) => e.action === 'key.release' && e.verdict === 'allow')).toHaveLength(1);
    } finally {
      await b.close();
    }
  });
});

/** 'connected', or the error code of a connection attempt. */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? String(e)));
  });
}
