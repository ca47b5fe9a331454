import type { Command } from 'commander';
import { CustodyError, secureRandom, systemClock } from '@custody/core';
import { SIG_TYPE_COSIGNATURE_V1, createCosigner, generateSignerKey, parseTlogPolicy, parseVerifierKey, type VerifierKey } from '@custody/ledger';
import { DRAIN_MS, SqliteWitnessStore, createWitnessApp, listen, witnessLogs } from '@custody/ledger-service';
import type { Register } from './index.js';
import { readInputFile } from '../files.js';
import { failWith, printJson } from '../output.js';
import { EXIT_OK } from '../exit.js';
import { parseListen, printVkeyOf, readKeyFile, writeSecretFile } from './log.js';

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export const register: Register = (program: Command) => {
  const witness = program.command('witness').description('Run a C2SP tlog-witness that cosigns checkpoints only when they are consistent with what it saw');

  witness
    .command('keygen')
    .description('Generate a witness key (C2SP tlog-cosignature cosignature/v1, Ed25519)')
    .requiredOption('--name <name>', 'witness name, a schema-less URL such as witness.example.com/w1')
    .requiredOption('--out <file>', 'where to write the private key (mode 0600)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { name: string; out: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        const k = await generateSignerKey(opts.name, SIG_TYPE_COSIGNATURE_V1, secureRandom);
        writeSecretFile(opts.out, k.skey);
        if (json) printJson({ ok: true, name: opts.name, vkey: k.vkey, keyFile: opts.out });
        else process.stdout.write(k.vkey + '\n');
      } catch (e) {
        failWith(e, json);
      }
    });

  witness
    .command('vkey')
    .description('Print the verifier key (vkey) of a witness key file, as keygen printed it')
    .requiredOption('--key <file>', 'the witness key file')
    .option('--json', 'machine-readable output')
    .action((opts: { key: string; json?: boolean }) => printVkeyOf(opts, SIG_TYPE_COSIGNATURE_V1));

  witness
    .command('serve')
    .description(
      'Serve POST /add-checkpoint and GET /<origin hash>/checkpoint; refuses forks (422; 409 with its size for another root at the same size), stale sizes (409), unknown logs (404), bad signatures (403)',
    )
    .requiredOption('--key <file>', 'witness key file (from `custody witness keygen`)')
    .option('--log <vkey>', 'a log verifier key this witness follows (repeatable); its key name is the origin', collect)
    .option('--logs <file>', 'a tlog-policy file whose `log` lines name the logs to follow')
    .option('--db <file>', 'SQLite file for the latest cosigned checkpoint per log', 'witness.sqlite')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8471')
    .option('--json', 'log lines as JSON')
    .addHelpText(
      'after',
      `
Example:
  custody witness keygen --name witness.example.com/w1 --out witness.key
  custody witness serve --key witness.key --log 'example.com/custody-log+1a2b3c4d+AY...' --db witness.sqlite`,
    )
    .action(async (opts: { key: string; log?: string[]; logs?: string; db: string; listen: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        const keys: VerifierKey[] = (opts.log ?? []).map((k) => parseVerifierKey(k));
        if (opts.logs) keys.push(...parseTlogPolicy(readInputFile(opts.logs, 'logs file')).logs.map((l) => l.key));
        if (keys.length === 0) throw new CustodyError('ERR_USAGE', 'give at least one --log <vkey> or --logs <file>');
        const { host, port } = parseListen(opts.listen);
        const cosigner = await createCosigner(readKeyFile(opts.key), systemClock);
        const store = new SqliteWitnessStore(opts.db);
        const server = await listen(createWitnessApp({ cosigners: [cosigner], logs: await witnessLogs(keys), store }), host, port);
        const info = { msg: 'witness serving', name: cosigner.name, vkey: cosigner.vkey, url: server.url, logs: keys.map((k) => k.name) };
        process.stdout.write((json ? JSON.stringify(info) : `witness ${cosigner.name} serving at ${server.url} for ${info.logs.join(', ')}\nvkey ${cosigner.vkey}`) + '\n');
        let stopping = false;
        // The first signal drains (a cosignature in progress may finish for DRAIN_MS; new
        // connections are refused); a second one cuts what is left at once.
        const stop = () => {
          if (stopping) {
            void server.close({ drainMs: 0 });
            return;
          }
          stopping = true;
          void server.close({ drainMs: DRAIN_MS }).then(() => {
            store.close();
            process.exit(EXIT_OK);
          });
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      } catch (e) {
        failWith(e, json);
      }
    });
};
