// Fails when a lower layer imports a higher one, or a browser-safe package imports a `node:`
// module or a Node-only library. The TypeScript project references enforce the same at build
// time; this check gives a clear message and also covers tests' production imports.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const order = ['core', 'attest', 'policy', 'ledger', 'sdk'];
const browserSafe = new Set(order.map((p) => `packages/${p}`));
const allowed = {
  'packages/core': [],
  'packages/attest': ['core'],
  'packages/policy': ['core', 'attest'],
  'packages/ledger': ['core'],
  'packages/sdk': ['core', 'attest', 'policy', 'ledger'],
};
const nodeOnly = ['better-sqlite3', 'pg', 'pkcs11js', 'pino', 'prom-client', 'hono/node-server', '@hono/node-server'];

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === 'node_modules' || name === 'dist') continue;
    if (statSync(p).isDirectory()) yield* files(p);
    else if (p.endsWith('.ts') && !p.endsWith('.test.ts') && !p.includes('/testing/')) yield p;
  }
}

const problems = [];
for (const group of ['packages', 'services', 'apps']) {
  let dirs = [];
  try { dirs = readdirSync(join(root, group)); } catch { continue; }
  for (const d of dirs) {
    const pkg = `${group}/${d}`;
    let srcFiles;
    try { srcFiles = [...files(join(root, pkg, 'src'))]; } catch { continue; }
    for (const f of srcFiles) {
      const text = readFileSync(f, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
        const spec = m[1];
        const where = relative(root, f);
        if (browserSafe.has(pkg)) {
          if (spec.startsWith('node:') || ['fs', 'path', 'crypto', 'child_process', 'os'].includes(spec)) problems.push(`${where}: browser-safe package imports ${spec}`);
          if (nodeOnly.some((n) => spec === n || spec.startsWith(n + '/'))) problems.push(`${where}: browser-safe package imports Node-only ${spec}`);
          const cm = spec.match(/^@custody\/([a-z-]+)/);
          if (cm && !allowed[pkg].includes(cm[1])) problems.push(`${where}: ${pkg} may not import @custody/${cm[1]}`);
        }
        if (group === 'services' && /^@custody\/cli/.test(spec)) problems.push(`${where}: a service may not import the CLI`);
      }
    }
  }
}
if (problems.length) {
  console.error('layering violations:\n' + problems.map((p) => '  ' + p).join('\n'));
  process.exit(1);
}
console.log('layers ok');
