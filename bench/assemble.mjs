// Assembles BENCHMARKS.md from the sections each bench script wrote to bench/results/*.md.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

const dir = new URL('./results/', import.meta.url);
const order = ['attest-snp', 'attest-tdx', 'attest-nitro', 'attest-tpm', 'policy', 'hpke', 'broker', 'ledger', 'gateway', 'gateway-llama', 'sealed-model', 'replay-store', 'pii'];
const files = readdirSync(dir).filter((f) => f.endsWith('.md'));
files.sort((a, b) => {
  const ia = order.indexOf(a.replace(/\.md$/, ''));
  const ib = order.indexOf(b.replace(/\.md$/, ''));
  return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
});
const parts = [
  '# Benchmarks',
  '',
  'Every figure below was produced by a script in `bench/` on the machine named in its section;',
  'each section measures the floor (the raw crypto or I/O cost) and, where there is one, a baseline',
  'path in the same run. Regenerate with `npm run bench` (all) or',
  '`node --conditions=source --import tsx bench/<name>.ts` (one), then `node bench/assemble.mjs`.',
  '',
];
for (const f of files) parts.push(readFileSync(new URL(f, dir), 'utf8').trim(), '');
writeFileSync(new URL('../BENCHMARKS.md', import.meta.url), parts.join('\n'));
console.log(`BENCHMARKS.md: ${files.length} sections`);
