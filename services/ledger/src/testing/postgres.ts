// Starts a throwaway PostgreSQL cluster for tests: initdb + pg_ctl on a temp dir, listening on
// a unix socket only. Returns undefined (with the reason) when the binaries are not installed.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

const BIN = process.env.CUSTODY_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface TestPostgres {
  url: string;
  stop(): void;
}

export function postgresUnavailableReason(): string | undefined {
  for (const b of ['initdb', 'pg_ctl', 'postgres']) if (!existsSync(join(BIN, b))) return `PostgreSQL binaries not found in ${BIN} (set CUSTODY_PG_BIN)`;
  return undefined;
}

export function startPostgres(): TestPostgres {
  const root = mkdtempSync(join(tmpdir(), 'custody-pg-'));
  const data = join(root, 'data');
  // initdb refuses to run as root; run the cluster as the postgres system user then.
  const asRoot = process.getuid?.() === 0;
  const runAs = (cmd: string, args: string[]) => {
    const full = asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
    const r = spawnSync(full[0] as string, full[1] as string[], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr || r.stdout}`);
  };
  if (asRoot) {
    const pg = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(root, pg, gid);
  }
  chmodSync(root, 0o700);
  const user = asRoot ? 'postgres' : userInfo().username;
  runAs(join(BIN, 'initdb'), ['-D', data, '-U', user, '--auth=trust', '-E', 'UTF8', '--no-instructions']);
  // No TCP listener: a unix socket in the temp dir. fsync stays on: the tests rely on real commits.
  runAs(join(BIN, 'pg_ctl'), ['-D', data, '-w', '-s', '-l', join(root, 'log'), '-o', `-c listen_addresses='' -c unix_socket_directories='${root}' -c max_connections=50`, 'start']);
  const url = `postgresql://${user}@/postgres?host=${encodeURIComponent(root)}`;
  return {
    url,
    stop() {
      try {
        runAs(join(BIN, 'pg_ctl'), ['-D', data, '-w', '-s', '-m', 'immediate', 'stop']);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
  };
}
