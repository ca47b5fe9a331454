// Runs every bench/*.ts in turn (one at a time: the machine has 2 cores), then assembles BENCHMARKS.md.
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const only = process.argv.slice(2);
const scripts = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f.endsWith('.ts') && !f.startsWith('_'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
let failed = 0;
for (const s of scripts) {
  console.log(`\n== bench/${s}`);
  const r = spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', `bench/${s}`], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
spawnSync(process.execPath, ['bench/assemble.mjs'], { stdio: 'inherit' });
process.exit(failed ? 1 : 0);
