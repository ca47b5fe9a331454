// Test fixture: a throwaway PostgreSQL cluster on a free loopback port. Not part of the build.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface PostgresFixture {
  /** Connection string of the default `postgres` database. */
  url: string;
  port: number;
  dir: string;
  /** Creates a fresh database and returns its connection string. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server but keeps the data (to test a database outage). */
  stopServer(): void;
  startServer(): void;
  /** Stops the server and deletes the cluster. */
  destroy(): void;
}

/** The newest /usr/lib/postgresql/<major>/bin, or CUSTODY_PG_BIN. */
export function findPostgresBin(): string {
  if (process.env.CUSTODY_PG_BIN) return process.env.CUSTODY_PG_BIN;
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root) ? readdirSync(root).filter((d) => existsSync(join(root, d, 'bin', 'initdb'))) : [];
  majors.sort((a, b) => Number(b) - Number(a));
  if (!majors[0]) throw new Error('PostgreSQL server binaries not found (apt-get install postgresql, or set CUSTODY_PG_BIN)');
  return join(root, majors[0], 'bin');
}

export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * initdb + pg_ctl on a temp dir, listening on 127.0.0.1:<free port> with trust auth for the
 * `custody` superuser, fsync off. initdb refuses to run as root, so as root the cluster is
 * owned by and run as the `postgres` system user (runuser -u postgres).
 */
export async function startPostgres(): Promise<PostgresFixture> {
  const bin = findPostgresBin();
  const dir = mkdtempSync(join(tmpdir(), 'custody-pg-'));
  const data = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, uid, gid);
    chmodSync(dir, 0o700);
  }
  const run = (cmd: string, args: string[]): void => {
    const full = asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]] as const : [join(bin, cmd), args] as const;
    const r = spawnSync(full[0], [...full[1]], { stdio: 'pipe', cwd: dir });
    if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr.toString().slice(0, 2000)}`);
  };
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'custody', '-E', 'UTF8', '--no-sync']);
  let port = 0;
  const options = () => `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100`;
  const start = () => run('pg_ctl', ['-D', data, '-o', options(), '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  const stop = () => run('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
  // The free port can be taken by another process before the server binds it: try another.
  for (let attempt = 1; ; attempt++) {
    port = await freeLoopbackPort();
    try {
      start();
      break;
    } catch (e) {
      if (attempt >= 3) throw e;
    }
  }
  let running = true;
  const url = `postgres://custody@127.0.0.1:${port}/postgres`;
  return {
    url,
    port,
    dir,
    async createDatabase(name: string) {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error('bad database name');
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://custody@127.0.0.1:${port}/${name}`;
    },
    stopServer() {
      if (running) stop();
      running = false;
    },
    startServer() {
      if (!running) start();
      running = true;
    },
    destroy() {
      try {
        if (running) run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop']);
      } finally {
        running = false;
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
