import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { createConfidentialFetch } from '@custody/sdk';

// Runs `custody gateway serve` and `custody relay serve` through this module's `register`, in
// child processes, and talks to them with the SDK and the openai client.
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "import { Command } from 'commander'; const { register } = await import('./src/commands/gateway.ts'); " +
  "const program = new Command().name('custody').exitOverride(); register(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { if (e && e.code === 'commander.helpDisplayed') process.exit(0); process.exit(2); }";
const nodeArgs = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--'];

const children: ChildProcessWithoutNullStreams[] = [];

function start(...args: string[]): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1' } });
  children.push(child);
  return new Promise((res, rej) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      try {
        res(JSON.parse(out) as Record<string, unknown>);
      } catch {
        // not complete yet
      }
    });
    child.on('exit', (code) => rej(new Error(`exited ${code}: ${out}`)));
  });
}

function exitOf(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  return new Promise((res) => child.once('exit', (code) => res(code)));
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('custody gateway serve / custody relay serve', () => {
  it('serves the demo model through OHTTP (directly and through the relay) and stops cleanly on SIGTERM', async () => {
    const apiKey = 'sk-cli-test-key-0001';
    const gw = await start('gateway', 'serve', '--port', '0', '--json', '--api-key', apiKey);
    expect(gw.ok).toBe(true);
    expect(gw.simulated).toBe(true);
    const url = gw.url as string;
    const relayInfo = await start('relay', 'serve', '--gateway', url, '--port', '0', '--json');
    for (const relay of [undefined, relayInfo.url as string]) {
      const cfetch = createConfidentialFetch({ gateway: url, ...(relay ? { relay } : {}), jwks: gw.jwks as never, allowSimulated: true });
      const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey, fetch: cfetch, maxRetries: 0 });
      const r = await openai.chat.completions.create({ model: 'custody-demo', messages: [{ role: 'user', content: 'hello from the CLI test' }] });
      expect(r.choices[0]!.message.content).toContain('custody-demo (not a real LLM)');
    }
    const plain = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: '{}' });
    expect(plain.status).toBe(403);
    const [g, r] = children.slice(-2);
    const exits = [exitOf(g!), exitOf(r!)];
    g!.kill('SIGTERM');
    r!.kill('SIGTERM');
    expect(await Promise.all(exits)).toEqual([0, 0]);
  }, 60_000);

  it('refuses contradictory backends with a usage error (exit 2)', async () => {
    const child = spawn(process.execPath, [...nodeArgs, 'gateway', 'serve', '--demo', '--upstream', 'http://127.0.0.1:1', '--json'], { cwd: cliDir });
    children.push(child);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    expect(await exitOf(child)).toBe(2);
    expect(out).toContain('ERR_USAGE');
  }, 30_000);
});
