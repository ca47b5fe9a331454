// Test fixture: a software TPM 2.0 (swtpm) on loopback, for tests that need a real TPM.
//
//   const tpm = await startSwtpm();
//   ... new TpmAttester({ tcti: tpm.tcti }) ... tpm.tool('tpm2_pcrextend', [...])
//   await tpm.stop();
//
// It runs `swtpm socket --tpm2 --server type=tcp,port=P --ctrl type=tcp,port=P+1
// --tpmstate dir=TMP --flags startup-clear` bound to 127.0.0.1 on free ports (the swtpm TCTI of
// tpm2-tools talks to P and P+1), waits until the control port answers, and on stop() kills
// the process and removes its state directory. Needs the Debian packages swtpm, swtpm-tools
// and tpm2-tools.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CustodyError } from '@custody/core';
import { runTpm2Tool } from '../tpm2-tools.js';

export interface SwtpmInstance {
  /** TCTI string for tpm2-tools and TpmAttester. */
  readonly tcti: string;
  readonly port: number;
  readonly ctrlPort: number;
  readonly stateDir: string;
  readonly pid: number;
  /** Runs a tpm2-tools command against this TPM; returns stdout. */
  tool(name: string, args: string[]): Promise<string>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Never leave a swtpm behind, even when a test run dies.
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

function listenOn(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      const p = typeof addr === 'object' && addr ? addr.port : undefined;
      srv.close(() => resolve(p));
    });
  });
}

/** A port P such that P and P+1 are both free on loopback right now. */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await listenOn(0);
    if (p === undefined || p >= 65535) continue;
    if ((await listenOn(p + 1)) === p + 1) return p;
  }
  throw new CustodyError('ERR_ATTESTER_UNAVAILABLE', 'no two consecutive free TCP ports on 127.0.0.1');
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function startOnce(stateDir: string): Promise<SwtpmInstance | undefined> {
  const port = await freePortPair();
  const ctrlPort = port + 1;
  const child = spawn(
    'swtpm',
    ['socket', '--tpm2', '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`, '--ctrl', `type=tcp,port=${ctrlPort},bindaddr=127.0.0.1`, '--tpmstate', `dir=${stateDir}`, '--flags', 'startup-clear'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  const spawnError = await new Promise<Error | undefined>((resolve) => {
    child.once('error', resolve);
    child.once('spawn', () => resolve(undefined));
  });
  if (spawnError) {
    const code = (spawnError as NodeJS.ErrnoException).code;
    throw new CustodyError('ERR_ATTESTER_UNAVAILABLE', code === 'ENOENT' ? 'swtpm not found: install the Debian packages swtpm and swtpm-tools' : `swtpm failed to start: ${spawnError.message}`);
  }
  running.add(child);
  installExitHook();
  for (let i = 0; i < 100 && !exited; i++) {
    if (await canConnect(ctrlPort)) break;
    await sleep(50);
  }
  if (exited) {
    running.delete(child);
    // Most likely a port race with another process: the caller retries on new ports.
    if (/address already in use|bind/i.test(stderr)) return undefined;
    throw new CustodyError('ERR_ATTESTER_UNAVAILABLE', `swtpm exited at start: ${stderr.trim().split('\n').at(-1) ?? ''}`);
  }
  const tcti = `swtpm:host=127.0.0.1,port=${port}`;
  let stopped: Promise<void> | undefined;
  return {
    tcti,
    port,
    ctrlPort,
    stateDir,
    pid: child.pid!,
    tool: (name, args) => runTpm2Tool(name, args, { tcti }),
    stop() {
      stopped ??= (async () => {
        if (!exited) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
          await exitedPromise;
          clearTimeout(timer);
        }
        running.delete(child);
        await rm(stateDir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

/** Starts a fresh swtpm (new, empty TPM state) on free loopback ports. */
export async function startSwtpm(): Promise<SwtpmInstance> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const stateDir = await mkdtemp(join(tmpdir(), 'custody-swtpm-'));
    const inst = await startOnce(stateDir).catch(async (e: unknown) => {
      await rm(stateDir, { recursive: true, force: true });
      throw e;
    });
    if (inst) return inst;
    await rm(stateDir, { recursive: true, force: true });
  }
  throw new CustodyError('ERR_ATTESTER_UNAVAILABLE', 'swtpm could not bind free ports after 5 attempts');
}
